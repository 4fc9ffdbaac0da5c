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
 *   fits MCUC_PE_WBUF (the default model's 64 x 16 taps do), else once per band.
 * - Image: the current patches of the band, minus x_zp (|x - x_zp| <= 255 fits 16 bits),
 *   per group the two pairs. A band's bytes are read only while that band is computed.
 * - The loop: one 64-bit load of the patch's pairs, four of the block's, eight SMLADs.
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

/* Most taps the variant takes: one patch's pairs fill MCUC_PE_XBUF. */
#define MCUC_PE_MAX_TAPS 256
/* The int32 bound above, as a compile-time check (a negative array size fails). */
typedef char mcuc_pe_sum_fits_int32[(2LL * 255 * 128 * MCUC_PE_MAX_TAPS <= INT32_MAX) ? 1 : -1];
/* Stack buffers, in pairs of words: weights (2 KiB), the band's patches (512 B), and
 * the epilogue constants of up to MCUC_PE_BLOCKS blocks resident at once. */
#define MCUC_PE_WBUF 256
#define MCUC_PE_XBUF 64
#define MCUC_PE_BLOCKS 16

/* One block's epilogue (module comment); fast: the fast form holds for the block. */
typedef struct {
    int32_t km[8]; /* k, mult of channel c at 2c, 2c + 1: one LDRD */
    int32_t e[4], init[4];
    int32_t fast;
} pe_epi_t;

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

/* Channels o0 .. o0 + 3 (zeros past d): the groups' doubled pairs into dst. */
static void unpack_weights(const mcuc_patch_embed_params_t *p, int32_t o0, int32_t taps,
                           int32_t groups, uint32_t *dst)
{
    const int32_t nc = p->d - o0 < 4 ? p->d - o0 : 4, full = taps / 4;
    for (int32_t g = 0; g < groups; ++g) {
        for (int32_t c = 0; c < 4; ++c) {
            const int8_t *w = p->weights + (int64_t)(o0 + c) * taps + 4 * g;
            if (c >= nc) {
                dst[0] = dst[1] = 0;
            } else if (g < full) {
                const uint32_t ww = mcuc_read32(w);
                dst[0] = pe_dbl16(mcuc_sxtb16(ww));
                dst[1] = pe_dbl16(mcuc_sxtb16_ror8(ww));
            } else {
                int32_t v[4];
                for (int32_t j = 0; j < 4; ++j) {
                    v[j] = 4 * g + j < taps ? 2 * w[j] : 0;
                }
                pe_group(v, dst);
            }
            dst += 2;
        }
    }
}

/* The pairs of (x - x_zp) of the patch at xp (groups in tap order) into dst. */
static void unpack_patch(const mcuc_patch_embed_params_t *p, const int8_t *xp, int64_t plane,
                         int32_t groups, uint32_t *dst)
{
    const int32_t x_zp = p->x_zp, w_in = p->w_in, ph = p->ph, pw = p->pw;
    if ((pw & 3) == 0) { /* every group is one word of one image row */
        const uint32_t zp2 = mcuc_dup16(x_zp);
        for (int32_t c = 0; c < p->c_in; ++c, xp += plane) {
            const int8_t *xr = xp;
            for (int32_t ky = 0; ky < ph; ++ky, xr += w_in) {
                for (int32_t i = 0; i < pw; i += 4) {
                    const uint32_t xw = mcuc_read32(xr + i);
                    *dst++ = mcuc_ssub16(mcuc_sxtb16(xw), zp2);
                    *dst++ = mcuc_ssub16(mcuc_sxtb16_ror8(xw), zp2);
                }
            }
        }
        return;
    }
    int32_t c = 0, ky = 0, kx = 0; /* the next tap */
    for (int32_t g = 0; g < groups; ++g) {
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
        pe_group(v, dst);
        dst += 2;
    }
}

/* The epilogue constants of block o0 (module comment). */
static void block_epilogue(const mcuc_patch_embed_params_t *p, int32_t o0, int32_t taps,
                           pe_epi_t *ep)
{
    const int64_t bias_max = (1LL << 30) - 1 - 255LL * 128 * taps;
    const int32_t nc = p->d - o0 < 4 ? p->d - o0 : 4;
    ep->fast = 1;
    for (int32_t c = 0; c < 4; ++c) {
        const int32_t b = c < nc && p->bias ? p->bias[o0 + c] : 0;
        const int32_t s = c < nc ? p->shift[o0 + c] : -1;
        const int32_t m = c < nc ? p->mult[o0 + c] : 1;
        if (s > -1 || s < -20 || m <= 0 || (int64_t)b > bias_max || -(int64_t)b > bias_max) {
            ep->fast = 0;
        }
        const int32_t e = s < -20 ? 20 : (s > -1 ? 1 : -s);
        ep->km[2 * c] = (1 << (e - 1)) + p->y_zp * (1 << e);
        ep->km[2 * c + 1] = m;
        ep->e[c] = e;
    }
    if (ep->fast) {
        for (int32_t c = 0; c < 4; ++c) {
            ep->init[c] = 2 * (c < nc && p->bias ? p->bias[o0 + c] : 0);
        }
    } else {
        ep->init[0] = ep->init[1] = ep->init[2] = ep->init[3] = 0;
    }
}

/* The block's four doubled sums for one patch: 2 * (init / 2 + sum (x - x_zp) * w). */
typedef struct {
    int32_t a0, a1, a2, a3;
} pe_acc_t;

MCUC_ALWAYS_INLINE static pe_acc_t dot_block(const uint32_t *xq, const uint32_t *wq,
                                             int32_t groups, const pe_epi_t *ep)
{
    int32_t a0 = ep->init[0], a1 = ep->init[1], a2 = ep->init[2], a3 = ep->init[3];
    const uint32_t *const xend = xq + 2 * groups;
    do {
        uint32_t xl, xh, wl, wh;
        MCUC_LDRD_POST(xl, xh, xq, 8);
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

/* Fast epilogue of output c (module comment); a2 = 2a. */
static int8_t out_fast(const pe_epi_t *ep, int32_t c, int32_t a2)
{
    const int32_t r = mcuc_smmlar(a2, ep->km[2 * c + 1], ep->km[2 * c] - (a2 < 0 ? 1 : 0));
    return (int8_t)mcuc_ssat8(r >> ep->e[c]);
}

/* out_fast for a constant c, its k and mult in one LDRD. */
#define MCUC_PE_OUT4(ep, c, a2, dst)                                                     \
    do {                                                                                 \
        int32_t k_, m_;                                                                  \
        MCUC_LDRD(k_, m_, (ep)->km, 8 * (c));                                            \
        const int32_t r_ = mcuc_smmlar((a2), m_, k_ - ((a2) < 0 ? 1 : 0));               \
        (dst) = (int8_t)mcuc_ssat8(r_ >> (ep)->e[c]);                                    \
    } while (0)

/* General epilogue of output channel o: saturating bias, requantization, zero point. */
static int8_t out_any(const mcuc_patch_embed_params_t *p, int32_t o, int32_t a2)
{
    const int32_t sum = a2 / 2; /* exact: the doubled weights make a2 even */
    const int32_t acc = p->bias ? mcuc_qadd(p->bias[o], sum) : sum;
    return mcuc_out_s8(p->y_zp, mcuc_requantize_fast(acc, p->mult[o], p->shift[o]));
}

/* The patches of the image buffer [xq, xend) against a fast block of four channels,
 * outputs from yt on (d apart). Not inlined: the hot loop gets a small function's
 * registers instead of the band loops' (19 fewer instructions per patch, measured). */
__attribute__((noinline)) static void block_fast4(const uint32_t *xq, const uint32_t *xend,
                                                  const uint32_t *wq, int32_t groups,
                                                  const pe_epi_t *ep, int8_t *yt, int32_t d)
{
    for (; xq != xend; xq += 2 * groups, yt += d) {
        const pe_acc_t a = dot_block(xq, wq, groups, ep);
        MCUC_PE_OUT4(ep, 0, a.a0, yt[0]);
        MCUC_PE_OUT4(ep, 1, a.a1, yt[1]);
        MCUC_PE_OUT4(ep, 2, a.a2, yt[2]);
        MCUC_PE_OUT4(ep, 3, a.a3, yt[3]);
    }
}

/* block_fast4 for every other block: nc (1..4) channels from o0, either epilogue. */
__attribute__((noinline)) static void block_any(const mcuc_patch_embed_params_t *p,
                                                const uint32_t *xq, const uint32_t *xend,
                                                const uint32_t *wq, int32_t groups,
                                                const pe_epi_t *ep, int32_t o0, int8_t *yt)
{
    const int32_t d = p->d, nc = d - o0 < 4 ? d - o0 : 4;
    for (; xq != xend; xq += 2 * groups, yt += d) {
        const pe_acc_t a = dot_block(xq, wq, groups, ep);
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
    uint32_t wbuf[2 * MCUC_PE_WBUF], xbuf[2 * MCUC_PE_XBUF];
    pe_epi_t epi[MCUC_PE_BLOCKS];
    const int32_t groups = (taps + 3) / 4, nb = (d + 3) / 4;
    const int32_t per_fill0 = MCUC_PE_WBUF / (4 * groups);
    const int32_t per_fill = per_fill0 < MCUC_PE_BLOCKS ? per_fill0 : MCUC_PE_BLOCKS;
    const int32_t per_band = MCUC_PE_XBUF / groups; /* patches unpacked at once */
    const int64_t plane = (int64_t)p->h_in * p->w_in;
    int32_t filled = 0; /* every block resident since the first fill */
    for (int32_t py = 0; py < p->hp; ++py) {
        const int8_t *xb = x + (int64_t)py * p->ph * p->w_in;
        int8_t *yb = y + (int64_t)py * p->wp * d;
        for (int32_t q0 = 0; q0 < p->wp; q0 += per_band) {
            const int32_t nq = p->wp - q0 < per_band ? p->wp - q0 : per_band;
            for (int32_t q = 0; q < nq; ++q) {
                unpack_patch(p, xb + (int64_t)(q0 + q) * p->pw, plane, groups,
                             xbuf + 2 * q * groups);
            }
            for (int32_t b0 = 0; b0 < nb; b0 += per_fill) {
                const int32_t b1 = nb - b0 < per_fill ? nb : b0 + per_fill;
                if (!filled) {
                    for (int32_t b = b0; b < b1; ++b) {
                        unpack_weights(p, 4 * b, taps, groups, wbuf + (b - b0) * 8 * groups);
                        block_epilogue(p, 4 * b, taps, &epi[b - b0]);
                    }
                    filled = nb <= per_fill;
                }
                for (int32_t b = b0; b < b1; ++b) {
                    const int32_t o0 = 4 * b;
                    const uint32_t *wq = wbuf + (b - b0) * 8 * groups;
                    const uint32_t *const xend = xbuf + 2 * nq * groups;
                    const pe_epi_t *ep = &epi[b - b0];
                    int8_t *yt = yb + (int64_t)q0 * d + o0;
                    if (ep->fast && d - o0 >= 4) {
                        block_fast4(xbuf, xend, wq, groups, ep, yt, d);
                    } else {
                        block_any(p, xbuf, xend, wq, groups, ep, o0, yt);
                    }
                }
            }
        }
    }
}
#endif /* MCUC_ARM_DSP */
