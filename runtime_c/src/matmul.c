/* Batched activation x activation product (attention). int64 accumulation, saturated to
 * int32 before requantization, as in the reference. */
#include "mcuc/kernels.h"

void mcuc_matmul_s8(const mcuc_matmul_params_t *p, const int8_t *a, const int8_t *b, int8_t *y)
{
    const int64_t a_sz = (int64_t)p->m * p->k, b_sz = (int64_t)p->k * p->n;
    const int64_t y_sz = (int64_t)p->m * p->n;
    for (int32_t t = 0; t < p->batch; ++t) {
        const int8_t *at = a + t * a_sz;
        const int8_t *bt = b + t * b_sz;
        int8_t *yt = y + t * y_sz;
        for (int32_t i = 0; i < p->m; ++i) {
            for (int32_t j = 0; j < p->n; ++j) {
                int64_t acc = 0;
                for (int32_t l = 0; l < p->k; ++l) {
                    acc += (int32_t)(at[(int64_t)i * p->k + l] - p->a_zp)
                           * (int32_t)(bt[(int64_t)l * p->n + j] - p->b_zp);
                }
                const int32_t s = mcuc_sat_s32(acc);
                const int64_t v = (int64_t)p->y_zp + mcuc_requantize(s, p->mult, p->shift);
                yt[(int64_t)i * p->n + j] = mcuc_clamp_s8(v);
            }
        }
    }
}
