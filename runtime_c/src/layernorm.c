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
#include "layernorm_internal.h"

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
 * t in units of 2^-16 from the table's constants, four elements a step (its comment, in
 * layernorm_row16.c, which holds that path and mcuc_layernorm_s8's variant; what both
 * files use is in layernorm_internal.h: the statistics ln_stats, div_2p16). */
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

/* The reference's output for element i of a row (the rare near-tie case; ln_row's and
 * layernorm_row16.c's ln_one16); out of line so that the fast loop keeps its registers. */
__attribute__((noinline)) int8_t mcuc_ln_exact(const mcuc_layernorm_params_t *p, int32_t i,
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
        yr[i] = mcuc_ln_exact(p, i, xr[i], sum, sigma);
    }
}

/* A row of ln_rows16 (layernorm_row16.c) outside ln_row16's sigma range: the older row
 * loop, out of line. */
__attribute__((noinline)) void mcuc_ln_row_other(const mcuc_layernorm_params_t *p,
                                                 const int8_t *xr, int8_t *yr, int32_t sum,
                                                 uint32_t s)
{
    ln_row(p, xr, yr, sum, s == 0 ? 1 : (int64_t)s, (int64_t)isqrt_u32((uint32_t)p->cols) + 1);
}

/* The calls without a table or outside its bounds (see ln_rows16 in layernorm_row16.c). */
__attribute__((noinline)) void mcuc_ln_rows(const mcuc_layernorm_params_t *p, const int8_t *x,
                                            int8_t *y)
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

#endif /* MCUC_ARM_DSP */
