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
 *   - the rounding right shifts are one add of constants computed once per call (rshift).
 * Before both, add_tab takes every call whose params carry the compiler's tables (a_tab,
 * b_tab: the inputs' terms for each byte, kernels.h) and whose output step add_exact
 * could do: then the inputs cost one or two table reads per element. */
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
        const int32_t s = mcuc_sat_s32(sum);
        const int64_t v = (int64_t)p->y_zp + mcuc_requantize(s, p->y_mult, p->y_shift);
        y[i] = mcuc_clamp_s8(v);
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

/* The common case, add_exact: make_params gives the input of the larger scale the
 * multiplier 1/2 exactly (mult 2^30, shift 0), so that input, e, contributes
 *   ev = requantize((e - ze) 2^20, 2^30, 0) = srdhm((e - ze) 2^20, 2^30) = (e - ze) 2^19
 * with no rounding (the product (e - ze) 2^50 is a multiple of 2^31). The other input, o,
 * with 0 <= mo < 2^31 and a shift -eo in [-31, -1], and the output, with my in
 * [2^30, 2^31) (quantize_multiplier's normal form) and a shift -ey in [-31, -1], go as
 * in add_fast with these exact rewrites (zero points ze, zo in [-128, 127], checked):
 *   - o side: x = (o - zo) 2^21 (|x| <= 255 2^21 < 2^29) and u = srdhm(x / 2, mo) =
 *     SMMULR(x, mo), |u| < 2^28. The rounding shift's (u < 0) may be read as (x < 0):
 *     mo >= 0 gives u <= 0 for x < 0 and u >= 0 for x >= 0, and where u = 0 < x's sign
 *     the two results floor((2^(eo-1) - 1) / 2^eo) and floor(2^(eo-1) / 2^eo) are both 0
 *     (eo >= 1). So ov = (SMMLAR(x, mo, ko + (x >> 31)) >> eo) with ko = 2^(eo-1), and
 *     adding -ze 2^19 2^eo to ko adds exactly -ze 2^19 after the shift: w = ov - ze 2^19,
 *     and s = ev + ov = w + e 2^19, |s| <= |ov| + 255 2^19 < 2^27 + 2^28 < 2^29.
 *     SMMLAR's sum stays within int32 when |ze| 2^(19+eo) + 2^(eo-1) <= 2^30 (checked).
 *   - output: srdhm(s, my) = floor((2 s my + 2^31) / 2^32) (|s| < 2^29, add_fast's
 *     argument); 2 my does not fit int32, but m2 = 2 my - 2^32 in [-2^31, 0) does, and
 *     SMMLAR(s, m2, acc) = floor((acc 2^32 + 2 s my - s 2^32 + 2^31) / 2^32) = acc - s +
 *     srdhm(s, my). With acc = s + cy + (s >> 31), cy = 2^(ey-1) + y_zp 2^ey, the result
 *     is z = srdhm(s, my) + 2^(ey-1) - (s < 0) + y_zp 2^ey, and z >> ey is
 *     y_zp + rdbpot(srdhm(s, my), ey): (s < 0) stands for (srdhm < 0) as above (my > 0),
 *     and y_zp 2^ey is a multiple of 2^ey. No int32 overflow: |s| < 2^29, |srdhm| < 2^29,
 *     and |y_zp| 2^ey + 2^(ey-1) <= 2^30 (checked). The sum needs no saturation (|s| <
 *     2^29), and y_zp + v needs none either, so ssat8(z >> ey) is the output byte. */
typedef struct {
    int32_t zo21, ko, mo, eo, cy, m2;
} add_exact_t;

/* One output element before its shift by ey: e and o are the two inputs' bytes. */
MCUC_ALWAYS_INLINE static int32_t add_exact_z(int32_t e, int32_t o, const add_exact_t *k)
{
    const int32_t x = o * (1 << 21) - k->zo21;
    const int32_t s = (mcuc_smmlar(x, k->mo, k->ko + (x >> 31)) >> k->eo) + e * (1 << 19);
    return mcuc_smmlar(s, k->m2, s + k->cy + (s >> 31));
}

/* The loop; ey is a constant where inlined with one (the output's shift and clamp are
 * then one SSAT). */
MCUC_ALWAYS_INLINE static void add_exact_loop(const int8_t *e, const int8_t *o, int8_t *y,
                                              int32_t n, add_exact_t k, int32_t ey)
{
    const int8_t *const end = e + n;
    while (e != end) {
        *y++ = (int8_t)mcuc_ssat8(add_exact_z(*e++, *o++, &k) >> ey);
    }
}

/* |z| 2^sh + 2^(e-1) <= 2^30 (sh in [1, 50], e in [1, 31]), in 32-bit steps. */
static int fits30(int32_t z, int32_t sh, int32_t e)
{
    const uint32_t az = z < 0 ? 0u - (uint32_t)z : (uint32_t)z;
    const uint32_t room = (1u << 30) - (1u << (e - 1));
    return sh >= 31 ? az == 0 : az <= (room >> sh);
}

/* add_exact's preconditions (its comment); returns 0 when they fail. */
static __attribute__((noinline)) int add_exact(const mcuc_add_params_t *p, const int8_t *a,
                                               const int8_t *b, int8_t *y)
{
    int32_t ze, zo, mo, eo;
    if (p->a_mult == (1 << 30) && p->a_shift == 0) {
        ze = p->a_zp, zo = p->b_zp, mo = p->b_mult, eo = -p->b_shift;
    } else if (p->b_mult == (1 << 30) && p->b_shift == 0) {
        const int8_t *t = a;
        a = b, b = t;
        ze = p->b_zp, zo = p->a_zp, mo = p->a_mult, eo = -p->a_shift;
    } else {
        return 0;
    }
    const int32_t ey = -p->y_shift, y_zp = p->y_zp;
    if (p->size <= 0 || p->b_size != p->size || ze < -128 || ze > 127 || zo < -128 || zo > 127 ||
        mo < 0 || eo < 1 || eo > 31 || p->y_mult < (1 << 30) ||
        ey < 1 || ey > 31 || !fits30(ze, 19 + eo, eo) || !fits30(y_zp, ey, ey)) {
        return 0;
    }
    /* fits30 bounds both constants by 2^30 (and ze = 0 where 19 + eo > 30). */
    const uint32_t ze_sh = ze ? (uint32_t)ze << (19 + eo) : 0u;
    const add_exact_t k = {
        (int32_t)((uint32_t)zo << 21),
        (int32_t)((1u << (eo - 1)) - ze_sh),
        mo,
        eo,
        (int32_t)((1u << (ey - 1)) + ((uint32_t)y_zp << ey)),
        (int32_t)((uint32_t)p->y_mult * 2u),
    };
    switch (ey) { /* the usual shifts (LEFT_SHIFT 20 and scales of one order) */
    case 18:
        add_exact_loop(a, b, y, p->size, k, 18);
        break;
    case 19:
        add_exact_loop(a, b, y, p->size, k, 19);
        break;
    case 20:
        add_exact_loop(a, b, y, p->size, k, 20);
        break;
    default:
        add_exact_loop(a, b, y, p->size, k, ey);
        break;
    }
    return 1;
}

/* add_tab: where the compiler gave tables (kernels.h; kernels/add.py tables, which emits
 * them only when every sum below is under 2^29 in magnitude), s is av + bv exactly, needs
 * no saturation, and the output step is add_exact's (its comment: SMMLAR with m2 and cy,
 * then one SSAT), under the same checks of y_mult, ey and y_zp. With both tables, s =
 * a_tab[a] + b_tab[b]. With one (b_size = size only; the compiler gives one where the
 * other input's term is (v - zp) 2^19 for every byte v, add_exact's e, and folds that
 * input's -zp 2^19 into the table), s = e 2^19 + tab[o]: one load fewer per element,
 * and the output shift inlined for add_exact's usual shifts. Eight elements a step; b's
 * broadcast (two tables) is a loop over chunks of b_size. */
MCUC_ALWAYS_INLINE static int8_t add_tab_out(int32_t s, int32_t cy, int32_t m2, int32_t ey)
{
    return (int8_t)mcuc_ssat8(mcuc_smmlar(s, m2, s + cy + (s >> 31)) >> ey);
}

typedef struct {
    const int32_t *ta, *tb; /* the tables' entries for byte 0 (ta unused when one) */
    int32_t cy, m2;
} add_tab_t;

/* The term of a's byte v: its table's, or (one) v 2^19. */
#define ADD_TAB_S(i) ((one ? a[i] * (1 << 19) : ta[a[i]]) + tb[b[i]])

MCUC_ALWAYS_INLINE static void add_tab_run(const int8_t *a, const int8_t *b, int8_t *y,
                                           int32_t n, add_tab_t k, int32_t ey, int one)
{
    const int32_t *const ta = k.ta, *const tb = k.tb;
    for (int32_t i = n >> 3; i > 0; --i) { /* a count, not an end pointer: GCC then keeps
                                              no copies of the pointers in the loop */
        y[0] = add_tab_out(ADD_TAB_S(0), k.cy, k.m2, ey);
        y[1] = add_tab_out(ADD_TAB_S(1), k.cy, k.m2, ey);
        y[2] = add_tab_out(ADD_TAB_S(2), k.cy, k.m2, ey);
        y[3] = add_tab_out(ADD_TAB_S(3), k.cy, k.m2, ey);
        y[4] = add_tab_out(ADD_TAB_S(4), k.cy, k.m2, ey);
        y[5] = add_tab_out(ADD_TAB_S(5), k.cy, k.m2, ey);
        y[6] = add_tab_out(ADD_TAB_S(6), k.cy, k.m2, ey);
        y[7] = add_tab_out(ADD_TAB_S(7), k.cy, k.m2, ey);
        a += 8, b += 8, y += 8;
    }
    for (int32_t i = n & 7; i > 0; --i) {
        *y++ = add_tab_out(ADD_TAB_S(0), k.cy, k.m2, ey);
        ++a, ++b;
    }
}
#undef ADD_TAB_S

/* The whole call: b restarts every b_size elements; ey and one are constants where
 * inlined. */
MCUC_ALWAYS_INLINE static void add_tab_loop(const int8_t *a, const int8_t *b, int8_t *y,
                                            int32_t size, int32_t b_size, add_tab_t k,
                                            int32_t ey, int one)
{
    for (int32_t i = 0; i < size; i += b_size) {
        const int32_t n = size - i < b_size ? size - i : b_size;
        add_tab_run(a + i, b, y + i, n, k, ey, one);
    }
}

/* add_tab_loop with the output shift inlined for add_exact's usual shifts. */
MCUC_ALWAYS_INLINE static void add_tab_shifts(const int8_t *a, const int8_t *b, int8_t *y,
                                              int32_t size, int32_t b_size, add_tab_t k,
                                              int32_t ey, int one)
{
    switch (ey) {
    case 18:
        add_tab_loop(a, b, y, size, b_size, k, 18, one);
        break;
    case 19:
        add_tab_loop(a, b, y, size, b_size, k, 19, one);
        break;
    case 20:
        add_tab_loop(a, b, y, size, b_size, k, 20, one);
        break;
    default:
        add_tab_loop(a, b, y, size, b_size, k, ey, one);
        break;
    }
}

/* add_tab's preconditions (its comment); returns 0 when they fail. */
static __attribute__((noinline)) int add_tab(const mcuc_add_params_t *p, const int8_t *a,
                                             const int8_t *b, int8_t *y)
{
    const int32_t ey = -p->y_shift, y_zp = p->y_zp, size = p->size, b_size = p->b_size;
    const int both = p->a_tab && p->b_tab;
    if ((!p->a_tab && !p->b_tab) || size <= 0 || b_size <= 0 ||
        (!both && b_size != size) || p->y_mult < (1 << 30) || ey < 1 || ey > 31 ||
        !fits30(y_zp, ey, ey)) {
        return 0;
    }
    const int32_t cy = (int32_t)((1u << (ey - 1)) + ((uint32_t)y_zp << ey));
    const int32_t m2 = (int32_t)((uint32_t)p->y_mult * 2u);
    if (both) { /* the rarer case (neither input at 2^19): the output shift variable */
        const add_tab_t k = {p->a_tab + 128, p->b_tab + 128, cy, m2};
        add_tab_loop(a, b, y, size, b_size, k, ey, 0);
    } else { /* e: the input at 2^19, o: the other (the operands may swap: b_size = size) */
        const int8_t *const e = p->b_tab ? a : b, *const o = p->b_tab ? b : a;
        const add_tab_t k = {0, (p->b_tab ? p->b_tab : p->a_tab) + 128, cy, m2};
        add_tab_shifts(e, o, y, size, size, k, ey, 1);
    }
    return 1;
}

void mcuc_add_s8(const mcuc_add_params_t *p, const int8_t *a, const int8_t *b, int8_t *y)
{
    if (add_tab(p, a, b, y) || add_exact(p, a, b, y)) {
        return;
    }
    if (p->a_shift <= 0 && p->b_shift <= 0 && p->y_shift <= 0 && p->a_shift >= -31 &&
        p->b_shift >= -31 && p->y_shift >= -31) {
        add_fast(p, a, b, y);
    } else {
        add_ref(p, a, b, y);
    }
}
#endif /* MCUC_ARM_DSP */
