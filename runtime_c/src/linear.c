/* Token-wise linear layer.
 *
 * The weights arrive packed by the compiler (compiler/mcuc/kernels/linear.py,
 * pack_weights): for each block of four output channels j..j+3, the four channels' words
 * w[j+c][i..i+3] side by side for every i = 0, 4, .. below k4 = k & ~3, then the tail bytes
 * w[j+c][i] (i >= k4) four at a time; channels from n4 = n & ~3 on are plain rows. The inner
 * loop walks one pointer through contiguous words. Block j starts at byte j * k.
 *
 * linear_ref is the portable reference (the C twin of the numpy spec): int64 accumulation
 * keeps the sum exact for any k and bias; it is saturated to int32 before requantization,
 * as the numpy spec does.
 *
 * With MCUC_ARM_DSP (boards whose board.toml says [cpu] dsp = true; see mcuc/simd.h) the
 * rows go through the SMLAD loop instead: one row against four output channels at a time,
 * four k per step as two SMLADs per channel on SXTB16-unpacked pairs, in int32.
 * Why int32 is exact: |x - x_zp| <= 255 and |w| <= 128, so every partial sum of
 * (x - x_zp) * w over k terms is at most 255 * 128 * k in magnitude, which fits int32
 * for k <= MCUC_DSP_MAX_K = 65793 (255 * 128 * 65793 = 2,147,483,520 <= 2^31 - 1; checked
 * below at compile time, and against the Python twin in linear.py by a test). Larger k
 * (the compiler accepts dimensions up to 2^20) takes the reference loop. The bias is then
 * added with a saturating add (QADD): the exact sum fits int32, so sat32(bias + sum) is
 * exactly the reference's saturated int64 sum. The compiler folds the input zero point
 * into the bias where it can (fold_zero_point), and the loop for x_zp == 0 skips the
 * subtraction. */
#include "mcuc/kernels.h"

/* The reference's epilogue: saturate the exact sum, requantize, add y_zp, clamp. */
static int8_t ref_out(const mcuc_linear_params_t *p, int32_t j, int64_t acc)
{
    const int32_t a = (int32_t)(acc > INT32_MAX ? INT32_MAX : (acc < INT32_MIN ? INT32_MIN : acc));
    const int64_t v = (int64_t)p->y_zp + mcuc_requantize(a, p->mult[j], p->shift[j]);
    return (int8_t)(v < -128 ? -128 : (v > 127 ? 127 : v));
}

/* Without a variant this is mcuc_linear_s8 itself. */
#ifdef MCUC_ARM_DSP
static void linear_ref(const mcuc_linear_params_t *p, const int8_t *x, int8_t *y)
#else
void mcuc_linear_s8(const mcuc_linear_params_t *p, const int8_t *x, int8_t *y)
#endif
{
    const int32_t k = p->k, n = p->n, n4 = n & ~3, k4 = k & ~3;
    for (int32_t r = 0; r < p->rows; ++r) {
        const int8_t *xr = x + (int64_t)r * k;
        int8_t *yr = y + (int64_t)r * n;
        for (int32_t j = 0; j < n4; j += 4) {
            const int8_t *wb = p->weights + (int64_t)j * k; /* block j..j+3 */
            for (int32_t c = 0; c < 4; ++c) {
                int64_t acc = p->bias ? p->bias[j + c] : 0;
                for (int32_t i = 0; i < k4; ++i) { /* word i / 4 of channel c */
                    acc += (int32_t)(xr[i] - p->x_zp) * (int32_t)wb[4 * (i & ~3) + 4 * c + (i & 3)];
                }
                for (int32_t i = k4; i < k; ++i) {
                    acc += (int32_t)(xr[i] - p->x_zp) * (int32_t)wb[4 * i + c];
                }
                yr[j + c] = ref_out(p, j + c, acc);
            }
        }
        for (int32_t j = n4; j < n; ++j) { /* plain rows */
            const int8_t *wj = p->weights + (int64_t)j * k;
            int64_t acc = p->bias ? p->bias[j] : 0;
            for (int32_t i = 0; i < k; ++i) {
                acc += (int32_t)(xr[i] - p->x_zp) * (int32_t)wj[i];
            }
            yr[j] = ref_out(p, j, acc);
        }
    }
}

#ifdef MCUC_ARM_DSP
#include "mcuc/simd.h"

#define MCUC_DSP_MAX_K 65793
/* The int32 bound above, as a compile-time check (a negative array size fails). */
typedef char mcuc_dsp_k_bound_fits_int32[(255LL * 128 * MCUC_DSP_MAX_K <= INT32_MAX) ? 1 : -1];

/* x - x_zp for the two lanes of an SXTB16 pair; nothing when the zero point was folded
 * (has_zp is a constant at every call, so each loop is compiled without the test). */
#define MCUC_PAIR(v, has_zp, zp2) ((has_zp) ? mcuc_ssub16((v), (zp2)) : (v))

/* sum_i (x[i] - x_zp) * w[j+c][i] for the four channels of one packed block. */
MCUC_ALWAYS_INLINE static void dot4(const int8_t *xr, const int8_t *wb, int32_t k,
                                    int has_zp, int32_t x_zp, int32_t *out)
{
    const int32_t k4 = k & ~3;
    const uint32_t zp2 = mcuc_dup16(x_zp);
    const int8_t *const xend = xr + k4;
    int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    const int8_t *xi = xr;
    while (xi < xend) {
        const uint32_t xw = mcuc_read32(xi);
        xi += 4;
        const uint32_t xl = MCUC_PAIR(mcuc_sxtb16(xw), has_zp, zp2);
        const uint32_t xh = MCUC_PAIR(mcuc_sxtb16_ror8(xw), has_zp, zp2);
        uint32_t w = mcuc_read32(wb);
        a0 = mcuc_smlad(xl, mcuc_sxtb16(w), a0);
        a0 = mcuc_smlad(xh, mcuc_sxtb16_ror8(w), a0);
        w = mcuc_read32(wb + 4);
        a1 = mcuc_smlad(xl, mcuc_sxtb16(w), a1);
        a1 = mcuc_smlad(xh, mcuc_sxtb16_ror8(w), a1);
        w = mcuc_read32(wb + 8);
        a2 = mcuc_smlad(xl, mcuc_sxtb16(w), a2);
        a2 = mcuc_smlad(xh, mcuc_sxtb16_ror8(w), a2);
        w = mcuc_read32(wb + 12);
        a3 = mcuc_smlad(xl, mcuc_sxtb16(w), a3);
        a3 = mcuc_smlad(xh, mcuc_sxtb16_ror8(w), a3);
        wb += 16;
    }
    for (int32_t i = k4; i < k; ++i, wb += 4) {
        const int32_t xv = xr[i] - x_zp;
        a0 += xv * wb[0];
        a1 += xv * wb[1];
        a2 += xv * wb[2];
        a3 += xv * wb[3];
    }
    out[0] = a0;
    out[1] = a1;
    out[2] = a2;
    out[3] = a3;
}

/* One plain row's sum (the channels past the last block of four). */
static int32_t dot1(const int8_t *xr, const int8_t *wj, int32_t k, int32_t x_zp)
{
    const int32_t k4 = k & ~3;
    const uint32_t zp2 = mcuc_dup16(x_zp);
    int32_t a0 = 0;
    for (int32_t i = 0; i < k4; i += 4) {
        const uint32_t xw = mcuc_read32(xr + i);
        const uint32_t ww = mcuc_read32(wj + i);
        a0 = mcuc_smlad(mcuc_ssub16(mcuc_sxtb16(xw), zp2), mcuc_sxtb16(ww), a0);
        a0 = mcuc_smlad(mcuc_ssub16(mcuc_sxtb16_ror8(xw), zp2), mcuc_sxtb16_ror8(ww), a0);
    }
    for (int32_t i = k4; i < k; ++i) {
        a0 += (xr[i] - x_zp) * wj[i];
    }
    return a0;
}

/* The epilogue of output channel j: bias, requantization, zero point, clamp. */
MCUC_ALWAYS_INLINE static int8_t with_bias(const int32_t *bias, const int32_t *mult,
                                           const int32_t *shift, int32_t y_zp, int32_t j,
                                           int32_t sum)
{
    const int32_t acc = bias ? mcuc_qadd(bias[j], sum) : sum;
    return mcuc_out_s8(y_zp, mcuc_requantize_fast(acc, mult[j], shift[j]));
}

/* Every row; has_zp is a constant at each call (the two copies of the loop). */
MCUC_ALWAYS_INLINE static void linear_dsp(const mcuc_linear_params_t *p, const int8_t *x,
                                          int8_t *y, int has_zp)
{
    const int32_t k = p->k, n = p->n, n4 = n & ~3, x_zp = p->x_zp, y_zp = p->y_zp;
    const int32_t *const bias = p->bias, *const mult = p->mult, *const shift = p->shift;
    for (int32_t r = 0; r < p->rows; ++r) {
        const int8_t *xr = x + (int64_t)r * k;
        int8_t *yr = y + (int64_t)r * n;
        const int8_t *wb = p->weights;
        for (int32_t j = 0; j < n4; j += 4, wb += 4 * k) {
            int32_t a[4];
            dot4(xr, wb, k, has_zp, x_zp, a);
            for (int32_t c = 0; c < 4; ++c) {
                yr[j + c] = with_bias(bias, mult, shift, y_zp, j + c, a[c]);
            }
        }
        for (int32_t j = n4; j < n; ++j, wb += k) {
            yr[j] = with_bias(bias, mult, shift, y_zp, j, dot1(xr, wb, k, x_zp));
        }
    }
}

void mcuc_linear_s8(const mcuc_linear_params_t *p, const int8_t *x, int8_t *y)
{
    if (p->k > MCUC_DSP_MAX_K) {
        linear_ref(p, x, y);
    } else if (p->x_zp == 0) {
        linear_dsp(p, x, y, 0);
    } else {
        linear_dsp(p, x, y, 1);
    }
}
#endif /* MCUC_ARM_DSP */
