/* The strided copies' index walk (copy.c, copy16.c): a counter over the outer ndim - 1
 * dims of a shape, each step moving an input and an output offset by their strides. One
 * definition, so the int8 and A16 copies cannot walk differently. */
#ifndef MCUC_WALK_H
#define MCUC_WALK_H

#include <stdint.h>

/* Advance idx (the outer dims' counters) to the next innermost run and move *in and *out
 * with it; returns 0 after the last run. */
static inline int mcuc_walk_next(int32_t nd, const int32_t *shape, const int32_t *in_strides,
                                 const int32_t *out_strides, int32_t *idx, int32_t *in,
                                 int32_t *out)
{
    for (int32_t k = nd - 2; k >= 0; --k) {
        *in += in_strides[k];
        *out += out_strides[k];
        if (++idx[k] < shape[k]) {
            return 1;
        }
        *in -= in_strides[k] * shape[k];
        *out -= out_strides[k] * shape[k];
        idx[k] = 0;
    }
    return 0;
}

#endif /* MCUC_WALK_H */
