/* A16 add (compiler/mcuc/kernels/add16.py): add's scheme with a left shift of 15, any of
 * a, b, y int16. (a - zp) * 2^15 stays below 2^31 for |a - zp| <= 65535, and the sum is
 * taken in int64 and saturated, so nothing overflows. In place (y aliasing a), an output
 * wider than a would overwrite a's later elements before they are read, so that case walks
 * backwards: element i then writes bytes 2i, 2i + 1 of a, whose elements (>= i) are read. */
#include "mcuc/kernels.h"
#include "mcuc/wide16.h"

static void add16_one(const mcuc_add16_params_t *p, const int8_t *a, const int8_t *b,
                      int8_t *y, int32_t i)
{
    const int32_t av = mcuc_requantize((mcuc_ld_a16(a, i, p->a_wide) - p->a_zp) * (1 << 15),
                                       p->a_mult, p->a_shift);
    const int32_t bv = mcuc_requantize(
        (mcuc_ld_a16(b, i % p->b_size, p->b_wide) - p->b_zp) * (1 << 15), p->b_mult,
        p->b_shift);
    const int32_t s = mcuc_sat_s32((int64_t)av + bv);
    mcuc_st_a16(y, i, p->y_wide, (int64_t)p->y_zp + mcuc_requantize(s, p->y_mult, p->y_shift));
}

void mcuc_add16_a16(const mcuc_add16_params_t *p, const int8_t *a, const int8_t *b, int8_t *y)
{
    if (p->b_size <= 0) {
        return;
    }
    if (p->y_wide && !p->a_wide) {
        for (int32_t i = p->size - 1; i >= 0; --i) {
            add16_one(p, a, b, y, i);
        }
    } else {
        for (int32_t i = 0; i < p->size; ++i) {
            add16_one(p, a, b, y, i);
        }
    }
}
