/* Row softmax through an exp table. Every e_j is recomputed from the table in the output
 * pass instead of being stored, so no scratch buffer is needed and y may alias x: y[j] is
 * written only after x[j] has been read for the last time. */
#include "mcuc/kernels.h"

void mcuc_softmax_s8(const mcuc_softmax_params_t *p, const int8_t *x, int8_t *y)
{
    for (int32_t r = 0; r < p->rows; ++r) {
        const int8_t *xr = x + (int64_t)r * p->cols;
        int8_t *yr = y + (int64_t)r * p->cols;
        int32_t mx = -128;
        for (int32_t j = 0; j < p->cols; ++j) {
            mx = xr[j] > mx ? xr[j] : mx;
        }
        uint32_t sum = 0;
        for (int32_t j = 0; j < p->cols; ++j) {
            sum += p->exp_table[mx - xr[j]];
        }
        for (int32_t j = 0; j < p->cols; ++j) {
            const uint32_t e = p->exp_table[mx - xr[j]];
            const uint32_t q = (e * 256u + sum / 2u) / sum;
            yr[j] = (int8_t)(q >= 255u ? 127 : (int32_t)q - 128);
        }
    }
}
