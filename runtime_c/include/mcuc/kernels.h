/*
 * mcuc runtime kernels: int8 operators the generated model.c calls in sequence.
 *
 * Every kernel takes a const parameter struct (generated into flash with designated
 * initializers, so model.c reads like the network) and its activation pointers.
 * The numpy reference in compiler/mcuc/kernels/ is the specification: each kernel
 * here must equal it bit for bit. No malloc, no VLAs, no libm.
 *
 * Conventions
 *   - activations int8, per-tensor affine: real = scale * (q - zp)
 *   - weights int8 symmetric per output channel; bias int32 at scale s_x * s_w[c]
 *   - requantization: mcuc_requantize() in fixedpoint.h (gemmlowp double rounding)
 *   - results are clamped to [-128, 127]
 *   - zero points are in [-128, 127]; arithmetic in these comments is on exact integers
 *   - "acc" sums are exact (int64 in C) and saturated to int32 before requantize
 */
#ifndef MCUC_KERNELS_H
#define MCUC_KERNELS_H

#include <stdint.h>

#include "mcuc/fixedpoint.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MCUC_MAX_DIMS 6

/* 2-D convolution, CHW in and out (batch 1), weights [c_out][c_in][kh][kw].
 * acc = bias[o] + sum over in-bounds taps of (x - x_zp) * w; padded taps add nothing.
 * y = clamp(y_zp + requantize(acc, mult[o], shift[o])). */
typedef struct {
    int32_t c_in, h_in, w_in;
    int32_t c_out, h_out, w_out;
    int32_t kh, kw, stride_h, stride_w, pad_top, pad_left;
    int32_t x_zp, y_zp;
    const int8_t *weights;
    const int32_t *bias; /* may be NULL */
    const int32_t *mult;
    const int32_t *shift;
} mcuc_conv2d_params_t;
void mcuc_conv2d_s8(const mcuc_conv2d_params_t *p, const int8_t *x, int8_t *y);

/* Token-wise linear layer: x [rows][k], weights [n][k], y [rows][n].
 * acc = bias[j] + sum_i (x[r][i] - x_zp) * w[j][i];
 * y[r][j] = clamp(y_zp + requantize(acc, mult[j], shift[j])). y must not alias x. */
typedef struct {
    int32_t rows, k, n;
    int32_t x_zp, y_zp;
    const int8_t *weights;
    const int32_t *bias; /* may be NULL */
    const int32_t *mult;
    const int32_t *shift;
} mcuc_linear_params_t;
void mcuc_linear_s8(const mcuc_linear_params_t *p, const int8_t *x, int8_t *y);

/* Batched product of two activations: a [batch][m][k], b [batch][k][n], y [batch][m][n].
 * acc = sum_i (a - a_zp) * (b - b_zp); y = clamp(y_zp + requantize(acc, mult, shift)). */
typedef struct {
    int32_t batch, m, k, n;
    int32_t a_zp, b_zp, y_zp;
    int32_t mult, shift;
} mcuc_matmul_params_t;
void mcuc_matmul_s8(const mcuc_matmul_params_t *p, const int8_t *a, const int8_t *b, int8_t *y);

/* Elementwise add, b broadcast as b[i % b_size] (TFLM-style, left shift 20):
 *   av = requantize((a[i] - a_zp) << 20, a_mult, a_shift)
 *   bv = requantize((b[i % b_size] - b_zp) << 20, b_mult, b_shift)
 *   y[i] = clamp(y_zp + requantize(sat_int32(av + bv), y_mult, y_shift))
 * y may alias a (in place). */
typedef struct {
    int32_t size, b_size;
    int32_t a_zp, b_zp, y_zp;
    int32_t a_mult, a_shift, b_mult, b_shift, y_mult, y_shift;
} mcuc_add_params_t;
void mcuc_add_s8(const mcuc_add_params_t *p, const int8_t *a, const int8_t *b, int8_t *y);

/* y[i] = clamp(y_zp + requantize(x[i] - x_zp, mult, shift)); y may alias x. */
typedef struct {
    int32_t size;
    int32_t x_zp, y_zp;
    int32_t mult, shift;
} mcuc_rescale_params_t;
void mcuc_rescale_s8(const mcuc_rescale_params_t *p, const int8_t *x, int8_t *y);

/* y[i] = table[x[i] + 128]: any int8 -> int8 elementwise function; y may alias x. */
typedef struct {
    int32_t size;
    const int8_t *table; /* 256 entries */
} mcuc_lut_params_t;
void mcuc_lut_s8(const mcuc_lut_params_t *p, const int8_t *x, int8_t *y);

/* Softmax over each row of x [rows][cols]; output scale 1/256, zero point -128.
 * mx = max_j x[j]; e_j = exp_table[mx - x[j]] (uint32, <= 2^20);
 * sum = sum_j e_j (uint32); y[j] = min(127, -128 + (e_j * 256 + sum / 2) / sum)
 * (unsigned integer division). y may alias x.
 * Requires exp_table[0] > 0 and the row sum < 2^32 (cols <= 4095 for a 2^20 table). */
typedef struct {
    int32_t rows, cols;
    const uint32_t *exp_table; /* 256 entries, index = mx - x */
} mcuc_softmax_params_t;
void mcuc_softmax_s8(const mcuc_softmax_params_t *p, const int8_t *x, int8_t *y);

/* LayerNorm over each row of x [rows][cols], integer only:
 *   sum = sum_i x[i] (int32); d_i = cols * x[i] - sum (int32)
 *   var = (sum_i d_i^2) / cols + eps_q        (int64, truncating division)
 *   sigma = floor(sqrt(var)) (exact integer sqrt); sigma = 1 if it is 0
 *   y[i] = clamp(y_zp + round_div(d_i * gamma_q[i] + beta_q[i] * sigma, sigma << 16))
 * round_div rounds half away from zero (int64). gamma_q = round(gamma / s_y * 2^16),
 * beta_q = round(beta / s_y * 2^16), eps_q = round(eps * cols^2 / s_x^2).
 * Requires 0 <= eps_q < 2^61 and cols <= 32767 (no int64 overflow). y may alias x. */
typedef struct {
    int32_t rows, cols;
    int32_t y_zp;
    int64_t eps_q;
    const int32_t *gamma_q;
    const int32_t *beta_q;
} mcuc_layernorm_params_t;
void mcuc_layernorm_s8(const mcuc_layernorm_params_t *p, const int8_t *x, int8_t *y);

/* Strided copy over an ndim-dimensional index space `shape` (element units):
 *   y[out_offset + sum_k i_k * out_strides[k]] = f(x[in_offset + sum_k i_k * in_strides[k]])
 * f is the identity when requant == 0, else clamp(y_zp + requantize(v - x_zp, mult, shift)).
 * Covers transpose, slice, gather of one index, split and each part of a concat.
 * y must not alias x. */
typedef struct {
    int32_t ndim;
    int32_t shape[MCUC_MAX_DIMS];
    int32_t in_strides[MCUC_MAX_DIMS];
    int32_t out_strides[MCUC_MAX_DIMS];
    int32_t in_offset, out_offset;
    int32_t requant;
    int32_t x_zp, y_zp, mult, shift;
} mcuc_copy_params_t;
void mcuc_copy_s8(const mcuc_copy_params_t *p, const int8_t *x, int8_t *y);

/* Mean over the middle axis of x [outer][reduce][inner] -> y [outer][inner]:
 * acc = sum_r (x[o][r][i] - x_zp); y = clamp(y_zp + requantize(acc, mult, shift)),
 * with mult/shift encoding s_x / (reduce * s_y). y must not alias x. */
typedef struct {
    int32_t outer, reduce, inner;
    int32_t x_zp, y_zp;
    int32_t mult, shift;
} mcuc_mean_params_t;
void mcuc_mean_s8(const mcuc_mean_params_t *p, const int8_t *x, int8_t *y);

#ifdef __cplusplus
}
#endif

#endif /* MCUC_KERNELS_H */
