/* Integer LayerNorm. Two passes over each row (sum, then sum of squares of d_i) and an
 * output pass that recomputes d_i from x[i], so no scratch buffer is needed and y may
 * alias x. The square root is the exact bitwise floor sqrt (no libm). */
#include "mcuc/kernels.h"

static uint64_t isqrt_u64(uint64_t v)
{
    uint64_t res = 0;
    uint64_t bit = 1ULL << 62;
    while (bit > v) {
        bit >>= 2;
    }
    while (bit != 0) {
        if (v >= res + bit) {
            v -= res + bit;
            res = (res >> 1) + bit;
        } else {
            res >>= 1;
        }
        bit >>= 2;
    }
    return res;
}

void mcuc_layernorm_s8(const mcuc_layernorm_params_t *p, const int8_t *x, int8_t *y)
{
    const int32_t cols = p->cols;
    for (int32_t r = 0; r < p->rows; ++r) {
        const int8_t *xr = x + (int64_t)r * cols;
        int8_t *yr = y + (int64_t)r * cols;
        int32_t sum = 0;
        for (int32_t i = 0; i < cols; ++i) {
            sum += xr[i];
        }
        int64_t ssq = 0;
        for (int32_t i = 0; i < cols; ++i) {
            const int64_t d = (int64_t)cols * xr[i] - sum;
            ssq += d * d;
        }
        const int64_t var = ssq / cols + p->eps_q;
        int64_t sigma = (int64_t)isqrt_u64((uint64_t)var);
        if (sigma == 0) {
            sigma = 1;
        }
        const int64_t den = sigma * 65536; /* sigma << 16 */
        const int64_t half = den / 2;
        for (int32_t i = 0; i < cols; ++i) {
            const int64_t d = (int64_t)cols * xr[i] - sum;
            const int64_t num = d * p->gamma_q[i] + (int64_t)p->beta_q[i] * sigma;
            const int64_t q = num >= 0 ? (num + half) / den : -((half - num) / den);
            const int64_t v = p->y_zp + q;
            yr[i] = (int8_t)(v < -128 ? -128 : (v > 127 ? 127 : v));
        }
    }
}
