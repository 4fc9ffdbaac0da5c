/* A16 strided copy (compiler/mcuc/kernels/copy16.py): mcuc_copy_s8's index walk with
 * int16 loads and stores where x_wide / y_wide say so. */
#include "mcuc/kernels.h"
#include "mcuc/walk.h"
#include "mcuc/wide16.h"

void mcuc_copy16_a16(const mcuc_copy16_params_t *p, const int8_t *x, int8_t *y)
{
    const int32_t nd = p->ndim;
    for (int32_t k = 0; k < nd; ++k) {
        if (p->shape[k] <= 0) {
            return;
        }
    }
    const int32_t n_in = nd > 0 ? p->shape[nd - 1] : 1;
    const int32_t s_in = nd > 0 ? p->in_strides[nd - 1] : 0;
    const int32_t s_out = nd > 0 ? p->out_strides[nd - 1] : 0;
    int32_t idx[MCUC_MAX_DIMS] = {0};
    int32_t in = p->in_offset;
    int32_t out = p->out_offset;
    for (;;) {
        int32_t xi = in, yi = out;
        for (int32_t i = 0; i < n_in; ++i, xi += s_in, yi += s_out) {
            int64_t v = mcuc_ld_a16(x, xi, p->x_wide);
            if (p->requant) {
                v = (int64_t)p->y_zp + mcuc_requantize((int32_t)v - p->x_zp, p->mult, p->shift);
            }
            mcuc_st_a16(y, yi, p->y_wide, v);
        }
        if (!mcuc_walk_next(nd, p->shape, p->in_strides, p->out_strides, idx, &in, &out)) {
            return;
        }
    }
}
