/* A16 LayerNorm (compiler/mcuc/kernels/layernorm16.py): mcuc_layernorm_s8's formula on an
 * int16 input. With cols <= 512: |sum| <= 2^24, |d| <= 2^25, sum d^2 <= 2^59, and
 * |d gamma_q| < 2^56, so the int64 arithmetic does not overflow. */
#include "mcuc/kernels.h"
#include "mcuc/wide16.h"

void mcuc_layernorm16_a16(const mcuc_layernorm16_params_t *p, const int8_t *x, int8_t *y)
{
    const int32_t cols = p->cols;
    for (int32_t r = 0; r < p->rows; ++r) {
        const int8_t *xr = x + 2 * (int64_t)r * cols;
        int8_t *yr = y + (int64_t)r * cols;
        int64_t sum = 0;
        for (int32_t i = 0; i < cols; ++i) {
            sum += mcuc_ld_a16(xr, i, 1);
        }
        int64_t ssq = 0;
        for (int32_t i = 0; i < cols; ++i) {
            const int64_t d = (int64_t)cols * mcuc_ld_a16(xr, i, 1) - sum;
            ssq += d * d;
        }
        const int64_t var = ssq / cols + p->eps_q;
        int64_t sigma = (int64_t)mcuc_isqrt_u64((uint64_t)var);
        if (sigma == 0) {
            sigma = 1;
        }
        const int64_t den = sigma * 65536;
        const int64_t half = den / 2;
        for (int32_t i = 0; i < cols; ++i) {
            const int64_t d = (int64_t)cols * mcuc_ld_a16(xr, i, 1) - sum;
            const int64_t num = d * p->gamma_q[i] + (int64_t)p->beta_q[i] * sigma;
            const int64_t q = num >= 0 ? (num + half) / den : -((half - num) / den);
            yr[i] = mcuc_clamp_s8(p->y_zp + q);
        }
    }
}
