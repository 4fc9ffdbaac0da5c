/* Fused attention, row by row: the scores of one query row live in `scratch` (kv_len
 * bytes), are turned into probabilities in place exactly as mcuc_softmax_s8 does, and
 * are consumed by the product with v before the next row. Operands are read through
 * strided views so head slices and transposes need no copies.
 *
 * This file holds the portable loop; with MCUC_ARM_DSP (attention_dsp.c, attention_pair.c)
 * it is the fallback of the ARMv7E-M variant. */
#include "attention_internal.h"

static inline int32_t load(const int8_t *x, int64_t i, const int8_t *table)
{
    return table ? table[x[i] + 128] : x[i];
}

/* Without a variant this loop is mcuc_attention_s8 itself (no wrapper in the portable
 * build); with MCUC_ARM_DSP it is the fallback of the fast path below (strided columns,
 * tables, s_shift outside [-22, -1]), built for size there (cold: 664 B against 1,420 B
 * inlined at -O2), which keeps the linked variant within the fit estimate's code. */
#ifdef MCUC_ARM_DSP
#ifdef __GNUC__
__attribute__((cold, noinline))
#endif
void mcuc_attention_ref(const mcuc_attention_params_t *p, const int8_t *q, const int8_t *k,
                   const int8_t *v, int8_t *y, int8_t *scratch)
#else
void mcuc_attention_s8(const mcuc_attention_params_t *p, const int8_t *q, const int8_t *k,
                       const int8_t *v, int8_t *y, int8_t *scratch)
#endif
{
    int8_t *s = scratch;
    for (int32_t b = 0; b < p->batch; ++b) {
        const int64_t qb = p->q_off + (int64_t)b * p->q_bs;
        const int64_t kb = p->k_off + (int64_t)b * p->k_bs;
        const int64_t vb = p->v_off + (int64_t)b * p->v_bs;
        const int64_t ob = p->o_off + (int64_t)b * p->o_bs;
        for (int32_t i = 0; i < p->q_len; ++i) {
            const int64_t qi = qb + (int64_t)i * p->q_rs;
            /* scores = q_i . k_j, requantized to int8 */
            int32_t mx = -128;
            for (int32_t j = 0; j < p->kv_len; ++j) {
                const int64_t kj = kb + (int64_t)j * p->k_rs;
                int64_t acc = 0;
                for (int32_t l = 0; l < p->d; ++l) {
                    acc += (int64_t)(load(q, qi + (int64_t)l * p->q_cs, p->q_table) - p->q_zp)
                           * (load(k, kj + (int64_t)l * p->k_cs, p->k_table) - p->k_zp);
                }
                const int64_t sv = (int64_t)p->s_zp
                                   + mcuc_requantize(mcuc_sat_s32(acc), p->s_mult, p->s_shift);
                const int32_t sc = mcuc_clamp_s8(sv);
                s[j] = (int8_t)sc;
                mx = sc > mx ? sc : mx;
            }
            /* softmax in place, as mcuc_softmax_s8 */
            uint32_t sum = 0;
            for (int32_t j = 0; j < p->kv_len; ++j) {
                sum += p->exp_table[mx - s[j]];
            }
            for (int32_t j = 0; j < p->kv_len; ++j) {
                const uint32_t e = p->exp_table[mx - s[j]];
                const uint32_t r = (e * 256u + sum / 2u) / sum;
                s[j] = (int8_t)(r >= 255u ? 127 : (int32_t)r - 128);
            }
            /* y_i = p . v */
            const int64_t oi = ob + (int64_t)i * p->o_rs;
            for (int32_t c = 0; c < p->dv; ++c) {
                const int64_t vc = vb + (int64_t)c * p->v_cs;
                int64_t acc = 0;
                for (int32_t j = 0; j < p->kv_len; ++j) {
                    acc += (int64_t)(s[j] + 128)
                           * (load(v, vc + (int64_t)j * p->v_rs, p->v_table) - p->v_zp);
                }
                const int64_t ov = (int64_t)p->o_zp
                                   + mcuc_requantize(mcuc_sat_s32(acc), p->o_mult, p->o_shift);
                y[oi + (int64_t)c * p->o_cs] = mcuc_clamp_s8(ov);
            }
        }
    }
}
