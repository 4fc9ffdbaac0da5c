/* Private to attention.c, attention_dsp.c and attention_pair.c (MCUC_ARM_DSP): the int32
 * bounds of the ARMv7E-M variant, the pair path's requantization and operands, and the
 * entry points one file calls in another. */
#ifndef MCUC_ATTENTION_INTERNAL_H
#define MCUC_ATTENTION_INTERNAL_H

#include "mcuc/kernels.h"

#ifdef MCUC_ARM_DSP
#include "mcuc/simd.h"

/* The ARMv7E-M variant, for operands with unit column stride and no tables (the layout
 * the compiler gives a ViT's heads) and -22 <= s_shift <= -1; anything else takes the
 * reference loop above.
 *
 * Why int32 is exact: every factor is at most 255 in magnitude (q - q_zp, k - k_zp and
 * v - v_zp lie in [-255, 255], p = s + 128 in [0, 255]), so each sum over n terms is at
 * most 255 * 255 * n = 65,025 * n, which stays below 2^30 for n <= MCUC_ATT_DSP_MAX_LEN
 * = 16,512 (65,025 * 16,512 = 1,073,692,800 < 2^30 = 1,073,741,824; checked below at
 * compile time, and against ATT_DSP_MAX_LEN in attention.py by a test). The zero points
 * of k and v are folded out of the inner loops:
 *   sum (q - q_zp)(k - k_zp) = sum (q - q_zp) k - k_zp * sum (q - q_zp)
 *   sum p (v - v_zp)         = sum p v - v_zp * sum p
 * where each term is itself at most 255 * 128 * n (<= 65,025 * n) in magnitude: every
 * partial sum, both terms and their exact difference fit int32, so no step overflows and
 * mcuc_sat_s32 of the exact sum (the reference) is the sum itself; the 2^30 margin serves the
 * requantization below. q's rows are unpacked once into pairs in a local array, which
 * bounds d by MCUC_ATT_DSP_MAX_D. */
#define MCUC_ATT_DSP_MAX_LEN 16512
#define MCUC_ATT_DSP_MAX_D 128
typedef char mcuc_att_bound_below_2_30[(65025LL * MCUC_ATT_DSP_MAX_LEN < (1LL << 30)) ? 1 : -1];

/* Each stage is its own function so that gcc allocates each loop's registers apart
 * (inlined into one body, it spilled more: 3.45 against 3.41 instructions per MAC). */
#ifdef __GNUC__
#define ATT_NOINLINE __attribute__((noinline))
#define ATT_ALWAYS_INLINE __attribute__((always_inline))
#else
#define ATT_NOINLINE
#define ATT_ALWAYS_INLINE
#endif

/* P.V's rows are padded with zeros to n4 = n rounded up to a multiple of 4 (in p and in
 * V^T alike, so each padded term is 0 * 0), which spares mcuc_att_dot_pair its d % 4 tail. */
static inline int32_t att_pad4(int32_t n)
{
    return (n + 3) & ~3;
}

/* The pair path's stack buffers (attention_pair.c's opening comment). */
#define MCUC_ATT_DSP_PAIR_LEN 256
#define MCUC_ATT_DSP_VT_BYTES 2048

/* att_out for 1 <= e <= 22 on 2 acc and mult >= 0: rdbpot's halves-away-from-zero
 * rounding is floor((t + 2^(e-1) - [t < 0]) / 2^e); adding zp 2^e inside the floor adds zp
 * outside it, so c = 2^(e-1) + zp 2^e folds the round and the zero point in one add:
 * |t - [t < 0] + c| < 2^30 + 1 + 2^21 + 2^29 < 2^31 (|t| <= |acc| < 2^30 - 2^15 and
 * |zp| <= 128 as above). [t < 0] may be replaced by [acc < 0] (acc2 >> 31, arithmetic;
 * gcc and every ARM compiler define it so): with mult >= 0, t = floor((2 acc mult + 2^31)
 * / 2^32) >= 1 needs acc > 0 and t <= -1 needs acc < 0, and where t = 0 the -1 does not
 * change floor((c - 1) / 2^e) = floor(c / 2^e) = zp (e >= 1). So the epilogue is one add,
 * one SMMLAR (t + its addend), a shift and a saturation. Other s_shift or a negative s_mult
 * take the reference loop, other o_shift or a negative o_mult pv_dsp. */
typedef struct {
    int32_t mult, c, e;
} att_rq2_t;

static inline att_rq2_t att_rq2(int32_t mult, int32_t shift, int32_t zp)
{
    const int32_t e = -shift;
    const att_rq2_t r = {mult, (int32_t)(1u << (e - 1)) + zp * (int32_t)(1u << e), e};
    return r;
}

static inline int8_t att_out2(const att_rq2_t *r, int32_t acc2)
{
    return (int8_t)mcuc_ssat8(mcuc_smmlar(acc2, r->mult, r->c + (acc2 >> 31)) >> r->e);
}

static inline int att_rq2_ok(int32_t mult, int32_t shift)
{
    return mult >= 0 && shift <= -1 && shift >= -22;
}


/* One product of the pair path, prepared once per call (m once per batch): mcuc_att_dot_pair's
 * operands besides its output rows, behind one pointer (passed one by one, the eleven
 * cost about 20 instructions of stack traffic per call on each side). */
typedef struct {
    const uint32_t *qp;
    const int32_t *qt, *f;
    const int8_t *m;
    int32_t len, n, rs, os, inter;
    att_rq2_t rq;
} att_dot_t;

/* The reference loop (attention.c): the fallback of mcuc_attention_s8, cold. */
#ifdef __GNUC__
__attribute__((cold))
#endif
void mcuc_attention_ref(const mcuc_attention_params_t *p, const int8_t *q, const int8_t *k,
                   const int8_t *v, int8_t *y, int8_t *scratch);
/* attention_dsp.c */
int32_t mcuc_att_softmax_dsp(const mcuc_attention_params_t *p, uint8_t *s);
/* attention_pair.c */
void mcuc_att_dot_pair(const att_dot_t *d, int8_t *oa, int8_t *ob);
void mcuc_att_pv_rows2(const mcuc_attention_params_t *p, const att_dot_t *d, const int8_t *vb,
              int8_t *ya, int8_t *yb);
void mcuc_att_pv_dsp2(const mcuc_attention_params_t *p, uint32_t *pp, uint8_t *pa, uint8_t *pb,
             const int8_t *vb, int8_t *ya);
#endif /* MCUC_ARM_DSP */

#endif /* MCUC_ATTENTION_INTERNAL_H */
