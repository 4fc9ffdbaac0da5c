/* Token-wise fused block: each tile of rows goes through the unfused kernels (so the
 * integer math is theirs, bit for bit) with intermediates in one tile of scratch.
 * The stage placement rule is tokenwise.layout() in the compiler; keep them in step. */
#include <string.h>

#include "mcuc/kernels.h"

/* Row pairs for a LayerNorm -> linear [-> table] chain whose tile is one row (the
 * planned scratch holds one normalised row, e.g. before qkv at the arena's peak): the
 * pair's two normalised rows are kept in the output's last row, which no pair before
 * the last writes (rows r0 and r0 + 1 < rows - 1), so the linear runs on row pairs, its
 * faster loop, without scratch beyond the plan. Needs y free (it overlaps neither x nor
 * r), contiguous x rows and n >= 2 k. Returns the first row the tile loop still does. */
static int32_t ln_pairs_in_y(const mcuc_tokenwise_params_t *p, int32_t tile, int32_t l1_plan,
                             const int8_t *x, int8_t *y)
{
    const int32_t k = p->k, n = p->n;
    if (!p->has_ln || p->has_l2 || p->has_res || !p->y_free || tile > 1 ||
        p->x_rs != k || n < 2 * k) {
        return 0;
    }
    int8_t *const pair = y + (int64_t)(p->rows - 1) * n;
    const mcuc_layernorm_params_t lp = {2, k, p->ln_y_zp, p->ln_eps_q, p->ln_gamma_q,
                                        p->ln_beta_q};
    const mcuc_linear_params_t l1 = {2, k, n, p->l1_x_zp, p->l1_y_zp, p->l1_weights,
                                     p->l1_weights16, p->l1_bias, p->l1_mult, p->l1_shift};
    int32_t r0 = 0;
    for (; r0 + 2 < p->rows; r0 += 2) {
        int8_t *yt = y + (int64_t)r0 * n;
        mcuc_layernorm_s8(&lp, x + (int64_t)r0 * k, pair);
        mcuc_linear_planned_s8(&l1, l1_plan, pair, yt);
        if (p->has_lut) {
            const mcuc_lut_params_t up = {2 * n, p->lut_table};
            mcuc_lut_s8(&up, yt, yt);
        }
    }
    return r0;
}

void mcuc_tokenwise_s8(const mcuc_tokenwise_params_t *p, const int8_t *x, const int8_t *r,
                       int8_t *y, int8_t *scratch)
{
    const int32_t k = p->k, h = p->h, n = p->n, tile = p->tile;
    const int ln_in_y = p->has_l2 && p->y_free && k <= n;
    const int l1_in_b = p->has_l2 || (!p->y_free && p->has_ln);
    const int final_in_a = !p->y_free && (p->has_l2 || !l1_in_b);
    int32_t a_w = (p->has_ln && !ln_in_y) ? k : 0;
    if (final_in_a && n > a_w) {
        a_w = n;
    }
    int8_t *A = scratch;
    int8_t *B = scratch + (int64_t)tile * a_w;
    /* The linear stages' plans, once for all tiles (rows do not enter a plan). */
    const mcuc_linear_params_t l1_all = {p->rows, k, h, p->l1_x_zp, p->l1_y_zp, p->l1_weights,
                                         p->l1_weights16, p->l1_bias, p->l1_mult, p->l1_shift};
    const int32_t l1_plan = mcuc_linear_plan(&l1_all);
    int32_t l2_plan = 0;
    if (p->has_l2) {
        const mcuc_linear_params_t l2_all = {p->rows, h, n, p->l2_x_zp, p->l2_y_zp,
                                             p->l2_weights, p->l2_weights16, p->l2_bias,
                                             p->l2_mult, p->l2_shift};
        l2_plan = mcuc_linear_plan(&l2_all);
    }

    int32_t r0 = ln_pairs_in_y(p, tile, l1_plan, x, y);
    for (; r0 < p->rows; r0 += tile) {
        const int32_t t = p->rows - r0 < tile ? p->rows - r0 : tile;
        const int8_t *xt = x + (int64_t)r0 * p->x_rs;
        const int8_t *rt = r + (int64_t)r0 * n;
        int8_t *yt = y + (int64_t)r0 * n;
        /* The first stage reads x: all t rows in one call when they are contiguous,
         * else one call per row (the kernels are row-wise, so results are the same). */
        const int32_t calls = p->x_rs == k ? 1 : t;
        const int32_t per_call = p->x_rs == k ? t : 1;

        const int8_t *in1 = xt;
        int32_t in1_rs = p->x_rs;
        if (p->has_ln) {
            const mcuc_layernorm_params_t lp = {per_call, k, p->ln_y_zp, p->ln_eps_q,
                                                p->ln_gamma_q, p->ln_beta_q};
            int8_t *dst = ln_in_y ? yt : A;
            for (int32_t c = 0; c < calls; ++c) {
                mcuc_layernorm_s8(&lp, xt + (int64_t)c * p->x_rs, dst + (int64_t)c * k);
            }
            in1 = dst;
            in1_rs = k;
        }
        int8_t *f = l1_in_b ? B : (p->y_free ? yt : A);
        const int32_t l1_calls = in1_rs == k ? 1 : t;
        const mcuc_linear_params_t l1 = {in1_rs == k ? t : 1, k, h, p->l1_x_zp, p->l1_y_zp,
                                         p->l1_weights, p->l1_weights16, p->l1_bias, p->l1_mult,
                                         p->l1_shift};
        for (int32_t c = 0; c < l1_calls; ++c) {
            mcuc_linear_planned_s8(&l1, l1_plan, in1 + (int64_t)c * in1_rs,
                                   f + (int64_t)c * h);
        }
        if (p->has_lut) {
            const mcuc_lut_params_t up = {t * h, p->lut_table};
            mcuc_lut_s8(&up, f, f);
        }
        if (p->has_l2) {
            int8_t *dst = p->y_free ? yt : A;
            const mcuc_linear_params_t l2 = {t, h, n, p->l2_x_zp, p->l2_y_zp, p->l2_weights,
                                             p->l2_weights16, p->l2_bias, p->l2_mult,
                                             p->l2_shift};
            mcuc_linear_planned_s8(&l2, l2_plan, f, dst);
            f = dst;
        }
        if (p->has_res) {
            /* a + b is summed exactly before rounding, so the operands may swap: the one
             * y aliases (if any) goes first, as add_s8 allows. */
            const mcuc_add_params_t res = {t * n, t * n, p->add_a_zp, p->add_b_zp, p->add_y_zp,
                                           p->add_a_mult, p->add_a_shift, p->add_b_mult,
                                           p->add_b_shift, p->add_y_mult, p->add_y_shift};
            if (f == yt) {
                const mcuc_add_params_t sw = {t * n, t * n, p->add_b_zp, p->add_a_zp,
                                              p->add_y_zp, p->add_b_mult, p->add_b_shift,
                                              p->add_a_mult, p->add_a_shift, p->add_y_mult,
                                              p->add_y_shift};
                mcuc_add_s8(&sw, f, rt, yt);
            } else {
                mcuc_add_s8(&res, rt, f, yt);
            }
        } else if (f != yt) {
            memcpy(yt, f, (size_t)t * (size_t)n);
        }
    }
}
