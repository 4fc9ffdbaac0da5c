/* Table lookup: every int8 elementwise nonlinearity; safe in place (y == x: each element
 * is read before it is written). The table pointer is offset by 128 once, so each
 * element is a signed load, a load from the table and a store; four per loop step. */
#include "mcuc/kernels.h"

void mcuc_lut_s8(const mcuc_lut_params_t *p, const int8_t *x, int8_t *y)
{
    const int8_t *const t = p->table + 128;
    const int32_t size = p->size, size4 = size & ~3;
    int32_t i = 0;
    for (; i < size4; i += 4) {
        const int8_t v0 = t[x[i]], v1 = t[x[i + 1]], v2 = t[x[i + 2]], v3 = t[x[i + 3]];
        y[i] = v0;
        y[i + 1] = v1;
        y[i + 2] = v2;
        y[i + 3] = v3;
    }
    for (; i < size; ++i) {
        y[i] = t[x[i]];
    }
}
