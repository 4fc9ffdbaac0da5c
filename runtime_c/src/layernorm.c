/* Integer LayerNorm. Two passes over each row (sum, then sum of squares of d_i) and an
 * output pass that recomputes d_i from x[i], so no scratch buffer is needed and y may
 * alias x. The square root is the exact bitwise floor sqrt (no libm). */
#include "mcuc/kernels.h"

static uint64_t isqrt_u64(uint64_t v)
{
    uint64_t res = 0;
    uint64_t bit = 1ULL << 62;
    while (bit > v) {
        bit >>= 2;
    }
    while (bit != 0) {
        if (v >= res + bit) {
            v -= res + bit;
            res = (res >> 1) + bit;
        } else {
            res >>= 1;
        }
        bit >>= 2;
    }
    return res;
}

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
        int64_t sigma = (int64_t)isqrt_u64((uint64_t)var);
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
            yr[i] = (int8_t)(v < -128 ? -128 : (v > 127 ? 127 : v));
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
 * |d_i| < sk (sigma + 1) with sk = isqrt(cols) + 1; c = 31 - bitlen(that bound). */
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
    return (int8_t)(v < -128 ? -128 : (v > 127 ? 127 : v));
}

/* The exact output of an element the fast loop stopped at, from its t: floor(V) is
 * m0 = (t >> 8) - y_zp or m0 + 1 (T lies in (t + 0.25, t + 3.75) - 256 y_zp); the 64-bit
 * comparisons with multiples of den settle it (the loops only guard the bound) and
 * detect the tie. Outputs that saturate anyway need no comparison. */
static __attribute__((noinline)) int8_t ln_near(const mcuc_layernorm_params_t *p, int32_t i,
                                                int32_t xi, int32_t sum, int64_t sigma,
                                                int32_t t)
{
    const int32_t m0 = (t >> 8) - p->y_zp;
    if (m0 >= 257 || m0 <= -259) {
        return (int8_t)(m0 > 0 ? 127 : -128);
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
    if (rb < (1ULL << 31)) {
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

void mcuc_layernorm_s8(const mcuc_layernorm_params_t *p, const int8_t *x, int8_t *y)
{
    const int32_t cols = p->cols;
    if (cols > LN_MAX_COLS || p->rows <= 0 || cols <= 0) {
        layernorm_ref(p, x, y);
        return;
    }
    const int64_t sk = (int64_t)isqrt_u32((uint32_t)cols) + 1;
    const uint32_t ones = 0x00010001u;
    for (int32_t r = 0; r < p->rows; ++r) {
        const int8_t *xr = x + (int64_t)r * cols;
        int32_t sum = 0, sq = 0, i = 0;
        for (; i + 4 <= cols; i += 4) {
            const uint32_t w = mcuc_read32(xr + i);
            const uint32_t lo = mcuc_sxtb16(w), hi = mcuc_sxtb16_ror8(w);
            sum = mcuc_smlad(lo, ones, sum);
            sq = mcuc_smlad(lo, lo, sq);
            sum = mcuc_smlad(hi, ones, sum);
            sq = mcuc_smlad(hi, hi, sq);
        }
        for (; i < cols; ++i) {
            sum += xr[i];
            sq += xr[i] * xr[i];
        }
        const int64_t var = (int64_t)cols * sq - (int64_t)sum * sum + p->eps_q;
        const uint64_t s = (uint64_t)var < (1ULL << 32) ? isqrt_u32((uint32_t)var)
                                                       : isqrt_u64((uint64_t)var);
        ln_row(p, xr, y + (int64_t)r * cols, sum, s == 0 ? 1 : (int64_t)s, sk);
    }
}
#endif /* MCUC_ARM_DSP */
