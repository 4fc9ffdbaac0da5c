/* The token-wise linear layer's ARMv7E-M loops (MCUC_ARM_DSP), one function per plan
 * (lin_*, called by linear.c's mcuc_linear_planned_s8); the weights' packed layout and the
 * portable reference are in linear.c. Two private headers hold parts of this file's
 * translation unit, included here only: linear_epi.h (the epilogues) and linear_pre.h (the
 * loops over x unpacked once); as files of their own, compiled apart, they changed gcc's
 * register allocation of the hot plans (mcuc_lin_short16) and the code of others (mcuc_lin_short).
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
#include "linear_epi.h" /* general_out, short_out, quad_out, pair_out */

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

#include "linear_pre.h" /* unpacked_rows */
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
 * constants in each; mcuc_lin_short16_lut and mcuc_lin_wide_short16_lut are mcuc_lin_short16 and
 * mcuc_lin_wide_short16 with a table applied to each output before it is stored
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

LIN_PLAN void mcuc_lin_short16(const mcuc_linear_params_t *p, const int8_t *x, int8_t *y)
{
    unpacked_rows(p, x, y, 0, 0, NULL);
}

/* mcuc_lin_short16 with a table applied in its epilogue (tab: the table + 128). */
LIN_PLAN void mcuc_lin_short16_lut(const mcuc_linear_params_t *p, const int8_t *tab,
                                   const int8_t *x, int8_t *y)
{
    unpacked_rows(p, x, y, 0, 1, tab);
}

LIN_PLAN void mcuc_lin_short(const mcuc_linear_params_t *p, const int8_t *x, int8_t *y)
{
    last_rows(p, x, y, row_pairs(p, x, y, 0, 1), 0, 1);
}

LIN_PLAN_COLD void mcuc_lin_general(const mcuc_linear_params_t *p, const int8_t *x, int8_t *y)
{
    last_rows(p, x, y, row_pairs(p, x, y, 1, 0), 1, 0);
}

LIN_PLAN void mcuc_lin_wide_short16(const mcuc_linear_params_t *p, const int8_t *x, int8_t *y)
{
    unpacked_rows(p, x, y, 1, 0, NULL);
}

/* mcuc_lin_wide_short16 with a table applied in its epilogue (tab: the table + 128). */
LIN_PLAN void mcuc_lin_wide_short16_lut(const mcuc_linear_params_t *p, const int8_t *tab,
                                        const int8_t *x, int8_t *y)
{
    unpacked_rows(p, x, y, 1, 1, tab);
}

LIN_PLAN void mcuc_lin_wide_short(const mcuc_linear_params_t *p, const int8_t *x, int8_t *y)
{
    wide_rows(p, x, y, 0, 1);
}

LIN_PLAN_COLD void mcuc_lin_wide_general(const mcuc_linear_params_t *p, const int8_t *x, int8_t *y)
{
    wide_rows(p, x, y, 1, 0);
}
#else
typedef int mcuc_linear_dsp_empty; /* ISO C wants a declaration in every file */
#endif /* MCUC_ARM_DSP */
