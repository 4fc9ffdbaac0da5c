/* Private to layernorm.c and layernorm_row16.c (MCUC_ARM_DSP): what both LayerNorm row
 * paths use (the row statistics ln_stats, the base-2^16 division div_2p16, the LDMIA of
 * four words) and the functions one file calls in the other. layernorm.c holds the
 * reference, the ARMv7E-M variant's comment (why int32 and the fast loops are exact) and
 * its older row loops (ln_rows, ln_row10, ln_row); layernorm_row16.c the table-driven
 * path (ln_rows16, ln_row16: the compiler's p->fast) and mcuc_layernorm_s8's variant. */
#ifndef MCUC_LAYERNORM_INTERNAL_H
#define MCUC_LAYERNORM_INTERNAL_H

#include "mcuc/kernels.h"

#ifdef MCUC_ARM_DSP
#include "mcuc/simd.h"

/* a, b, c, d = the four words at p, then p += 16: one LDMIA (the registers pinned in
 * ascending order, as LDM loads them; not r7, Thumb's frame pointer at -O0). */
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
#define LN_LDM4_POST(a, b, c, d, p)                                                      \
    do {                                                                                 \
        register int32_t a_ __asm__("r4");                                               \
        register int32_t b_ __asm__("r5");                                               \
        register int32_t c_ __asm__("r6");                                               \
        register int32_t d_ __asm__("r8");                                               \
        __asm__("ldmia %4!, {%0, %1, %2, %3}"                                            \
                : "=r"(a_), "=r"(b_), "=r"(c_), "=r"(d_), "+r"(p) : : "memory");         \
        (a) = a_;                                                                        \
        (b) = b_;                                                                        \
        (c) = c_;                                                                        \
        (d) = d_;                                                                        \
    } while (0)
#else
#define LN_LDM4_POST(a, b, c, d, p)                                                      \
    do {                                                                                 \
        MCUC_LDRD_POST(a, b, p, 8);                                                      \
        MCUC_LDRD_POST(c, d, p, 8);                                                      \
    } while (0)
#endif

/* floor(num 2^16 / s) and the remainder's being nonzero (ln_row10's k and c, and
 * ln_row16's: ln_kc16), for num 2^16 / s < 2^32
 * (num < 2^32, s < 2^16): two base-2^16 digits. */
static inline uint32_t div_2p16(uint32_t num, uint32_t s, int *inexact)
{
    const uint32_t qa = num / s, ra = num - qa * s;
    const uint32_t qb = (ra << 16) / s;
    *inexact = (ra << 16) - qb * s != 0;
    return (qa << 16) + qb;
}

/* Eight bytes of a row, w0 and w1: their squares added to *sq (SMLAD), their sum returned
 * as two 16-bit lanes (SADD16; each lane sums four bytes). */
MCUC_ALWAYS_INLINE static uint32_t ln_stats8(uint32_t w0, uint32_t w1, int32_t *sq)
{
    const uint32_t l0 = mcuc_sxtb16(w0), h0 = mcuc_sxtb16_ror8(w0);
    const uint32_t l1 = mcuc_sxtb16(w1), h1 = mcuc_sxtb16_ror8(w1);
    *sq = mcuc_smlad(h1, h1, mcuc_smlad(l1, l1, mcuc_smlad(h0, h0, mcuc_smlad(l0, l0, *sq))));
    return mcuc_sadd16(mcuc_sadd16(l0, h0), mcuc_sadd16(l1, h1));
}

/* w0, w1 = the two words at p, then p += 8: one post-indexed LDRD, which needs p
 * word-aligned (any alignment for the portable build's two reads). */
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
#define LN_LDRD8_POST(w0, w1, p)                                                         \
    __asm__("ldrd %0, %1, [%2], #8" : "=r"(w0), "=r"(w1), "+r"(p) : : "memory")
#else
#define LN_LDRD8_POST(w0, w1, p)                                                         \
    do {                                                                                 \
        (w0) = mcuc_read32(p);                                                           \
        (w1) = mcuc_read32((p) + 4);                                                     \
        (p) += 8;                                                                        \
    } while (0)
#endif

/* w0..w3 = the four words at p, then p += 16: one LDMIA (LN_LDM4_POST), which needs p
 * word-aligned (the portable build: two LN_LDRD8_POSTs). */
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
#define LN_LDM16_POST(w0, w1, w2, w3, p) LN_LDM4_POST(w0, w1, w2, w3, p)
#else
#define LN_LDM16_POST(w0, w1, w2, w3, p)                                                 \
    do {                                                                                 \
        LN_LDRD8_POST(w0, w1, p);                                                        \
        LN_LDRD8_POST(w2, w3, p);                                                        \
    } while (0)
#endif

/* The sum of a row, and its sum of squares in *sq_out: 16 bytes a step (one LDMIA where
 * the row is word-aligned), the sum of each 8 as two 16-bit lanes (SADD16, |lane| <= 512),
 * then one SMLAD with ones; the squares by SMLAD on SXTB16 lanes. */
MCUC_ALWAYS_INLINE static int32_t ln_stats(const int8_t *xr, int32_t cols, int32_t *sq_out)
{
    const uint32_t ones = 0x00010001u;
    const int8_t *const e16 = xr + (cols & ~15), *const end = xr + cols;
    int32_t sum = 0, sq = 0;
    if (((uintptr_t)xr & 3u) == 0) {
        while (xr != e16) {
            uint32_t w0, w1, w2, w3;
            LN_LDM16_POST(w0, w1, w2, w3, xr);
            sum = mcuc_smlad(ln_stats8(w0, w1, &sq), ones, sum);
            sum = mcuc_smlad(ln_stats8(w2, w3, &sq), ones, sum);
        }
    } else {
        for (; xr != e16; xr += 16) {
            sum = mcuc_smlad(ln_stats8(mcuc_read32(xr), mcuc_read32(xr + 4), &sq), ones, sum);
            sum = mcuc_smlad(ln_stats8(mcuc_read32(xr + 8), mcuc_read32(xr + 12), &sq), ones,
                             sum);
        }
    }
    if (xr != end) { /* the last cols mod 16 */
        for (; end - xr >= 4; xr += 4) {
            const uint32_t w = mcuc_read32(xr);
            const uint32_t lo = mcuc_sxtb16(w), hi = mcuc_sxtb16_ror8(w);
            sum = mcuc_smlad(lo, ones, sum);
            sq = mcuc_smlad(lo, lo, sq);
            sum = mcuc_smlad(hi, ones, sum);
            sq = mcuc_smlad(hi, hi, sq);
        }
        for (; xr != end; ++xr) {
            sum += *xr;
            sq += *xr * *xr;
        }
    }
    *sq_out = sq;
    return sum;
}

/* layernorm.c's entry points for layernorm_row16.c (each its comment there). mcuc_ln_exact
 * only reads memory: declared pure, as gcc found it when it was static beside ln_rest16
 * (without that, gcc 12 allocates ln_rest16's registers otherwise: another firmware). */
__attribute__((pure)) int8_t mcuc_ln_exact(const mcuc_layernorm_params_t *p, int32_t i,
                                           int32_t xi, int32_t sum, int64_t sigma);
void mcuc_ln_row_other(const mcuc_layernorm_params_t *p, const int8_t *xr, int8_t *yr,
                       int32_t sum, uint32_t s);
void mcuc_ln_rows(const mcuc_layernorm_params_t *p, const int8_t *x, int8_t *y);

#endif /* MCUC_ARM_DSP */
#endif /* MCUC_LAYERNORM_INTERNAL_H */
