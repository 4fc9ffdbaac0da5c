/* Token-wise linear layer. int64 accumulation keeps the sum exact for any k and bias;
 * it is saturated to int32 before requantization (as the reference does). */
#include "mcuc/kernels.h"

void mcuc_linear_s8(const mcuc_linear_params_t *p, const int8_t *x, int8_t *y)
{
    for (int32_t r = 0; r < p->rows; ++r) {
        const int8_t *xr = x + (int64_t)r * p->k;
        int8_t *yr = y + (int64_t)r * p->n;
        for (int32_t j = 0; j < p->n; ++j) {
            const int8_t *wj = p->weights + (int64_t)j * p->k;
            int64_t acc = p->bias ? p->bias[j] : 0;
            for (int32_t i = 0; i < p->k; ++i) {
                acc += (int32_t)(xr[i] - p->x_zp) * (int32_t)wj[i];
            }
            const int32_t a = (int32_t)(acc > INT32_MAX ? INT32_MAX
                                        : (acc < INT32_MIN ? INT32_MIN : acc));
            const int64_t v = (int64_t)p->y_zp + mcuc_requantize(a, p->mult[j], p->shift[j]);
            yr[j] = (int8_t)(v < -128 ? -128 : (v > 127 ? 127 : v));
        }
    }
}
