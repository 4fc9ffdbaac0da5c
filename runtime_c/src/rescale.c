/* Elementwise change of (scale, zero point); safe in place (y[i] depends on x[i] only). */
#include "mcuc/kernels.h"

void mcuc_rescale_s8(const mcuc_rescale_params_t *p, const int8_t *x, int8_t *y)
{
    for (int32_t i = 0; i < p->size; ++i) {
        const int64_t v = (int64_t)p->y_zp + mcuc_requantize(x[i] - p->x_zp, p->mult, p->shift);
        y[i] = mcuc_clamp_s8(v);
    }
}
