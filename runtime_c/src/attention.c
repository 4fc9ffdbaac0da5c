/* Fused attention, row by row: the scores of one query row live in `scratch` (kv_len
 * bytes), are turned into probabilities in place exactly as mcuc_softmax_s8 does, and
 * are consumed by the product with v before the next row. Operands are read through
 * strided views so head slices and transposes need no copies. */
#include "mcuc/kernels.h"

static inline int32_t load(const int8_t *x, int64_t i, const int8_t *table)
{
    return table ? table[x[i] + 128] : x[i];
}

/* Without a variant this loop is mcuc_attention_s8 itself (no wrapper in the portable
 * build); with MCUC_ARM_DSP it is the fallback of the fast path below (strided columns,
 * tables, s_shift outside [-22, -1]), built for size there (cold: 664 B against 1,420 B
 * inlined at -O2), which keeps the linked variant within the fit estimate's code. */
#ifdef MCUC_ARM_DSP
#ifdef __GNUC__
__attribute__((cold, noinline))
#endif
static void attention_ref(const mcuc_attention_params_t *p, const int8_t *q, const int8_t *k,
                          const int8_t *v, int8_t *y, int8_t *scratch)
#else
void mcuc_attention_s8(const mcuc_attention_params_t *p, const int8_t *q, const int8_t *k,
                       const int8_t *v, int8_t *y, int8_t *scratch)
#endif
{
    int8_t *s = scratch;
    for (int32_t b = 0; b < p->batch; ++b) {
        const int64_t qb = p->q_off + (int64_t)b * p->q_bs;
        const int64_t kb = p->k_off + (int64_t)b * p->k_bs;
        const int64_t vb = p->v_off + (int64_t)b * p->v_bs;
        const int64_t ob = p->o_off + (int64_t)b * p->o_bs;
        for (int32_t i = 0; i < p->q_len; ++i) {
            const int64_t qi = qb + (int64_t)i * p->q_rs;
            /* scores = q_i . k_j, requantized to int8 */
            int32_t mx = -128;
            for (int32_t j = 0; j < p->kv_len; ++j) {
                const int64_t kj = kb + (int64_t)j * p->k_rs;
                int64_t acc = 0;
                for (int32_t l = 0; l < p->d; ++l) {
                    acc += (int64_t)(load(q, qi + (int64_t)l * p->q_cs, p->q_table) - p->q_zp)
                           * (load(k, kj + (int64_t)l * p->k_cs, p->k_table) - p->k_zp);
                }
                const int64_t sv = (int64_t)p->s_zp
                                   + mcuc_requantize(mcuc_sat_s32(acc), p->s_mult, p->s_shift);
                const int32_t sc = mcuc_clamp_s8(sv);
                s[j] = (int8_t)sc;
                mx = sc > mx ? sc : mx;
            }
            /* softmax in place, as mcuc_softmax_s8 */
            uint32_t sum = 0;
            for (int32_t j = 0; j < p->kv_len; ++j) {
                sum += p->exp_table[mx - s[j]];
            }
            for (int32_t j = 0; j < p->kv_len; ++j) {
                const uint32_t e = p->exp_table[mx - s[j]];
                const uint32_t r = (e * 256u + sum / 2u) / sum;
                s[j] = (int8_t)(r >= 255u ? 127 : (int32_t)r - 128);
            }
            /* y_i = p . v */
            const int64_t oi = ob + (int64_t)i * p->o_rs;
            for (int32_t c = 0; c < p->dv; ++c) {
                const int64_t vc = vb + (int64_t)c * p->v_cs;
                int64_t acc = 0;
                for (int32_t j = 0; j < p->kv_len; ++j) {
                    acc += (int64_t)(s[j] + 128)
                           * (load(v, vc + (int64_t)j * p->v_rs, p->v_table) - p->v_zp);
                }
                const int64_t ov = (int64_t)p->o_zp
                                   + mcuc_requantize(mcuc_sat_s32(acc), p->o_mult, p->o_shift);
                y[oi + (int64_t)c * p->o_cs] = mcuc_clamp_s8(ov);
            }
        }
    }
}

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

/* One requantization (mult, shift) with its rounding constants, prepared once per call.
 * For -31 <= shift <= 0 and |acc| < 2^30 - 2^15 (the bound above), mcuc_requantize is
 * t = srdhm(acc, mult) = floor((acc * mult + 2^30) / 2^31) (acc is never INT32_MIN; see
 * mcuc_requantize_fast) = floor((2 acc * mult + 2^31) / 2^32), one SMMULR on 2 acc, then
 * rdbpot(t, e = -shift), which is floor((t + 2^(e-1) - [t < 0]) / 2^e) for e > 0 (halves
 * away from zero) and t for e = 0: |t| <= |acc| < 2^30 - 2^15, so t + 2^(e-1) <= t + 2^30
 * fits int32 (and so does 2 acc). Other shifts take the reference loop. Used by pv_dsp
 * (P.V of rows that the two-row P.V below does not take). */
typedef struct {
    int32_t mult, zp, e, round, neg;
} att_rq_t;

static att_rq_t att_rq(int32_t mult, int32_t shift, int32_t zp)
{
    const int32_t e = -shift;
    const att_rq_t r = {mult, zp, e, e > 0 ? (int32_t)(1u << (e - 1)) : 0, e > 0};
    return r;
}

/* clamp(zp + requantize(acc, mult, shift)) to int8, as the reference. */
static inline int8_t att_out(const att_rq_t *r, int32_t acc)
{
    const int32_t t = mcuc_smmulr(2 * acc, r->mult);
    const int32_t v = r->zp + ((t + r->round - (int32_t)(((uint32_t)t >> 31) & (uint32_t)r->neg))
                               >> r->e);
    return (int8_t)mcuc_ssat8(v);
}

/* max s[j], four bytes per SSUB8/SEL pair. */
static inline ATT_ALWAYS_INLINE int32_t row_max(const int8_t *s, int32_t n)
{
    uint32_t m4 = 0x80808080u;
    int32_t j = 0;
    for (; j + 8 <= n; j += 8) { /* two words per pass: half the loop's own instructions */
        m4 = mcuc_smax8(mcuc_read32(s + j), m4);
        m4 = mcuc_smax8(mcuc_read32(s + j + 4), m4);
    }
    if (j + 4 <= n) {
        m4 = mcuc_smax8(mcuc_read32(s + j), m4);
        j += 4;
    }
    m4 = mcuc_smax8(m4, m4 >> 16);
    m4 = mcuc_smax8(m4, m4 >> 8);
    int32_t mx = (int8_t)(m4 & 0xFFu);
    for (; j < n; ++j) {
        mx = s[j] > mx ? s[j] : mx;
    }
    return mx;
}

/* P.V's rows are padded with zeros to n4 = n rounded up to a multiple of 4 (in p and in
 * V^T alike, so each padded term is 0 * 0), which spares dot_pair its d % 4 tail. */
static inline int32_t att_pad4(int32_t n)
{
    return (n + 3) & ~3;
}

/* The softmax of the reference, leaving p = s + 128 (0..255) as unsigned bytes in place;
 * returns sum p. The table index mx - s[j] lies in 0..255, so USUB8 forms it four bytes
 * at a time, exactly (modulo 256), and it replaces s[j] for the second pass. r <= 256
 * since exp_table[mx - s[j]] is a term of sum (the uint32 arithmetic is the reference's),
 * so USAT's signed view of r is r and USAT(r, 8) = min(r, 255). Used with pv_dsp. */
ATT_NOINLINE static int32_t softmax_dsp(const mcuc_attention_params_t *p, uint8_t *s)
{
    const int32_t n = p->kv_len, mx = row_max((const int8_t *)s, n);
    const uint32_t *tb = p->exp_table, m4 = ((uint32_t)mx & 0xFFu) * 0x01010101u;
    uint32_t sum = 0;
    int32_t j = 0;
    for (; j + 4 <= n; j += 4) {
        const uint32_t w = mcuc_usub8(m4, mcuc_read32((const int8_t *)s + j));
        memcpy(s + j, &w, sizeof w);
        sum += tb[w & 0xFFu] + tb[(w >> 8) & 0xFFu] + tb[(w >> 16) & 0xFFu] + tb[w >> 24];
    }
    for (; j < n; ++j) {
        s[j] = (uint8_t)(mx - (int8_t)s[j]);
        sum += tb[s[j]];
    }
    const uint32_t half = sum / 2u;
    uint32_t p_sum = 0;
    for (j = 0; j + 4 <= n; j += 4) {
        const uint32_t w = mcuc_read32((const int8_t *)s + j);
        const uint32_t p0 = mcuc_usat8((int32_t)((tb[w & 0xFFu] * 256u + half) / sum));
        const uint32_t p1 = mcuc_usat8((int32_t)((tb[(w >> 8) & 0xFFu] * 256u + half) / sum));
        const uint32_t p2 = mcuc_usat8((int32_t)((tb[(w >> 16) & 0xFFu] * 256u + half) / sum));
        const uint32_t p3 = mcuc_usat8((int32_t)((tb[w >> 24] * 256u + half) / sum));
        const uint32_t o = p0 | (p1 << 8) | (p2 << 16) | (p3 << 24);
        memcpy(s + j, &o, sizeof o);
        p_sum = mcuc_usada8(o, p_sum);
    }
    for (; j < n; ++j) {
        const uint32_t pj = mcuc_usat8((int32_t)((tb[s[j]] * 256u + half) / sum));
        s[j] = (uint8_t)pj;
        p_sum += pj;
    }
    return (int32_t)p_sum;
}

/* USAT16 #8 as inline assembly: mcuc_usat16_8 (simd.h, the ACLE intrinsic) is the same
 * instruction, but with it gcc allocated softmax_pairs' and mcuc_attention_s8's registers
 * otherwise, 8,400 instructions more per inference of the default model (stm32f746). */
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
static inline uint32_t att_usat16_8(uint32_t x)
{
    uint32_t r;
    __asm__("usat16 %0, #8, %1" : "=r"(r) : "r"(x) : "cc");
    return r;
}
#else
#define att_usat16_8 mcuc_usat16_8
#endif

/* The same softmax for the pair path's P.V, with p going straight into its operand: one
 * row of it, as 2 p lanes in unpack_pair's layout (pp[j], pp[j + 2] = (2 p[j], 2 p[j + 2]),
 * (2 p[j + 1], 2 p[j + 3]) for j % 4 == 0; row b's words sit one word on), zero padded to
 * n4 = att_pad4(n); returns sum 2 p. The first pass keeps e[j] = exp_table[mx - s[j]] in
 * e (n4 words, the padding 0, whose p is floor(half / sum) = 0 as half < sum: sum > 0, as
 * the reference's division needs for n >= 1), so the second reads one word per p instead
 * of extracting its index again and loading the table, and neither rewrites s. Each r
 * is at most 256 (see softmax_dsp), so USAT16 saturates two of them at once. Sum 2 p is
 * the two lanes of the sum of the words, each lane at most 2 * 510 * n4 / 4 <= 32,640
 * (n4 <= MCUC_ATT_DSP_PAIR_LEN / 2 = 128), so no lane carries into the other. */
ATT_NOINLINE static int32_t softmax_pairs(const mcuc_attention_params_t *p, const uint8_t *s,
                                          uint32_t *pp, uint32_t *e)
{
    const int32_t n = p->kv_len, n4 = att_pad4(n), mx = row_max((const int8_t *)s, n);
    const uint32_t *tb = p->exp_table, m4 = ((uint32_t)mx & 0xFFu) * 0x01010101u;
    uint32_t sum = 0;
    int32_t j = 0;
    /* the padding first (n4 >= 4; the first pass rewrites those below n), three stores
     * where a loop to n4 became a memset call */
    e[n4 - 3] = 0;
    e[n4 - 2] = 0;
    e[n4 - 1] = 0;
    for (; j + 4 <= n; j += 4) {
        const uint32_t w = mcuc_usub8(m4, mcuc_read32((const int8_t *)s + j));
        const uint32_t e0 = tb[w & 0xFFu], e1 = tb[(w >> 8) & 0xFFu];
        const uint32_t e2 = tb[(w >> 16) & 0xFFu], e3 = tb[w >> 24];
        e[j] = e0;
        e[j + 1] = e1;
        e[j + 2] = e2;
        e[j + 3] = e3;
        sum += e0 + e1 + e2 + e3;
    }
    for (; j < n; ++j) {
        e[j] = tb[(uint8_t)(mx - (int8_t)s[j])];
        sum += e[j];
    }
    const uint32_t half = sum / 2u;
    uint32_t p_sum = 0;
    for (j = 0; j < n4; j += 4) {
        const uint32_t r0 = (e[j] * 256u + half) / sum, r1 = (e[j + 1] * 256u + half) / sum;
        const uint32_t r2 = (e[j + 2] * 256u + half) / sum, r3 = (e[j + 3] * 256u + half) / sum;
        const uint32_t ev = att_usat16_8(mcuc_pkhbt16(r0, r2)) << 1;
        const uint32_t od = att_usat16_8(mcuc_pkhbt16(r1, r3)) << 1;
        pp[j] = ev;
        pp[j + 2] = od;
        p_sum += ev + od;
    }
    return (int32_t)((p_sum & 0xFFFFu) + (p_sum >> 16));
}

/* y[c] = requantized sum_j p[j] (v[j][c] - v_zp): four channels by four rows per step.
 * Rows j and j + 2 (and j + 1, j + 3) are merged halfword by halfword so that SXTB16
 * gives (v[j][c], v[j+2][c]) lanes, matched by UXTB16's (p[j], p[j+2]). */
ATT_NOINLINE static void pv_dsp(const mcuc_attention_params_t *p, const uint8_t *pr,
                                int32_t p_sum, const int8_t *vb, int8_t *yo)
{
    const att_rq_t rq_local = att_rq(p->o_mult, p->o_shift, p->o_zp), *rq = &rq_local;
    const int32_t n = p->kv_len, n4 = n / 4, dv = p->dv;
    const int32_t rs = p->v_rs, fold = p->v_zp * p_sum;
    const uint8_t *pend = pr + 4 * n4;
    int32_t c = 0;
    for (; c + 4 <= dv; c += 4) {
        int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
        const int8_t *vr = vb + c;
        for (const uint8_t *pg = pr; pg != pend; pg += 4, vr += 4 * (int64_t)rs) {
            const uint32_t pw = mcuc_read32((const int8_t *)pg);
            const uint32_t pe = mcuc_uxtb16(pw), po = mcuc_uxtb16_ror8(pw);
            const uint32_t w0 = mcuc_read32(vr), w2 = mcuc_read32(vr + 2 * (int64_t)rs);
            const uint32_t lo02 = mcuc_pkhbt16(w0, w2), hi02 = mcuc_pkhtb16(w0, w2);
            a0 = mcuc_smlad(pe, mcuc_sxtb16(lo02), a0);
            a1 = mcuc_smlad(pe, mcuc_sxtb16_ror8(lo02), a1);
            a2 = mcuc_smlad(pe, mcuc_sxtb16(hi02), a2);
            a3 = mcuc_smlad(pe, mcuc_sxtb16_ror8(hi02), a3);
            const uint32_t w1 = mcuc_read32(vr + rs), w3 = mcuc_read32(vr + 3 * (int64_t)rs);
            const uint32_t lo13 = mcuc_pkhbt16(w1, w3), hi13 = mcuc_pkhtb16(w1, w3);
            a0 = mcuc_smlad(po, mcuc_sxtb16(lo13), a0);
            a1 = mcuc_smlad(po, mcuc_sxtb16_ror8(lo13), a1);
            a2 = mcuc_smlad(po, mcuc_sxtb16(hi13), a2);
            a3 = mcuc_smlad(po, mcuc_sxtb16_ror8(hi13), a3);
        }
        for (int32_t j = 4 * n4; j < n; ++j, vr += rs) {
            const int32_t pj = pr[j];
            a0 += pj * vr[0];
            a1 += pj * vr[1];
            a2 += pj * vr[2];
            a3 += pj * vr[3];
        }
        const int32_t acc[4] = {a0, a1, a2, a3};
        for (int32_t t = 0; t < 4; ++t) {
            yo[(int64_t)(c + t) * p->o_cs] = att_out(rq, acc[t] - fold);
        }
    }
    for (; c < dv; ++c) {
        int32_t a = 0;
        for (int32_t j = 0; j < n; ++j) {
            a += (int32_t)pr[j] * vb[(int64_t)j * rs + c];
        }
        yo[(int64_t)c * p->o_cs] = att_out(rq, a - fold);
    }
}

/* The pair path: two query rows per pass over k, so that each unpacked word of k feeds
 * two SMLADs (a 2 x 2 block of q rows by k rows: 16 instructions per 16 MACs before the
 * loop's own). The second row's scores live in a stack buffer of MCUC_ATT_DSP_PAIR_LEN
 * bytes (the arena's scratch stays one row); longer rows, and the last of an odd q_len,
 * run the same block with both of its q rows the same. P.V takes the same block against
 * V^T of the head (a stack buffer of MCUC_ATT_DSP_VT_BYTES, interleaved by channel pairs:
 * 15 instructions per 16 MACs) where n4 = kv_len rounded up to 4 is at most PAIR_LEN / 2
 * (the softmax keeps its exp values beside the two p rows in the q/p buffer) and
 * -22 <= o_shift <= -1 with o_mult >= 0, for as many channels as V^T fits (pv_rows2 the
 * others, from the same p lanes); else, with that o_shift and o_mult, pv_dsp2 takes both
 * rows of a pair from V in place, and pv_dsp the other rows. The pair block's P.V:
 * 2 p lies in [0, 510] and the sums start at -2 v_zp sum p, with the bounds below for
 * len = n4 <= 128 (130,560 * 128 < 2^31, 65,025 * 128 < 2^30 - 2^15). q is unpacked as
 * 2 (q - q_zp) in [-510, 510] (int16 lanes) and each sum starts at -2 k_zp sum (q - q_zp),
 * so it ends at 2 acc, the SMMLAR operand of att_out2, with no subtraction or doubling per
 * score. Every partial sum is at most 2 * 255 * 128 * d + 2 * 128 * 255 * d = 130,560 d
 * <= 16,711,680 (d <= 128) in magnitude, and the last is 2 acc with |acc| <= 255 * 255 * d:
 * no int32 overflow. */
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

static att_rq2_t att_rq2(int32_t mult, int32_t shift, int32_t zp)
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

/* Rows a and b of q as 2 (q - q_zp) lanes, four d per group of four words: (a's d, d + 2),
 * (b's d, d + 2), (a's d + 1, d + 3), (b's d + 1, d + 3), so that a step's first LDRD feeds
 * its first four SMLADs before the second is needed (fewer registers live); the d % 4
 * tail in qt[0..2] (a) and qt[3..5] (b); returns the sums' start values
 * -2 k_zp sum (q - q_zp) in f[0..1]. */
static void unpack_pair(const mcuc_attention_params_t *p, const int8_t *qa, const int8_t *qb,
                        uint32_t *qp, int32_t *qt, int32_t *f)
{
    const uint32_t qz2 = mcuc_dup16(p->q_zp), ones = 0x00010001u;
    const int32_t d4 = p->d / 4, dt = p->d % 4;
    int32_t sa = 0, sb = 0;
    for (int32_t l = 0; l < d4; ++l) {
        const uint32_t wa = mcuc_read32(qa + 4 * l), wb = mcuc_read32(qb + 4 * l);
        const uint32_t ae = mcuc_ssub16(mcuc_sxtb16(wa), qz2);
        const uint32_t ao = mcuc_ssub16(mcuc_sxtb16_ror8(wa), qz2);
        const uint32_t be = mcuc_ssub16(mcuc_sxtb16(wb), qz2);
        const uint32_t bo = mcuc_ssub16(mcuc_sxtb16_ror8(wb), qz2);
        sa = mcuc_smlad(ae, ones, mcuc_smlad(ao, ones, sa));
        sb = mcuc_smlad(be, ones, mcuc_smlad(bo, ones, sb));
        qp[4 * l] = mcuc_dbl16(ae);
        qp[4 * l + 1] = mcuc_dbl16(be);
        qp[4 * l + 2] = mcuc_dbl16(ao);
        qp[4 * l + 3] = mcuc_dbl16(bo);
    }
    for (int32_t t = 0; t < dt; ++t) {
        const int32_t xa = qa[4 * d4 + t] - p->q_zp, xb = qb[4 * d4 + t] - p->q_zp;
        sa += xa;
        sb += xb;
        qt[t] = 2 * xa;
        qt[3 + t] = 2 * xb;
    }
    f[0] = -2 * p->k_zp * sa;
    f[1] = -2 * p->k_zp * sb;
}

/* One step t of the 2 x 2 block: four values (4 t .. 4 t + 3) of rows a and b of x (the
 * words qq[4 t .. 4 t + 3], two LDRDs) against the same four of two rows of m: rows r0 and
 * r1 (one LDR each), or with `inter` (a constant at each inlined copy) the pair-interleaved
 * V^T of transpose_v, where r0's word t and r1's word t are adjacent at r0 + 8 t (one LDRD:
 * 15 instructions per 16 MACs instead of 16). */
#define ATT_PAIR_STEP(qq, t, r0, r1)                                                     \
    do {                                                                                 \
        uint32_t qal_, qah_, qbl_, qbh_, w0, w1;                                         \
        MCUC_LDRD(qal_, qbl_, qq, 16 * (t));                                             \
        if (inter) {                                                                     \
            MCUC_LDRD(w0, w1, (const uint32_t *)(const void *)(r0), 8 * (t));            \
        } else {                                                                         \
            w0 = mcuc_read32((r0) + 4 * (t));                                            \
            w1 = mcuc_read32((r1) + 4 * (t));                                            \
        }                                                                                \
        uint32_t x0 = mcuc_sxtb16(w0), x1 = mcuc_sxtb16(w1);                             \
        a0 = mcuc_smlad(qal_, x0, a0);                                                   \
        a1 = mcuc_smlad(qal_, x1, a1);                                                   \
        b0 = mcuc_smlad(qbl_, x0, b0);                                                   \
        b1 = mcuc_smlad(qbl_, x1, b1);                                                   \
        MCUC_LDRD(qah_, qbh_, qq, 16 * (t) + 8);                                         \
        x0 = mcuc_sxtb16_ror8(w0);                                                       \
        x1 = mcuc_sxtb16_ror8(w1);                                                       \
        a0 = mcuc_smlad(qah_, x0, a0);                                                   \
        a1 = mcuc_smlad(qah_, x1, a1);                                                   \
        b0 = mcuc_smlad(qbh_, x0, b0);                                                   \
        b1 = mcuc_smlad(qbh_, x1, b1);                                                   \
    } while (0)

/* The last row of an odd n: rows a and b of x against one row r0 of m (rare: cold). */
ATT_NOINLINE static void dot_pair_last(const uint32_t *qp, const int32_t *qt, int32_t fa,
                                       int32_t fb, int32_t len, const int8_t *r0,
                                       const att_rq2_t *rq, int8_t *oa, int8_t *ob)
{
    const uint32_t *qend = qp + 4 * (len / 4);
    int32_t a0 = fa, b0 = fb;
    for (const uint32_t *qq = qp; qq != qend; qq += 4, r0 += 4) {
        const uint32_t w0 = mcuc_read32(r0);
        a0 = mcuc_smlad(qq[0], mcuc_sxtb16(w0), a0);
        b0 = mcuc_smlad(qq[1], mcuc_sxtb16(w0), b0);
        a0 = mcuc_smlad(qq[2], mcuc_sxtb16_ror8(w0), a0);
        b0 = mcuc_smlad(qq[3], mcuc_sxtb16_ror8(w0), b0);
    }
    for (int32_t t = 0; t < len % 4; ++t) {
        a0 += qt[t] * r0[t];
        b0 += qt[3 + t] * r0[t];
    }
    oa[0] = att_out2(rq, a0);
    ob[0] = att_out2(rq, b0);
}

/* The 2 x 2 block of both products: rows a and b of x (unpacked by unpack_pair or
 * softmax_pairs: len values, sums starting at f[0], f[1]) against each of the n rows of m
 * (len bytes from m + r * rs; with inter, rows r and r + 1 interleaved in 2 rs bytes from
 * m + r * rs, r even, as transpose_v lays V^T out), two rows of m per pass; out_a[r * os]
 * and out_b[r * os] get att_out2 of the sums. Scores: x = q, m = k; P.V: x = p, m = V^T.
 * Inlined into dot_pair four times (wsteps, inter and os constant in each): with wsteps
 * = len / 4 (8 for len 32, the commonest head size, 16 for len 64, the head size of issue
 * 23's larger shapes) the steps are written out (gcc does not unroll at -Os), so a block is
 * its 16 wsteps instructions of steps, the epilogue and the row loop, with no step loop,
 * tail test or accumulator moves (the first SMLADs read f); else
 * the steps run as Duff's device over eight written out (one jump into the sequence per
 * block, then eight steps per pass), then the len % 4 tail (none for V^T: len = n4). */
static inline ATT_ALWAYS_INLINE void dot_pair_rows(const uint32_t *qp, const int32_t *qt,
                                                   const int32_t *f, int32_t len,
                                                   const int8_t *m, int32_t n, int32_t rs,
                                                   const att_rq2_t *rqp, int8_t *oa,
                                                   int8_t *ob, int32_t os, int wsteps,
                                                   int inter)
{
    const att_rq2_t rq_local = *rqp, *rq = &rq_local;
    const int32_t d4 = len / 4, dt = len % 4, fa = f[0], fb = f[1];
    const int32_t kb = inter ? 8 : 4; /* bytes of a row of m per step */
    const int32_t chunks = (d4 + 7) / 8, first = d4 - 8 * (chunks - 1) - 8 * (chunks == 0);
    const int8_t *r0 = m;
    /* the pass count: oa itself where os = 1 (os != 0 is known), else a counter */
    int8_t *const oa_end = inter ? oa : oa + (n & ~1);
    int32_t pairs = n / 2;
    for (; inter ? pairs > 0 : oa != oa_end; --pairs, oa += 2 * os, ob += 2 * os) {
        const int8_t *r1 = r0 + rs;
        int32_t a0 = fa, a1 = fa, b0 = fb, b1 = fb;
        if (wsteps) {
            ATT_PAIR_STEP(qp, 0, r0, r1);
            ATT_PAIR_STEP(qp, 1, r0, r1);
            ATT_PAIR_STEP(qp, 2, r0, r1);
            ATT_PAIR_STEP(qp, 3, r0, r1);
            ATT_PAIR_STEP(qp, 4, r0, r1);
            ATT_PAIR_STEP(qp, 5, r0, r1);
            ATT_PAIR_STEP(qp, 6, r0, r1);
            ATT_PAIR_STEP(qp, 7, r0, r1);
            if (wsteps == 16) {
                ATT_PAIR_STEP(qp, 8, r0, r1);
                ATT_PAIR_STEP(qp, 9, r0, r1);
                ATT_PAIR_STEP(qp, 10, r0, r1);
                ATT_PAIR_STEP(qp, 11, r0, r1);
                ATT_PAIR_STEP(qp, 12, r0, r1);
                ATT_PAIR_STEP(qp, 13, r0, r1);
                ATT_PAIR_STEP(qp, 14, r0, r1);
                ATT_PAIR_STEP(qp, 15, r0, r1);
            }
            r0 += 2 * rs;
        } else {
            /* Duff's device: the first pass runs the last `first` steps of the written-out
             * eight (offsets from the end of its steps, so no pointer leaves its array),
             * each later pass all eight */
            const uint32_t *qe = qp + 4 * first;
            const int8_t *next = r0 + 2 * rs;
            int32_t left = chunks;
            r0 += kb * first;
            r1 += kb * first;
            switch (first) {
            default: /* first = 0: len < 4, the tail only */
                break;
                do {
                    qe += 32;
                    r0 += 8 * kb;
                    r1 += 8 * kb;
                    /* fall through */
                case 8: ATT_PAIR_STEP(qe, -8, r0, r1); /* fall through */
                case 7: ATT_PAIR_STEP(qe, -7, r0, r1); /* fall through */
                case 6: ATT_PAIR_STEP(qe, -6, r0, r1); /* fall through */
                case 5: ATT_PAIR_STEP(qe, -5, r0, r1); /* fall through */
                case 4: ATT_PAIR_STEP(qe, -4, r0, r1); /* fall through */
                case 3: ATT_PAIR_STEP(qe, -3, r0, r1); /* fall through */
                case 2: ATT_PAIR_STEP(qe, -2, r0, r1); /* fall through */
                case 1: ATT_PAIR_STEP(qe, -1, r0, r1);
                } while (--left > 0);
            }
            for (int32_t t = 0; !inter && t < dt; ++t) { /* inter: len = n4, no tail */
                const int32_t k0 = r0[t], k1 = r1[t];
                a0 += qt[t] * k0;
                a1 += qt[t] * k1;
                b0 += qt[3 + t] * k0;
                b1 += qt[3 + t] * k1;
            }
            r0 = next;
        }
        oa[0] = att_out2(rq, a0);
        oa[os] = att_out2(rq, a1);
        ob[0] = att_out2(rq, b0);
        ob[os] = att_out2(rq, b1);
    }
    if (n & 1) {
        dot_pair_last(qp, qt, fa, fb, len, r0, rq, oa, ob);
    }
}

/* One product of the pair path, prepared once per call (m once per batch): dot_pair's
 * operands besides its output rows, behind one pointer (passed one by one, the eleven
 * cost about 20 instructions of stack traffic per call on each side). */
typedef struct {
    const uint32_t *qp;
    const int32_t *qt, *f;
    const int8_t *m;
    int32_t len, n, rs, os, inter;
    att_rq2_t rq;
} att_dot_t;

/* The copies of dot_pair_rows: V^T interleaved (P.V), or k rows (scores, os = 1) with
 * d = 32 or 64 written out or any d. */
ATT_NOINLINE static void dot_pair(const att_dot_t *d, int8_t *oa, int8_t *ob)
{
    if (d->inter) {
        dot_pair_rows(d->qp, d->qt, d->f, d->len, d->m, d->n, d->rs, &d->rq, oa, ob, d->os, 0, 1);
    } else if (d->len == 32) {
        dot_pair_rows(d->qp, d->qt, d->f, 32, d->m, d->n, d->rs, &d->rq, oa, ob, 1, 8, 0);
    } else if (d->len == 64) {
        dot_pair_rows(d->qp, d->qt, d->f, 64, d->m, d->n, d->rs, &d->rq, oa, ob, 1, 16, 0);
    } else {
        dot_pair_rows(d->qp, d->qt, d->f, d->len, d->m, d->n, d->rs, &d->rq, oa, ob, 1, 0, 0);
    }
}


/* Byte offset of v[j][c] in transpose_v's V^T (rows of n4 = att_pad4(n) bytes): channels
 * c and c + 1 (c even) share 2 n4 bytes, word by word (c's bytes 4 g .. 4 g + 3, then
 * c + 1's), so that dot_pair reads one word of each with one LDRD; the last channel of an
 * odd dv is a plain row at c n4. */
static inline int32_t vt_off(int32_t c, int32_t j, int32_t n4, int32_t dv)
{
    if ((dv & 1) && c == dv - 1) {
        return c * n4 + j;
    }
    return (c & ~1) * n4 + 2 * (j & ~3) + 4 * (c & 1) + (j & 3);
}

/* V^T of one head in vt_off's layout, zero padded to n4 (the padded terms are 0 * 0).
 * Four rows by four channels per step: PKHBT/PKHTB pair rows j, j + 2 and j + 1, j + 3
 * halfword by halfword, UXTB16 then gathers one channel's four bytes (about 26
 * instructions per 16 bytes against 5 per byte one at a time); channels c, c + 1 land at
 * vt_off(c, j) and 4 bytes on, c + 2, c + 3 at 2 n4 bytes on (c + 3 < dv & ~3: never an
 * odd dv's last, plain row). The last, partial group of rows (n % 4) and the channels past
 * dv & ~3 go one byte at a time. */
static void transpose_v(const int8_t *vb, int32_t n, int32_t dv, int32_t rs, uint32_t *vt)
{
    const int32_t n4 = att_pad4(n), dv4 = dv & ~3, nf = n & ~3;
    int8_t *vt8 = (int8_t *)vt;
    for (int32_t j = 0; j < nf; j += 4) {
        const int8_t *src = vb + (int64_t)j * rs;
        int8_t *dst = vt8 + 2 * j;
        for (int32_t c = 0; c < dv4; c += 4, src += 4, dst += 4 * n4) {
            const uint32_t w0 = mcuc_read32(src), w1 = mcuc_read32(src + rs);
            const uint32_t w2 = mcuc_read32(src + 2 * (int64_t)rs);
            const uint32_t w3 = mcuc_read32(src + 3 * (int64_t)rs);
            const uint32_t lo02 = mcuc_pkhbt16(w0, w2), lo13 = mcuc_pkhbt16(w1, w3);
            const uint32_t hi02 = mcuc_pkhtb16(w0, w2), hi13 = mcuc_pkhtb16(w1, w3);
            const uint32_t c0 = mcuc_uxtb16(lo02) | (mcuc_uxtb16(lo13) << 8);
            const uint32_t c1 = mcuc_uxtb16_ror8(lo02) | (mcuc_uxtb16_ror8(lo13) << 8);
            const uint32_t c2 = mcuc_uxtb16(hi02) | (mcuc_uxtb16(hi13) << 8);
            const uint32_t c3 = mcuc_uxtb16_ror8(hi02) | (mcuc_uxtb16_ror8(hi13) << 8);
            memcpy(dst, &c0, 4);
            memcpy(dst + 4, &c1, 4);
            memcpy(dst + 2 * n4, &c2, 4);
            memcpy(dst + 2 * n4 + 4, &c3, 4);
        }
    }
    for (int32_t c = 0; c < dv; ++c) {
        for (int32_t j = c < dv4 ? nf : 0; j < n4; j += 4) {
            uint32_t w = 0;
            for (int32_t r = 0; r < 4 && j + r < n; ++r) {
                w |= (uint32_t)(uint8_t)vb[(int64_t)(j + r) * rs + c] << (8 * r);
            }
            memcpy(vt8 + vt_off(c, j, n4, dv), &w, sizeof w);
        }
    }
}

/* pv_rows2's operand from rows a and b of p (softmax_dsp's bytes): the layout that
 * softmax_pairs writes (2 p lanes, n4 = att_pad4(n) words, the padding 0), so that
 * pv_rows2 reads either. The last, partial group is gathered byte by byte (pa and pb hold
 * n bytes). */
static void pack_p2(const uint8_t *pa, const uint8_t *pb, int32_t n, uint32_t *pp)
{
    int32_t j = 0;
    uint32_t wa = 0, wb = 0;
    for (; j < n; j += 4) {
        if (j + 4 <= n) {
            wa = mcuc_read32((const int8_t *)pa + j);
            wb = mcuc_read32((const int8_t *)pb + j);
        } else {
            wa = wb = 0;
            for (int32_t t = 0; j + t < n; ++t) {
                wa |= (uint32_t)pa[j + t] << (8 * t);
                wb |= (uint32_t)pb[j + t] << (8 * t);
            }
        }
        pp[j] = mcuc_uxtb16(wa) << 1;
        pp[j + 1] = mcuc_uxtb16(wb) << 1;
        pp[j + 2] = mcuc_uxtb16_ror8(wa) << 1;
        pp[j + 3] = mcuc_uxtb16_ror8(wb) << 1;
    }
}

/* 2 p[j] of row b (0: a, 1: b) from pv_rows2's operand. */
static inline int32_t att_lane2(const uint32_t *pp, int32_t j, int32_t b)
{
    return (int32_t)((pp[(j & ~3) + 2 * (j & 1) + b] >> (8 * (j & 2))) & 0xFFFFu);
}

/* P.V of two rows a and b at once from V in place, channels d->n .. dv - 1 (those whose
 * V^T did not fit the pair block's buffer, or all of them: pv_dsp2): each unpacked pair
 * of V lanes (pv_dsp's four channels by four rows) feeds two SMLADs, one per row, instead
 * of one. p's rows are d->qp in softmax_pairs' layout (per four j: (a's 2 p[j], 2 p[j+2]),
 * (b's), (a's 2 p[j+1], 2 p[j+3]), (b's): one LDRD per half step; the n % 4 tail from the
 * same lanes), written by softmax_pairs or pack_p2; each sum plus d->f = -2 v_zp sum p is
 * 2 acc, att_out2's operand (d->rq: called only where att_rq2_ok holds for o_shift,
 * o_mult). For n <= MCUC_ATT_DSP_PAIR_LEN = 256: a partial sum is at most 510 * 128 * n
 * <= 16,711,680 and the last 2 acc has |acc| <= 255 * 255 * n = 16,646,400 < 2^30 - 2^15
 * in magnitude, as att_out2 needs. Rows a and b may be the same row (the last of an odd
 * q_len), ya and yb then the same output row, written twice alike. */
ATT_NOINLINE static void pv_rows2(const mcuc_attention_params_t *p, const att_dot_t *d,
                                  const int8_t *vb, int8_t *ya, int8_t *yb)
{
    const att_rq2_t rq_local = d->rq, *rq = &rq_local;
    const uint32_t *pp = d->qp;
    const int32_t fa = d->f[0], fb = d->f[1];
    const int32_t n = p->kv_len, nf = n & ~3, dv = p->dv, rs = p->v_rs, os = p->o_cs;
    const uint32_t *pend = pp + nf;
    int32_t c = d->n;
    for (; c + 4 <= dv; c += 4) {
        int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, b0 = 0, b1 = 0, b2 = 0, b3 = 0;
        const int8_t *vr = vb + c;
        for (const uint32_t *pg = pp; pg != pend; pg += 4, vr += 4 * (int64_t)rs) {
            uint32_t pe, qe, x;
            MCUC_LDRD(pe, qe, pg, 0);
            const uint32_t w0 = mcuc_read32(vr), w2 = mcuc_read32(vr + 2 * (int64_t)rs);
            const uint32_t lo02 = mcuc_pkhbt16(w0, w2), hi02 = mcuc_pkhtb16(w0, w2);
            x = mcuc_sxtb16(lo02);
            a0 = mcuc_smlad(pe, x, a0);
            b0 = mcuc_smlad(qe, x, b0);
            x = mcuc_sxtb16_ror8(lo02);
            a1 = mcuc_smlad(pe, x, a1);
            b1 = mcuc_smlad(qe, x, b1);
            x = mcuc_sxtb16(hi02);
            a2 = mcuc_smlad(pe, x, a2);
            b2 = mcuc_smlad(qe, x, b2);
            x = mcuc_sxtb16_ror8(hi02);
            a3 = mcuc_smlad(pe, x, a3);
            b3 = mcuc_smlad(qe, x, b3);
            MCUC_LDRD(pe, qe, pg, 8);
            const uint32_t w1 = mcuc_read32(vr + rs), w3 = mcuc_read32(vr + 3 * (int64_t)rs);
            const uint32_t lo13 = mcuc_pkhbt16(w1, w3), hi13 = mcuc_pkhtb16(w1, w3);
            x = mcuc_sxtb16(lo13);
            a0 = mcuc_smlad(pe, x, a0);
            b0 = mcuc_smlad(qe, x, b0);
            x = mcuc_sxtb16_ror8(lo13);
            a1 = mcuc_smlad(pe, x, a1);
            b1 = mcuc_smlad(qe, x, b1);
            x = mcuc_sxtb16(hi13);
            a2 = mcuc_smlad(pe, x, a2);
            b2 = mcuc_smlad(qe, x, b2);
            x = mcuc_sxtb16_ror8(hi13);
            a3 = mcuc_smlad(pe, x, a3);
            b3 = mcuc_smlad(qe, x, b3);
        }
        for (int32_t j = nf; j < n; ++j, vr += rs) {
            const int32_t pj = att_lane2(pp, j, 0), qj = att_lane2(pp, j, 1);
            a0 += pj * vr[0];
            a1 += pj * vr[1];
            a2 += pj * vr[2];
            a3 += pj * vr[3];
            b0 += qj * vr[0];
            b1 += qj * vr[1];
            b2 += qj * vr[2];
            b3 += qj * vr[3];
        }
        ya[(int64_t)c * os] = att_out2(rq, a0 + fa);
        ya[(int64_t)(c + 1) * os] = att_out2(rq, a1 + fa);
        ya[(int64_t)(c + 2) * os] = att_out2(rq, a2 + fa);
        ya[(int64_t)(c + 3) * os] = att_out2(rq, a3 + fa);
        yb[(int64_t)c * os] = att_out2(rq, b0 + fb);
        yb[(int64_t)(c + 1) * os] = att_out2(rq, b1 + fb);
        yb[(int64_t)(c + 2) * os] = att_out2(rq, b2 + fb);
        yb[(int64_t)(c + 3) * os] = att_out2(rq, b3 + fb);
    }
    for (; c < dv; ++c) {
        int32_t a = fa, b = fb;
        for (int32_t j = 0; j < n; ++j) {
            const int32_t vj = vb[(int64_t)j * rs + c];
            a += att_lane2(pp, j, 0) * vj;
            b += att_lane2(pp, j, 1) * vj;
        }
        ya[(int64_t)c * os] = att_out2(rq, a);
        yb[(int64_t)c * os] = att_out2(rq, b);
    }
}

/* Rows a and b (scores in pa, pb) past the pair block's P.V: their softmax (softmax_dsp),
 * then pv_rows2 over every channel into output rows ya and ya + o_rs. */
ATT_NOINLINE static void pv_dsp2(const mcuc_attention_params_t *p, uint32_t *pp, uint8_t *pa,
                                 uint8_t *pb, const int8_t *vb, int8_t *ya)
{
    const int32_t f[2] = {-2 * p->v_zp * softmax_dsp(p, pa), -2 * p->v_zp * softmax_dsp(p, pb)};
    att_dot_t d = {pp, NULL, f, NULL, 0, 0, 0, 0, 0, att_rq2(p->o_mult, p->o_shift, p->o_zp)};
    pack_p2(pa, pb, p->kv_len, pp);
    pv_rows2(p, &d, vb, ya, ya + p->o_rs);
}


void mcuc_attention_s8(const mcuc_attention_params_t *p, const int8_t *q, const int8_t *k,
                       const int8_t *v, int8_t *y, int8_t *scratch)
{
    if (p->q_cs != 1 || p->k_cs != 1 || p->v_cs != 1 || p->q_table || p->k_table
        || p->v_table || p->d > MCUC_ATT_DSP_MAX_D || p->kv_len > MCUC_ATT_DSP_MAX_LEN
        || !att_rq2_ok(p->s_mult, p->s_shift) || p->o_shift > 0 || p->o_shift < -31) {
        attention_ref(p, q, k, v, y, scratch);
        return;
    }
    /* q: two rows (4 words per 4 d); p: two rows (4 words per 4 j), then exp values (n4) */
    uint32_t qp[MCUC_ATT_DSP_PAIR_LEN > MCUC_ATT_DSP_MAX_D ? MCUC_ATT_DSP_PAIR_LEN
                                                           : MCUC_ATT_DSP_MAX_D];
    int32_t qt[6], f[2];
    int8_t s2[MCUC_ATT_DSP_PAIR_LEN];
    uint32_t vt[MCUC_ATT_DSP_VT_BYTES / 4];
    const int32_t n = p->kv_len, n4 = att_pad4(n);
    const int two = n <= MCUC_ATT_DSP_PAIR_LEN;
    const int pv_pair = two && n >= 1 && n4 <= MCUC_ATT_DSP_PAIR_LEN / 2
                        && att_rq2_ok(p->o_mult, p->o_shift);

    const att_rq2_t s_rq2 = att_rq2(p->s_mult, p->s_shift, p->s_zp);
    const att_rq2_t o_rq2 = pv_pair ? att_rq2(p->o_mult, p->o_shift, p->o_zp) : s_rq2;
    att_dot_t qk = {qp, qt, f, k, p->d, n, p->k_rs, 1, 0, s_rq2};
    /* the channels whose V^T fits its buffer: all, or as many as fit less (that - dv) % 4
     * (at least 16 - 3 for n4 <= 128), so that pv_rows2 takes the rest in fours */
    const int32_t vfit = MCUC_ATT_DSP_VT_BYTES / n4;
    const int32_t cvt = p->dv <= vfit ? p->dv : vfit - ((vfit - p->dv) & 3);
    const att_dot_t pv = {qp, qt, f, (const int8_t *)vt, n4, cvt, n4, p->o_cs, 1, o_rq2};
    for (int32_t b = 0; b < p->batch; ++b) {
        const int8_t *qb = q + p->q_off + (int64_t)b * p->q_bs;
        const int8_t *kb = k + p->k_off + (int64_t)b * p->k_bs;
        const int8_t *vb = v + p->v_off + (int64_t)b * p->v_bs;
        int8_t *yb = y + p->o_off + (int64_t)b * p->o_bs;
        qk.m = kb;
        if (pv_pair) {
            transpose_v(vb, n, cvt, p->v_rs, vt);
        }
        /* Rows i and i + 1, or i twice (the last of an odd q_len, or every row when the
         * second score row does not fit s2): both q rows are read before either output
         * row is written (y may lie over q); a row taken twice is written twice, alike. */
        for (int32_t i = 0; i < p->q_len;) {
            const int32_t r = two && i + 1 < p->q_len;
            const int8_t *qa = qb + (int64_t)i * p->q_rs;
            int8_t *ya = yb + (int64_t)i * p->o_rs, *sb = r ? s2 : scratch;
            unpack_pair(p, qa, qa + r * p->q_rs, qp, qt, f);
            dot_pair(&qk, scratch, sb);
            if (pv_pair) {
                /* p's rows straight into the operand (q's unpacked rows are spent);
                 * a row taken twice is copied to b's words */
                f[0] = -p->v_zp * softmax_pairs(p, (const uint8_t *)scratch, qp, qp + n4);
                if (r) {
                    f[1] = -p->v_zp * softmax_pairs(p, (const uint8_t *)s2, qp + 1, qp + n4);
                } else {
                    f[1] = f[0];
                    for (int32_t g = 0; g < n4; g += 4) {
                        qp[g + 1] = qp[g];
                        qp[g + 3] = qp[g + 2];
                    }
                }
                dot_pair(&pv, ya, ya + r * p->o_rs);
                if (cvt < p->dv) {
                    pv_rows2(p, &pv, vb, ya, ya + r * p->o_rs);
                }
            } else if (r && att_rq2_ok(p->o_mult, p->o_shift)) { /* both rows, one pass */
                pv_dsp2(p, qp, (uint8_t *)scratch, (uint8_t *)s2, vb, ya);
            } else {
                const int32_t ps0 = softmax_dsp(p, (uint8_t *)scratch);
                const int32_t ps1 = r ? softmax_dsp(p, (uint8_t *)s2) : ps0;
                pv_dsp(p, (const uint8_t *)scratch, ps0, vb, ya);
                if (r) {
                    pv_dsp(p, (const uint8_t *)s2, ps1, vb, ya + p->o_rs);
                }
            }
            i += 1 + r;
        }
    }
}
#endif /* MCUC_ARM_DSP */
