/* Token-wise linear layer.
 *
 * The weights arrive packed by the compiler (compiler/mcuc/kernels/linear.py,
 * pack_weights): for each block of four output channels j..j+3, the four channels' words
 * w[j+c][i..i+3] side by side for every i = 0, 4, .. below k4 = k & ~3, then the tail bytes
 * w[j+c][i] (i >= k4) four at a time; channels from n4 = n & ~3 on are plain rows. The inner
 * loop walks one pointer through contiguous words. Block j starts at byte j * k.
 *
 * linear_ref is the portable reference (the C twin of the numpy spec): int64 accumulation
 * keeps the sum exact for any k and bias; it is saturated to int32 before requantization,
 * as the numpy spec does.
 *
 * With MCUC_ARM_DSP the rows go through the SMLAD loops of linear_dsp.c instead (the plans
 * lin_*, which mcuc_linear_plan chooses between and mcuc_linear_planned_s8 calls); calls
 * with k > MCUC_DSP_MAX_K take the reference loop there too. */
#include <string.h>

/* gcc's scheduling before register allocation hoists the blocks' loads and then spills:
 * without it the Cortex-M4 build of the default model takes 21.6 M instructions instead
 * of 25.0 M (the M7 build: +0.1%; --optimize speed: -0.7% on both). */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-schedule-insns")
#endif
#include "linear_internal.h"
#include "mcuc/simd.h" /* MCUC_ALWAYS_INLINE; the intrinsics are used with MCUC_ARM_DSP */

/* The reference's epilogue: saturate the exact sum, requantize, add y_zp, clamp. */
static int8_t ref_out(const mcuc_linear_params_t *p, int32_t j, int64_t acc)
{
    const int32_t a = mcuc_sat_s32(acc), t = rq_of(p->rq, j, RQ_SHIFT);
    const int64_t v = (int64_t)p->y_zp
                      + mcuc_requantize(a, rq_mult(rq_of(p->rq, j, RQ_MULT), t), rq_shift(t));
    return mcuc_clamp_s8(v);
}

/* Position of w[.][i] within its word in the widened layout: 0, 2, 1, 3. */
#define MCUC_WIDE_POS(t) ((((t) & 1) << 1) | ((t) >> 1))

/* Weight at packed position pos (a tail or plain byte) or at word position word + t. */
#define MCUC_W_AT(pos) (wide ? (int32_t)p->weights16[pos] : (int32_t)p->weights[pos])
#define MCUC_W_WORD(word, t) MCUC_W_AT((word) + (wide ? MCUC_WIDE_POS(t) : (t)))

/* The reference loops over either layout (wide is a constant at each call). */
MCUC_ALWAYS_INLINE static void ref_rows(const mcuc_linear_params_t *p, const int8_t *x, int8_t *y,
                                     int wide)
{
    const int32_t k = p->k, n = p->n, n4 = n & ~3, k4 = k & ~3;
    for (int32_t r = 0; r < p->rows; ++r) {
        const int8_t *xr = x + (int64_t)r * k;
        int8_t *yr = y + (int64_t)r * n;
        for (int32_t j = 0; j < n4; j += 4) {
            const int64_t wb = (int64_t)j * k; /* block j..j+3 */
            for (int32_t c = 0; c < 4; ++c) {
                int64_t acc = rq_of(p->rq, j + c, RQ_BIAS);
                for (int32_t i = 0; i < k4; i += 4) { /* word i / 4 of channel c */
                    const int64_t word = wb + 4 * i + 4 * c;
                    acc += (int32_t)(xr[i] - p->x_zp) * MCUC_W_WORD(word, 0)
                           + (int32_t)(xr[i + 1] - p->x_zp) * MCUC_W_WORD(word, 1)
                           + (int32_t)(xr[i + 2] - p->x_zp) * MCUC_W_WORD(word, 2)
                           + (int32_t)(xr[i + 3] - p->x_zp) * MCUC_W_WORD(word, 3);
                }
                for (int32_t i = k4; i < k; ++i) {
                    acc += (int32_t)(xr[i] - p->x_zp) * MCUC_W_AT(wb + 4 * i + c);
                }
                yr[j + c] = ref_out(p, j + c, acc);
            }
        }
        for (int32_t j = n4; j < n; ++j) { /* plain rows (words in the widened layout) */
            const int64_t wj = (int64_t)j * k;
            int64_t acc = rq_of(p->rq, j, RQ_BIAS);
            for (int32_t i = 0; i < k4; i += 4) {
                acc += (int32_t)(xr[i] - p->x_zp) * MCUC_W_WORD(wj + i, 0)
                       + (int32_t)(xr[i + 1] - p->x_zp) * MCUC_W_WORD(wj + i, 1)
                       + (int32_t)(xr[i + 2] - p->x_zp) * MCUC_W_WORD(wj + i, 2)
                       + (int32_t)(xr[i + 3] - p->x_zp) * MCUC_W_WORD(wj + i, 3);
            }
            for (int32_t i = k4; i < k; ++i) {
                acc += (int32_t)(xr[i] - p->x_zp) * MCUC_W_AT(wj + i);
            }
            yr[j] = ref_out(p, j, acc);
        }
    }
}

/* With MCUC_ARM_DSP only calls with k > MCUC_DSP_MAX_K come here: cold, and not inlined
 * into mcuc_linear_planned_s8, which then saves no registers and keeps no frame (the
 * default model: -1,922 instructions per inference, its stm32f746 ELF 376 B smaller). */
#if defined(MCUC_ARM_DSP) && defined(__GNUC__)
__attribute__((noinline, cold))
#endif
static void linear_ref(const mcuc_linear_params_t *p, const int8_t *x, int8_t *y)
{
    if (p->weights16) {
        ref_rows(p, x, y, 1);
    } else {
        ref_rows(p, x, y, 0);
    }
}

#ifdef MCUC_ARM_DSP

/* The loops of a call; see mcuc_linear_plan in kernels.h. The short epilogue is compiled
 * for folded zero points only (x_zp == 0: every layer with a bias, fold_zero_point); a
 * layer that keeps its zero point takes the general loop. PLAN_SHORT16 is PLAN_SHORT for
 * k % 16 == 0 and k <= MCUC_PRE_MAX_K (every layer of a ViT whose widths are multiples of
 * 16, up to 512): its rows are unpacked once (unpacked_rows), its loops take sixteen inputs
 * per step and have no step of four and no tail. PLAN_WIDE + q is plan q over widened
 * weights. */
enum { PLAN_REF = 0, PLAN_DSP = 1, PLAN_SHORT = 2, PLAN_SHORT16 = 3, PLAN_WIDE = 3 };

/* Not inlined into mcuc_linear_s8: the one-row test before it then saves fewer registers
 * (1 instruction per call) and the plan's code is not there twice (-120 B). */
#ifdef __GNUC__
__attribute__((noinline))
#endif
int32_t mcuc_linear_plan(const mcuc_linear_params_t *p)
{
    if (p->k > MCUC_DSP_MAX_K) {
        return PLAN_REF;
    }
    const int32_t wide = p->weights16 ? PLAN_WIDE : 0;
    if (p->x_zp != 0 || !p->short_ok) {
        return wide + PLAN_DSP;
    }
    return wide + ((p->k & 15) == 0 && p->k <= MCUC_PRE_MAX_K ? PLAN_SHORT16 : PLAN_SHORT);
}

void mcuc_linear_planned_s8(const mcuc_linear_params_t *p, int32_t plan, const int8_t *x,
                            int8_t *y)
{
    switch (plan) {
    case PLAN_SHORT16:
        mcuc_lin_short16(p, x, y);
        break;
    case PLAN_SHORT:
        mcuc_lin_short(p, x, y);
        break;
    case PLAN_DSP:
        mcuc_lin_general(p, x, y);
        break;
    case PLAN_WIDE + PLAN_SHORT16:
        mcuc_lin_wide_short16(p, x, y);
        break;
    case PLAN_WIDE + PLAN_SHORT:
        mcuc_lin_wide_short(p, x, y);
        break;
    case PLAN_WIDE + PLAN_DSP:
        mcuc_lin_wide_general(p, x, y);
        break;
    default:
        linear_ref(p, x, y);
        break;
    }
}
/* The plans whose epilogue applies the table; any other runs, then the table's pass. */
void mcuc_linear_lut_planned_s8(const mcuc_linear_params_t *p, int32_t plan,
                                const int8_t *table, const int8_t *x, int8_t *y)
{
    if (plan == PLAN_SHORT16) {
        mcuc_lin_short16_lut(p, table + 128, x, y);
    } else if (plan == PLAN_WIDE + PLAN_SHORT16) {
        mcuc_lin_wide_short16_lut(p, table + 128, x, y);
    } else {
        const mcuc_lut_params_t lp = {p->rows * p->n, table};
        mcuc_linear_planned_s8(p, plan, x, y);
        mcuc_lut_s8(&lp, y, y);
    }
}
#else /* the portable build has one loop */

int32_t mcuc_linear_plan(const mcuc_linear_params_t *p)
{
    (void)p;
    return 0;
}

void mcuc_linear_planned_s8(const mcuc_linear_params_t *p, int32_t plan, const int8_t *x,
                            int8_t *y)
{
    (void)plan;
    linear_ref(p, x, y);
}

void mcuc_linear_lut_planned_s8(const mcuc_linear_params_t *p, int32_t plan,
                                const int8_t *table, const int8_t *x, int8_t *y)
{
    const mcuc_lut_params_t lp = {p->rows * p->n, table};
    (void)plan;
    linear_ref(p, x, y);
    mcuc_lut_s8(&lp, y, y);
}
#endif /* MCUC_ARM_DSP */

/* A call of one row takes linear_row1.c's loop where it can (a classifier head); the
 * planned calls (tokenwise_s8's, whose plans do not depend on rows) never do. */
void mcuc_linear_s8(const mcuc_linear_params_t *p, const int8_t *x, int8_t *y)
{
#ifdef MCUC_ARM_DSP
    if (p->rows == 1 && lin_row1_ok(p)) {
        mcuc_lin_row1(p, x, y);
        return;
    }
#endif
    mcuc_linear_planned_s8(p, mcuc_linear_plan(p), x, y);
}
