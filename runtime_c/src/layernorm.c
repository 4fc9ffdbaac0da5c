/* Integer LayerNorm. Two passes over each row (sum, then sum of squares of d_i) and an
 * output pass that recomputes d_i from x[i], so no scratch buffer is needed and y may
 * alias x. The square root is the exact bitwise floor sqrt (no libm). */
#include "mcuc/kernels.h"

/* Without a variant this loop is mcuc_layernorm_s8 itself. */
#ifdef MCUC_ARM_DSP
static void layernorm_ref(const mcuc_layernorm_params_t *p, const int8_t *x, int8_t *y)
#else
void mcuc_layernorm_s8(const mcuc_layernorm_params_t *p, const int8_t *x, int8_t *y)
#endif
{
    const int32_t cols = p->cols;
    for (int32_t r = 0; r < p->rows; ++r) {
        const int8_t *xr = x + (int64_t)r * cols;
        int8_t *yr = y + (int64_t)r * cols;
        int32_t sum = 0;
        for (int32_t i = 0; i < cols; ++i) {
            sum += xr[i];
        }
        int64_t ssq = 0;
        for (int32_t i = 0; i < cols; ++i) {
            const int64_t d = (int64_t)cols * xr[i] - sum;
            ssq += d * d;
        }
        const int64_t var = ssq / cols + p->eps_q;
        int64_t sigma = (int64_t)mcuc_isqrt_u64((uint64_t)var);
        if (sigma == 0) {
            sigma = 1;
        }
        const int64_t den = sigma * 65536; /* sigma << 16 */
        const int64_t half = den / 2;
        for (int32_t i = 0; i < cols; ++i) {
            const int64_t d = (int64_t)cols * xr[i] - sum;
            const int64_t num = d * p->gamma_q[i] + (int64_t)p->beta_q[i] * sigma;
            const int64_t q = num >= 0 ? (num + half) / den : -((half - num) / den);
            const int64_t v = p->y_zp + q;
            yr[i] = mcuc_clamp_s8(v);
        }
    }
}

#ifdef MCUC_ARM_DSP
#include "mcuc/simd.h"

/* The ARMv7E-M variant, bit for bit the reference above.
 *
 * Statistics: Q = sum x^2 and S = sum x with SMLAD on SXTB16 pairs, in int32 (|Q| <=
 * 16384 * cols fits for cols <= LN_MAX_COLS). The reference's ssq / cols is exactly
 * cols * Q - S^2, since ssq = sum (cols x - S)^2 = cols (cols Q - S^2).
 *
 * Normalization without a 64-bit division: the spec's q = round_half_away(num / den) is
 * floor(V) with V = (num + den/2) / den whenever V is not an integer. In units of 2^-8,
 * T = 256 V = A* g / 2^32 + (b + 2^15) / 2^8 with A* = d 2^24 / sigma. The loop computes
 *   A = floor(d' Rb / 2^32)   (SMMUL; d' = d 2^c, Rb = floor(2^(56-c) / sigma) < 2^31)
 *   t = floor(A g / 2^32) + floor(b / 2^8) + 128   (SMMLA)
 * where |A* - A| < 1.5 (|d'| < 2^31: the Rb error costs < 0.5, the floor < 1), so with
 * |g| <= 2^31, T - t lies in (-0.75, 2.75). If t mod 256 is not 0, 254 or 255, no
 * multiple of 256 lies in that interval: V is not an integer and floor(V) = floor(t / 256).
 * Otherwise (about 1 element in 85) the element takes the exact int64 formula.
 * The bound on d: d_i^2 <= ssq = cols (var - eps) < cols (sigma + 1)^2, so
 * |d_i| < sk (sigma + 1) with sk = isqrt(cols) + 1; c = 31 - bitlen(that bound).
 * The usual row (8 cols < sigma < 2^16, cols <= 224) takes ln_row10 instead: the same
 * scheme in units of 2^-10, with A from the input bytes by SMLAWB/SMLAWT (its comment);
 * or, where the compiler supplied its table (p->fast, kernels.h), ln_row16: the same A,
 * t in units of 2^-16 from the table's constants, four elements a step (its comment). */
#define LN_MAX_COLS 131071
typedef char mcuc_ln_q_fits_int32[(16384LL * LN_MAX_COLS <= INT32_MAX) ? 1 : -1];

/* floor(sqrt(v)) by Newton's iteration from 2^ceil(bitlen/2) >= sqrt(v): the integer
 * sequence decreases to floor(sqrt(v)) and stops there (a few UDIVs, not 16 steps). */
static uint32_t isqrt_u32(uint32_t v)
{
    if (v == 0) {
        return 0;
    }
    const int bits = 32 - __builtin_clz(v);
    uint32_t x = 1u << ((bits + 1) / 2);
    uint32_t y = (x + v / x) >> 1;
    while (y < x) {
        x = y;
        y = (x + v / x) >> 1;
    }
    return x;
}

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
/* Without one: isqrt_u32(v) by the same iteration from the guess g, brought
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

/* floor(2^e / sigma) for 26 <= e <= 56, in 32-bit UDIVs when sigma < 2^16 and e <= 47
 * (two base-2^16 digits: 2^(e-16) = qa sigma + ra, then (ra 2^16) / sigma). */
static uint64_t recip(int e, int64_t sigma)
{
    if (sigma < 65536 && e <= 47) {
        const uint32_t s = (uint32_t)sigma, num = 1u << (e - 16);
        const uint32_t qa = num / s, ra = num - qa * s;
        return ((uint64_t)qa << 16) + (ra << 16) / s;
    }
    return (1ULL << e) / (uint64_t)sigma;
}

/* The reference's output for element i of a row (the rare near-tie case); out of line
 * so that the fast loop keeps its registers. */
static __attribute__((noinline)) int8_t ln_exact(const mcuc_layernorm_params_t *p, int32_t i,
                                                 int32_t xi, int32_t sum, int64_t sigma)
{
    const int64_t d = (int64_t)p->cols * xi - sum;
    const int64_t den = sigma * 65536;
    const int64_t half = den / 2;
    const int64_t num = d * p->gamma_q[i] + (int64_t)p->beta_q[i] * sigma;
    const int64_t q = num >= 0 ? (num + half) / den : -((half - num) / den);
    const int64_t v = p->y_zp + q;
    return mcuc_clamp_s8(v);
}

/* The exact output of an element a fast loop stopped at, from t: floor(V) lies within
 * one of m0 = (t >> 8) - y_zp (for ln_fast's t, T lies in (t + 0.25, t + 3.75) - 256 y_zp:
 * floor(V) is m0 or m0 + 1; ln_fast10 passes its t >> 2, for which it is m0 - 1 or m0);
 * the 64-bit comparisons with multiples of den settle it (the loops only guard the
 * bound) and detect the tie, where q = floor(V) - 1. Outputs that saturate anyway need no
 * comparison: y_zp + q lies in [(t >> 8) - 2, (t >> 8) + 1]. */
static __attribute__((noinline)) int8_t ln_near(const mcuc_layernorm_params_t *p, int32_t i,
                                                int32_t xi, int32_t sum, int64_t sigma,
                                                int32_t t)
{
    const int32_t v0 = t >> 8;
    const int64_t m0 = (int64_t)v0 - p->y_zp;
    if (v0 >= 129 || v0 <= -129) {
        return (int8_t)(v0 > 0 ? 127 : -128);
    }
    const int64_t d = (int64_t)p->cols * xi - sum;
    const int64_t num = d * p->gamma_q[i] + (int64_t)p->beta_q[i] * sigma;
    const int64_t n2 = num + sigma * 32768, den = sigma * 65536;
    int64_t q = m0 + 1;
    while (n2 < q * den) {
        --q;
    }
    while (n2 >= (q + 1) * den) {
        ++q;
    }
    if (num < 0 && n2 == q * den) {
        --q;
    }
    return mcuc_clamp_s8((int32_t)(p->y_zp + q));
}

/* The fast loop over y[0..n): stops before the first element whose t falls near a
 * rounding boundary and returns how many it wrote. Out of line with few live values so
 * that nothing spills (kc, nsc: d 2^c = x kc + nsc; r: Rb; cst: 127 + 256 y_zp). */
static __attribute__((noinline)) int32_t ln_fast(const int8_t *x, int8_t *y, const int32_t *g,
                                                 const int32_t *b, int32_t n, uint32_t kc,
                                                 uint32_t nsc, int32_t r, int32_t cst,
                                                 int32_t *t_stop)
{
    for (int32_t i = 0; i < n; ++i) {
        const int32_t dc = (int32_t)((uint32_t)x[i] * kc + nsc); /* exact: |d 2^c| < 2^31 */
        const int32_t t = mcuc_smmla(mcuc_smmul(dc, r), g[i], (b[i] >> 8) + cst);
        if (((uint32_t)t & 255u) > 252u) {
            *t_stop = t;
            return i;
        }
        y[i] = (int8_t)mcuc_ssat8(t >> 8);
    }
    return n;
}

/* The row loop of the usual case, ln_row10: the same t in units of 2^-10, its first
 * product from the input bytes by SMLAWB/SMLAWT (x 2^8 in a 16-bit lane, no per-element
 * d), four elements per word of x.
 *   A = c + floor(k x 2^8 / 2^16) = c + floor(k x / 2^8), k = floor(cols 2^34 / sigma),
 *   c = floor(-S 2^26 / sigma) + 1, approximates A* = d 2^26 / sigma (d = cols x - S):
 *   A - A* = (c + S 2^26 / sigma) - frac(k x / 2^8) - (cols 2^34 / sigma - k) x / 2^8, a
 *   term in (0, 1], one in (-1, 0] and one of size < 128 / 2^8, so |A - A*| < 1.5 (as
 *   for ln_fast's A).
 *   t = floor(A g / 2^32) + floor(b / 2^6) + 512 + 1024 y_zp + 2 (SMMLA)
 * against T = 1024 (V + y_zp) = A* g / 2^32 + b / 2^6 + 512 + 1024 y_zp: with |g| <= 2^31,
 * T - (t - 2) lies in (-0.75, 2.75), so if t mod 1024 is not 0, 1, 2 (tested as 0..3, one
 * bit mask), no multiple of 1024 lies within: V is not an integer and y_zp + q =
 * floor(T / 1024) = t >> 10 (t - 2 and t have the same quotient). Otherwise (about 1 in
 * 256 elements) the element goes to ln_near with the guess (t >> 10) - y_zp, within one
 * of floor(V) (floor(T / 1024) is t >> 10 or one less).
 * Preconditions (mcuc_layernorm_s8 checks them): 8 cols < sigma < 2^16, so k < 2^31 and
 * |c| < 128 cols 2^26 / sigma + 1 <= 2^30, with k and c exact from two UDIVs each (cols
 * 2^18 and |S| 2^10 fit 32 bits); sk (sigma + 1) <= 16 sigma (cols <= 224 and sigma >=
 * 15), so |A*| < |d| 2^26 / sigma < 2^30 (ln_fast's bound on d) and A fits int32 whatever
 * SMLAW's intermediate sum; |y_zp| < 2^15, so |t| < 2^29 + 2^25 + 2^26. */
#define LN10_STEP(j, gj, bj, lane_mul)                                                   \
    do {                                                                                 \
        const int32_t t_ = mcuc_smmla(lane_mul, gj, ((bj) >> 6) + cst);                  \
        if ((t_ & 0x3FC) == 0) {                                                         \
            *t_stop = t_;                                                                \
            return (int32_t)(y - y0) + (j);                                              \
        }                                                                                \
        y[j] = (int8_t)mcuc_ssat8(t_ >> 10);                                             \
    } while (0)

static __attribute__((noinline)) int32_t ln_fast10(const int8_t *x, int8_t *y,
                                                   const int32_t *g, const int32_t *b,
                                                   int32_t n, int32_t k, int32_t c,
                                                   int32_t cst, int32_t *t_stop)
{
    int8_t *const y0 = y, *const y4 = y + (n & ~3);
    while (y != y4) {
        const uint32_t w = mcuc_read32(x);
        const uint32_t lo = (w << 8) & 0xFF00FFFFu; /* lanes x0 2^8, x2 2^8 */
        const uint32_t hi = w & 0xFF00FF00u;        /* lanes x1 2^8, x3 2^8 */
        int32_t g0, g1, b0, b1;
        x += 4;
        MCUC_LDRD_POST(g0, g1, g, 8);
        MCUC_LDRD_POST(b0, b1, b, 8);
        LN10_STEP(0, g0, b0, mcuc_smlawb(k, lo, c));
        LN10_STEP(1, g1, b1, mcuc_smlawb(k, hi, c));
        MCUC_LDRD_POST(g0, g1, g, 8);
        MCUC_LDRD_POST(b0, b1, b, 8);
        LN10_STEP(2, g0, b0, mcuc_smlawt(k, lo, c));
        LN10_STEP(3, g1, b1, mcuc_smlawt(k, hi, c));
        y += 4;
    }
    for (; y != y0 + n; ++y, ++x, ++g, ++b) {
        LN10_STEP(0, *g, *b, mcuc_smlawb(k, (uint32_t)(uint8_t)*x << 8, c));
    }
    return n;
}

/* floor(num 2^16 / s) and the remainder's being nonzero, for num 2^16 / s < 2^32
 * (num < 2^32, s < 2^16): two base-2^16 digits. */
static uint32_t div_2p16(uint32_t num, uint32_t s, int *inexact)
{
    const uint32_t qa = num / s, ra = num - qa * s;
    const uint32_t qb = (ra << 16) / s;
    *inexact = (ra << 16) - qb * s != 0;
    return (qa << 16) + qb;
}

/* ln_row10 for a row whose sigma s meets its preconditions (see ln_fast10; checked in
 * mcuc_layernorm_s8); cst = 514 + 1024 y_zp. */
static void ln_row10(const mcuc_layernorm_params_t *p, const int8_t *xr, int8_t *yr,
                     int32_t sum, uint32_t s, int32_t cst)
{
    const int32_t cols = p->cols;
    int inexact = 0;
    const int32_t k = (int32_t)div_2p16((uint32_t)cols << 18, s, &inexact);
    const uint32_t v = div_2p16((sum < 0 ? 0u - (uint32_t)sum : (uint32_t)sum) << 10, s,
                                &inexact);
    const int32_t c = (sum >= 0 ? -(int32_t)v - inexact : (int32_t)v) + 1;
    int32_t i = 0;
    for (;;) {
        int32_t t = 0;
        i += ln_fast10(xr + i, yr + i, p->gamma_q + i, p->beta_q + i, cols - i, k, c, cst,
                       &t);
        if (i == cols) {
            return;
        }
        yr[i] = ln_near(p, i, xr[i], sum, (int64_t)s, t >> 2);
        ++i;
    }
}

/* ln_row16: ln_row10's rows (same preconditions, same k and c, so the same A with
 * |A - A*| < 1.5, |A| < 2^30) when the compiler supplied p->fast (kernels.h), whose g =
 * 64 gamma_q (|g| < 2^31) and c = beta_q + 2^15 + 2^16 (y_zp + 128) put t in units of
 * 2^-16 of an output step:
 *   t = floor(A g / 2^32) + c  (SMMLA)   against   T = A* g / 2^32 + c = 2^16 (V + y_zp + 128)
 * (A* g / 2^32 = d gamma_q / sigma exactly, and V = (num + den/2) / den as in ln_fast),
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

/* a, b, c, d = the four words at p, then p += 16: one LDMIA (the registers pinned in
 * ascending order, as LDM loads them; not r7, Thumb's frame pointer at -O0). */
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
#define LN_LDM4_POST(a, b, c, d, p)                                                      \
    do {                                                                                 \
        register int32_t a_ __asm__("r4");                                               \
        register int32_t b_ __asm__("r5");                                               \
        register int32_t c_ __asm__("r6");                                               \
        register int32_t d_ __asm__("r8");                                               \
        __asm__("ldmia %4!, {%0, %1, %2, %3}"                                            \
                : "=r"(a_), "=r"(b_), "=r"(c_), "=r"(d_), "+r"(p) : : "memory");         \
        (a) = a_;                                                                        \
        (b) = b_;                                                                        \
        (c) = c_;                                                                        \
        (d) = d_;                                                                        \
    } while (0)
#else
#define LN_LDM4_POST(a, b, c, d, p)                                                      \
    do {                                                                                 \
        MCUC_LDRD_POST(a, b, p, 8);                                                      \
        MCUC_LDRD_POST(c, d, p, 8);                                                      \
    } while (0)
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

/* ln_row16's per-row constants k and c (ln_fast10's comment): two base-2^16 UDIV pairs. */
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
    return u == 0 || u == 0xFFFFu ? ln_exact(p, i, xi, sum, (int64_t)s)
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

/* One row given its sum and sigma: the fast loop when the row's constants fit. */
static void ln_row(const mcuc_layernorm_params_t *p, const int8_t *xr, int8_t *yr, int32_t sum,
                   int64_t sigma, int64_t sk)
{
    const int32_t cols = p->cols;
    int64_t m = sk * (sigma + 1);
    if (m > 255LL * cols) {
        m = 255LL * cols;
    }
    const int bits = 64 - __builtin_clzll((uint64_t)m);
    const uint64_t rb = bits <= 31 ? recip(25 + bits, sigma) : 1ULL << 31;
    int32_t i = 0;
    if (rb < (1ULL << 31) && p->y_zp > -(1 << 20) && p->y_zp < (1 << 20)) { /* t fits */
        const int c = 31 - bits;
        const uint32_t kc = (uint32_t)cols << c, nsc = 0u - ((uint32_t)sum << c);
        const int32_t cst = 127 + p->y_zp * 256;
        for (;;) {
            int32_t t = 0;
            i += ln_fast(xr + i, yr + i, p->gamma_q + i, p->beta_q + i, cols - i, kc, nsc,
                         (int32_t)rb, cst, &t);
            if (i == cols) {
                return;
            }
            yr[i] = ln_near(p, i, xr[i], sum, sigma, t);
            ++i;
        }
    }
    for (; i < cols; ++i) {
        yr[i] = ln_exact(p, i, xr[i], sum, sigma);
    }
}

/* Eight bytes of a row, w0 and w1: their squares added to *sq (SMLAD), their sum returned
 * as two 16-bit lanes (SADD16; each lane sums four bytes). */
MCUC_ALWAYS_INLINE static uint32_t ln_stats8(uint32_t w0, uint32_t w1, int32_t *sq)
{
    const uint32_t l0 = mcuc_sxtb16(w0), h0 = mcuc_sxtb16_ror8(w0);
    const uint32_t l1 = mcuc_sxtb16(w1), h1 = mcuc_sxtb16_ror8(w1);
    *sq = mcuc_smlad(h1, h1, mcuc_smlad(l1, l1, mcuc_smlad(h0, h0, mcuc_smlad(l0, l0, *sq))));
    return mcuc_sadd16(mcuc_sadd16(l0, h0), mcuc_sadd16(l1, h1));
}

/* w0, w1 = the two words at p, then p += 8: one post-indexed LDRD, which needs p
 * word-aligned (any alignment for the portable build's two reads). */
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
#define LN_LDRD8_POST(w0, w1, p)                                                         \
    __asm__("ldrd %0, %1, [%2], #8" : "=r"(w0), "=r"(w1), "+r"(p) : : "memory")
#else
#define LN_LDRD8_POST(w0, w1, p)                                                         \
    do {                                                                                 \
        (w0) = mcuc_read32(p);                                                           \
        (w1) = mcuc_read32((p) + 4);                                                     \
        (p) += 8;                                                                        \
    } while (0)
#endif

/* w0..w3 = the four words at p, then p += 16: one LDMIA (LN_LDM4_POST), which needs p
 * word-aligned (the portable build: two LN_LDRD8_POSTs). */
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
#define LN_LDM16_POST(w0, w1, w2, w3, p) LN_LDM4_POST(w0, w1, w2, w3, p)
#else
#define LN_LDM16_POST(w0, w1, w2, w3, p)                                                 \
    do {                                                                                 \
        LN_LDRD8_POST(w0, w1, p);                                                        \
        LN_LDRD8_POST(w2, w3, p);                                                        \
    } while (0)
#endif

/* The sum of a row, and its sum of squares in *sq_out: 16 bytes a step (one LDMIA where
 * the row is word-aligned), the sum of each 8 as two 16-bit lanes (SADD16, |lane| <= 512),
 * then one SMLAD with ones; the squares by SMLAD on SXTB16 lanes. */
MCUC_ALWAYS_INLINE static int32_t ln_stats(const int8_t *xr, int32_t cols, int32_t *sq_out)
{
    const uint32_t ones = 0x00010001u;
    const int8_t *const e16 = xr + (cols & ~15), *const end = xr + cols;
    int32_t sum = 0, sq = 0;
    if (((uintptr_t)xr & 3u) == 0) {
        while (xr != e16) {
            uint32_t w0, w1, w2, w3;
            LN_LDM16_POST(w0, w1, w2, w3, xr);
            sum = mcuc_smlad(ln_stats8(w0, w1, &sq), ones, sum);
            sum = mcuc_smlad(ln_stats8(w2, w3, &sq), ones, sum);
        }
    } else {
        for (; xr != e16; xr += 16) {
            sum = mcuc_smlad(ln_stats8(mcuc_read32(xr), mcuc_read32(xr + 4), &sq), ones, sum);
            sum = mcuc_smlad(ln_stats8(mcuc_read32(xr + 8), mcuc_read32(xr + 12), &sq), ones,
                             sum);
        }
    }
    if (xr != end) { /* the last cols mod 16 */
        for (; end - xr >= 4; xr += 4) {
            const uint32_t w = mcuc_read32(xr);
            const uint32_t lo = mcuc_sxtb16(w), hi = mcuc_sxtb16_ror8(w);
            sum = mcuc_smlad(lo, ones, sum);
            sq = mcuc_smlad(lo, lo, sq);
            sum = mcuc_smlad(hi, ones, sum);
            sq = mcuc_smlad(hi, hi, sq);
        }
        for (; xr != end; ++xr) {
            sum += *xr;
            sq += *xr * *xr;
        }
    }
    *sq_out = sq;
    return sum;
}

/* A row of ln_rows16 outside ln_row16's sigma range: the older row loop, out of line. */
static __attribute__((noinline)) void ln_row_other(const mcuc_layernorm_params_t *p,
                                                   const int8_t *xr, int8_t *yr, int32_t sum,
                                                   uint32_t s)
{
    ln_row(p, xr, yr, sum, s == 0 ? 1 : (int64_t)s, (int64_t)isqrt_u32((uint32_t)p->cols) + 1);
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

static __attribute__((noinline)) void ln_rows(const mcuc_layernorm_params_t *p,
                                              const int8_t *x, int8_t *y);

/* Every call (mcuc_layernorm_s8 is this): those without p->fast or outside ln_rows'
 * `small` bounds go to ln_rows; the others, row by row, to ln_row16, then ln_rest16 where
 * its loop stopped early or left the last cols mod 8, or the older row loop where sigma
 * is outside its range. The checks live here rather than in mcuc_layernorm_s8, so that a
 * call of a few rows (the token-wise kernel's tiles) pays one function entry. */

static __attribute__((noinline)) void ln_rows16(const mcuc_layernorm_params_t *p,
                                                const int8_t *x, int8_t *y)
{
    if (!(p->fast != NULL && p->rows > 0 && p->cols > 0 && p->cols <= 224 && p->eps_q >= 0 &&
          p->eps_q <= (1 << 30) && p->y_zp > -32768 && p->y_zp < 32768)) {
        ln_rows(p, x, y);
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
                ln_row_other(p, x, y, st.sum, st.s);
            }
        }
    }
}

/* The calls without a table or outside its bounds (see mcuc_layernorm_s8). */
static __attribute__((noinline)) void ln_rows(const mcuc_layernorm_params_t *p,
                                              const int8_t *x, int8_t *y)
{
    const int32_t cols = p->cols;
    if (cols > LN_MAX_COLS || p->rows <= 0 || cols <= 0) {
        layernorm_ref(p, x, y);
        return;
    }
    /* ln_row10's per-call preconditions: with cols <= 224, sk = isqrt(cols) + 1 <= 15,
     * so sigma >= 15 gives sk (sigma + 1) <= 16 sigma; and the variance fits 31 bits:
     * cols Q and S^2 are below 224^2 2^14 < 2^30 (cols Q - S^2 >= 0), eps_q <= 2^30. */
    const int small = cols <= 224 && p->eps_q >= 0 && p->eps_q <= (1 << 30) &&
                      p->y_zp > -32768 && p->y_zp < 32768;
    const int32_t cst10 = small ? 514 + p->y_zp * 1024 : 0;
    int64_t sk = 0; /* isqrt(cols) + 1, once the older row loop needs it */
    for (int32_t r = 0; r < p->rows; ++r) {
        const int8_t *xr = x + (int64_t)r * cols;
        int32_t sq;
        const int32_t sum = ln_stats(xr, cols, &sq);
        int8_t *const yr = y + (int64_t)r * cols;
        uint64_t s;
        if (small) { /* the variance in uint32 (exact: it lies in [0, 2^31)) */
            const uint32_t var = (uint32_t)cols * (uint32_t)sq - (uint32_t)sum * (uint32_t)sum +
                                 (uint32_t)p->eps_q;
            s = isqrt_u32(var);
            if (s > 8u * (uint32_t)cols && s >= 15 && s < 65536) {
                ln_row10(p, xr, yr, sum, (uint32_t)s, cst10);
                continue;
            }
        } else {
            const int64_t var = (int64_t)cols * sq - (int64_t)sum * sum + p->eps_q;
            s = (uint64_t)var < (1ULL << 32) ? isqrt_u32((uint32_t)var)
                                             : mcuc_isqrt_u64((uint64_t)var);
        }
        if (sk == 0) {
            sk = (int64_t)isqrt_u32((uint32_t)cols) + 1;
        }
        ln_row(p, xr, yr, sum, s == 0 ? 1 : (int64_t)s, sk);
    }
}

/* ln_rows16 (its comment). */
void mcuc_layernorm_s8(const mcuc_layernorm_params_t *p, const int8_t *x, int8_t *y)
{
    ln_rows16(p, x, y);
}
#endif /* MCUC_ARM_DSP */
