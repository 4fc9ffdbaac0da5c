/* Private to linear.c and linear_dsp.c: the channel words' decoding, the DSP loops' bounds
 * and the plans' entry points (linear_dsp.c, with MCUC_ARM_DSP).
 *
 * The rq words hold each channel's multiplier and shift in the form short_out
 * (linear_dsp.c) reads them (kernels.h; linear.py requant_words): m2 = 2 mult mod 2^32 (a
 * negative int32 exactly when mult is in [2^30, 2^31)), and t = ~shift in its low byte with
 * mult's sign in bit 31 (so that both decode losslessly: rq_mult, rq_shift). */
#ifndef MCUC_LINEAR_INTERNAL_H
#define MCUC_LINEAR_INTERNAL_H

#include <stddef.h> /* NULL */

#include "mcuc/kernels.h"


/* Where a channel's words sit in its pair's six (see mcuc_linear_params_t): + lane. */
enum { RQ_BIAS = 0, RQ_MULT = 2, RQ_SHIFT = 4, RQ_PAIR = 6 };

/* Channel j's stored bias, m2 or t word (field RQ_BIAS, RQ_MULT or RQ_SHIFT). */
static inline int32_t rq_of(const int32_t *rq, int32_t j, int32_t field)
{
    return rq[RQ_PAIR * (j >> 1) + field + (j & 1)];
}

/* The multiplier of the stored words m2 = 2 mult mod 2^32 and t (mult's sign in bit 31). */
static inline int32_t rq_mult(int32_t m2, int32_t t)
{
    return (int32_t)(((uint32_t)m2 >> 1) | ((uint32_t)t & 0x80000000u));
}

/* The shift of the stored word t (~shift, as int8, in its low byte). */
static inline int32_t rq_shift(int32_t t)
{
    return ~((((int32_t)((uint32_t)t & 0xFFu)) ^ 0x80) - 0x80);
}

#ifdef MCUC_ARM_DSP

/* The int32 bound of the DSP loops (linear_dsp.c's opening comment): larger k takes the
 * reference loop. */
#define MCUC_DSP_MAX_K 65793
/* The int32 bound above, as a compile-time check (a negative array size fails). */
typedef char mcuc_dsp_k_bound_fits_int32[(255LL * 128 * MCUC_DSP_MAX_K <= INT32_MAX) ? 1 : -1];

/* The largest k whose row pair of x unpacked_rows unpacks once on the stack (linear_dsp.c);
 * a power of two (lin_row1_ok's test of k relies on it). */
#define MCUC_PRE_MAX_K 512
typedef char mcuc_pre_max_k_is_a_power_of_two[(MCUC_PRE_MAX_K & (MCUC_PRE_MAX_K - 1)) == 0 ? 1
                                                                                         : -1];

/* Each plan's loops (linear_dsp.c), as functions of their own: only the ones a model runs
 * are hot, and mcuc/tcm.py puts them in ITCM by name. The general epilogue's plans are
 * cold (built for size), which their callers see here. */
#ifdef __GNUC__
#define LIN_PLAN_COLD_ATTR __attribute__((cold))
#else
#define LIN_PLAN_COLD_ATTR
#endif
void mcuc_lin_short16(const mcuc_linear_params_t *p, const int8_t *x, int8_t *y);
void mcuc_lin_short16_lut(const mcuc_linear_params_t *p, const int8_t *tab, const int8_t *x,
                     int8_t *y);
void mcuc_lin_short(const mcuc_linear_params_t *p, const int8_t *x, int8_t *y);
LIN_PLAN_COLD_ATTR void mcuc_lin_general(const mcuc_linear_params_t *p, const int8_t *x, int8_t *y);
void mcuc_lin_wide_short16(const mcuc_linear_params_t *p, const int8_t *x, int8_t *y);
void mcuc_lin_wide_short16_lut(const mcuc_linear_params_t *p, const int8_t *tab, const int8_t *x,
                          int8_t *y);
void mcuc_lin_wide_short(const mcuc_linear_params_t *p, const int8_t *x, int8_t *y);
LIN_PLAN_COLD_ATTR void mcuc_lin_wide_general(const mcuc_linear_params_t *p, const int8_t *x,
                                              int8_t *y);
/* Whether a call of one row with these params takes mcuc_lin_row1 (linear_row1.c):
 * widened weights, x_zp == 0, short_ok, n >= 4, k % 16 == 0, 0 < k <= MCUC_PRE_MAX_K.
 * Inline in mcuc_linear_s8; mcuc_lin_row1_ok is the same, for the tests. */
static inline int lin_row1_ok(const mcuc_linear_params_t *p)
{
    /* k - 16 in {0, 16, .., MCUC_PRE_MAX_K - 16} (MCUC_PRE_MAX_K a power of two) */
    return p->weights16 != NULL && p->x_zp == 0 && p->short_ok && p->n >= 4 &&
           (((uint32_t)p->k - 16u) & ~(uint32_t)(MCUC_PRE_MAX_K - 16)) == 0;
}
int mcuc_lin_row1_ok(const mcuc_linear_params_t *p);
void mcuc_lin_row1(const mcuc_linear_params_t *p, const int8_t *x, int8_t *y);
#endif /* MCUC_ARM_DSP */

#endif /* MCUC_LINEAR_INTERNAL_H */
