/* Loads and stores of the A16 kernels' int16 operands in the byte arena (little-endian,
 * as every target and the host are). memcpy keeps them free of alignment and aliasing
 * assumptions; compilers turn it into one halfword load or store. */
#ifndef MCUC_WIDE16_H
#define MCUC_WIDE16_H

#include <stdint.h>
#include <string.h>

/* Element i of x: int16 if wide, else int8. */
static inline int32_t mcuc_ld_a16(const int8_t *x, int32_t i, int32_t wide)
{
    if (wide) {
        int16_t v;
        memcpy(&v, x + 2 * (int64_t)i, sizeof v);
        return v;
    }
    return x[i];
}

/* y[i] = v saturated to int16 if wide, else to int8. */
static inline void mcuc_st_a16(int8_t *y, int32_t i, int32_t wide, int64_t v)
{
    if (wide) {
        const int16_t s = (int16_t)(v < -32768 ? -32768 : (v > 32767 ? 32767 : v));
        memcpy(y + 2 * (int64_t)i, &s, sizeof s);
    } else {
        y[i] = mcuc_clamp_s8(v);
    }
}

#endif /* MCUC_WIDE16_H */
