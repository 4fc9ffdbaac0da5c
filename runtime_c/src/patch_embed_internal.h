/* Private to patch_embed.c and patch_embed_dsp.c: the ARMv7E-M variant's bound on the taps
 * and its loops' entry points (patch_embed_dsp.c, with MCUC_ARM_DSP), which
 * mcuc_patch_embed_s8 (patch_embed.c) picks among. They are functions of their own, as they
 * were: mcuc/tcm.py puts the ones a model runs in ITCM by name. */
#ifndef MCUC_PATCH_EMBED_INTERNAL_H
#define MCUC_PATCH_EMBED_INTERNAL_H

#include "mcuc/kernels.h"

#ifdef MCUC_ARM_DSP
/* Most taps the variant takes (larger patches take the reference). */
#define MCUC_PE_MAX_TAPS 4096
/* The int32 bounds of patch_embed_dsp.c's opening comment, as compile-time checks (a
 * negative array size fails): the doubled sums fit int32, and the fast form's bias bound
 * is positive. */
typedef char mcuc_pe_sum_fits_int32[(2LL * 255 * 128 * MCUC_PE_MAX_TAPS <= INT32_MAX) ? 1 : -1];
typedef char mcuc_pe_bias_bound_positive[((1LL << 30) - 1 - 255LL * 128 * MCUC_PE_MAX_TAPS > 0)
                                             ? 1 : -1];

/* Widened weights, 16 taps, d even, the fast epilogue (patch_embed_dsp.c). */
void mcuc_pe_wide16(const mcuc_patch_embed_params_t *p, const int8_t *x, int8_t *y);
/* Any other patch of at most MCUC_PE_MAX_TAPS taps, int8 weights: every channel with the
 * fast epilogue (mcuc_pe_large_fast) or not (mcuc_pe_large_any). */
void mcuc_pe_large_fast(const mcuc_patch_embed_params_t *p, const int8_t *x, int8_t *y,
                        int32_t taps);
void mcuc_pe_large_any(const mcuc_patch_embed_params_t *p, const int8_t *x, int8_t *y,
                       int32_t taps);
#endif /* MCUC_ARM_DSP */

#endif /* MCUC_PATCH_EMBED_INTERNAL_H */
