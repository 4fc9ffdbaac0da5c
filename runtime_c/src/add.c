/* TFLM-style add. Shifts by 20 are written as multiplications (left-shifting a negative
 * int is undefined in C99); av + bv is summed in int64 and saturated to int32. */
#include "mcuc/kernels.h"

void mcuc_add_s8(const mcuc_add_params_t *p, const int8_t *a, const int8_t *b, int8_t *y)
{
    int32_t j = 0; /* i % b_size without a division per element */
    for (int32_t i = 0; i < p->size; ++i) {
        const int32_t av = mcuc_requantize((a[i] - p->a_zp) * (1 << 20), p->a_mult, p->a_shift);
        const int32_t bv = mcuc_requantize((b[j] - p->b_zp) * (1 << 20), p->b_mult, p->b_shift);
        if (++j == p->b_size) {
            j = 0;
        }
        const int64_t sum = (int64_t)av + bv;
        const int32_t s = (int32_t)(sum > INT32_MAX ? INT32_MAX
                                    : (sum < INT32_MIN ? INT32_MIN : sum));
        const int64_t v = (int64_t)p->y_zp + mcuc_requantize(s, p->y_mult, p->y_shift);
        y[i] = (int8_t)(v < -128 ? -128 : (v > 127 ? 127 : v));
    }
}
