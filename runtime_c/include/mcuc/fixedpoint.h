/*
 * Fixed-point requantization, gemmlowp / TFLM / CMSIS-NN style (double rounding).
 * compiler/mcuc/kernels/fixedpoint.py is the numpy twin; the two must agree exactly.
 */
#ifndef MCUC_FIXEDPOINT_H
#define MCUC_FIXEDPOINT_H

#include <stdint.h>

/* v clamped to the int8 range. Takes int64 so that y_zp + requantize(...) and other sums
 * that may leave int32 are clamped exactly; on int32 arguments it compiles to a 32-bit clamp. */
static inline int8_t mcuc_clamp_s8(int64_t v)
{
    return (int8_t)(v < -128 ? -128 : (v > 127 ? 127 : v));
}

/* v saturated to the int32 range: the kernels' exact int64 sums before requantize. */
static inline int32_t mcuc_sat_s32(int64_t v)
{
    return (int32_t)(v > INT32_MAX ? INT32_MAX : (v < INT32_MIN ? INT32_MIN : v));
}

/* round(a * b / 2^31), halves toward +infinity (gemmlowp's nudge: positive halves round
 * up, negative halves toward zero); the one overflow case saturates. */
static inline int32_t mcuc_srdhm(int32_t a, int32_t b)
{
    if (a == INT32_MIN && b == INT32_MIN) {
        return INT32_MAX;
    }
    int64_t ab = (int64_t)a * (int64_t)b;
    int64_t nudge = ab >= 0 ? (1LL << 30) : (1 - (1LL << 30));
    return (int32_t)((ab + nudge) / (1LL << 31));
}

/* x / 2^exponent rounded to nearest, halves away from zero. 0 <= exponent <= 31. */
static inline int32_t mcuc_rdbpot(int32_t x, int32_t exponent)
{
    const int32_t mask = (int32_t)((1LL << exponent) - 1);
    const int32_t remainder = x & mask;
    const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

/* acc * real_multiplier, where real_multiplier = mult * 2^(shift - 31).
 * shift > 0 shifts acc left first, saturating to int32. */
static inline int32_t mcuc_requantize(int32_t acc, int32_t mult, int32_t shift)
{
    if (shift > 0) {
        acc = mcuc_sat_s32((int64_t)acc * (int64_t)(1LL << shift));
        return mcuc_srdhm(acc, mult);
    }
    return mcuc_rdbpot(mcuc_srdhm(acc, mult), -shift);
}

/* floor(sqrt(v)), exactly (bit by bit; no libm): LayerNorm's standard deviation. Static,
 * not inline: a file that calls it keeps one copy (inlined at layernorm.c's two calls it
 * cost 768 B of flash); a file that does not drops it. */
#if defined(__GNUC__)
__attribute__((unused))
#endif
static uint64_t mcuc_isqrt_u64(uint64_t v)
{
    uint64_t res = 0;
    uint64_t bit = 1ULL << 62;
    while (bit > v) {
        bit >>= 2;
    }
    while (bit != 0) {
        if (v >= res + bit) {
            v -= res + bit;
            res = (res >> 1) + bit;
        } else {
            res >>= 1;
        }
        bit >>= 2;
    }
    return res;
}

#endif /* MCUC_FIXEDPOINT_H */
