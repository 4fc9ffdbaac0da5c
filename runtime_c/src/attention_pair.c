/* The pair path of the ARMv7E-M attention (MCUC_ARM_DSP; mcuc_attention_s8 in
 * attention_dsp.c): two query rows per pass over k, so that each unpacked word of k feeds
 * two SMLADs (a 2 x 2 block of q rows by k rows: 16 instructions per 16 MACs before the
 * loop's own). The second row's scores live in a stack buffer of MCUC_ATT_DSP_PAIR_LEN
 * bytes (the arena's scratch stays one row); longer rows, and the last of an odd q_len,
 * run the same block with both of its q rows the same. P.V takes the same block against
 * V^T of the head (a stack buffer of MCUC_ATT_DSP_VT_BYTES, interleaved by channel pairs:
 * 15 instructions per 16 MACs) where n4 = kv_len rounded up to 4 is at most PAIR_LEN / 2
 * (the softmax keeps its exp values beside the two p rows in the q/p buffer) and
 * -22 <= o_shift <= -1 with o_mult >= 0, for as many channels as V^T fits (mcuc_att_pv_rows2 the
 * others, from the same p lanes); else, with that o_shift and o_mult, mcuc_att_pv_dsp2 takes both
 * rows of a pair from V in place, and pv_dsp the other rows. The pair block's P.V:
 * 2 p lies in [0, 510] and the sums start at -2 v_zp sum p, with the bounds below for
 * len = n4 <= 128 (130,560 * 128 < 2^31, 65,025 * 128 < 2^30 - 2^15). q is unpacked as
 * 2 (q - q_zp) in [-510, 510] (int16 lanes) and each sum starts at -2 k_zp sum (q - q_zp),
 * so it ends at 2 acc, the SMMLAR operand of att_out2, with no subtraction or doubling per
 * score. Every partial sum is at most 2 * 255 * 128 * d + 2 * 128 * 255 * d = 130,560 d
 * <= 16,711,680 (d <= 128) in magnitude, and the last is 2 acc with |acc| <= 255 * 255 * d:
 * no int32 overflow. */
#include "attention_internal.h"

#ifdef MCUC_ARM_DSP

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
 * Inlined into mcuc_att_dot_pair four times (wsteps, inter and os constant in each): with wsteps
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

/* The copies of dot_pair_rows: V^T interleaved (P.V), or k rows (scores, os = 1) with
 * d = 32 or 64 written out or any d. */
ATT_NOINLINE void mcuc_att_dot_pair(const att_dot_t *d, int8_t *oa, int8_t *ob)
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

/* mcuc_att_pv_rows2's operand from rows a and b of p (mcuc_att_softmax_dsp's bytes): the
 * layout that softmax_pairs writes (2 p lanes, n4 = att_pad4(n) words, the padding 0), so that
 * mcuc_att_pv_rows2 reads either. The last, partial group is gathered byte by byte (pa and pb hold
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

/* 2 p[j] of row b (0: a, 1: b) from mcuc_att_pv_rows2's operand. */
static inline int32_t att_lane2(const uint32_t *pp, int32_t j, int32_t b)
{
    return (int32_t)((pp[(j & ~3) + 2 * (j & 1) + b] >> (8 * (j & 2))) & 0xFFFFu);
}

/* Half a step of mcuc_att_pv_rows2 (in its scope: pg, a0..a3, b0..b3): both rows' p lanes
 * at byte off of pg (one LDRD) against four channels of V rows va and vb (lanes paired by
 * PKHBT / PKHTB, then unpacked), two SMLADs per unpacked pair. */
#define PV2_HALF(off, va, vb)                                                    \
    do {                                                                         \
        uint32_t pe_, qe_, x_;                                                   \
        MCUC_LDRD(pe_, qe_, pg, off);                                            \
        const uint32_t wa_ = mcuc_read32(va), wb_ = mcuc_read32(vb);             \
        const uint32_t lo_ = mcuc_pkhbt16(wa_, wb_), hi_ = mcuc_pkhtb16(wa_, wb_); \
        x_ = mcuc_sxtb16(lo_);                                                   \
        a0 = mcuc_smlad(pe_, x_, a0);                                            \
        b0 = mcuc_smlad(qe_, x_, b0);                                            \
        x_ = mcuc_sxtb16_ror8(lo_);                                              \
        a1 = mcuc_smlad(pe_, x_, a1);                                            \
        b1 = mcuc_smlad(qe_, x_, b1);                                            \
        x_ = mcuc_sxtb16(hi_);                                                   \
        a2 = mcuc_smlad(pe_, x_, a2);                                            \
        b2 = mcuc_smlad(qe_, x_, b2);                                            \
        x_ = mcuc_sxtb16_ror8(hi_);                                              \
        a3 = mcuc_smlad(pe_, x_, a3);                                            \
        b3 = mcuc_smlad(qe_, x_, b3);                                            \
    } while (0)

/* P.V of two rows a and b at once from V in place, channels d->n .. dv - 1 (those whose
 * V^T did not fit the pair block's buffer, or all of them: mcuc_att_pv_dsp2): each unpacked pair
 * of V lanes (pv_dsp's four channels by four rows) feeds two SMLADs, one per row, instead
 * of one. p's rows are d->qp in softmax_pairs' layout (per four j: (a's 2 p[j], 2 p[j+2]),
 * (b's), (a's 2 p[j+1], 2 p[j+3]), (b's): one LDRD per half step; the n % 4 tail from the
 * same lanes), written by softmax_pairs or pack_p2; each sum plus d->f = -2 v_zp sum p is
 * 2 acc, att_out2's operand (d->rq: called only where att_rq2_ok holds for o_shift,
 * o_mult). For n <= MCUC_ATT_DSP_PAIR_LEN = 256: a partial sum is at most 510 * 128 * n
 * <= 16,711,680 and the last 2 acc has |acc| <= 255 * 255 * n = 16,646,400 < 2^30 - 2^15
 * in magnitude, as att_out2 needs. Rows a and b may be the same row (the last of an odd
 * q_len), ya and yb then the same output row, written twice alike. */
ATT_NOINLINE void mcuc_att_pv_rows2(const mcuc_attention_params_t *p, const att_dot_t *d,
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
            PV2_HALF(0, vr, vr + 2 * (int64_t)rs);
            PV2_HALF(8, vr + rs, vr + 3 * (int64_t)rs);
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

/* Rows a and b (scores in pa, pb) past the pair block's P.V: their softmax (mcuc_att_softmax_dsp),
 * then mcuc_att_pv_rows2 over every channel into output rows ya and ya + o_rs. */
ATT_NOINLINE void mcuc_att_pv_dsp2(const mcuc_attention_params_t *p, uint32_t *pp,
                                   uint8_t *pa, uint8_t *pb, const int8_t *vb, int8_t *ya)
{
    const int32_t f[2] = {-2 * p->v_zp * mcuc_att_softmax_dsp(p, pa),
                          -2 * p->v_zp * mcuc_att_softmax_dsp(p, pb)};
    att_dot_t d = {pp, NULL, f, NULL, 0, 0, 0, 0, 0, att_rq2(p->o_mult, p->o_shift, p->o_zp)};
    pack_p2(pa, pb, p->kv_len, pp);
    mcuc_att_pv_rows2(p, &d, vb, ya, ya + p->o_rs);
}
#else
typedef int mcuc_attention_pair_empty; /* ISO C wants a declaration in every file */
#endif /* MCUC_ARM_DSP */
