/* Patch embedding (conv with kernel == stride, no padding) writing tokens [hp * wp][d]
 * directly, one band (row of patches) at a time: band j reads only image rows
 * [j * ph, (j + 1) * ph) of each channel and writes only tokens [j * wp, (j + 1) * wp), so
 * the planner may place y over image rows of bands already done (schedule/patch.py).
 * The accumulator is int64 (exact) and saturated to int32, as conv2d_s8 does. */
#include "mcuc/kernels.h"

void mcuc_patch_embed_s8(const mcuc_patch_embed_params_t *p, const int8_t *x, int8_t *y)
{
    const int32_t taps = p->c_in * p->ph * p->pw;
    const int64_t plane = (int64_t)p->h_in * p->w_in;
    for (int32_t py = 0; py < p->hp; ++py) {
        for (int32_t px = 0; px < p->wp; ++px) {
            int8_t *yt = y + ((int64_t)py * p->wp + px) * p->d;
            for (int32_t o = 0; o < p->d; ++o) {
                const int8_t *wo = p->weights + (int64_t)o * taps;
                int64_t acc = p->bias ? p->bias[o] : 0;
                for (int32_t c = 0; c < p->c_in; ++c) {
                    const int8_t *xc = x + c * plane + ((int64_t)py * p->ph) * p->w_in
                                       + (int64_t)px * p->pw;
                    const int8_t *wc = wo + (int64_t)c * p->ph * p->pw;
                    for (int32_t ky = 0; ky < p->ph; ++ky) {
                        for (int32_t kx = 0; kx < p->pw; ++kx) {
                            acc += (int32_t)(xc[(int64_t)ky * p->w_in + kx] - p->x_zp)
                                   * (int32_t)wc[ky * p->pw + kx];
                        }
                    }
                }
                const int32_t a = (int32_t)(acc > INT32_MAX ? INT32_MAX
                                            : (acc < INT32_MIN ? INT32_MIN : acc));
                const int64_t v = (int64_t)p->y_zp + mcuc_requantize(a, p->mult[o], p->shift[o]);
                yt[o] = (int8_t)(v < -128 ? -128 : (v > 127 ? 127 : v));
            }
        }
    }
}
