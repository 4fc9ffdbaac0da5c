/* TFLM-style add. Shifts by 20 are written as multiplications (left-shifting a negative
 * int is undefined in C99); av + bv is summed in int64 and saturated to int32.
 *
 * With MCUC_ARM_DSP, calls whose three shifts are <= 0 (every add the compiler makes:
 * add.make_params keeps the multipliers below 1) take add_fast, bit for bit the same:
 *   - x = (v - zp) << 20 has |x| <= 255 * 2^20 < 2^29, so 2x fits int32 and
 *     srdhm(x, m) = floor((x m + 2^30) / 2^31) = floor((2x m + 2^31) / 2^32) is one SMMULR
 *     on 2x (mcuc_requantize_fast's comment shows srdhm is that floor for every sign);
 *   - |av|, |bv| <= |x| < 2^29 (a multiplier below 1 and a right shift only shrink), so
 *     av + bv needs no saturation and 2 (av + bv) fits int32: the output's srdhm is one
 *     SMMULR too;
 *   - the rounding right shifts are one add of constants computed once per call (rshift). */
#include "mcuc/kernels.h"

#ifdef MCUC_ARM_DSP
static void add_ref(const mcuc_add_params_t *p, const int8_t *a, const int8_t *b, int8_t *y)
#else
void mcuc_add_s8(const mcuc_add_params_t *p, const int8_t *a, const int8_t *b, int8_t *y)
#endif
{
    int32_t j = 0; /* i % b_size without a division per element */
    for (int32_t i = 0; i < p->size; ++i) {
        const int32_t av = mcuc_requantize((a[i] - p->a_zp) * (1 << 20), p->a_mult, p->a_shift);
        const int32_t bv = mcuc_requantize((b[j] - p->b_zp) * (1 << 20), p->b_mult, p->b_shift);
        if (++j == p->b_size) {
            j = 0;
        }
        const int64_t sum = (int64_t)av + bv;
        const int32_t s = (int32_t)(sum > INT32_MAX ? INT32_MAX
                                    : (sum < INT32_MIN ? INT32_MIN : sum));
        const int64_t v = (int64_t)p->y_zp + mcuc_requantize(s, p->y_mult, p->y_shift);
        y[i] = (int8_t)(v < -128 ? -128 : (v > 127 ? 127 : v));
    }
}

#ifdef MCUC_ARM_DSP
#include "mcuc/simd.h"

/* A rounding right shift by e (mcuc_rdbpot), its constants computed once per call:
 * half = 2^(e-1) and neg = -1 for e >= 1, both 0 for e = 0. For e in [1, 31] and
 * x = d 2^e + r (0 <= r < 2^e), mcuc_rdbpot adds 1 to d exactly when
 * r > 2^(e-1) - 1 + (x < 0), which is when r + 2^(e-1) - (x < 0) >= 2^e, so the result
 * is (x + 2^(e-1) - (x < 0)) >> e; every x here is below 2^29 in magnitude (the module
 * doc), so the sum does not overflow. For e = 0 the expression is x itself. */
typedef struct {
    int32_t e, half, neg;
} rshift_t;

static rshift_t rshift_of(int32_t shift)
{
    const int32_t e = -shift;
    const rshift_t r = {e, (int32_t)((1u << e) >> 1), e ? -1 : 0};
    return r;
}

MCUC_ALWAYS_INLINE static int32_t rshift(int32_t x, rshift_t r)
{
    return (x + r.half + ((x >> 31) & r.neg)) >> r.e;
}

/* requantize((v - zp) << 20, m, shift) for shift <= 0: 2x = (v - zp) * 2^21. */
MCUC_ALWAYS_INLINE static int32_t scaled(int32_t v, int32_t zp, int32_t m, rshift_t r)
{
    return rshift(mcuc_smmulr((v - zp) * (1 << 21), m), r);
}

static void add_fast(const mcuc_add_params_t *p, const int8_t *a, const int8_t *b, int8_t *y)
{
    const rshift_t ra = rshift_of(p->a_shift), rb = rshift_of(p->b_shift);
    const rshift_t ry = rshift_of(p->y_shift);
    const int32_t a_zp = p->a_zp, b_zp = p->b_zp, y_zp = p->y_zp;
    const int32_t a_mult = p->a_mult, b_mult = p->b_mult, y_mult = p->y_mult;
    const int32_t size = p->size, b_size = p->b_size;
    int32_t j = 0;
    for (int32_t i = 0; i < size; ++i) {
        const int32_t av = scaled(a[i], a_zp, a_mult, ra);
        const int32_t bv = scaled(b[j], b_zp, b_mult, rb);
        if (++j == b_size) {
            j = 0;
        }
        const int32_t v = rshift(mcuc_smmulr((av + bv) * 2, y_mult), ry);
        y[i] = (int8_t)mcuc_ssat8(mcuc_qadd(y_zp, v));
    }
}

void mcuc_add_s8(const mcuc_add_params_t *p, const int8_t *a, const int8_t *b, int8_t *y)
{
    if (p->a_shift <= 0 && p->b_shift <= 0 && p->y_shift <= 0 && p->a_shift >= -31 &&
        p->b_shift >= -31 && p->y_shift >= -31) {
        add_fast(p, a, b, y);
    } else {
        add_ref(p, a, b, y);
    }
}
#endif /* MCUC_ARM_DSP */
