/* The token-wise linear layer's ARMv7E-M loops (MCUC_ARM_DSP), one function per plan
 * (lin_*, called by linear.c's mcuc_linear_planned_s8); the weights' packed layout and the
 * portable reference are in linear.c.
 *
 * With MCUC_ARM_DSP (boards whose board.toml says [cpu] dsp = true; see mcuc/simd.h) the
 * rows go through SMLAD loops instead of the reference's (two rows against two output
 * channels, or one row against four; four k per step as two SMLADs per channel on
 * SXTB16-unpacked pairs, x unpacked once per row pair where k % 16 == 0: unpacked_rows), in
 * int32. Why int32 is exact: |x - x_zp| <= 255 and |w| <= 128, so every partial sum of (x -
 * x_zp) * w over k terms is at most 255 * 128 * k in magnitude, which fits int32 for k <=
 * MCUC_DSP_MAX_K = 65793 (255 * 128 * 65793 = 2,147,483,520 <= 2^31 - 1; checked at compile
 * time in linear_internal.h, and against the Python twin in linear.py by a test). Larger k
 * (the compiler accepts dimensions up to 2^20) takes the reference loop. The bias is then
 * added with a saturating add (QADD): the exact sum fits int32, so mcuc_sat_s32(bias + sum)
 * is exactly the reference's saturated int64 sum. The compiler folds the input zero point
 * into the bias where it can (fold_zero_point), and the loop for x_zp == 0 skips the
 * subtraction. When the whole call's accumulators stay below 2^30 and its shifts are right
 * shifts and its multipliers are in [2^30, 2^31) (short_epilogue_ok: the compiler's
 * short_ok, linear.py), the accumulators start at the bias and each output is requantized
 * in a few instructions (short_out); otherwise each output takes the general epilogue
 * (general_out). The channels' rq words are decoded as linear_internal.h describes. */
#include <string.h>

/* gcc's scheduling before register allocation hoists the blocks' loads and then spills:
 * without it the Cortex-M4 build of the default model takes 21.6 M instructions instead
 * of 25.0 M (the M7 build: +0.1%; --optimize speed: -0.7% on both). */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-schedule-insns")
#endif
#include "linear_internal.h"
#include "mcuc/simd.h" /* MCUC_ALWAYS_INLINE; the intrinsics are used with MCUC_ARM_DSP */

#ifdef MCUC_ARM_DSP


/* x - x_zp for the two lanes of an SXTB16 pair; nothing when the zero point was folded
 * (has_zp is a constant at every call, so each loop is compiled without the test). */
#define MCUC_PAIR(v, has_zp, zp2) ((has_zp) ? mcuc_ssub16((v), (zp2)) : (v))

/* One step of dot4: inputs i..i+3 (word xw) against the four channels' words at w. */
#define MCUC_DOT4_STEP(xw, w)                                                    \
    do {                                                                         \
        const uint32_t xl_ = MCUC_PAIR(mcuc_sxtb16(xw), has_zp, zp2);            \
        const uint32_t xh_ = MCUC_PAIR(mcuc_sxtb16_ror8(xw), has_zp, zp2);       \
        uint32_t w_ = mcuc_read32(w);                                            \
        a0 = mcuc_smlad(xh_, mcuc_sxtb16_ror8(w_), mcuc_smlad(xl_, mcuc_sxtb16(w_), a0)); \
        w_ = mcuc_read32((w) + 4);                                               \
        a1 = mcuc_smlad(xh_, mcuc_sxtb16_ror8(w_), mcuc_smlad(xl_, mcuc_sxtb16(w_), a1)); \
        w_ = mcuc_read32((w) + 8);                                               \
        a2 = mcuc_smlad(xh_, mcuc_sxtb16_ror8(w_), mcuc_smlad(xl_, mcuc_sxtb16(w_), a2)); \
        w_ = mcuc_read32((w) + 12);                                              \
        a3 = mcuc_smlad(xh_, mcuc_sxtb16_ror8(w_), mcuc_smlad(xl_, mcuc_sxtb16(w_), a3)); \
    } while (0)

/* acc[c] += sum_i (x[i] - x_zp) * w[j+c][i] for the four channels of one packed block:
 * eight inputs per loop step, then at most one step of four, then the tail. */
MCUC_ALWAYS_INLINE static void dot4(const int8_t *xr, const int8_t *wb, int32_t k,
                                    int has_zp, int32_t x_zp, int32_t *acc)
{
    const int32_t k4 = k & ~3, k8 = k & ~7;
    const uint32_t zp2 = mcuc_dup16(x_zp);
    const int8_t *const x8 = xr + k8;
    int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
    const int8_t *xi = xr;
    while (xi < x8) {
        MCUC_DOT4_STEP(mcuc_read32(xi), wb);
        MCUC_DOT4_STEP(mcuc_read32(xi + 4), wb + 16);
        xi += 8;
        wb += 32;
    }
    if (k8 < k4) {
        MCUC_DOT4_STEP(mcuc_read32(xi), wb);
        wb += 16;
    }
    for (int32_t i = k4; i < k; ++i, wb += 4) {
        const int32_t xv = xr[i] - x_zp;
        a0 += xv * wb[0];
        a1 += xv * wb[1];
        a2 += xv * wb[2];
        a3 += xv * wb[3];
    }
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
}

/* One step of dot2x2: inputs i..i+3 of the two rows (words u, v) against the two
 * channels' words at w and w + 4. */
#define MCUC_2X2_STEP(u, v, w)                                                   \
    do {                                                                         \
        const uint32_t ul_ = MCUC_PAIR(mcuc_sxtb16(u), has_zp, zp2);             \
        const uint32_t uh_ = MCUC_PAIR(mcuc_sxtb16_ror8(u), has_zp, zp2);        \
        const uint32_t vl_ = MCUC_PAIR(mcuc_sxtb16(v), has_zp, zp2);             \
        const uint32_t vh_ = MCUC_PAIR(mcuc_sxtb16_ror8(v), has_zp, zp2);        \
        uint32_t w_ = mcuc_read32(w);                                            \
        uint32_t wl_ = mcuc_sxtb16(w_), wh_ = mcuc_sxtb16_ror8(w_);              \
        a00 = mcuc_smlad(uh_, wh_, mcuc_smlad(ul_, wl_, a00));                   \
        a10 = mcuc_smlad(vh_, wh_, mcuc_smlad(vl_, wl_, a10));                   \
        w_ = mcuc_read32((w) + 4);                                               \
        wl_ = mcuc_sxtb16(w_);                                                   \
        wh_ = mcuc_sxtb16_ror8(w_);                                              \
        a01 = mcuc_smlad(uh_, wh_, mcuc_smlad(ul_, wl_, a01));                   \
        a11 = mcuc_smlad(vh_, wh_, mcuc_smlad(vl_, wl_, a11));                   \
    } while (0)

/* Two rows against two channels of one packed block: acc[2 t + c] += sum_i (xa[t k + i] -
 * x_zp) * w[j + c0 + c][i] for t, c in {0, 1}. Each unpacked input word serves two
 * channels and each unpacked weight word two rows; eight inputs per loop step (44
 * instructions per 32 MACs where one step of four takes 25 per 16, and dot4 27), then at
 * most one step of four, then the tail. wb points at channel c0's first word (block +
 * 4 c0, words 16 bytes apart) and tail at its first tail byte (block + 4 k4 + c0, four
 * bytes apart). (The plans for k % 16 == 0 unpack x once instead: unpacked_rows.) */
MCUC_ALWAYS_INLINE static void dot2x2(const int8_t *xa, int32_t k, const int8_t *wb,
                                      const int8_t *tail, int has_zp, int32_t x_zp,
                                      int32_t *acc)
{
    const int32_t k4 = k & ~3, k8 = k & ~7;
    const uint32_t zp2 = mcuc_dup16(x_zp);
    const int8_t *const x8 = xa + k8;
    int32_t a00 = acc[0], a01 = acc[1], a10 = acc[2], a11 = acc[3];
    const int8_t *xi = xa;
    while (xi < x8) {
        MCUC_2X2_STEP(mcuc_read32(xi), mcuc_read32(xi + k), wb);
        MCUC_2X2_STEP(mcuc_read32(xi + 4), mcuc_read32(xi + k + 4), wb + 16);
        xi += 8;
        wb += 32;
    }
    if (k8 < k4) {
        MCUC_2X2_STEP(mcuc_read32(xi), mcuc_read32(xi + k), wb);
    }
    for (int32_t i = k4; i < k; ++i, tail += 4) {
        const int32_t xu = xa[i] - x_zp, xv = xa[k + i] - x_zp;
        a00 += xu * tail[0];
        a01 += xu * tail[1];
        a10 += xv * tail[0];
        a11 += xv * tail[1];
    }
    acc[0] = a00;
    acc[1] = a01;
    acc[2] = a10;
    acc[3] = a11;
}

/* The widened layout (--optimize speed): the same positions as the packed int8 one, each
 * weight an int16, and within each word the order w0, w2, w1, w3, so that one 8-byte load
 * gives (w0, w2) and (w1, w3): the lanes SXTB16 makes of x. Blocks start at element j * k
 * with j a multiple of 4, i.e. 8 * (j / 4) * k bytes into an array the compiler aligns to
 * 8, and each channel's words are 8 bytes apart: every block load is an aligned LDRD. */
/* The two lane pairs of an aligned widened word at w + off (off a literal, in int16s):
 * one LDRD, which gcc does not form from the 8-byte copy by itself. The words are
 * constant (flash), so the asm reads no memory the compiler could have changed. */
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
#define MCUC_LDRD_WIDE(w, off, lo, hi) \
    __asm__("ldrd %0, %1, [%2, #(" #off ") * 2]" : "=r"(lo), "=r"(hi) : "r"(w))
#else
#define MCUC_LDRD_WIDE(w, off, lo, hi) read_wide((w) + (off), &(lo), &(hi))
#endif

/* The two lane pairs of one widened word (low: w0, w2; high: w1, w3). */
MCUC_ALWAYS_INLINE static void read_wide(const int16_t *w, uint32_t *lo, uint32_t *hi)
{
    uint64_t v;
    memcpy(&v, w, sizeof v);
    *lo = (uint32_t)v;
    *hi = (uint32_t)(v >> 32);
}

/* One plain row's sum (the channels past the last block of four): int8 weights wj, or
 * widened ones wj16 when that is not NULL (not 8-aligned in general: two word loads). */
static int32_t dot1(const int8_t *xr, const int8_t *wj, const int16_t *wj16, int32_t k,
                    int32_t x_zp)
{
    const int32_t k4 = k & ~3;
    const uint32_t zp2 = mcuc_dup16(x_zp);
    int32_t a0 = 0;
    for (int32_t i = 0; i < k4; i += 4) {
        const uint32_t xw = mcuc_read32(xr + i);
        uint32_t lo, hi;
        if (wj16) {
            read_wide(wj16 + i, &lo, &hi);
        } else {
            const uint32_t ww = mcuc_read32(wj + i);
            lo = mcuc_sxtb16(ww);
            hi = mcuc_sxtb16_ror8(ww);
        }
        a0 = mcuc_smlad(mcuc_ssub16(mcuc_sxtb16(xw), zp2), lo, a0);
        a0 = mcuc_smlad(mcuc_ssub16(mcuc_sxtb16_ror8(xw), zp2), hi, a0);
    }
    for (int32_t i = k4; i < k; ++i) {
        a0 += (xr[i] - x_zp) * (wj16 ? wj16[i] : wj[i]);
    }
    return a0;
}

/* The general epilogue of lane (0 or 1) of the channel pair whose words are at e: the
 * bias added with saturation, requantization, zero point, clamp. */
MCUC_ALWAYS_INLINE static int8_t general_out(const int32_t *e, int32_t lane, int32_t y_zp,
                                             int32_t sum)
{
    const int32_t acc = mcuc_qadd(e[RQ_BIAS + lane], sum), t = e[RQ_SHIFT + lane];
    return mcuc_out_s8(y_zp, mcuc_requantize_fast(acc, rq_mult(e[RQ_MULT + lane], t),
                                                  rq_shift(t)));
}

/* The short epilogue, for calls where every accumulator (bias included) is below 2^30 in
 * magnitude, every shift is in [-31, -1] and every multiplier in [2^30, 2^31)
 * (short_epilogue_ok). It takes the stored words m2 = 2 mult - 2^32 and t = ~shift = e - 1
 * (e = -shift) as they are; c = 2 y_zp + 1, once per call (short_c). Bit for bit
 * mcuc_requantize(acc, mult, shift) then y_zp and the clamp, because:
 * - srdhm(acc, mult) = floor((acc * mult + 2^30) / 2^31) (see mcuc_requantize_fast)
 *   = floor((2 acc * mult + 2^31) / 2^32) = SMMULR(2 acc, mult), and SMMLAR(acc, m2, acc)
 *   = floor((acc 2^32 + acc (2 mult - 2^32) + 2^31) / 2^32) is that same value (|2 acc
 *   mult| < 2^61: the 64-bit sum cannot wrap); acc = mult = INT32_MIN (srdhm's saturating
 *   case) cannot occur;
 * - with q = that result (|q| < 2^30) and e in [1, 31], write q = d 2^e + r,
 *   0 <= r < 2^e: mcuc_rdbpot adds 1 to d exactly when r > 2^(e-1) - 1 + (q < 0), and
 *   floor((s + 2^(e-1)) / 2^e) = d + [r + 2^(e-1) - (q < 0) >= 2^e] is the same test,
 *   where s = q - (q < 0) = q + (q >> 31);
 * - floor((s + 2^(e-1)) / 2^e) = floor((floor(s / 2^(e-1)) + 1) / 2) (for any real z,
 *   floor((z + 1) / 2) = floor((floor(z) + 1) / 2)), and adding the even 2 y_zp inside
 *   the last floor adds y_zp: y_zp + rounded = ((s >> t) + c) >> 1, with t = e - 1 in
 *   [0, 30]; |s >> t| <= 2^30 and |c| <= 255, so nothing overflows, and the halving
 *   folds into the clamp (SSAT with ASR #1). */
MCUC_ALWAYS_INLINE static int32_t short_raw(int32_t acc, int32_t m2, int32_t t, int32_t c)
{
    const int32_t q = mcuc_smmlar(acc, m2, acc);
    return mcuc_ssat8((((q + (q >> 31)) >> t) + c) >> 1);
}

/* short_raw as the int8 it is (its int32 indexes a table without a sign extension). */
MCUC_ALWAYS_INLINE static int8_t short_out(int32_t acc, int32_t m2, int32_t t, int32_t c)
{
    return (int8_t)short_raw(acc, m2, t, c);
}

/* The short epilogue's per-call constant (see short_out). */
static inline int32_t short_c(int32_t y_zp)
{
    return 2 * y_zp + 1;
}

/* Whether short_out serves every output of a call with these params: the contract of the
 * params' short_ok, which the compiler computes (linear.py short_epilogue_ok, its twin:
 * tests/test_linear_short_ok.py checks the two agree) so that no call pays this pass over
 * the n channels. Not called by the kernel. */
#if defined(__GNUC__)
__attribute__((unused))
#endif
static int short_epilogue_ok(const mcuc_linear_params_t *p)
{
    int64_t bias_max = 0;
    for (int32_t j = 0; j < p->n; ++j) {
        const int32_t t = rq_of(p->rq, j, RQ_SHIFT), b = rq_of(p->rq, j, RQ_BIAS);
        if (t < 0 || t > 30 || rq_of(p->rq, j, RQ_MULT) >= 0) { /* mult < 2^30, shift */
            return 0;
        }
        const int64_t mag = b < 0 ? -(int64_t)b : b;
        bias_max = mag > bias_max ? mag : bias_max;
    }
    return 255LL * 128 * p->k + bias_max < (1LL << 30);
}

/* v, or tab[v] where the call applies a table in its epilogue (lut, a constant at each
 * call: mcuc_linear_lut_planned_s8; tab is the table + 128). */
MCUC_ALWAYS_INLINE static int8_t lut_of(int lut, const int8_t *tab, int32_t v)
{
    return lut ? tab[v] : (int8_t)v;
}

/* Output channel j of one row from its sum (a channel past the blocks of four). */
MCUC_ALWAYS_INLINE static int8_t chan_out(const int32_t *rq, int32_t j, int32_t sum,
                                          int32_t y_zp, int32_t y_c, int short_epi)
{
    const int32_t *const e = rq + RQ_PAIR * (j >> 1);
    const int32_t lane = j & 1;
    return short_epi ? short_out(e[RQ_BIAS + lane] + sum, e[RQ_MULT + lane],
                                 e[RQ_SHIFT + lane], y_c)
                     : general_out(e, lane, y_zp, sum);
}

/* Channels j..j+3 of one row (y) from their sums a[0..3]; e: the block's first pair. With
 * short_epi the sums started at the bias. */
MCUC_ALWAYS_INLINE static void quad_out_lut(const int32_t *e, const int32_t *a, int8_t *y,
                                            int32_t y_zp, int32_t y_c, int short_epi,
                                            int lut, const int8_t *tab)
{
    if (short_epi) { /* written out: gcc keeps a loop over c, with its address arithmetic */
        y[0] = lut_of(lut, tab, short_raw(a[0], e[RQ_MULT], e[RQ_SHIFT], y_c));
        y[1] = lut_of(lut, tab, short_raw(a[1], e[RQ_MULT + 1], e[RQ_SHIFT + 1], y_c));
        y[2] = lut_of(lut, tab, short_raw(a[2], e[RQ_PAIR + RQ_MULT], e[RQ_PAIR + RQ_SHIFT],
                                          y_c));
        y[3] = lut_of(lut, tab, short_raw(a[3], e[RQ_PAIR + RQ_MULT + 1],
                                          e[RQ_PAIR + RQ_SHIFT + 1], y_c));
    } else {
        y[0] = general_out(e, 0, y_zp, a[0]);
        y[1] = general_out(e, 1, y_zp, a[1]);
        y[2] = general_out(e + RQ_PAIR, 0, y_zp, a[2]);
        y[3] = general_out(e + RQ_PAIR, 1, y_zp, a[3]);
    }
}

/* quad_out without a table. */
MCUC_ALWAYS_INLINE static void quad_out(const int32_t *e, const int32_t *a, int8_t *y,
                                        int32_t y_zp, int32_t y_c, int short_epi)
{
    quad_out_lut(e, a, y, y_zp, y_c, short_epi, 0, NULL);
}

/* A quad's sums start at its biases with the short epilogue, else at 0. */
MCUC_ALWAYS_INLINE static void quad_start(const int32_t *e, int32_t *a, int short_epi)
{
    a[0] = short_epi ? e[RQ_BIAS] : 0;
    a[1] = short_epi ? e[RQ_BIAS + 1] : 0;
    a[2] = short_epi ? e[RQ_PAIR + RQ_BIAS] : 0;
    a[3] = short_epi ? e[RQ_PAIR + RQ_BIAS + 1] : 0;
}

/* acc[0..3] += four channels' sums over one widened block, eight inputs per step: the
 * accumulators stay in registers across the k loop, and w ends where the next block of
 * four channels starts (blocks are contiguous), so the caller walks one pointer. */
#define MCUC_WIDE_STEP(xw, off)                                                  \
    do {                                                                         \
        const uint32_t xl_ = MCUC_PAIR(mcuc_sxtb16(xw), has_zp, zp2);            \
        const uint32_t xh_ = MCUC_PAIR(mcuc_sxtb16_ror8(xw), has_zp, zp2);       \
        uint32_t lo_, hi_;                                                       \
        MCUC_LDRD_WIDE(w, off, lo_, hi_);                                        \
        a0 = mcuc_smlad(xh_, hi_, mcuc_smlad(xl_, lo_, a0));                     \
        MCUC_LDRD_WIDE(w, off + 4, lo_, hi_);                                    \
        a1 = mcuc_smlad(xh_, hi_, mcuc_smlad(xl_, lo_, a1));                     \
        MCUC_LDRD_WIDE(w, off + 8, lo_, hi_);                                    \
        a2 = mcuc_smlad(xh_, hi_, mcuc_smlad(xl_, lo_, a2));                     \
        MCUC_LDRD_WIDE(w, off + 12, lo_, hi_);                                   \
        a3 = mcuc_smlad(xh_, hi_, mcuc_smlad(xl_, lo_, a3));                     \
    } while (0)

/* Widened weights (--optimize speed), one row at a time: per block of four channels,
 * the k loop takes eight inputs per step (two words of x, eight LDRDs of weights, 16
 * SMLADs: 33 instructions per 32 MACs), then at most one step of four, then the tail;
 * the epilogue follows with the sums still in registers. */
MCUC_ALWAYS_INLINE static void wide_rows(const mcuc_linear_params_t *p, const int8_t *x,
                                         int8_t *y, int has_zp, int short_epi)
{
    const int32_t k = p->k, n = p->n, n4 = n & ~3;
    const int32_t k4 = k & ~3, k8 = k & ~7;
    const int32_t x_zp = p->x_zp, y_zp = p->y_zp, y_c = short_c(y_zp);
    const uint32_t zp2 = mcuc_dup16(x_zp);
    for (int32_t r = 0; r < p->rows; ++r) {
        const int8_t *const xr = x + (int64_t)r * k;
        const int8_t *const x8 = xr + k8;
        int8_t *const yr = y + (int64_t)r * n;
        const int16_t *w = p->weights16;
        const int32_t *e = p->rq;
        for (int32_t j = 0; j < n4; j += 4, e += 2 * RQ_PAIR) {
            int32_t q[4];
            quad_start(e, q, short_epi);
            int32_t a0 = q[0], a1 = q[1], a2 = q[2], a3 = q[3];
            const int8_t *xi = xr;
            while (xi < x8) {
                const uint32_t u = mcuc_read32(xi), v = mcuc_read32(xi + 4);
                xi += 8;
                MCUC_WIDE_STEP(u, 0);
                MCUC_WIDE_STEP(v, 16);
                w += 32;
            }
            if (k8 < k4) {
                MCUC_WIDE_STEP(mcuc_read32(xi), 0);
                w += 16;
            }
            for (int32_t i = k4; i < k; ++i, w += 4) {
                const int32_t xv = xr[i] - x_zp;
                a0 += xv * w[0];
                a1 += xv * w[1];
                a2 += xv * w[2];
                a3 += xv * w[3];
            }
            const int32_t a[4] = {a0, a1, a2, a3};
            quad_out(e, a, yr + j, y_zp, y_c, short_epi);
        }
        for (int32_t j = n4; j < n; ++j) {
            const int32_t sum = dot1(xr, NULL, p->weights16 + (int64_t)j * k, k, x_zp);
            yr[j] = chan_out(p->rq, j, sum, y_zp, y_c, short_epi);
        }
    }
}

/* Rows r and r + 1's outputs of the channel pair whose words are at e (yo: row r's first
 * of the two), from the sums a[0..1] (row r) and a[2..3] (row r + 1). */
MCUC_ALWAYS_INLINE static void pair_out_lut(const int32_t *e, const int32_t *a, int8_t *yo,
                                            int32_t n, int32_t y_zp, int32_t y_c, int short_epi,
                                            int lut, const int8_t *tab)
{
    if (short_epi) { /* each channel's multiplier and shift serve both rows */
        const int32_t m0 = e[RQ_MULT], m1 = e[RQ_MULT + 1];
        const int32_t s0 = e[RQ_SHIFT], s1 = e[RQ_SHIFT + 1];
        yo[0] = lut_of(lut, tab, short_raw(a[0], m0, s0, y_c));
        yo[1] = lut_of(lut, tab, short_raw(a[1], m1, s1, y_c));
        yo[n] = lut_of(lut, tab, short_raw(a[2], m0, s0, y_c));
        yo[n + 1] = lut_of(lut, tab, short_raw(a[3], m1, s1, y_c));
    } else {
        yo[0] = general_out(e, 0, y_zp, a[0]);
        yo[1] = general_out(e, 1, y_zp, a[1]);
        yo[n] = general_out(e, 0, y_zp, a[2]);
        yo[n + 1] = general_out(e, 1, y_zp, a[3]);
    }
}

/* pair_out without a table. */
MCUC_ALWAYS_INLINE static void pair_out(const int32_t *e, const int32_t *a, int8_t *yo,
                                        int32_t n, int32_t y_zp, int32_t y_c, int short_epi)
{
    pair_out_lut(e, a, yo, n, y_zp, y_c, short_epi, 0, NULL);
}

/* The row pairs over int8 weights; returns the rows done (all but an odd count's last).
 * has_zp and short_epi are constants at each call (one loop each). With short_epi
 * the accumulators start at the bias, otherwise at 0 and the bias is added with
 * saturation in general_out. The pairs of channels are walked with one pointer into rq
 * (pair q of block q / 2 starts at word 8 (q % 2) of the block), so the epilogue reloads
 * little after the inner loop. (Widened weights: wide_rows.) */
MCUC_ALWAYS_INLINE static int32_t row_pairs(const mcuc_linear_params_t *p, const int8_t *x,
                                            int8_t *y, int has_zp, int short_epi)
{
    const int32_t k = p->k, n = p->n, n4 = n & ~3, k4 = k & ~3, x_zp = p->x_zp;
    const int32_t y_zp = p->y_zp, y_c = short_c(y_zp);
    const int32_t *const e4 = p->rq + RQ_PAIR * (n4 / 2); /* past the blocks' pairs */
    int32_t r = 0;
    for (; r + 1 < p->rows; r += 2) {
        const int8_t *const xr = x + (int64_t)r * k;
        int8_t *const yr = y + (int64_t)r * n;
        int8_t *yo = yr;
        int32_t q = 0;
        for (const int32_t *e = p->rq; e != e4; e += RQ_PAIR, yo += 2, ++q) {
            const int8_t *const wb = p->weights + (int64_t)(q >> 1) * 4 * k + 8 * (q & 1);
            int32_t a[4] = {0, 0, 0, 0};
            if (short_epi) {
                a[0] = a[2] = e[RQ_BIAS];
                a[1] = a[3] = e[RQ_BIAS + 1];
            }
            /* the pair's tail bytes: block + 4 k4 + 2 (q % 2) */
            dot2x2(xr, k, wb, wb + 4 * k4 - 6 * (q & 1), has_zp, x_zp, a);
            pair_out(e, a, yo, n, y_zp, y_c, short_epi);
        }
        const int8_t *wb = p->weights + (int64_t)n4 * k;
        for (int32_t j = n4; j < n; ++j, wb += k) {
            for (int32_t t = 0; t < 2; ++t) {
                const int32_t sum = dot1(xr + t * k, wb, NULL, k, x_zp);
                yr[t * n + j] = chan_out(p->rq, j, sum, y_zp, y_c, short_epi);
            }
        }
    }
    return r;
}

/* x unpacked once (k % 16 == 0, short epilogue, k <= MCUC_PRE_MAX_K: the plans
 * lin_short16 and lin_wide_short16; x_zp is folded, 0). Each row pair's x is unpacked
 * into SXTB16 lane pairs in a stack buffer (unpack_rows), so each word of x is loaded with an LDRD
 * per channel pair instead of loaded and unpacked (two SXTB16) again for every pair:
 * 68 instructions per 64 MACs over int8 weights, 52 over widened ones. A last odd row
 * (or a call of one row, as a tile of one) gets the same, one row against four channels.
 * The buffer takes 4 k bytes (a pair) <= 2 KB, on the stack (tests/test_stack_frames.py;
 * MCUC_PRE_MAX_K is in linear_internal.h). */

/* p[off / 4] = lo, p[off / 4 + 1] = hi for a word-aligned uint32_t *p and a constant byte
 * offset: one STRD (gcc does not pair the two stores by itself). */
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
#define MCUC_STRD(p, off, lo, hi) \
    __asm__("strd %1, %2, [%0, #%c3]" : : "r"(p), "r"(lo), "r"(hi), "i"(off) : "memory")
#else
#define MCUC_STRD(p, off, lo, hi) \
    do {                          \
        (p)[(off) / 4] = (lo);    \
        (p)[(off) / 4 + 1] = (hi); \
    } while (0)
#endif

/* Four inputs of a row pair at xi (rows u, v; v k bytes on) unpacked to the four words at
 * byte off of xu: two loads, four SXTB16, two STRDs. */
#define MCUC_UNPACK2(xi, k, xu, off)                                             \
    do {                                                                         \
        const uint32_t u_ = mcuc_read32((xi) + (off) / 4);                       \
        const uint32_t v_ = mcuc_read32((xi) + (off) / 4 + (k));                 \
        MCUC_STRD(xu, off, mcuc_sxtb16(u_), mcuc_sxtb16_ror8(u_));               \
        MCUC_STRD(xu, (off) + 8, mcuc_sxtb16(v_), mcuc_sxtb16_ror8(v_));         \
    } while (0)

/* `rows` (1 or 2) consecutive rows of x (k bytes each, k % 16 == 0) unpacked: per four
 * inputs i..i+3, each row's lane pairs (x_i, x_i+2) and (x_i+1, x_i+3), the rows side by
 * side (a pair: u's two words then v's two; one row: its two). Both rows of a pair in one
 * loop, sixteen inputs per step (the step of four cost 12 instructions, a third of them
 * the loop's own: 127,000 per inference of the default model). */
MCUC_ALWAYS_INLINE static void unpack_rows(const int8_t *xa, int32_t k, int32_t rows,
                                           uint32_t *xu)
{
    const int8_t *const xend = xa + k;
    if (rows == 2) {
        for (const int8_t *xi = xa; xi != xend; xi += 16, xu += 16) {
            MCUC_UNPACK2(xi, k, xu, 0);
            MCUC_UNPACK2(xi, k, xu, 16);
            MCUC_UNPACK2(xi, k, xu, 32);
            MCUC_UNPACK2(xi, k, xu, 48);
        }
    } else {
        for (const int8_t *xi = xa; xi != xend; xi += 4, xu += 2) {
            const uint32_t u = mcuc_read32(xi);
            MCUC_STRD(xu, 0, mcuc_sxtb16(u), mcuc_sxtb16_ror8(u));
        }
    }
}

/* Channel word c (0 or 1) of a channel pair at byte off of w (int8: one LDR, two SXTB16)
 * or at off + 4 c int16s of w16 (widened: one LDRD) as lane pairs wl_, wh_; `wide` (in
 * scope, a constant at each call) says which. */
#define MCUC_PAIR_W(w, w16, off, c)                                              \
    do {                                                                         \
        if (wide) {                                                              \
            MCUC_LDRD_WIDE(w16, (off) + 4 * (c), wl_, wh_);                      \
        } else {                                                                 \
            const uint32_t w_ = mcuc_read32((w) + (off) + 4 * (c));              \
            wl_ = mcuc_sxtb16(w_);                                               \
            wh_ = mcuc_sxtb16_ror8(w_);                                          \
        }                                                                        \
    } while (0)

/* One step of pre_pair: four inputs of both rows (the four words at byte off of xp: two
 * LDRDs) against the two channels' words at w + off and w + off + 4 (int8) or w16 + off
 * and w16 + off + 4 (widened, in int16s: a block's four inputs take sixteen, as its int8
 * layout takes sixteen bytes); one channel's words at a time (fewer live registers). */
#define MCUC_2X2P_STEP(xp, w, w16, off)                                          \
    do {                                                                         \
        uint32_t ul_, uh_, vl_, vh_, wl_, wh_;                                   \
        MCUC_LDRD(ul_, uh_, xp, off);                                            \
        MCUC_LDRD(vl_, vh_, xp, (off) + 8);                                      \
        MCUC_PAIR_W(w, w16, off, 0);                                             \
        a00 = mcuc_smlad(uh_, wh_, mcuc_smlad(ul_, wl_, a00));                   \
        a10 = mcuc_smlad(vh_, wh_, mcuc_smlad(vl_, wl_, a10));                   \
        MCUC_PAIR_W(w, w16, off, 1);                                             \
        a01 = mcuc_smlad(uh_, wh_, mcuc_smlad(ul_, wl_, a01));                   \
        a11 = mcuc_smlad(vh_, wh_, mcuc_smlad(vl_, wl_, a11));                   \
    } while (0)

/* lo = p[off / 4], hi = p[off / 4 + 1] for a word-aligned const int32_t *p (constant
 * flash), as an LDRD that gcc may not merge with an identical one: pre_pair loads the
 * biases once per row, and two LDRDs take one instruction fewer than one LDRD and the two
 * MOVs gcc otherwise emits to copy them (15,216 pairs per inference of the default model). */
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
#define MCUC_LDRD_AGAIN(lo, hi, p, off) \
    __asm__ volatile("ldrd %0, %1, [%2, #%c3]" : "=r"(lo), "=r"(hi) : "r"(p), "i"(off))
#else
#define MCUC_LDRD_AGAIN(lo, hi, p, off) \
    do {                                \
        (lo) = (p)[(off) / 4];          \
        (hi) = (p)[(off) / 4 + 1];      \
    } while (0)
#endif

/* One channel pair of a row pair: the sums of rows u, v (unpacked at xu, k words) against
 * the pair's words at *wp (block + 8 (q % 2) bytes) or, when wide, *wp16 (widened: block +
 * 8 (q % 2) int16s), started at the biases,
 * requantized into yo[0..1] (row u) and yo[n..n+1] (row v) by short_out. The pointer is
 * left where the loop ends, 4 k on (bytes or int16s): the same pair of the next block. */
MCUC_ALWAYS_INLINE static void pre_pair(const uint32_t *xu, const uint32_t *xe,
                                        const int8_t **wp, const int16_t **wp16,
                                        const int32_t *e, int8_t *yo, int32_t n, int32_t y_c,
                                        int wide, int lut, const int8_t *tab)
{
    const int8_t *w = *wp;
    const int16_t *w16 = *wp16;
    int32_t a00, a01, a10, a11;
    MCUC_LDRD_AGAIN(a00, a01, e, RQ_BIAS * 4);
    MCUC_LDRD_AGAIN(a10, a11, e, RQ_BIAS * 4); /* both rows start at the biases */
    const uint32_t *xp = xu;
    do { /* k >= 16 */
        MCUC_2X2P_STEP(xp, w, w16, 0);
        MCUC_2X2P_STEP(xp, w, w16, 16);
        MCUC_2X2P_STEP(xp, w, w16, 32);
        MCUC_2X2P_STEP(xp, w, w16, 48);
        if (wide) {
            w16 += 64;
        } else {
            w += 64;
        }
        xp += 16;
    } while (xp != xe);
    *wp = w;
    *wp16 = w16;
    const int32_t a[4] = {a00, a01, a10, a11};
    pair_out_lut(e, a, yo, n, 0, y_c, 1, lut, tab);
}

/* acc c += channel c's words (MCUC_PAIR_W: w + off + 4 c, or w16 + off + 4 c) against
 * the lane pairs xl_, xh_ of one row. */
#define MCUC_1X4P_CH(c, acc, off)                                                \
    do {                                                                         \
        uint32_t wl_, wh_;                                                       \
        MCUC_PAIR_W(w, w16, off, c);                                             \
        acc = mcuc_smlad(xh_, wh_, mcuc_smlad(xl_, wl_, acc));                   \
    } while (0)

/* One step of pre_quad: four inputs of one row (the two words at byte off / 2 of xp) against
 * the block's four channels. */
#define MCUC_1X4P_STEP(xp, w, w16, off)                                          \
    do {                                                                         \
        uint32_t xl_, xh_;                                                       \
        MCUC_LDRD(xl_, xh_, xp, (off) / 2);                                      \
        MCUC_1X4P_CH(0, a0, off);                                                \
        MCUC_1X4P_CH(1, a1, off);                                                \
        MCUC_1X4P_CH(2, a2, off);                                                \
        MCUC_1X4P_CH(3, a3, off);                                                \
    } while (0)

/* One block of four channels of one row (unpacked at xu, k / 2 words; weights at w or w16
 * as in pre_pair, the block's start), started at the biases, into yo[0..3]. */
MCUC_ALWAYS_INLINE static void pre_quad(const uint32_t *xu, const uint32_t *xe,
                                        const int8_t *w, const int16_t *w16, const int32_t *e,
                                        int8_t *yo, int32_t y_c, int wide, int lut,
                                        const int8_t *tab)
{
    int32_t a0 = e[RQ_BIAS], a1 = e[RQ_BIAS + 1];
    int32_t a2 = e[RQ_PAIR + RQ_BIAS], a3 = e[RQ_PAIR + RQ_BIAS + 1];
    const uint32_t *xp = xu;
    do { /* k >= 16 */
        MCUC_1X4P_STEP(xp, w, w16, 0);
        MCUC_1X4P_STEP(xp, w, w16, 16);
        MCUC_1X4P_STEP(xp, w, w16, 32);
        MCUC_1X4P_STEP(xp, w, w16, 48);
        if (wide) {
            w16 += 64;
        } else {
            w += 64;
        }
        xp += 8;
    } while (xp != xe);
    const int32_t a[4] = {a0, a1, a2, a3};
    quad_out_lut(e, a, yo, 0, y_c, 1, lut, tab);
}

/* Every row of the plans lin_short16 (wide = 0) and lin_wide_short16 (wide = 1), and of
 * their _lut twins (lut = 1: each output y becomes tab[y], tab a table + 128): row pairs,
 * then a last odd row; the channels past the blocks of four by dot1. */
MCUC_ALWAYS_INLINE static void unpacked_rows(const mcuc_linear_params_t *p, const int8_t *x,
                                             int8_t *y, int wide, int lut, const int8_t *tab)
{
    const int32_t k = p->k, n = p->n, n4 = n & ~3, y_c = short_c(p->y_zp);
    const int32_t *const e4 = p->rq + RQ_PAIR * (n4 / 2); /* past the blocks' pairs */
    uint32_t xu[MCUC_PRE_MAX_K];
    for (int32_t r = 0; r < p->rows; r += 2) {
        const int32_t two = r + 1 < p->rows;
        const int8_t *const xr = x + (int64_t)r * k;
        int8_t *yo = y + (int64_t)r * n;
        unpack_rows(xr, k, 1 + two, xu);
        const int8_t *wb = p->weights;      /* NULL when wide */
        const int16_t *wb16 = p->weights16; /* NULL when not */
        if (two) { /* the row count's test out of the channel loop: one loop each */
            /* one weight pointer: a pair's loop leaves it 4 k on (bytes or int16s), at its
             * next block's word; the block's second pair starts 8 on from the first */
            const int32_t back = 4 * k - 8;
            if (wide) {
                wb16 += 8;
            } else {
                wb += 8;
            }
            for (const int32_t *e = p->rq; e != e4; e += 2 * RQ_PAIR, yo += 4) {
                if (wide) {
                    wb16 -= 8;
                } else {
                    wb -= 8;
                }
                pre_pair(xu, xu + k, &wb, &wb16, e, yo, n, y_c, wide, lut, tab);
                if (wide) {
                    wb16 -= back;
                } else {
                    wb -= back;
                }
                pre_pair(xu, xu + k, &wb, &wb16, e + RQ_PAIR, yo + 2, n, y_c, wide, lut,
                         tab);
            }
        } else {
            for (const int32_t *e = p->rq; e != e4; e += 2 * RQ_PAIR, yo += 4) {
                pre_quad(xu, xu + k / 2, wb, wb16, e, yo, y_c, wide, lut, tab);
                if (wide) {
                    wb16 += 4 * k;
                } else {
                    wb += 4 * k;
                }
            }
        }
        for (int32_t j = n4; j < n; ++j) {
            const int8_t *wt = wide ? NULL : p->weights + (int64_t)j * k;
            const int16_t *wt16 = wide ? p->weights16 + (int64_t)j * k : NULL;
            for (int32_t t = 0; t <= two; ++t) {
                const int32_t sum = dot1(xr + t * k, wt, wt16, k, 0);
                y[(int64_t)(r + t) * n + j] =
                    lut_of(lut, tab, chan_out(p->rq, j, sum, p->y_zp, y_c, 1));
            }
        }
    }
}

/* Rows r.. (at most one: the last of an odd count, or a call of one row) over int8
 * weights, one row against four channels at a time (dot4). */
MCUC_ALWAYS_INLINE static void last_rows(const mcuc_linear_params_t *p, const int8_t *x,
                                         int8_t *y, int32_t r, int has_zp, int short_epi)
{
    const int32_t k = p->k, n = p->n, n4 = n & ~3, x_zp = p->x_zp;
    const int32_t y_zp = p->y_zp, y_c = short_c(y_zp);
    for (; r < p->rows; ++r) {
        const int8_t *xr = x + (int64_t)r * k;
        int8_t *yr = y + (int64_t)r * n;
        const int32_t *e = p->rq;
        for (int32_t j = 0; j < n4; j += 4, e += 2 * RQ_PAIR) {
            int32_t a[4];
            quad_start(e, a, short_epi);
            dot4(xr, p->weights + (int64_t)j * k, k, has_zp, x_zp, a);
            quad_out(e, a, yr + j, y_zp, y_c, short_epi);
        }
        for (int32_t j = n4; j < n; ++j) {
            const int32_t sum = dot1(xr, p->weights + (int64_t)j * k, NULL, k, x_zp);
            yr[j] = chan_out(p->rq, j, sum, y_zp, y_c, short_epi);
        }
    }
}

/* Each plan's loops as a function of its own, so that only the ones a model runs are hot
 * (mcuc/tcm.py puts them in ITCM by name, hottest first; inlined into one dispatcher they
 * made it 12 KB, most of the F746's 16 KB ITCM). has_zp and short_epi are
 * constants in each; lin_short16_lut and lin_wide_short16_lut are lin_short16 and
 * lin_wide_short16 with a table applied to each output before it is stored
 * (mcuc_linear_lut_planned_s8: a token-wise block's fc1 -> GELU, one load per output
 * instead of mcuc_lut_s8's pass of about four). The general epilogue's plans (a layer
 * that keeps its input zero point, i.e. has no bias to fold it into, or a multiplier or
 * shift out of short_ok's ranges) are built for size: 6.5 KB at -O2, for layers a ViT
 * rarely has. */
#ifdef __GNUC__
#define LIN_PLAN __attribute__((noinline))
#define LIN_PLAN_COLD __attribute__((noinline, cold))
#else
#define LIN_PLAN
#define LIN_PLAN_COLD
#endif

LIN_PLAN void lin_short16(const mcuc_linear_params_t *p, const int8_t *x, int8_t *y)
{
    unpacked_rows(p, x, y, 0, 0, NULL);
}

/* lin_short16 with a table applied in its epilogue (tab: the table + 128). */
LIN_PLAN void lin_short16_lut(const mcuc_linear_params_t *p, const int8_t *tab,
                              const int8_t *x, int8_t *y)
{
    unpacked_rows(p, x, y, 0, 1, tab);
}

LIN_PLAN void lin_short(const mcuc_linear_params_t *p, const int8_t *x, int8_t *y)
{
    last_rows(p, x, y, row_pairs(p, x, y, 0, 1), 0, 1);
}

LIN_PLAN_COLD void lin_general(const mcuc_linear_params_t *p, const int8_t *x, int8_t *y)
{
    last_rows(p, x, y, row_pairs(p, x, y, 1, 0), 1, 0);
}

LIN_PLAN void lin_wide_short16(const mcuc_linear_params_t *p, const int8_t *x, int8_t *y)
{
    unpacked_rows(p, x, y, 1, 0, NULL);
}

/* lin_wide_short16 with a table applied in its epilogue (tab: the table + 128). */
LIN_PLAN void lin_wide_short16_lut(const mcuc_linear_params_t *p, const int8_t *tab,
                                   const int8_t *x, int8_t *y)
{
    unpacked_rows(p, x, y, 1, 1, tab);
}

LIN_PLAN void lin_wide_short(const mcuc_linear_params_t *p, const int8_t *x, int8_t *y)
{
    wide_rows(p, x, y, 0, 1);
}

LIN_PLAN_COLD void lin_wide_general(const mcuc_linear_params_t *p, const int8_t *x, int8_t *y)
{
    wide_rows(p, x, y, 1, 0);
}
#else
typedef int mcuc_linear_dsp_empty; /* ISO C wants a declaration in every file */
#endif /* MCUC_ARM_DSP */
