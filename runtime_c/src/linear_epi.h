/* Private to linear_dsp.c and linear_row1.c, which include it once each: the DSP loops'
 * epilogues, the general one (general_out) and the short one (short_out, with its proof),
 * with a table applied or without, for one channel, a block of four or a channel pair of
 * two rows; all always-inline functions of the including translation unit (linear_pre.h's
 * loops use them too). */
#ifndef MCUC_LINEAR_EPI_H
#define MCUC_LINEAR_EPI_H

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

#endif /* MCUC_LINEAR_EPI_H */
