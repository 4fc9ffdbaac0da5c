/* The ARMv7E-M variant of fused attention (MCUC_ARM_DSP): mcuc_attention_s8, which takes
 * the reference loop (attention.c) for operands it does not handle and the pair path
 * (attention_pair.c) where it can, and the row path's stages: the softmax of one score
 * row (mcuc_att_softmax_dsp), the pair path's softmax into its P.V operand (softmax_pairs), one
 * row's P.V (pv_dsp). The int32 bounds are attention_internal.h's. */
#include "attention_internal.h"

#ifdef MCUC_ARM_DSP

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

/* The softmax of the reference, leaving p = s + 128 (0..255) as unsigned bytes in place;
 * returns sum p. The table index mx - s[j] lies in 0..255, so USUB8 forms it four bytes
 * at a time, exactly (modulo 256), and it replaces s[j] for the second pass. r <= 256
 * since exp_table[mx - s[j]] is a term of sum (the uint32 arithmetic is the reference's),
 * so USAT's signed view of r is r and USAT(r, 8) = min(r, 255). Used with pv_dsp. */
ATT_NOINLINE int32_t mcuc_att_softmax_dsp(const mcuc_attention_params_t *p, uint8_t *s)
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
 * is at most 256 (see mcuc_att_softmax_dsp), so USAT16 saturates two of them at once. Sum 2 p is
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

/* Byte offset of v[j][c] in transpose_v's V^T (rows of n4 = att_pad4(n) bytes): channels
 * c and c + 1 (c even) share 2 n4 bytes, word by word (c's bytes 4 g .. 4 g + 3, then
 * c + 1's), so that mcuc_att_dot_pair reads one word of each with one LDRD; the last channel of an
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

void mcuc_attention_s8(const mcuc_attention_params_t *p, const int8_t *q, const int8_t *k,
                       const int8_t *v, int8_t *y, int8_t *scratch)
{
    if (p->q_cs != 1 || p->k_cs != 1 || p->v_cs != 1 || p->q_table || p->k_table
        || p->v_table || p->d > MCUC_ATT_DSP_MAX_D || p->kv_len > MCUC_ATT_DSP_MAX_LEN
        || !att_rq2_ok(p->s_mult, p->s_shift) || p->o_shift > 0 || p->o_shift < -31) {
        mcuc_attention_ref(p, q, k, v, y, scratch);
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
     * (at least 16 - 3 for n4 <= 128), so that mcuc_att_pv_rows2 takes the rest in fours */
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
            mcuc_att_dot_pair(&qk, scratch, sb);
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
                mcuc_att_dot_pair(&pv, ya, ya + r * p->o_rs);
                if (cvt < p->dv) {
                    mcuc_att_pv_rows2(p, &pv, vb, ya, ya + r * p->o_rs);
                }
            } else if (r && att_rq2_ok(p->o_mult, p->o_shift)) { /* both rows, one pass */
                mcuc_att_pv_dsp2(p, qp, (uint8_t *)scratch, (uint8_t *)s2, vb, ya);
            } else {
                const int32_t ps0 = mcuc_att_softmax_dsp(p, (uint8_t *)scratch);
                const int32_t ps1 = r ? mcuc_att_softmax_dsp(p, (uint8_t *)s2) : ps0;
                pv_dsp(p, (const uint8_t *)scratch, ps0, vb, ya);
                if (r) {
                    pv_dsp(p, (const uint8_t *)s2, ps1, vb, ya + p->o_rs);
                }
            }
            i += 1 + r;
        }
    }
}
#else
typedef int mcuc_attention_dsp_empty; /* ISO C wants a declaration in every file */
#endif /* MCUC_ARM_DSP */
