/* Token-wise fused block: each tile of rows goes through the unfused kernels (so the
 * integer math is theirs, bit for bit) with intermediates in one tile of scratch. Each
 * stage's params are its own kernel's struct, nested here; only the row counts change per
 * call. Where a stage writes is computed by the compiler (ln_to, l1_to, l2_to, b_offset:
 * tokenwise.layout()), never here. */
#include <string.h>

#include "mcuc/kernels.h"

/* The first linear stage, with the table when there is one (in its epilogue where the
 * plan allows: mcuc_linear_lut_planned_s8). */
static void linear_stage(const mcuc_tokenwise_params_t *p, const mcuc_linear_params_t *l1,
                         int32_t l1_plan, const int8_t *x, int8_t *y)
{
    if (p->has_lut) {
        mcuc_linear_lut_planned_s8(l1, l1_plan, p->lut.table, x, y);
    } else {
        mcuc_linear_planned_s8(l1, l1_plan, x, y);
    }
}

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
    if (!p->has_ln || p->has_l2 || p->has_res || !p->y_free || tile > 1 || p->x_wide ||
        p->x_rs != k || n < 2 * k) {
        return 0;
    }
    int8_t *const pair = y + (int64_t)(p->rows - 1) * n;
    mcuc_layernorm_params_t lp = p->ln;
    mcuc_linear_params_t l1 = p->l1;
    lp.rows = 2;
    l1.rows = 2;
    int32_t r0 = 0;
    for (; r0 + 2 < p->rows; r0 += 2) {
        int8_t *yt = y + (int64_t)r0 * n;
        mcuc_layernorm_s8(&lp, x + (int64_t)r0 * k, pair);
        linear_stage(p, &l1, l1_plan, pair, yt);
    }
    return r0;
}

/* The buffer a stage writes: the tile's output rows, region A or region B of scratch. */
static int8_t *place(int32_t to, int8_t *yt, int8_t *scratch, int32_t b_offset)
{
    return to == MCUC_TW_Y ? yt : (to == MCUC_TW_A ? scratch : scratch + b_offset);
}

/* y = add(r, f) over t rows. a + b is summed exactly before rounding, so the operands
 * may swap: the one y aliases (if any) goes first, as add_s8 allows. */
static void add_rows(const mcuc_tokenwise_params_t *p, int32_t t, const int8_t *rt,
                     const int8_t *f, int8_t *yt)
{
    mcuc_add_params_t ap = p->add;
    ap.size = t * p->n;
    ap.b_size = t * p->n;
    if (f == yt) {
        const mcuc_add_params_t sw = {ap.size, ap.b_size, ap.b_zp, ap.a_zp, ap.y_zp,
                                      ap.b_mult, ap.b_shift, ap.a_mult, ap.a_shift,
                                      ap.y_mult, ap.y_shift, ap.b_tab, ap.a_tab};
        mcuc_add_s8(&sw, f, rt, yt);
    } else {
        mcuc_add_s8(&ap, rt, f, yt);
    }
}

/* Rows r0 .. r0 + t - 1 through the chain, intermediates in the tile's scratch. */
static void run_tile(const mcuc_tokenwise_params_t *p, int32_t l1_plan, int32_t l2_plan,
                     int32_t r0, int32_t t, const int8_t *x, const int8_t *r, int8_t *y,
                     int8_t *scratch)
{
    const int32_t k = p->k, h = p->h, n = p->n;
    const int32_t xb = p->x_wide ? 2 : 1; /* bytes per x element */
    const int8_t *xt = x + (int64_t)r0 * p->x_rs * xb;
    const int8_t *rt = r + (int64_t)r0 * n;
    int8_t *yt = y + (int64_t)r0 * n;
    /* The first stage reads x: all t rows in one call when they are contiguous, else
     * one call per row (the kernels are row-wise, so results are the same). */
    const int32_t calls = p->x_rs == k ? 1 : t;
    const int32_t per_call = p->x_rs == k ? t : 1;

    const int8_t *in1 = xt;
    int32_t in1_rs = p->x_rs;
    if (p->has_ln) {
        mcuc_layernorm_params_t lp = p->ln;
        lp.rows = per_call;
        int8_t *dst = place(p->ln_to, yt, scratch, p->b_offset);
        for (int32_t c = 0; c < calls; ++c) {
            const int8_t *xc = xt + (int64_t)c * p->x_rs * xb;
            if (p->x_wide) {
                const mcuc_layernorm16_params_t l16 = {lp.rows, lp.cols, lp.y_zp, lp.eps_q,
                                                       lp.gamma_q, lp.beta_q};
                mcuc_layernorm16_a16(&l16, xc, dst + (int64_t)c * k);
            } else {
                mcuc_layernorm_s8(&lp, xc, dst + (int64_t)c * k);
            }
        }
        in1 = dst;
        in1_rs = k;
    }
    int8_t *f = place(p->l1_to, yt, scratch, p->b_offset);
    const int32_t l1_calls = in1_rs == k ? 1 : t;
    mcuc_linear_params_t l1 = p->l1;
    l1.rows = in1_rs == k ? t : 1;
    for (int32_t c = 0; c < l1_calls; ++c) {
        linear_stage(p, &l1, l1_plan, in1 + (int64_t)c * in1_rs, f + (int64_t)c * h);
    }
    if (p->has_l2) {
        int8_t *dst = place(p->l2_to, yt, scratch, p->b_offset);
        mcuc_linear_params_t l2 = p->l2;
        l2.rows = t;
        mcuc_linear_planned_s8(&l2, l2_plan, f, dst);
        f = dst;
    }
    if (p->has_res) {
        add_rows(p, t, rt, f, yt);
    } else if (f != yt) {
        memcpy(yt, f, (size_t)t * (size_t)n);
    }
}

/* Row pairs for a linear [-> table] -> residual add chain whose tile is one row (the
 * planned scratch holds one row, e.g. the attention projection at the arena's peak),
 * when x_free says x's rows are dead after this step and overlap neither y nor r: rows 0
 * and 1 take the tile loop, then each pair from row r0 = 2 on is staged over x's rows
 * r0 - 2 and r0 - 1, already consumed: its x rows copied there when they lie apart
 * (x_rs > k: the linear reads contiguous rows), then its linear rows. That takes need =
 * (x_rs > k ? k : 0) + n bytes per row, within the 2 x_rs bytes before row r0, so the
 * linear runs on row pairs, its faster loop, without scratch beyond the plan. Returns
 * the first row the tile loop still does (0 where the path does not apply). */
static int32_t res_pairs_over_x(const mcuc_tokenwise_params_t *p, int32_t l1_plan,
                                const int8_t *x, const int8_t *r, int8_t *y, int8_t *scratch)
{
    const int32_t k = p->k, n = p->n, x_rs = p->x_rs;
    const int32_t gap = x_rs > k ? k : 0;
    if (!p->x_free || p->tile > 1 || p->has_ln || p->has_l2 || !p->has_res || p->x_wide ||
        p->rows < 4 || gap + n > x_rs) {
        return 0;
    }
    run_tile(p, l1_plan, 0, 0, 1, x, r, y, scratch);
    run_tile(p, l1_plan, 0, 1, 1, x, r, y, scratch);
    /* x is free (the compiler's x_free): writing over its consumed rows is the plan. */
    int8_t *const xw = (int8_t *)(uintptr_t)x;
    mcuc_linear_params_t l1 = p->l1;
    l1.rows = 2;
    int32_t r0 = 2;
    for (; r0 + 2 <= p->rows; r0 += 2) {
        int8_t *stage = xw + (int64_t)(r0 - 2) * x_rs;
        const int8_t *xin = x + (int64_t)r0 * x_rs;
        if (gap) {
            memcpy(stage, xin, (size_t)k);
            memcpy(stage + k, xin + x_rs, (size_t)k);
            xin = stage;
        }
        int8_t *f = stage + 2 * gap;
        linear_stage(p, &l1, l1_plan, xin, f);
        add_rows(p, 2, r + (int64_t)r0 * n, f, y + (int64_t)r0 * n);
    }
    return r0;
}

void mcuc_tokenwise_s8(const mcuc_tokenwise_params_t *p, const int8_t *x, const int8_t *r,
                       int8_t *y, int8_t *scratch)
{
    /* The linear stages' plans, once for all tiles (rows do not enter a plan). */
    const int32_t l1_plan = mcuc_linear_plan(&p->l1);
    const int32_t l2_plan = p->has_l2 ? mcuc_linear_plan(&p->l2) : 0;

    int32_t r0 = ln_pairs_in_y(p, p->tile, l1_plan, x, y);
    if (r0 == 0) {
        r0 = res_pairs_over_x(p, l1_plan, x, r, y, scratch);
    }
    for (; r0 < p->rows; r0 += p->tile) {
        const int32_t t = p->rows - r0 < p->tile ? p->rows - r0 : p->tile;
        run_tile(p, l1_plan, l2_plan, r0, t, x, r, y, scratch);
    }
}
