/* Direct convolution: taps are few in a ViT (the patch embedding), so clarity wins.
 * The accumulator is int64 (exact) and saturated to int32 before requantization. */
#include "mcuc/kernels.h"

void mcuc_conv2d_s8(const mcuc_conv2d_params_t *p, const int8_t *x, int8_t *y)
{
    const int32_t taps = p->c_in * p->kh * p->kw;
    for (int32_t o = 0; o < p->c_out; ++o) {
        const int8_t *wo = p->weights + (int64_t)o * taps;
        const int64_t b = p->bias ? p->bias[o] : 0;
        for (int32_t oy = 0; oy < p->h_out; ++oy) {
            for (int32_t ox = 0; ox < p->w_out; ++ox) {
                int64_t acc = b;
                const int32_t y0 = oy * p->stride_h - p->pad_top;
                const int32_t x0 = ox * p->stride_w - p->pad_left;
                for (int32_t c = 0; c < p->c_in; ++c) {
                    const int8_t *xc = x + (int64_t)c * p->h_in * p->w_in;
                    const int8_t *wc = wo + (int64_t)c * p->kh * p->kw;
                    for (int32_t ky = 0; ky < p->kh; ++ky) {
                        const int32_t iy = y0 + ky;
                        if (iy < 0 || iy >= p->h_in) {
                            continue;
                        }
                        for (int32_t kx = 0; kx < p->kw; ++kx) {
                            const int32_t ix = x0 + kx;
                            if (ix < 0 || ix >= p->w_in) {
                                continue;
                            }
                            acc += (int32_t)(xc[iy * p->w_in + ix] - p->x_zp)
                                   * (int32_t)wc[ky * p->kw + kx];
                        }
                    }
                }
                const int32_t a = mcuc_sat_s32(acc);
                const int64_t v = (int64_t)p->y_zp + mcuc_requantize(a, p->mult[o], p->shift[o]);
                y[((int64_t)o * p->h_out + oy) * p->w_out + ox] =
                    mcuc_clamp_s8(v);
            }
        }
    }
}
