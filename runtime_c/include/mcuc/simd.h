/*
 * The few ARMv7E-M DSP instructions the optimized kernels use (Cortex-M4/M7: SMLAD,
 * SXTB16, SSUB16, QADD), as static inline functions.
 *
 * Why a header: the optimized kernels are written once against these functions. On a
 * core with the DSP extension (__ARM_FEATURE_DSP, set by gcc for -mcpu=cortex-m4/m7) they
 * are the ACLE intrinsics, one instruction each; elsewhere they are portable C with the
 * same results, so the very same kernel code is built and tested on the host (ASan and
 * UBSan included) by defining the variant macro (MCUC_ARM_DSP) in a host build.
 *
 * Packed values are uint32_t words holding two 16-bit lanes, lane 0 in bits 0..15.
 * The portable mcuc_smlad sums in plain int32, so a sum that would overflow (the
 * kernels prove it cannot) is undefined behaviour that UBSan reports in the host tests;
 * the instruction itself would wrap.
 */
#ifndef MCUC_SIMD_H
#define MCUC_SIMD_H

#include <stdint.h>
#include <string.h>

#include "mcuc/fixedpoint.h"

/* Force inlining where a kernel relies on a constant argument to specialize a loop, or
 * where gcc would otherwise call a small epilogue per output (+10 instructions each). */
#if defined(__GNUC__)
#define MCUC_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define MCUC_ALWAYS_INLINE inline
#endif

/* Four consecutive bytes as one word (an unaligned LDR on Cortex-M4/M7). */
static inline uint32_t mcuc_read32(const int8_t *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP

#include <arm_acle.h>

/* Bytes 0 and 2 of w, sign-extended into lanes 0 and 1 (SXTB16). */
static inline uint32_t mcuc_sxtb16(uint32_t w)
{
    return (uint32_t)__sxtb16((int8x4_t)w);
}

/* Bytes 1 and 3 of w, sign-extended into lanes 0 and 1 (SXTB16 with ROR #8). */
static inline uint32_t mcuc_sxtb16_ror8(uint32_t w)
{
    uint32_t r;
    /* gcc 12 does not fold a rotate into SXTB16; the one instruction does it. */
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(w));
    return r;
}

/* Lane-wise a - b, modulo 2^16 (SSUB16). */
static inline uint32_t mcuc_ssub16(uint32_t a, uint32_t b)
{
    return (uint32_t)__ssub16((int16x2_t)a, (int16x2_t)b);
}

/* acc + a.lane0 * b.lane0 + a.lane1 * b.lane1 (SMLAD). */
static inline int32_t mcuc_smlad(uint32_t a, uint32_t b, int32_t acc)
{
    return __smlad((int16x2_t)a, (int16x2_t)b, acc);
}

/* a + b saturated to the int32 range (QADD). */
static inline int32_t mcuc_qadd(int32_t a, int32_t b)
{
    return __qadd(a, b);
}

#else /* portable definitions, bit for bit the same results */

static inline int32_t mcuc_lane(uint32_t v, int lane)
{
    const uint32_t h = (v >> (16 * lane)) & 0xFFFFu;
    return (int32_t)h - (int32_t)((h & 0x8000u) << 1);
}

static inline uint32_t mcuc_pack_lanes(int32_t lo, int32_t hi)
{
    return ((uint32_t)lo & 0xFFFFu) | (((uint32_t)hi & 0xFFFFu) << 16);
}

static inline int32_t mcuc_byte(uint32_t w, int i)
{
    const uint32_t b = (w >> (8 * i)) & 0xFFu;
    return (int32_t)b - (int32_t)((b & 0x80u) << 1);
}

static inline uint32_t mcuc_sxtb16(uint32_t w)
{
    return mcuc_pack_lanes(mcuc_byte(w, 0), mcuc_byte(w, 2));
}

static inline uint32_t mcuc_sxtb16_ror8(uint32_t w)
{
    return mcuc_pack_lanes(mcuc_byte(w, 1), mcuc_byte(w, 3));
}

static inline uint32_t mcuc_ssub16(uint32_t a, uint32_t b)
{
    return mcuc_pack_lanes(mcuc_lane(a, 0) - mcuc_lane(b, 0), mcuc_lane(a, 1) - mcuc_lane(b, 1));
}

static inline int32_t mcuc_smlad(uint32_t a, uint32_t b, int32_t acc)
{
    return acc + mcuc_lane(a, 0) * mcuc_lane(b, 0) + mcuc_lane(a, 1) * mcuc_lane(b, 1);
}

static inline int32_t mcuc_qadd(int32_t a, int32_t b)
{
    const int64_t s = (int64_t)a + b;
    return (int32_t)(s > INT32_MAX ? INT32_MAX : (s < INT32_MIN ? INT32_MIN : s));
}

#endif /* __ARM_FEATURE_DSP */

/* mcuc_requantize() (fixedpoint.h) for the optimized epilogues, bit for bit the same:
 * for shift <= 0, srdhm's nudge-and-truncate equals floor((a * b + 2^30) / 2^31) for
 * every product (ab >= 0: the same; ab < 0: truncating (ab + 1 - 2^30) / 2^31 toward
 * zero is flooring (ab + 1 - 2^30 + 2^31 - 1) / 2^31), one SMLAL and a shift instead of
 * a 64-bit sign test; the INT32_MIN * INT32_MIN case keeps its saturation. */
static inline int32_t mcuc_requantize_fast(int32_t acc, int32_t mult, int32_t shift)
{
    if (shift > 0 || (acc == INT32_MIN && mult == INT32_MIN)) {
        return mcuc_requantize(acc, mult, shift);
    }
    const int64_t ab = (int64_t)acc * mult + (1LL << 30);
    const int32_t x = (int32_t)(ab >> 31);
    /* mcuc_rdbpot with 32-bit masks (1u << 31 is defined; e in [0, 31]). */
    const int32_t e = -shift;
    const uint32_t mask = (1u << e) - 1u;
    const uint32_t threshold = (mask >> 1) + ((uint32_t)x >> 31);
    return (x >> e) + (((uint32_t)x & mask) > threshold ? 1 : 0);
}

/* v in both 16-bit lanes (v in [-32768, 32767]). */
static inline uint32_t mcuc_dup16(int32_t v)
{
    return ((uint32_t)v & 0xFFFFu) * 0x00010001u;
}

/* Unsigned byte pairs and halfword packing (UXTB16, PKHBT, PKHTB), added for the fused
 * attention's P.V product: probabilities 0..255 as unsigned lanes, and two rows of V
 * merged halfword by halfword so that SXTB16 yields (row a, row b) pairs of a column. */
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP

/* Bytes 0 and 2 of w, zero-extended into lanes 0 and 1 (UXTB16). */
static inline uint32_t mcuc_uxtb16(uint32_t w)
{
    return (uint32_t)__uxtb16((int8x4_t)w);
}

/* Bytes 1 and 3 of w, zero-extended into lanes 0 and 1 (UXTB16 with ROR #8). */
static inline uint32_t mcuc_uxtb16_ror8(uint32_t w)
{
    uint32_t r;
    __asm__("uxtb16 %0, %1, ror #8" : "=r"(r) : "r"(w));
    return r;
}

/* Low half of a in the low half, low half of b in the high half (PKHBT, LSL #16). */
static inline uint32_t mcuc_pkhbt16(uint32_t a, uint32_t b)
{
    uint32_t r;
    __asm__("pkhbt %0, %1, %2, lsl #16" : "=r"(r) : "r"(a), "r"(b));
    return r;
}

/* High half of a in the low half, high half of b in the high half (PKHTB, ASR #16). */
static inline uint32_t mcuc_pkhtb16(uint32_t a, uint32_t b)
{
    uint32_t r;
    __asm__("pkhtb %0, %1, %2, asr #16" : "=r"(r) : "r"(b), "r"(a));
    return r;
}

#else /* portable definitions, bit for bit the same results */

static inline uint32_t mcuc_uxtb16(uint32_t w)
{
    return w & 0x00FF00FFu;
}

static inline uint32_t mcuc_uxtb16_ror8(uint32_t w)
{
    return (w >> 8) & 0x00FF00FFu;
}

static inline uint32_t mcuc_pkhbt16(uint32_t a, uint32_t b)
{
    return (a & 0xFFFFu) | (b << 16);
}

static inline uint32_t mcuc_pkhtb16(uint32_t a, uint32_t b)
{
    return (a >> 16) | (b & 0xFFFF0000u);
}

#endif /* __ARM_FEATURE_DSP */

/* The rounded high word of a 32 x 32 product, (a * b + 2^31) >> 32 (SMMULR), and a clamp
 * to int8 (SSAT #8): the attention epilogue's requantization in two instructions. */
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP

static inline int32_t mcuc_smmulr(int32_t a, int32_t b)
{
    int32_t r;
    __asm__("smmulr %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
    return r;
}

static inline int32_t mcuc_ssat8(int32_t v)
{
    return __ssat(v, 8);
}

#else /* portable definitions, bit for bit the same results */

static inline int32_t mcuc_smmulr(int32_t a, int32_t b)
{
    return (int32_t)(((int64_t)a * b + 0x80000000LL) >> 32);
}

static inline int32_t mcuc_ssat8(int32_t v)
{
    return v < -128 ? -128 : (v > 127 ? 127 : v);
}

#endif /* __ARM_FEATURE_DSP */

/* clamp(y_zp + v) to int8 for any int32 v: the saturating add keeps the order. */
static inline int8_t mcuc_out_s8(int32_t y_zp, int32_t v)
{
    return (int8_t)mcuc_ssat8(mcuc_qadd(y_zp, v));
}

/* LayerNorm section: the high word of a 32 x 32 product, floor(a * b / 2^32) (SMMUL),
 * and acc + that high word (SMMLA), for the normalization's per-row reciprocal. */
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP

static inline int32_t mcuc_smmul(int32_t a, int32_t b)
{
    int32_t r;
    __asm__("smmul %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
    return r;
}

static inline int32_t mcuc_smmla(int32_t a, int32_t b, int32_t acc)
{
    int32_t r;
    __asm__("smmla %0, %1, %2, %3" : "=r"(r) : "r"(a), "r"(b), "r"(acc));
    return r;
}

#else /* portable definitions, bit for bit the same results */

static inline int32_t mcuc_smmul(int32_t a, int32_t b)
{
    return (int32_t)(((int64_t)a * b) >> 32);
}

static inline int32_t mcuc_smmla(int32_t a, int32_t b, int32_t acc)
{
    return acc + (int32_t)(((int64_t)a * b) >> 32);
}

#endif /* __ARM_FEATURE_DSP */

/* Patch embedding section: acc + the rounded high word of a 32 x 32 product,
 * (acc * 2^32 + a * b + 2^31) >> 32 (SMMLAR): srdhm's product plus the nudge of the
 * rounding shift that follows it, in one instruction.
 * The ARM instruction keeps the low 32 bits of that value; the kernel proves it fits. */
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP

static inline int32_t mcuc_smmlar(int32_t a, int32_t b, int32_t acc)
{
    int32_t r;
    __asm__("smmlar %0, %1, %2, %3" : "=r"(r) : "r"(a), "r"(b), "r"(acc));
    return r;
}

/* lo = p[off / 4], hi = p[off / 4 + 1] for a word-aligned uint32_t *p and a constant byte
 * offset (one LDRD: gcc tuned for Cortex-M7 splits such pairs into two LDRs); the _POST
 * form then advances p by step bytes (LDRD post-indexed). Operands are lvalues. */
#define MCUC_LDRD(lo, hi, p, off)                                                        \
    __asm__("ldrd %0, %1, [%2, #%c3]" : "=r"(lo), "=r"(hi) : "r"(p), "i"(off) : "memory")
#define MCUC_LDRD_POST(lo, hi, p, step)                                                  \
    __asm__("ldrd %0, %1, [%2], #%c3" : "=r"(lo), "=r"(hi), "+r"(p) : "i"(step) : "memory")

#else /* portable definitions, bit for bit the same results (within int32) */

#define MCUC_LDRD(lo, hi, p, off)                                                        \
    do {                                                                                 \
        (lo) = (p)[(off) / 4];                                                           \
        (hi) = (p)[(off) / 4 + 1];                                                       \
    } while (0)
#define MCUC_LDRD_POST(lo, hi, p, step)                                                  \
    do {                                                                                 \
        (lo) = (p)[0];                                                                   \
        (hi) = (p)[1];                                                                   \
        (p) += (step) / 4;                                                               \
    } while (0)

static inline int32_t mcuc_smmlar(int32_t a, int32_t b, int32_t acc)
{
    return (int32_t)(((int64_t)acc * 4294967296LL + (int64_t)a * b + 0x80000000LL) >> 32);
}

#endif /* __ARM_FEATURE_DSP */

/* Attention softmax: the byte-wise signed maximum of two words (SSUB8 sets a GE flag per
 * byte where a - b >= 0, SEL then takes a's byte there and b's elsewhere). */
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP

static inline uint32_t mcuc_smax8(uint32_t a, uint32_t b)
{
    uint32_t r, t;
    __asm__("ssub8 %1, %2, %3\n\tsel %0, %2, %3" : "=r"(r), "=&r"(t) : "r"(a), "r"(b) : "cc");
    return r;
}

#else /* portable definition, bit for bit the same result */

static inline uint32_t mcuc_smax8(uint32_t a, uint32_t b)
{
    uint32_t r = 0;
    for (int i = 0; i < 4; ++i) {
        const int32_t x = mcuc_byte(a, i), y = mcuc_byte(b, i);
        r |= ((uint32_t)(x >= y ? x : y) & 0xFFu) << (8 * i);
    }
    return r;
}

#endif /* __ARM_FEATURE_DSP */

/* Attention softmax: byte-wise a - b modulo 256 (USUB8), a clamp to 0..255 (USAT), and
 * a sum of four unsigned bytes (USADA8). */
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP

static inline uint32_t mcuc_usub8(uint32_t a, uint32_t b)
{
    uint32_t r;
    __asm__("usub8 %0, %1, %2" : "=r"(r) : "r"(a), "r"(b) : "cc");
    return r;
}

static inline uint32_t mcuc_usat8(int32_t v)
{
    return (uint32_t)__usat(v, 8);
}

/* acc + the sum of the four bytes of w, as unsigned (USADA8 against zero). */
static inline uint32_t mcuc_usada8(uint32_t w, uint32_t acc)
{
    return __usada8(w, 0u, acc);
}

#else /* portable definitions, bit for bit the same results */

static inline uint32_t mcuc_usub8(uint32_t a, uint32_t b)
{
    uint32_t r = 0;
    for (int i = 0; i < 4; ++i) {
        r |= (((a >> (8 * i)) - (b >> (8 * i))) & 0xFFu) << (8 * i);
    }
    return r;
}

static inline uint32_t mcuc_usat8(int32_t v)
{
    return (uint32_t)(v < 0 ? 0 : (v > 255 ? 255 : v));
}

static inline uint32_t mcuc_usada8(uint32_t w, uint32_t acc)
{
    return acc + (w & 0xFFu) + ((w >> 8) & 0xFFu) + ((w >> 16) & 0xFFu) + (w >> 24);
}

#endif /* __ARM_FEATURE_DSP */

/* LayerNorm section: lane-wise a + b, modulo 2^16 (SADD16). */
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP

static inline uint32_t mcuc_sadd16(uint32_t a, uint32_t b)
{
    return (uint32_t)__sadd16((int16x2_t)a, (int16x2_t)b);
}

#else /* portable definition, bit for bit the same result */

static inline uint32_t mcuc_sadd16(uint32_t a, uint32_t b)
{
    return mcuc_pack_lanes(mcuc_lane(a, 0) + mcuc_lane(b, 0), mcuc_lane(a, 1) + mcuc_lane(b, 1));
}

#endif /* __ARM_FEATURE_DSP */

/* LayerNorm section: acc + floor(a * lane / 2^16) for the bottom (SMLAWB) or top (SMLAWT)
 * signed 16-bit lane of w: the top 32 bits of the 48-bit product, then a 32-bit add. The
 * instruction keeps the low 32 bits of the sum; the kernel proves it fits. */
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP

static inline int32_t mcuc_smlawb(int32_t a, uint32_t w, int32_t acc)
{
    int32_t r;
    __asm__("smlawb %0, %1, %2, %3" : "=r"(r) : "r"(a), "r"(w), "r"(acc));
    return r;
}

static inline int32_t mcuc_smlawt(int32_t a, uint32_t w, int32_t acc)
{
    int32_t r;
    __asm__("smlawt %0, %1, %2, %3" : "=r"(r) : "r"(a), "r"(w), "r"(acc));
    return r;
}

#else /* portable definitions, bit for bit the same results (within int32) */

static inline int32_t mcuc_smlawb(int32_t a, uint32_t w, int32_t acc)
{
    return (int32_t)(acc + (((int64_t)a * mcuc_lane(w, 0)) >> 16));
}

static inline int32_t mcuc_smlawt(int32_t a, uint32_t w, int32_t acc)
{
    return (int32_t)(acc + (((int64_t)a * mcuc_lane(w, 1)) >> 16));
}

#endif /* __ARM_FEATURE_DSP */

/* LayerNorm section: acc + the product of the signed bottom halves of a and b (SMLABB),
 * both halfwords of a word clamped to 0..255 (USAT16 #8), m & (w << 8) (AND), and a word
 * stored at any byte address (an unaligned STR on Cortex-M4/M7), for the normalization
 * four elements a step. */
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP

static inline int32_t mcuc_smlabb(uint32_t a, uint32_t b, int32_t acc)
{
    return __smlabb((int32_t)a, (int32_t)b, acc);
}

static inline uint32_t mcuc_usat16_8(uint32_t w)
{
    return (uint32_t)__usat16((int16x2_t)w, 8);
}

/* Both 16-bit lanes doubled, each modulo 2^16 (UADD16 x, x: no carry between lanes). */
static inline uint32_t mcuc_dbl16(uint32_t x)
{
    uint32_t r;
    __asm__("uadd16 %0, %1, %1" : "=r"(r) : "r"(x) : "cc");
    return r;
}

/* m & (w << 8) in one AND with a shifted register (gcc would shift, then BIC). */
static inline uint32_t mcuc_and_lsl8(uint32_t m, uint32_t w)
{
    uint32_t r;
    __asm__("and %0, %1, %2, lsl #8" : "=r"(r) : "r"(m), "r"(w));
    return r;
}

#else /* portable definitions, bit for bit the same results (within int32) */

static inline int32_t mcuc_smlabb(uint32_t a, uint32_t b, int32_t acc)
{
    return acc + mcuc_lane(a, 0) * mcuc_lane(b, 0);
}

static inline uint32_t mcuc_usat16_8(uint32_t w)
{
    const int32_t l0 = mcuc_lane(w, 0), l1 = mcuc_lane(w, 1);
    return (uint32_t)(l0 < 0 ? 0 : (l0 > 255 ? 255 : l0)) |
           ((uint32_t)(l1 < 0 ? 0 : (l1 > 255 ? 255 : l1)) << 16);
}

static inline uint32_t mcuc_dbl16(uint32_t x)
{
    return (x << 1) & 0xFFFEFFFFu; /* the bit the low lane shifts into the high one, cleared */
}

static inline uint32_t mcuc_and_lsl8(uint32_t m, uint32_t w)
{
    return m & (w << 8);
}

#endif /* __ARM_FEATURE_DSP */

static inline void mcuc_write32(int8_t *p, uint32_t v)
{
    memcpy(p, &v, sizeof v);
}

#endif /* MCUC_SIMD_H */
