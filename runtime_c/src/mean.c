/* Mean over the middle axis; the exact sum (int64, saturated to int32) is requantized
 * once with a multiplier that already holds 1/reduce. */
#include "mcuc/kernels.h"

void mcuc_mean_s8(const mcuc_mean_params_t *p, const int8_t *x, int8_t *y)
{
    const int64_t plane = (int64_t)p->reduce * p->inner;
    for (int32_t o = 0; o < p->outer; ++o) {
        for (int32_t i = 0; i < p->inner; ++i) {
            const int8_t *xi = x + o * plane + i;
            int64_t acc = 0;
            for (int32_t r = 0; r < p->reduce; ++r) {
                acc += xi[(int64_t)r * p->inner] - p->x_zp;
            }
            const int32_t s = mcuc_sat_s32(acc);
            const int64_t v = (int64_t)p->y_zp + mcuc_requantize(s, p->mult, p->shift);
            y[(int64_t)o * p->inner + i] = mcuc_clamp_s8(v);
        }
    }
}
