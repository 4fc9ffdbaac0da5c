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
 * y[r][j] = clamp(y_zp + requantize(acc, mult[j], shift[j])). y must not alias x.
 * The weights come in one of two layouts (linear.c): packed int8 (weights), or the same
 * widened to int16 for speed (weights16, 8-byte aligned); the other pointer is NULL.
 * bias, mult and shift are interleaved in rq, six words per pair of channels (j, j + 1),
 * j even: bias_j, bias_j+1, m2_j, m2_j+1, t_j, t_j+1 (kernels/linear.py requant_words; no
 * bias is a bias of 0; an odd n's last pair is padded), where m2 = 2 mult mod 2^32 and
 * t = ~shift (as int8) in bits 0..7 with mult's sign bit in bit 31: the forms linear.c's
 * short epilogue reads. short_ok is 1 when that epilogue serves every output (every
 * shift in [-31, -1], every mult in [2^30, 2^31), 255 * 128 * k + max |bias| < 2^30),
 * else 0: computed by the compiler (linear.py short_epilogue_ok), trusted by the kernel. */
typedef struct {
    int32_t rows, k, n;
    int32_t x_zp, y_zp;
    const int8_t *weights;
    const int16_t *weights16;
    const int32_t *rq;
    int32_t short_ok;
} mcuc_linear_params_t;
void mcuc_linear_s8(const mcuc_linear_params_t *p, const int8_t *x, int8_t *y);
/* mcuc_linear_s8 in two parts, for callers that run the same layer row by row
 * (tokenwise_s8 with tiles of one row): the plan depends on k, x_zp, the weight layout
 * and short_ok only (not on rows or the data), so it is made once per layer;
 * mcuc_linear_planned_s8 with that plan gives mcuc_linear_s8's bytes. */
int32_t mcuc_linear_plan(const mcuc_linear_params_t *p);
void mcuc_linear_planned_s8(const mcuc_linear_params_t *p, int32_t plan, const int8_t *x,
                            int8_t *y);
/* mcuc_linear_planned_s8, then y[i] = table[y[i] + 128] over its rows * n outputs (as
 * mcuc_lut_s8 would, bytes for bytes): the plans for k % 16 == 0 with the short epilogue
 * apply the table in their epilogue instead of a second pass (tokenwise_s8's linear ->
 * table stages, e.g. fc1 -> GELU). table: 256 entries, mcuc_lut_params_t's. */
void mcuc_linear_lut_planned_s8(const mcuc_linear_params_t *p, int32_t plan,
                                const int8_t *table, const int8_t *x, int8_t *y);

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
 * y may alias a (in place). a_tab, b_tab (NULL, or 256 entries each, index v + 128): av
 * and bv for every byte v, as the compiler computes them (kernels/add.py tables), which
 * the MCUC_ARM_DSP variant reads instead of computing them; with one table, the other
 * input's term is (v - zp) 2^19 and the table holds its own term less that zp 2^19. The
 * portable code ignores them. */
typedef struct {
    int32_t size, b_size;
    int32_t a_zp, b_zp, y_zp;
    int32_t a_mult, a_shift, b_mult, b_shift, y_mult, y_shift;
    const int32_t *a_tab, *b_tab;
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
 * Requires 0 <= eps_q < 2^61 and cols <= 32767 (no int64 overflow). y may alias x.
 * fast (may be NULL; only the MCUC_ARM_DSP variant reads it) is gamma_q and beta_q as
 * that variant's loop wants them, from the compiler (kernels/layernorm.py fast_table):
 * 2 cols int32, per element g = 64 gamma_q[i], c = beta_q[i] + 2^15 + 2^16 (y_zp + 128),
 * in groups of four elements ordered 0, 2, 1, 3 (the rest in order). It must be NULL
 * unless |gamma_q| < 2^25, |beta_q| <= 2^30 and |y_zp| <= 4096. */
typedef struct {
    int32_t rows, cols;
    int32_t y_zp;
    int64_t eps_q;
    const int32_t *gamma_q;
    const int32_t *beta_q;
    const int32_t *fast;
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

/* A16 kernels (int16 activations: compiler/mcuc/quant/wide.py). Every pointer is into
 * the byte arena; an operand whose *_wide flag is 1 is int16, little-endian, 2 bytes per
 * element (read and written with memcpy: no alignment or aliasing assumption). */

/* add with any of a, b, y int16; the add scheme with a left shift of 15:
 *   av = requantize((a[i] - a_zp) << 15, a_mult, a_shift)
 *   bv = requantize((b[i % b_size] - b_zp) << 15, b_mult, b_shift)
 *   y[i] = clamp16or8(y_zp + requantize(sat_int32(av + bv), y_mult, y_shift))
 * Requires |a[i] - a_zp|, |b[j] - b_zp| <= 65535. y may alias a (same start). */
typedef struct {
    int32_t size, b_size;
    int32_t a_wide, b_wide, y_wide;
    int32_t a_zp, b_zp, y_zp;
    int32_t a_mult, a_shift, b_mult, b_shift, y_mult, y_shift;
} mcuc_add16_params_t;
void mcuc_add16_a16(const mcuc_add16_params_t *p, const int8_t *a, const int8_t *b, int8_t *y);

/* mcuc_copy_s8 where x (x_wide) and/or y (y_wide) are int16; the requantized value is
 * clamped to y's type. y must not alias x. */
typedef struct {
    int32_t ndim;
    int32_t shape[MCUC_MAX_DIMS];
    int32_t in_strides[MCUC_MAX_DIMS];
    int32_t out_strides[MCUC_MAX_DIMS];
    int32_t in_offset, out_offset;
    int32_t requant;
    int32_t x_zp, y_zp, mult, shift;
    int32_t x_wide, y_wide;
} mcuc_copy16_params_t;
void mcuc_copy16_a16(const mcuc_copy16_params_t *p, const int8_t *x, int8_t *y);

/* mcuc_layernorm_s8's formula on an int16 x, int8 y (int64 throughout).
 * Requires cols <= 512 and 0 <= eps_q < 2^61. y must not alias x. */
typedef struct {
    int32_t rows, cols;
    int32_t y_zp;
    int64_t eps_q;
    const int32_t *gamma_q;
    const int32_t *beta_q;
} mcuc_layernorm16_params_t;
void mcuc_layernorm16_a16(const mcuc_layernorm16_params_t *p, const int8_t *x, int8_t *y);

/* Mean over the middle axis of x [outer][reduce][inner] -> y [outer][inner]:
 * acc = sum_r (x[o][r][i] - x_zp); y = clamp(y_zp + requantize(acc, mult, shift)),
 * with mult/shift encoding s_x / (reduce * s_y). y must not alias x. */
typedef struct {
    int32_t outer, reduce, inner;
    int32_t x_zp, y_zp;
    int32_t mult, shift;
} mcuc_mean_params_t;
void mcuc_mean_s8(const mcuc_mean_params_t *p, const int8_t *x, int8_t *y);

/* Fused attention: matmul -> softmax_s8 -> matmul, one row of scores at a time.
 * Operand X[b][r][c] is read at X[X_off + b * X_bs + r * X_rs + c * X_cs] (element
 * units) for X in q [batch][q_len][d], k [batch][kv_len][d], v [batch][kv_len][dv];
 * y [batch][q_len][dv] is written the same way through (o_off, o_bs, o_rs, o_cs).
 * If X_table is not NULL an operand value x is replaced by X_table[x + 128] on read.
 * For each b and query row i, into the kv_len bytes of scratch:
 *   s[j] = clamp(s_zp + requantize(sat32(sum_d (q[b][i][d] - q_zp) * (k[b][j][d] - k_zp)),
 *                                  s_mult, s_shift))
 *   p = mcuc_softmax_s8's row computation on s (same exp_table, same integer math)
 *   y[b][i][c] = clamp(o_zp + requantize(sat32(sum_j (p[j] + 128) * (v[b][j][c] - v_zp)),
 *                                        o_mult, o_shift))
 * i.e. bit-identical to the unfused chain; the score matrix never exists.
 * y may lie over q element for element (the y view equal to the q view, d == dv): each
 * query row is read in full before its output row is written (schedule/queries.py).
 * Otherwise y must not alias q, k, v or the scratch; the y view must not write one element
 * twice. */
typedef struct {
    int32_t batch, q_len, kv_len, d, dv;
    int32_t q_off, q_bs, q_rs, q_cs;
    int32_t k_off, k_bs, k_rs, k_cs;
    int32_t v_off, v_bs, v_rs, v_cs;
    int32_t o_off, o_bs, o_rs, o_cs;
    int32_t q_zp, k_zp, s_zp, s_mult, s_shift;
    int32_t v_zp, o_zp, o_mult, o_shift;
    const uint32_t *exp_table; /* 256 entries, index = mx - s */
    const int8_t *q_table;     /* 256 entries or NULL */
    const int8_t *k_table;     /* 256 entries or NULL */
    const int8_t *v_table;     /* 256 entries or NULL */
} mcuc_attention_params_t;
void mcuc_attention_s8(const mcuc_attention_params_t *p, const int8_t *q, const int8_t *k,
                       const int8_t *v, int8_t *y, int8_t *scratch);

/* Token-wise fused block over tiles of `tile` rows (see compiler/mcuc/kernels/tokenwise.py):
 *   [layernorm_s8 ->] linear_s8 (k -> h) [-> lut_s8] [-> linear_s8 (h -> n)] [-> add_s8 with r]
 * Each stage is exactly the unfused kernel with its own params struct (ln, l1, lut, l2,
 * add with a = residual r, b = branch), whose row counts (rows, size) the kernel sets per
 * call; the structs of absent stages are ignored (zero).
 * x: rows of k, row i at x + i * x_rs (x_rs >= k; rows lie apart when attention wrote
 * them over its queries); r [rows][n] (pass x when has_res == 0), y [rows][n].
 * y may alias x exactly (same start, n <= k, x_rs == k; or, for a chain of linear_s8
 * alone, n <= k <= x_rs: each tile is staged in scratch) or r exactly; y_free must then be 0.
 * Where each stage writes is the compiler's (tokenwise.layout()): ln_to, l1_to, l2_to are
 * MCUC_TW_Y (the tile's output rows), MCUC_TW_A (scratch) or MCUC_TW_B (scratch +
 * b_offset); scratch holds tile * (a_w + b_w) bytes (at least 1). With x_free the
 * kernel may write over x's rows once it has read them (tokenwise.c, res_pairs_over_x). */
enum { MCUC_TW_Y = 0, MCUC_TW_A = 1, MCUC_TW_B = 2 };
typedef struct {
    int32_t rows, tile, k, h, n, x_rs;
    int32_t has_ln, has_lut, has_l2, has_res, y_free;
    int32_t x_free; /* x's bytes are dead after this call and overlap neither y nor r */
    int32_t ln_to, l1_to, l2_to, b_offset;
    int32_t x_wide; /* x is int16 (2 bytes per element, x_rs in elements): needs has_ln */
    mcuc_layernorm_params_t ln;
    mcuc_linear_params_t l1;
    mcuc_lut_params_t lut;
    mcuc_linear_params_t l2;
    mcuc_add_params_t add;
} mcuc_tokenwise_params_t;
void mcuc_tokenwise_s8(const mcuc_tokenwise_params_t *p, const int8_t *x, const int8_t *r,
                       int8_t *y, int8_t *scratch);

/* Patch embedding: conv2d_s8 with kernel == stride and no padding, then the transpose to
 * tokens, in one pass: x CHW [c_in][h_in][w_in], weights [d][c_in][ph][pw], y [hp * wp][d]
 *   acc = bias[o] + sum (x - x_zp) * w;  y[t][o] = clamp(y_zp + requantize(acc, mult[o], shift[o]))
 * Patches are computed in token order, at most two at a time (read before written), so y may
 * overlap x when every byte of y's band j lies below x's band j of channel 0 (patch.py). */
typedef struct {
    int32_t c_in, h_in, w_in;
    int32_t d, ph, pw, hp, wp;
    int32_t x_zp, y_zp;
    const int8_t *weights;    /* NULL when weights16 holds them */
    const int16_t *weights16; /* NULL, or the weights as int16 in channel pairs (patch_embed.c) */
    const int32_t *bias;      /* may be NULL */
    const int32_t *mult;
    const int32_t *shift;
    const int32_t *epi; /* NULL, or with weights16 the fast epilogue's words (patch_embed.c) */
} mcuc_patch_embed_params_t;
void mcuc_patch_embed_s8(const mcuc_patch_embed_params_t *p, const int8_t *x, int8_t *y);

#ifdef __cplusplus
}
#endif

#endif /* MCUC_KERNELS_H */
