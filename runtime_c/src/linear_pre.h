/* Private to linear_dsp.c, which includes it once: the loops over x unpacked once per row
 * pair (unpacked_rows: the plans mcuc_lin_short16 and mcuc_lin_wide_short16 and their _lut
 * twins), as always-inline functions of that translation unit. What they use of
 * linear_dsp.c (dot1, MCUC_LDRD_WIDE, linear_epi.h's epilogues) is defined before the
 * include. */
#ifndef MCUC_LINEAR_PRE_H
#define MCUC_LINEAR_PRE_H

/* x unpacked once (k % 16 == 0, short epilogue, k <= MCUC_PRE_MAX_K: the plans
 * mcuc_lin_short16 and mcuc_lin_wide_short16; x_zp is folded, 0). Each row pair's x is unpacked
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

/* Every row of the plans mcuc_lin_short16 (wide = 0) and mcuc_lin_wide_short16 (wide = 1), and of
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


#endif /* MCUC_LINEAR_PRE_H */
