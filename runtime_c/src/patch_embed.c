/* Patch embedding (conv with kernel == stride, no padding) writing tokens [hp * wp][d]
 * directly, one band (row of patches) at a time: band j reads only image rows
 * [j * ph, (j + 1) * ph) of each channel and writes only tokens [j * wp, (j + 1) * wp), so
 * the planner may place y over image rows of bands already done (schedule/patch.py).
 * patch_embed_ref is the portable reference: the accumulator is int64 (exact) and
 * saturated to int32, as conv2d_s8 does.
 *
 * With MCUC_ARM_DSP (boards whose board.toml says [cpu] dsp = true) the same bands go
 * through an SMLAD loop, for taps = c_in * ph * pw <= MCUC_PE_MAX_TAPS (else the
 * reference). Both operands are unpacked into 16-bit pairs on the stack first, because
 * each is reused many times: every patch uses the same weights, every output channel the
 * same patch.
 * - Taps are taken in memory order (c, ky, kx) and grouped by four; the last group is
 *   padded with zeros. A group's four values v0..v3 become the pairs (v0, v2), (v1, v3),
 *   what SXTB16 and SXTB16 ROR #8 give for a word of four bytes.
 * - Weights, per block of four output channels (channels past d are zeros): per group,
 *   the two pairs of channel 0, 1, 2, 3, each pair doubled (2w fits 16 bits), so the sum
 *   comes out as 2 * sum, what SMMLAR needs. Unpacked once per call when every block
 *   fits MCUC_PE_WBUF_WORDS (the default model's 64 x 16 taps do), else once per band.
 * - Image: the band's patches (as many as MCUC_PE_XBUF_WORDS holds), minus x_zp
 *   (|x - x_zp| <= 255 fits 16 bits), two patches side by side per group. A band's bytes
 *   are read only while that band is computed, and its tokens written then.
 * - The loop (block_fast4): two patches against two channels, per group two LDRDs of
 *   image pairs, two of weight pairs and eight SMLADs, so every load serves two outputs;
 *   an odd last patch goes against the four channels at once (dot_1x4).
 * Sums in int32: |x - x_zp| <= 255 and |2w| <= 256, so every partial sum is at most
 * 2 * 255 * 128 * taps in magnitude, which fits int32 for taps <= MCUC_PE_MAX_TAPS
 * (checked at compile time below).
 * Epilogue, fast form, for a block whose channels all have a shift in [-20, -1], a
 * multiplier > 0 and |bias| <= 2^30 - 1 - 255 * 128 * taps: the sum starts from 2 * bias,
 * so A = 2a with a = bias + sum exact and |a| < 2^30 (the reference does not saturate).
 * With e = -shift and half = 2^(e-1):
 *   srdhm(a, m) = floor((A * m + 2^31) / 2^32) (mcuc_requantize_fast's comment: the
 *     nudge-and-truncate is this floor for every sign), the rounded high word of A * m;
 *   rdbpot(x, e) = floor((x + half - [x < 0]) / 2^e) for e >= 1 (x >= 0: up when the
 *     remainder is >= half; x < 0: up when it is >= half + 1, as its threshold says);
 *   [x < 0] may be replaced by [a < 0] (m > 0): they differ only when x == 0, where
 *     floor((half - 1) / 2^e) == 0 == floor(half / 2^e);
 *   y_zp + floor(v / 2^e) == floor((v + y_zp * 2^e) / 2^e).
 * So y = SSAT8(SMMLAR(A, m, k - [a < 0]) >> e) with k = half + y_zp * 2^e, and no step
 * overflows: |x| <= 2^30, half <= 2^19, |y_zp * 2^e| <= 2^27. Other blocks start from 0
 * and take QADD for the bias and mcuc_requantize_fast, as linear_s8 does. */
#include "mcuc/kernels.h"

/* Without a variant this is mcuc_patch_embed_s8 itself. */
#ifdef MCUC_ARM_DSP
static void patch_embed_ref(const mcuc_patch_embed_params_t *p, const int8_t *x, int8_t *y)
#else
void mcuc_patch_embed_s8(const mcuc_patch_embed_params_t *p, const int8_t *x, int8_t *y)
#endif
{
    const int32_t taps = p->c_in * p->ph * p->pw;
    const int64_t plane = (int64_t)p->h_in * p->w_in;
    for (int32_t py = 0; py < p->hp; ++py) {
        for (int32_t px = 0; px < p->wp; ++px) {
            int8_t *yt = y + ((int64_t)py * p->wp + px) * p->d;
            for (int32_t o = 0; o < p->d; ++o) {
                const int8_t *wo = p->weights + (int64_t)o * taps;
                int64_t acc = p->bias ? p->bias[o] : 0;
                for (int32_t c = 0; c < p->c_in; ++c) {
                    const int8_t *xc = x + c * plane + ((int64_t)py * p->ph) * p->w_in
                                       + (int64_t)px * p->pw;
                    const int8_t *wc = wo + (int64_t)c * p->ph * p->pw;
                    for (int32_t ky = 0; ky < p->ph; ++ky) {
                        for (int32_t kx = 0; kx < p->pw; ++kx) {
                            acc += (int32_t)(xc[(int64_t)ky * p->w_in + kx] - p->x_zp)
                                   * (int32_t)wc[ky * p->pw + kx];
                        }
                    }
                }
                const int32_t a = (int32_t)(acc > INT32_MAX ? INT32_MAX
                                            : (acc < INT32_MIN ? INT32_MIN : acc));
                const int64_t v = (int64_t)p->y_zp + mcuc_requantize(a, p->mult[o], p->shift[o]);
                yt[o] = (int8_t)(v < -128 ? -128 : (v > 127 ? 127 : v));
            }
        }
    }
}

#ifdef MCUC_ARM_DSP
#include "mcuc/simd.h"

/* Most taps the variant takes: groups = ceil(taps / 4) <= 64, so one block of weights
 * (8 * groups words) fits MCUC_PE_WBUF_WORDS and one pair of patches (4 * groups words)
 * fits MCUC_PE_XBUF_WORDS. */
#define MCUC_PE_MAX_TAPS 256
/* The int32 bound above, as a compile-time check (a negative array size fails). */
typedef char mcuc_pe_sum_fits_int32[(2LL * 255 * 128 * MCUC_PE_MAX_TAPS <= INT32_MAX) ? 1 : -1];
/* Stack buffers: unpacked weights (2 KiB: the default model's 64 channels x 16 taps),
 * the band's patches (1 KiB), and the epilogue constants of up to MCUC_PE_BLOCKS blocks
 * resident at once. */
#define MCUC_PE_WBUF_WORDS 512
#define MCUC_PE_XBUF_WORDS 256
#define MCUC_PE_BLOCKS 16
typedef char mcuc_pe_buffers_fit[(8 * ((MCUC_PE_MAX_TAPS + 3) / 4) <= MCUC_PE_WBUF_WORDS
                                  && 4 * ((MCUC_PE_MAX_TAPS + 3) / 4) <= MCUC_PE_XBUF_WORDS)
                                     ? 1 : -1];

/* One block's epilogue (module comment); fast: the fast form holds for the block. */
typedef struct {
    int32_t km[8]; /* k, mult of channel c at 2c, 2c + 1: one LDRD */
    int32_t e[4], init[4];
    int32_t fast;
} pe_epi_t;

/* x - x_zp for the two lanes of an SXTB16 pair; nothing when the zero point is 0. */
#define MCUC_PE_SUB(v, has_zp, zp2) ((has_zp) ? mcuc_ssub16((v), (zp2)) : (v))

static uint32_t pe_pair(int32_t lo, int32_t hi)
{
    return ((uint32_t)lo & 0xFFFFu) | ((uint32_t)hi << 16);
}

/* A group's two pairs, (v0, v2) and (v1, v3), at dst. */
static void pe_group(const int32_t *v, uint32_t *dst)
{
    dst[0] = pe_pair(v[0], v[2]);
    dst[1] = pe_pair(v[1], v[3]);
}

/* Both 16-bit lanes doubled (lanes of SXTB16 results, so no lane overflows). */
static uint32_t pe_dbl16(uint32_t v)
{
    return (v << 1) & 0xFFFEFFFEu;
}

/* Channels o0 .. o0 + 3 (zeros past d): the groups' doubled pairs into dst, channel c of
 * group g at dst[8g + 2c]. */
static void unpack_weights(const mcuc_patch_embed_params_t *p, int32_t o0, int32_t taps,
                           int32_t groups, uint32_t *dst)
{
    const int32_t nc = p->d - o0 < 4 ? p->d - o0 : 4, full = taps / 4;
    for (int32_t c = 0; c < 4; ++c) {
        uint32_t *dc = dst + 2 * c;
        if (c >= nc) {
            for (int32_t g = 0; g < groups; ++g, dc += 8) {
                dc[0] = dc[1] = 0;
            }
            continue;
        }
        const int8_t *const w = p->weights + (int64_t)(o0 + c) * taps;
        int32_t g = 0;
        for (; g < full; ++g, dc += 8) { /* whole words: SXTB16 */
            const uint32_t ww = mcuc_read32(w + 4 * g);
            dc[0] = pe_dbl16(mcuc_sxtb16(ww));
            dc[1] = pe_dbl16(mcuc_sxtb16_ror8(ww));
        }
        if (g < groups) { /* the last group, padded with zeros */
            int32_t v[4];
            for (int32_t j = 0; j < 4; ++j) {
                v[j] = 4 * g + j < taps ? 2 * w[4 * g + j] : 0;
            }
            pe_group(v, dc);
        }
    }
}

/* One row's word i of the nq patches from xw (pw bytes apart) as pairs minus zp2, into
 * dq (patch q at (q / 2) * stride + 2 * (q % 2)); has_zp is a constant at each call. */
MCUC_ALWAYS_INLINE static void unpack_words(const int8_t *xw, int32_t nq, int32_t pw,
                                            int32_t stride, int has_zp, uint32_t zp2,
                                            uint32_t *dq)
{
    int32_t q = 0;
    for (; q + 1 < nq; q += 2, dq += stride) {
        const uint32_t v0 = mcuc_read32(xw + q * pw), v1 = mcuc_read32(xw + (q + 1) * pw);
        dq[0] = MCUC_PE_SUB(mcuc_sxtb16(v0), has_zp, zp2);
        dq[1] = MCUC_PE_SUB(mcuc_sxtb16_ror8(v0), has_zp, zp2);
        dq[2] = MCUC_PE_SUB(mcuc_sxtb16(v1), has_zp, zp2);
        dq[3] = MCUC_PE_SUB(mcuc_sxtb16_ror8(v1), has_zp, zp2);
    }
    if (q < nq) {
        const uint32_t v0 = mcuc_read32(xw + q * pw);
        dq[0] = MCUC_PE_SUB(mcuc_sxtb16(v0), has_zp, zp2);
        dq[1] = MCUC_PE_SUB(mcuc_sxtb16_ror8(v0), has_zp, zp2);
    }
}

/* The pairs of (x - x_zp) of the nq patches from xp (a band's patches q0..), in pairs:
 * patch q's group g at dst[(q / 2) * 4 * groups + 4g + 2 * (q % 2)], so that one pass
 * reads two patches' groups side by side. */
static void unpack_band(const mcuc_patch_embed_params_t *p, const int8_t *xp, int32_t nq,
                        int64_t plane, int32_t groups, uint32_t *dst)
{
    const int32_t x_zp = p->x_zp, w_in = p->w_in, ph = p->ph, pw = p->pw;
    if ((pw & 3) == 0) { /* every group is one word of one image row */
        const uint32_t zp2 = mcuc_dup16(x_zp);
        uint32_t *dg = dst; /* group g of patch 0 */
        for (int32_t c = 0; c < p->c_in; ++c) {
            for (int32_t ky = 0; ky < ph; ++ky) {
                const int8_t *xr = xp + c * plane + (int64_t)ky * w_in;
                for (int32_t i = 0; i < pw; i += 4, dg += 4) {
                    if (x_zp) {
                        unpack_words(xr + i, nq, pw, 4 * groups, 1, zp2, dg);
                    } else {
                        unpack_words(xr + i, nq, pw, 4 * groups, 0, zp2, dg);
                    }
                }
            }
        }
        return;
    }
    for (int32_t q = 0; q < nq; ++q, xp += pw) {
        uint32_t *dq = dst + (q >> 1) * 4 * groups + 2 * (q & 1);
        int32_t c = 0, ky = 0, kx = 0; /* the next tap */
        for (int32_t g = 0; g < groups; ++g, dq += 4) {
            int32_t v[4];
            for (int32_t j = 0; j < 4; ++j) {
                if (c == p->c_in) { /* the padding after the last tap */
                    v[j] = 0;
                    continue;
                }
                v[j] = xp[c * plane + (int64_t)ky * w_in + kx] - x_zp;
                if (++kx == pw) {
                    kx = 0;
                    if (++ky == ph) {
                        ky = 0;
                        ++c;
                    }
                }
            }
            pe_group(v, dq);
        }
    }
}

/* The epilogue constants of block o0 (module comment); bias_max = 2^30 - 1 - 255 * 128 *
 * taps > 0 for taps <= MCUC_PE_MAX_TAPS. */
static void block_epilogue(const mcuc_patch_embed_params_t *p, int32_t o0, int32_t bias_max,
                           pe_epi_t *ep)
{
    const int32_t nc = p->d - o0 < 4 ? p->d - o0 : 4, y_zp = p->y_zp;
    int32_t fast = 1;
    for (int32_t c = 0; c < 4; ++c) {
        const int32_t b = c < nc && p->bias ? p->bias[o0 + c] : 0;
        const int32_t s = c < nc ? p->shift[o0 + c] : -1;
        const int32_t m = c < nc ? p->mult[o0 + c] : 1;
        /* |b| <= bias_max, as one unsigned compare */
        const int b_ok = (uint32_t)b + (uint32_t)bias_max <= 2u * (uint32_t)bias_max;
        fast &= s <= -1 && s >= -20 && m > 0 && b_ok;
        const int32_t e = s < -20 ? 20 : (s > -1 ? 1 : -s);
        ep->km[2 * c] = (1 << (e - 1)) + y_zp * (1 << e);
        ep->km[2 * c + 1] = m;
        ep->e[c] = e;
        ep->init[c] = b_ok ? 2 * b : 0;
    }
    ep->fast = fast;
    if (!fast) {
        ep->init[0] = ep->init[1] = ep->init[2] = ep->init[3] = 0;
    }
}

/* Doubled sums 2 * (init / 2 + sum (x - x_zp) * w) of one patch (four channels), or of
 * two patches and two channels (aPC: patch P, channel C). */
typedef struct {
    int32_t a0, a1, a2, a3;
} pe_acc_t;

/* One patch (x pairs at xq, every 16 bytes) against the four channels of wq. */
MCUC_ALWAYS_INLINE static pe_acc_t dot_1x4(const uint32_t *xq, const uint32_t *wq,
                                           int32_t groups, const int32_t *init)
{
    int32_t a0 = init[0], a1 = init[1], a2 = init[2], a3 = init[3];
    const uint32_t *const xend = xq + 4 * groups;
    do {
        uint32_t xl, xh, wl, wh;
        MCUC_LDRD_POST(xl, xh, xq, 16);
        MCUC_LDRD_POST(wl, wh, wq, 32);
        a0 = mcuc_smlad(xl, wl, a0);
        a0 = mcuc_smlad(xh, wh, a0);
        MCUC_LDRD(wl, wh, wq, -24);
        a1 = mcuc_smlad(xl, wl, a1);
        a1 = mcuc_smlad(xh, wh, a1);
        MCUC_LDRD(wl, wh, wq, -16);
        a2 = mcuc_smlad(xl, wl, a2);
        a2 = mcuc_smlad(xh, wh, a2);
        MCUC_LDRD(wl, wh, wq, -8);
        a3 = mcuc_smlad(xl, wl, a3);
        a3 = mcuc_smlad(xh, wh, a3);
    } while (xq != xend);
    const pe_acc_t out = {a0, a1, a2, a3};
    return out;
}

/* Two patches (the pair at xq) against two channels (wq and wq + 2): each weight load
 * serves two patches, each image load two channels. Result {a00, a01, a10, a11}. */
MCUC_ALWAYS_INLINE static pe_acc_t dot_2x2(const uint32_t *xq, const uint32_t *wq,
                                           int32_t groups, int32_t i0, int32_t i1)
{
    int32_t a00 = i0, a01 = i1, a10 = i0, a11 = i1;
    const uint32_t *const xend = xq + 4 * groups;
    do {
        uint32_t x0l, x0h, x1l, x1h, wl, wh;
        MCUC_LDRD_POST(x0l, x0h, xq, 16);
        MCUC_LDRD(x1l, x1h, xq, -8);
        MCUC_LDRD_POST(wl, wh, wq, 32);
        a00 = mcuc_smlad(x0l, wl, a00);
        a00 = mcuc_smlad(x0h, wh, a00);
        a10 = mcuc_smlad(x1l, wl, a10);
        a10 = mcuc_smlad(x1h, wh, a10);
        MCUC_LDRD(wl, wh, wq, -24);
        a01 = mcuc_smlad(x0l, wl, a01);
        a01 = mcuc_smlad(x0h, wh, a01);
        a11 = mcuc_smlad(x1l, wl, a11);
        a11 = mcuc_smlad(x1h, wh, a11);
    } while (xq != xend);
    const pe_acc_t out = {a00, a01, a10, a11};
    return out;
}

/* Fast epilogue of output c (module comment); a2 = 2a. */
static int8_t out_fast(const pe_epi_t *ep, int32_t c, int32_t a2)
{
    const int32_t r = mcuc_smmlar(a2, ep->km[2 * c + 1], ep->km[2 * c] - (a2 < 0 ? 1 : 0));
    return (int8_t)mcuc_ssat8(r >> ep->e[c]);
}

/* out_fast of channel c (a constant) for the doubled sums s0, s1 of two patches, into
 * d0, d1: the channel's k and mult in one LDRD, its shift once. */
#define MCUC_PE_OUT2(ep, c, s0, s1, d0, d1)                                              \
    do {                                                                                 \
        int32_t k_, m_;                                                                  \
        MCUC_LDRD(k_, m_, (ep)->km, 8 * (c));                                            \
        const int32_t e_ = (ep)->e[c];                                                   \
        (d0) = (int8_t)mcuc_ssat8(mcuc_smmlar((s0), m_, k_ - ((s0) < 0 ? 1 : 0)) >> e_); \
        (d1) = (int8_t)mcuc_ssat8(mcuc_smmlar((s1), m_, k_ - ((s1) < 0 ? 1 : 0)) >> e_); \
    } while (0)

/* MCUC_PE_OUT2 for one patch. */
#define MCUC_PE_OUT1(ep, c, s0, d0)                                                      \
    do {                                                                                 \
        int32_t k_, m_;                                                                  \
        MCUC_LDRD(k_, m_, (ep)->km, 8 * (c));                                            \
        (d0) = (int8_t)mcuc_ssat8(mcuc_smmlar((s0), m_, k_ - ((s0) < 0 ? 1 : 0))         \
                                  >> (ep)->e[c]);                                        \
    } while (0)

/* General epilogue of output channel o: saturating bias, requantization, zero point. */
static int8_t out_any(const mcuc_patch_embed_params_t *p, int32_t o, int32_t a2)
{
    const int32_t sum = a2 / 2; /* exact: the doubled weights make a2 even */
    const int32_t acc = p->bias ? mcuc_qadd(p->bias[o], sum) : sum;
    return mcuc_out_s8(p->y_zp, mcuc_requantize_fast(acc, p->mult[o], p->shift[o]));
}

/* The nq patches of the image buffer xq against a fast block of four channels, outputs
 * from yt on (d apart): two patches at a time, then the odd one. Not inlined: the hot
 * loops get a small function's registers instead of the band loops'. */
__attribute__((noinline)) static void block_fast4(const uint32_t *xq, int32_t nq,
                                                  const uint32_t *wq, int32_t groups,
                                                  const pe_epi_t *ep, int8_t *yt, int32_t d)
{
    for (; nq >= 2; nq -= 2, xq += 4 * groups, yt += 2 * d) {
        pe_acc_t a = dot_2x2(xq, wq, groups, ep->init[0], ep->init[1]);
        MCUC_PE_OUT2(ep, 0, a.a0, a.a2, yt[0], yt[d]);
        MCUC_PE_OUT2(ep, 1, a.a1, a.a3, yt[1], yt[d + 1]);
        a = dot_2x2(xq, wq + 4, groups, ep->init[2], ep->init[3]);
        MCUC_PE_OUT2(ep, 2, a.a0, a.a2, yt[2], yt[d + 2]);
        MCUC_PE_OUT2(ep, 3, a.a1, a.a3, yt[3], yt[d + 3]);
    }
    if (nq) {
        const pe_acc_t a = dot_1x4(xq, wq, groups, ep->init);
        MCUC_PE_OUT1(ep, 0, a.a0, yt[0]);
        MCUC_PE_OUT1(ep, 1, a.a1, yt[1]);
        MCUC_PE_OUT1(ep, 2, a.a2, yt[2]);
        MCUC_PE_OUT1(ep, 3, a.a3, yt[3]);
    }
}

/* block_fast4 for every other block: nc (1..4) channels from o0, either epilogue. */
__attribute__((noinline)) static void block_any(const mcuc_patch_embed_params_t *p,
                                                const uint32_t *xbuf, int32_t nq,
                                                const uint32_t *wq, int32_t groups,
                                                const pe_epi_t *ep, int32_t o0, int8_t *yt)
{
    const int32_t d = p->d, nc = d - o0 < 4 ? d - o0 : 4;
    for (int32_t q = 0; q < nq; ++q, yt += d) {
        const uint32_t *xq = xbuf + (q >> 1) * 4 * groups + 2 * (q & 1);
        const pe_acc_t a = dot_1x4(xq, wq, groups, ep->init);
        const int32_t s[4] = {a.a0, a.a1, a.a2, a.a3};
        for (int32_t c = 0; c < nc; ++c) {
            yt[c] = ep->fast ? out_fast(ep, c, s[c]) : out_any(p, o0 + c, s[c]);
        }
    }
}

void mcuc_patch_embed_s8(const mcuc_patch_embed_params_t *p, const int8_t *x, int8_t *y)
{
    const int32_t taps = p->c_in * p->ph * p->pw, d = p->d;
    if (p->ph < 1 || p->pw < 1 || p->c_in < 1 || taps > MCUC_PE_MAX_TAPS) {
        patch_embed_ref(p, x, y);
        return;
    }
    /* xbuf's 2 spare words: the end pointer of an odd patch's walk (2 past its pair) */
    uint32_t wbuf[MCUC_PE_WBUF_WORDS], xbuf[MCUC_PE_XBUF_WORDS + 2];
    pe_epi_t epi[MCUC_PE_BLOCKS];
    const int32_t groups = (taps + 3) / 4, nb = (d + 3) / 4;
    const int32_t bias_max = (1 << 30) - 1 - 255 * 128 * taps;
    const int32_t per_fill0 = MCUC_PE_WBUF_WORDS / (8 * groups);
    const int32_t per_fill = per_fill0 < MCUC_PE_BLOCKS ? per_fill0 : MCUC_PE_BLOCKS;
    const int32_t per_band = 2 * (MCUC_PE_XBUF_WORDS / (4 * groups)); /* patches at once */
    const int64_t plane = (int64_t)p->h_in * p->w_in;
    int32_t filled = 0; /* every block resident since the first fill */
    for (int32_t py = 0; py < p->hp; ++py) {
        const int8_t *xb = x + (int64_t)py * p->ph * p->w_in;
        int8_t *yb = y + (int64_t)py * p->wp * d;
        for (int32_t q0 = 0; q0 < p->wp; q0 += per_band) {
            const int32_t nq = p->wp - q0 < per_band ? p->wp - q0 : per_band;
            unpack_band(p, xb + (int64_t)q0 * p->pw, nq, plane, groups, xbuf);
            for (int32_t b0 = 0; b0 < nb; b0 += per_fill) {
                const int32_t b1 = nb - b0 < per_fill ? nb : b0 + per_fill;
                if (!filled) {
                    for (int32_t b = b0; b < b1; ++b) {
                        unpack_weights(p, 4 * b, taps, groups, wbuf + (b - b0) * 8 * groups);
                        block_epilogue(p, 4 * b, bias_max, &epi[b - b0]);
                    }
                    filled = nb <= per_fill;
                }
                for (int32_t b = b0; b < b1; ++b) {
                    const int32_t o0 = 4 * b;
                    const uint32_t *wq = wbuf + (b - b0) * 8 * groups;
                    const pe_epi_t *ep = &epi[b - b0];
                    int8_t *yt = yb + (int64_t)q0 * d + o0;
                    if (ep->fast && d - o0 >= 4) {
                        block_fast4(xbuf, nq, wq, groups, ep, yt, d);
                    } else {
                        block_any(p, xbuf, nq, wq, groups, ep, o0, yt);
                    }
                }
            }
        }
    }
}
#endif /* MCUC_ARM_DSP */
