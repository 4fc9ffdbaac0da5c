/* Strided copy: an index counter over the outer ndim - 1 dims and a plain loop over the
 * innermost one, so transposes and slices cost one add per element. */
#include "mcuc/kernels.h"
#include "mcuc/walk.h"

void mcuc_copy_s8(const mcuc_copy_params_t *p, const int8_t *x, int8_t *y)
{
    const int32_t nd = p->ndim;
    for (int32_t k = 0; k < nd; ++k) {
        if (p->shape[k] <= 0) {
            return;
        }
    }
    /* ndim 0 is a single element: one innermost run of length 1. */
    const int32_t n_in = nd > 0 ? p->shape[nd - 1] : 1;
    const int32_t s_in = nd > 0 ? p->in_strides[nd - 1] : 0;
    const int32_t s_out = nd > 0 ? p->out_strides[nd - 1] : 0;
    int32_t idx[MCUC_MAX_DIMS] = {0};
    int32_t in = p->in_offset;
    int32_t out = p->out_offset;
    for (;;) {
        int32_t xi = in, yi = out;
        if (p->requant) {
            for (int32_t i = 0; i < n_in; ++i, xi += s_in, yi += s_out) {
                const int64_t v = (int64_t)p->y_zp
                                  + mcuc_requantize(x[xi] - p->x_zp, p->mult, p->shift);
                y[yi] = mcuc_clamp_s8(v);
            }
        } else {
            for (int32_t i = 0; i < n_in; ++i, xi += s_in, yi += s_out) {
                y[yi] = x[xi];
            }
        }
        if (!mcuc_walk_next(nd, p->shape, p->in_strides, p->out_strides, idx, &in, &out)) {
            return;
        }
    }
}
