/* Integer LayerNorm, the ARMv7E-M variant's table-driven path (MCUC_ARM_DSP): ln_rows16
 * (mcuc_layernorm_s8 is this) and its row function ln_row16, four elements a step from the
 * compiler's table p->fast (kernels.h). The reference, the variant's comment (why its int32
 * statistics and fast loops are exact) and the older row loops the calls outside this
 * path take (mcuc_ln_rows, mcuc_ln_row_other, mcuc_ln_exact) are in layernorm.c; what both
 * files use in layernorm_internal.h. */
#include "layernorm_internal.h"

#ifdef MCUC_ARM_DSP
/* isqrt31(v, g): floor(sqrt(v)) = n for v < 2^31, g a guess (the previous row's sigma).
 * With an FPU (every DSP board here has one), by VSQRT, the guess unused: about 9
 * instructions instead of the UDIV loop's 25. Its truncation s is n or n + 1:
 *  - s <= n + 1: (float)v = v (1 + e1) and VSQRT rounds correctly (1 + e2), |e1|, |e2| <=
 *    2^-24, so s_f = sqrt(v) (1 + e), |e| < 2^-23, and sqrt(v) < 2^15.5 gives |s_f -
 *    sqrt(v)| < 2^-7 (so s <= 46340 and s^2 fits 32 bits).
 *  - s >= n: rounding is monotone, so s_f >= sqrtf(fl(n^2)). For 2^e < n < 2^(e + 1)
 *    (n = 2^e and n^2 < 2^24 are exact), fl(n^2) = n^2 - delta with |delta| <= 2^(2e - 23)
 *    (half a float step below 2^(2e + 2)), and sqrt(n^2 - delta) >= n - delta / (2n -
 *    delta / n) > n - 2^(e - 24) (as n >= 2^e + 1): nearer n than the float below it,
 *    n - 2^(e - 23), so VSQRT returns at least n.
 * One comparison settles it. */
#if defined(__ARM_FP) && (__ARM_FP & 4)
MCUC_ALWAYS_INLINE static uint32_t isqrt31(uint32_t v, uint32_t g)
{
    (void)g;
    float f = (float)v;
    __asm__("vsqrt.f32 %0, %0" : "+t"(f));
    const uint32_t s = (uint32_t)f;
    return s * s > v ? s - 1 : s;
}
#else
/* Without one: layernorm.c's isqrt_u32(v) by the same iteration from the guess g, brought
 * into [2^(b-1), 2^b] with 2^b = 2^ceil(bitlen/2) >= sqrt(v) > 2^(b-1) / 2: its first
 * step (x + v / x) / 2 is >= floor(sqrt(v)) for any x > 0 (AM-GM), so the sequence then
 * decreases to floor(sqrt(v)), recognised by its quotient (x <= v / x) without one more
 * step; a close guess saves steps. */
static uint32_t isqrt_near(uint32_t v, uint32_t g)
{
    if (v == 0) {
        return 0;
    }
    const uint32_t top = 1u << ((33 - __builtin_clz(v)) / 2);
    uint32_t x = g > top || g < top / 2 ? top : g;
    x = (x + v / x) >> 1;
    for (;;) { /* x >= floor(sqrt(v)); it is that once x <= v / x, i.e. x^2 <= v */
        const uint32_t q = v / x;
        if (x <= q) {
            return x;
        }
        x = (x + q) >> 1;
    }
}

#define isqrt31 isqrt_near
#endif

/* ln_row16: ln_row10's rows (same preconditions, same k and c, so the same A with
 * |A - A*| < 1.5, |A| < 2^30) when the compiler supplied p->fast (kernels.h), whose g =
 * 64 gamma_q (|g| < 2^31) and c = beta_q + 2^15 + 2^16 (y_zp + 128) put t in units of
 * 2^-16 of an output step:
 *   t = floor(A g / 2^32) + c  (SMMLA)   against   T = A* g / 2^32 + c = 2^16 (V + y_zp + 128)
 * (A* g / 2^32 = d gamma_q / sigma exactly, and V = (num + den/2) / den as in layernorm.c's
 * ln_fast),
 * so t - T lies in (-1.75, 0.75); |t| < 2^29 + 2^30 + 2^15 + 2^16 4224 < 2^31. If the low
 * half of t (u = t mod 2^16) is neither 0 nor 65535, T lies strictly inside (M, M + 2^16)
 * with M = t - u: V is not an integer (no tie) and y_zp + 128 + floor(V) = t >> 16, which
 * USAT16 clamps to 0..255 (y + 128). Elements two by two: with f the low half as a signed
 * 16-bit lane, u in {0, 65535} means f in {-1, 0}, so then f_a f_b is 0 or -f_b, in
 * [-32767, 32768], and SMLABB's 32767 + f_a f_b lies in [0, 65535] (its top half is 0); a
 * group of four with such a pair (rarely otherwise: 3.5e-4 of uniform pairs) stops ln_fast16,
 * and ln_rest16 takes it element by element (ln_one16: the exact formula where u is 0 or
 * 65535). Four elements a step: one word of x, the two pairs (0, 2) and (1, 3) of its
 * byte lanes, one test for both (ln_group16), one word of y (USAT16, PKHTB). */
/* One word from x, then x += 4, at any alignment (LDR post-indexed: gcc adds an unrolled
 * loop's pointer steps separately); and SMULTT, the product of two top halves. */
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
#define LN_LDR_POST(w, p) __asm__("ldr %0, [%1], #4" : "=r"(w), "+r"(p) : : "memory")
static inline int32_t ln_smultt(uint32_t a, uint32_t b)
{
    int32_t r;
    __asm__("smultt %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
    return r;
}
#else
#define LN_LDR_POST(w, p)                                                                \
    do {                                                                                 \
        (w) = mcuc_read32(p);                                                            \
        (p) += 4;                                                                        \
    } while (0)
static inline int32_t ln_smultt(uint32_t a, uint32_t b)
{
    return mcuc_lane(a, 1) * mcuc_lane(b, 1);
}
#endif

/* One group of four (ln_fast16's step): 0 where a pair may be near a boundary (nothing
 * written, y not advanced), else 1 with y[0..4) written and x, y, f past the group.
 * The pairs (0, 2) and (1, 3) in one test: a pair with an element near a boundary has
 * SMLABB's 32767 + f_a f_b in [0, 65535] (ln_row16's comment; no overflow: |f_a f_b| <=
 * 2^30), so its top half is 0, and then so is the product of the two pairs' top halves
 * (SMULTT: two 16-bit factors, the product zero only if one of them is). */
MCUC_ALWAYS_INLINE static int ln_group16(const int8_t **xp, int8_t **yp, const int32_t **fp,
                                         int32_t k, int32_t c, uint32_t mask)
{
    const int32_t half = 32767;
    uint32_t w;
    LN_LDR_POST(w, *xp);
    const uint32_t lo = mcuc_and_lsl8(mask, w); /* lanes x0 2^8, x2 2^8 */
    const uint32_t hi = w & 0xFF00FF00u;        /* lanes x1 2^8, x3 2^8 */
    const int32_t *f = *fp;
    int32_t g0, c0, g1, c1, g2, c2, g3, c3;
    LN_LDM4_POST(g0, c0, g2, c2, f);
    const uint32_t t0 = (uint32_t)mcuc_smmla(mcuc_smlawb(k, lo, c), g0, c0);
    const uint32_t t2 = (uint32_t)mcuc_smmla(mcuc_smlawt(k, lo, c), g2, c2);
    const uint32_t v02 = (uint32_t)mcuc_smlabb(t0, t2, half);
    const uint32_t e = mcuc_usat16_8(mcuc_pkhtb16(t0, t2)); /* bytes 0, 2 */
    LN_LDM4_POST(g1, c1, g3, c3, f);
    const uint32_t t1 = (uint32_t)mcuc_smmla(mcuc_smlawb(k, hi, c), g1, c1);
    const uint32_t t3 = (uint32_t)mcuc_smmla(mcuc_smlawt(k, hi, c), g3, c3);
    if (ln_smultt(v02, (uint32_t)mcuc_smlabb(t1, t3, half)) == 0) {
        return 0;
    }
    const uint32_t o = mcuc_usat16_8(mcuc_pkhtb16(t1, t3)); /* bytes 1, 3 */
    mcuc_write32(*yp, (e | o << 8) ^ 0x80808080u);
    *yp += 4;
    *fp = f;
    return 1;
}

/* The groups of four of y[0..n - n mod 8) until one has a pair near a boundary; returns
 * where it stopped. Four groups a loop step (then two, where n mod 16 >= 8), so that the
 * loop's compare and branch count once per sixteen elements (ln_rest16 takes a last
 * group of four). */
MCUC_ALWAYS_INLINE static int8_t *ln_fast16(const int8_t *x, int8_t *y, const int32_t *f,
                                           int32_t n, int32_t k, int32_t c)
{
    int8_t *const y16 = y + (n & ~15);
    const uint32_t mask = 0xFF00FFFFu;
    while (y != y16) {
        if (!ln_group16(&x, &y, &f, k, c, mask) || !ln_group16(&x, &y, &f, k, c, mask) ||
            !ln_group16(&x, &y, &f, k, c, mask) || !ln_group16(&x, &y, &f, k, c, mask)) {
            return y;
        }
    }
    if ((n & 8) != 0 && ln_group16(&x, &y, &f, k, c, mask)) {
        (void)ln_group16(&x, &y, &f, k, c, mask);
    }
    return y;
}

/* ln_row16's per-row constants k and c (layernorm.c's ln_fast10 comment): two base-2^16
 * UDIV pairs. */
MCUC_ALWAYS_INLINE static int32_t ln_kc16(int32_t cols, int32_t sum, uint32_t s, int32_t *c)
{
    int inexact = 0;
    const int32_t k = (int32_t)div_2p16((uint32_t)cols << 18, s, &inexact);
    const uint32_t v = div_2p16((sum < 0 ? 0u - (uint32_t)sum : (uint32_t)sum) << 10, s,
                                &inexact);
    *c = (sum >= 0 ? -(int32_t)v - inexact : (int32_t)v) + 1;
    return k;
}

/* One element of ln_row16 alone (the last cols mod 4, and the groups ln_fast16 stops
 * at): its t from the table pair at f, the exact formula where the low half of t is 0 or
 * 65535. */
static int8_t ln_one16(const mcuc_layernorm_params_t *p, const int32_t *f, int32_t i,
                       int32_t xi, int32_t k, int32_t c, int32_t sum, uint32_t s)
{
    const uint32_t t = (uint32_t)mcuc_smmla(mcuc_smlawb(k, (uint32_t)(uint8_t)xi << 8, c),
                                            f[0], f[1]);
    const uint32_t u = t & 0xFFFFu;
    return u == 0 || u == 0xFFFFu ? mcuc_ln_exact(p, i, xi, sum, (int64_t)s)
                                  : (int8_t)((int32_t)mcuc_usat8((int32_t)t >> 16) - 128);
}

/* The rest of a ln_row16 row from element i, where ln_fast16 stopped (at a group with a
 * pair near a boundary, or at the last cols mod 8), a group of four at a time (the
 * stopped one element by element), then the last cols mod 4: out of line and without
 * ln_fast16's unrolled loop, since it is rare in rows of a multiple of eight. */
static __attribute__((noinline)) void ln_rest16(const mcuc_layernorm_params_t *p,
                                                const int8_t *xr, int8_t *yr, int32_t i,
                                                int32_t sum, uint32_t s)
{
    const int32_t cols = p->cols, n4 = cols & ~3;
    const int32_t *const f = p->fast;
    int32_t c;
    const int32_t k = ln_kc16(cols, sum, s, &c);
    while (i < n4) {
        const int8_t *xg = xr + i;
        int8_t *yg = yr + i;
        const int32_t *fg = f + 2 * i;
        if (!ln_group16(&xg, &yg, &fg, k, c, 0xFF00FFFFu)) {
            /* a pair near a boundary: the group element by element; within a group the
             * table holds elements 0, 2, 1, 3 */
            for (int32_t j = 0; j < 4; ++j) {
                const int32_t at = i + (j == 1 ? 2 : (j == 2 ? 1 : j));
                yr[i + j] = ln_one16(p, f + 2 * at, i + j, xr[i + j], k, c, sum, s);
            }
        }
        i += 4;
    }
    for (; i < cols; ++i) {
        yr[i] = ln_one16(p, f + 2 * i, i, xr[i], k, c, sum, s);
    }
}

/* A row's sum and sigma (sigma's first guess on entry to ln_row16: the previous row's),
 * and ln_row16's sigma range s_lo <= s < s_lo + s_span (s > 8 cols, s >= 15, s < 65536). */
typedef struct {
    int32_t sum;
    uint32_t s, s_lo, s_span;
} ln_row_t;

/* One row of ln_rows16: its statistics, the variance in uint32 (exact: it lies in
 * [0, 2^31)) and sigma; then, in ln_row16's sigma range, k and c and ln_fast16's loop.
 * Returns where that stopped, or y outside the range (ln_rows16 tells the two apart by
 * st->s). Out of line with few arguments, so that each step has the registers to itself
 * (the row loop around it keeps few values). */
static __attribute__((noinline)) int8_t *ln_row16(const mcuc_layernorm_params_t *p,
                                                  const int8_t *x, int8_t *y, ln_row_t *st)
{
    const int32_t cols = p->cols;
    int32_t sq;
    const int32_t sum = ln_stats(x, cols, &sq);
    const uint32_t s = isqrt31((uint32_t)cols * (uint32_t)sq - (uint32_t)sum * (uint32_t)sum +
                                      (uint32_t)p->eps_q,
                                  st->s);
    st->sum = sum;
    st->s = s;
    if (s - st->s_lo >= st->s_span) {
        return y;
    }
    int32_t c;
    const int32_t k = ln_kc16(cols, sum, s, &c);
    return ln_fast16(x, y, p->fast, cols, k, c);
}

/* Every call (mcuc_layernorm_s8 is this): those without p->fast or outside mcuc_ln_rows'
 * `small` bounds go to mcuc_ln_rows (layernorm.c); the others, row by row, to ln_row16,
 * then ln_rest16 where its loop stopped early or left the last cols mod 8, or the older
 * row loop (mcuc_ln_row_other) where sigma is outside its range. The checks live here
 * rather than in mcuc_layernorm_s8, so that a call of a few rows (the token-wise kernel's
 * tiles) pays one function entry. */
static __attribute__((noinline)) void ln_rows16(const mcuc_layernorm_params_t *p,
                                                const int8_t *x, int8_t *y)
{
    if (!(p->fast != NULL && p->rows > 0 && p->cols > 0 && p->cols <= 224 && p->eps_q >= 0 &&
          p->eps_q <= (1 << 30) && p->y_zp > -32768 && p->y_zp < 32768)) {
        mcuc_ln_rows(p, x, y);
        return;
    }
    const int32_t cols = p->cols;
    const uint32_t s_lo = 8u * (uint32_t)cols + 1u < 15u ? 15u : 8u * (uint32_t)cols + 1u;
    ln_row_t st = {0, 0, s_lo, 65536u - s_lo};
    const int8_t *const x_end = x + (int64_t)p->rows * cols;
    for (; x != x_end; x += cols, y += cols) {
        const int8_t *const stop = ln_row16(p, x, y, &st);
        if (stop != y + cols) {
            if (st.s - st.s_lo < st.s_span) {
                ln_rest16(p, x, y, (int32_t)(stop - y), st.sum, st.s);
            } else {
                mcuc_ln_row_other(p, x, y, st.sum, st.s);
            }
        }
    }
}

/* ln_rows16 (its comment). */
void mcuc_layernorm_s8(const mcuc_layernorm_params_t *p, const int8_t *x, int8_t *y)
{
    ln_rows16(p, x, y);
}
#endif /* MCUC_ARM_DSP */
