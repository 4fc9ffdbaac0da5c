/* Patch embedding, the ARMv7E-M variant (MCUC_ARM_DSP: boards whose board.toml says [cpu]
 * dsp = true): the bands of patch_embed.c (its opening comment: the order of reads and
 * writes the planner relies on) go through SMLAD loops, for taps = c_in * ph * pw <=
 * MCUC_PE_MAX_TAPS (else the reference, patch_embed.c; mcuc_patch_embed_s8 there picks),
 * with no buffer on the stack beyond 64 bytes (issue 23: scratch is planned or absent):
 * both operands are unpacked into 16-bit pairs with SXTB16 as they are loaded, the
 * weights straight from flash. Taps go in memory order (c, ky, kx) by words of four:
 * x0..x3 as the pairs (x0, x2), (x1, x3) that SXTB16 and SXTB16 ROR #8 give, against the
 * weights' word unpacked the same way.
 * - The block: two patches (q, q + 1 of a band) against two output channels (o, o + 1),
 *   four int32 sums in registers, so every unpacked image word serves two channels and
 *   every unpacked weight word two patches (2 x 2 is the most that fits the registers:
 *   four sums, four image pairs, one weight pair and the pointers; 2 x 4 spills). An odd
 *   last patch takes a one-patch block; the last channel of an odd d is paired with
 *   itself (the same bytes written twice).
 * - Widened weights (weights16 and epi set: the compiler's patch_embed.widen, for 16 taps,
 *   d even and the fast epilogue; the default model's 1 x 4 x 4 patches): the tokens in
 *   order, two at a time (a pair may span two bands), their pairs, doubled and minus x_zp,
 *   into a 64-byte buffer once; then every channel pair reads them with LDRD at constant
 *   offsets against its weights, already int16 in the lanes' order (four LDRDs, no
 *   SXTB16), the sums starting from the doubled biases and the epilogue's m, k, e read as
 *   words the compiler derived (epi): 82 instructions per 64 MACs in the loop. The doubled
 *   image makes the sums 2a. Given weights16 for any other shape, the reference (which
 *   reads weights16 through wide_pos) serves.
 * - Other patches: per image row its whole words, then its pw % 4 bytes one by one (pw ==
 *   4: one flat loop over the rows); x - x_zp by SSUB16 on the image pairs (|x - x_zp| <=
 *   255 fits 16 bits), also when the zero point is 0 (schedule/patch.py folds it into the
 *   bias where exact; one copy of the loop instead of two); each pass's sums in a function
 *   of their own; the sums are a, doubled for the epilogue.
 * Sums in int32: |x - x_zp| <= 255 and |w| <= 128, so every partial sum is at most
 * 255 * 128 * taps in magnitude, doubled 2 * 255 * 128 * taps (checked at compile time
 * in patch_embed_internal.h with the bias bound).
 * Epilogue, fast form, when every channel has a shift in [-20, -1], a multiplier > 0 and
 * |bias| <= 2^30 - 1 - 255 * 128 * taps (checked once per call): the sums start from
 * the bias (doubled for doubled sums), so a = bias + sum is exact with |a| < 2^30 (the
 * reference does not saturate), and A = 2a. With e = -shift and half = 2^(e-1):
 *   srdhm(a, m) = floor((A * m + 2^31) / 2^32) (mcuc_requantize_fast's comment: the
 *     nudge-and-truncate is this floor for every sign), the rounded high word of A * m;
 *   rdbpot(x, e) = floor((x + half - [x < 0]) / 2^e) for e >= 1 (x >= 0: up when the
 *     remainder is >= half; x < 0: up when it is >= half + 1, as its threshold says);
 *   [x < 0] may be replaced by [a < 0] (m > 0): they differ only when x == 0, where
 *     floor((half - 1) / 2^e) == 0 == floor(half / 2^e);
 *   y_zp + floor(v / 2^e) == floor((v + y_zp * 2^e) / 2^e).
 * So y = SSAT8(SMMLAR(A, m, k - [a < 0]) >> e) with k = (2 y_zp + 1) << (e - 1), and no
 * step overflows: |A| < 2^31, half <= 2^19, |y_zp * 2^e| <= 2^27. Otherwise the sums
 * start from 0 and take QADD for the bias and mcuc_requantize_fast, as linear_s8 does. */
#include "mcuc/kernels.h"
#include "mcuc/simd.h" /* MCUC_ALWAYS_INLINE; the intrinsics are used with MCUC_ARM_DSP */
#include "patch_embed_internal.h"

#ifdef MCUC_ARM_DSP
/* The four sums of a block: aPC, patch P, channel C. */
typedef struct {
    int32_t a00, a01, a10, a11;
} pe_acc_t;

/* The epilogue of one channel: the sums' start, k, multiplier, e (module comment). */
typedef struct {
    int32_t init, k, m, e;
} pe_ch_t;

/* Channel o's epilogue from its parameter arrays, kz = 2 y_zp + 1 (the widened path reads
 * the same words, derived by the compiler: patch_embed.py epilogue_words). */
MCUC_ALWAYS_INLINE static pe_ch_t pe_channel(const int32_t *bias, const int32_t *mult,
                                             const int32_t *shift, int32_t kz, int32_t o,
                                             int fast)
{
    pe_ch_t c = {0, 0, mult[o], -shift[o]};
    if (fast) { /* |bias| < 2^30, e in [1, 20] */
        c.init = bias ? bias[o] : 0;
        c.k = (int32_t)((uint32_t)kz << (c.e - 1));
    }
    return c;
}

/* General epilogue of output channel o: saturating bias, requantization, zero point. */
static int8_t out_any(const mcuc_patch_embed_params_t *p, int32_t o, int32_t sum)
{
    const int32_t acc = p->bias ? mcuc_qadd(p->bias[o], sum) : sum;
    return mcuc_out_s8(p->y_zp, mcuc_requantize_fast(acc, p->mult[o], p->shift[o]));
}

/* Output channel o (epilogue c) of the doubled sum a2 = 2a. */
MCUC_ALWAYS_INLINE static int8_t pe_out(const mcuc_patch_embed_params_t *p, int32_t o,
                                        const pe_ch_t *c, int32_t a2, int fast)
{
    if (fast) {
        return (int8_t)mcuc_ssat8(mcuc_smmlar(a2, c->m, c->k - (int32_t)((uint32_t)a2 >> 31))
                                  >> c->e);
    }
    return out_any(p, o, a2 / 2); /* exact: a2 is even */
}

/* The doubled sums s of a block into the tokens at yq (patch 0) and yq + d (patch 1, when
 * two), channels o and o + do1 (do1 = 0: the same channel again, the same bytes). */
MCUC_ALWAYS_INLINE static void pe_store(const mcuc_patch_embed_params_t *p, int8_t *yq,
                                        int32_t d, int32_t o, int32_t do1, const pe_ch_t *c0,
                                        const pe_ch_t *c1, pe_acc_t s, int two, int fast)
{
    yq[0] = pe_out(p, o, c0, s.a00, fast);
    yq[do1] = pe_out(p, o + do1, c1, s.a01, fast);
    if (two) {
        yq[d] = pe_out(p, o, c0, s.a10, fast);
        yq[d + do1] = pe_out(p, o + do1, c1, s.a11, fast);
    }
}


/* Image pairs x0l, x0h (patch 0), x1l, x1h (patch 1, when two) against the weight word
 * ww0 (channel 0) and ww1 (channel 1), unpacked here, into the sums s. */
#define MCUC_PE_MAC(s, x0l, x0h, x1l, x1h, ww0, ww1, two)                                \
    do {                                                                                 \
        uint32_t wl_ = mcuc_sxtb16(ww0), wh_ = mcuc_sxtb16_ror8(ww0);                    \
        (s).a00 = mcuc_smlad(x0h, wh_, mcuc_smlad(x0l, wl_, (s).a00));                   \
        if (two) {                                                                       \
            (s).a10 = mcuc_smlad(x1h, wh_, mcuc_smlad(x1l, wl_, (s).a10));               \
        }                                                                                \
        wl_ = mcuc_sxtb16(ww1);                                                          \
        wh_ = mcuc_sxtb16_ror8(ww1);                                                     \
        (s).a01 = mcuc_smlad(x0h, wh_, mcuc_smlad(x0l, wl_, (s).a01));                   \
        if (two) {                                                                       \
            (s).a11 = mcuc_smlad(x1h, wh_, mcuc_smlad(x1l, wl_, (s).a11));               \
        }                                                                                \
    } while (0)

/* --- 16 taps, widened weights and the fast epilogue (the default model's 1 x 4 x 4
 * patches): the pairs of two patches, doubled, in a 64-byte buffer, so that every pass over
 * a pair of channels reads them with LDRD and unpacks nothing. */

/* Both 16-bit lanes doubled, one SADD16 (|lane| <= 255, so no lane overflows). */
static uint32_t pe_dbl16(uint32_t v)
{
    return mcuc_sadd16(v, v);
}

/* fill_patch for one channel of 4 x 4 (the default model's patches): four rows, no
 * branches, few registers (a call of its own costs half of fill_patch's). */
static void fill_4x4(const int8_t *xr, int32_t w_in, uint32_t zp2, uint32_t *dst)
{
    for (int32_t ky = 0; ky < 4; ++ky, xr += w_in, dst += 4) {
        const uint32_t v = mcuc_read32(xr);
        dst[0] = pe_dbl16(mcuc_ssub16(mcuc_sxtb16(v), zp2));
        dst[1] = pe_dbl16(mcuc_ssub16(mcuc_sxtb16_ror8(v), zp2));
    }
}

/* The doubled pairs 2 (x - x_zp) of the patch at xp into dst: group g (taps 4g .. 4g + 3
 * in memory order) as (v0, v2), (v1, v3) at dst[4g], dst[4g + 1]. */
static void fill_patch(const mcuc_patch_embed_params_t *p, const int8_t *xp, uint32_t *dst)
{
    const int32_t w_in = p->w_in, ph = p->ph, pw = p->pw, x_zp = p->x_zp;
    const int32_t c_in = p->c_in, plane = p->h_in * w_in;
    const uint32_t zp2 = mcuc_dup16(x_zp);
    if (pw == 4) { /* one word per image row (the default model) */
        const int8_t *xr = xp;
        const int32_t next_c = plane - ph * w_in;
        for (int32_t c = 0; c < c_in; ++c, xr += next_c) {
            for (int32_t ky = 0; ky < ph; ++ky, xr += w_in, dst += 4) {
                const uint32_t v = mcuc_read32(xr);
                dst[0] = pe_dbl16(mcuc_ssub16(mcuc_sxtb16(v), zp2));
                dst[1] = pe_dbl16(mcuc_ssub16(mcuc_sxtb16_ror8(v), zp2));
            }
        }
        return;
    }
    if ((pw & 3) == 0) { /* every group is one word of one image row */
        for (int32_t c = 0; c < c_in; ++c, xp += plane) {
            const int8_t *xr = xp;
            for (int32_t ky = 0; ky < ph; ++ky, xr += w_in) {
                for (int32_t i = 0; i < pw; i += 4, dst += 4) {
                    const uint32_t v = mcuc_read32(xr + i);
                    dst[0] = pe_dbl16(mcuc_ssub16(mcuc_sxtb16(v), zp2));
                    dst[1] = pe_dbl16(mcuc_ssub16(mcuc_sxtb16_ror8(v), zp2));
                }
            }
        }
        return;
    }
    int32_t c = 0, ky = 0, kx = 0; /* the next tap */
    for (int32_t g = 0; g < 4; ++g, dst += 4) {
        int32_t v[4];
        for (int32_t j = 0; j < 4; ++j) {
            v[j] = 2 * (xp[c * plane + ky * w_in + kx] - x_zp);
            if (++kx == pw) {
                kx = 0;
                if (++ky == ph) {
                    ky = 0;
                    ++c;
                }
            }
        }
        dst[0] = ((uint32_t)v[0] & 0xFFFFu) | ((uint32_t)v[2] << 16);
        dst[1] = ((uint32_t)v[1] & 0xFFFFu) | ((uint32_t)v[3] << 16);
    }
}

/* The channel pairs of one or two buffered patches (two: a constant): per pair (o, o + 1)
 * its 32 widened weights at w (64 bytes, four LDRDs), the buffered image pairs (four or
 * eight LDRDs), 8 or 16 SMLADs from the doubled biases, then the pair's m, k, e (three
 * LDRDs from its eight words at ep: 2 b0, 2 b1, m0, m1, k0, k1, e0, e1) and the four
 * outputs at yo[0], yo[1] (patch 0) and yo[d], yo[d + 1] (patch 1). */
MCUC_ALWAYS_INLINE static void pe16_channels(const uint32_t *xq, const int16_t *w,
                                             const int32_t *ep, int32_t d, int8_t *yo,
                                             int two)
{
    const int16_t *const wend = w + 16 * d;
    for (; w != wend; w += 32, ep += 8, yo += 2) {
        pe_acc_t s = {0, 0, 0, 0};
        MCUC_LDRD(s.a00, s.a01, ep, 0);
        if (two) {
            MCUC_LDRD(s.a10, s.a11, ep, 0);
        }
        const uint32_t *const w32 = (const uint32_t *)(const void *)w;
        uint32_t x0l, x0h, x1l = 0, x1h = 0, w0l, w0h, w1l, w1h;
#define MCUC_PE16_GROUP(g)                                                               \
    do {                                                                                 \
        MCUC_LDRD(x0l, x0h, xq, 16 * (g));                                               \
        if (two) {                                                                       \
            MCUC_LDRD(x1l, x1h, xq, 16 * (g) + 8);                                       \
        }                                                                                \
        MCUC_LDRD(w0l, w0h, w32, 16 * (g));                                              \
        MCUC_LDRD(w1l, w1h, w32, 16 * (g) + 8);                                          \
        s.a00 = mcuc_smlad(x0h, w0h, mcuc_smlad(x0l, w0l, s.a00));                       \
        s.a01 = mcuc_smlad(x0h, w1h, mcuc_smlad(x0l, w1l, s.a01));                       \
        if (two) {                                                                       \
            s.a10 = mcuc_smlad(x1h, w0h, mcuc_smlad(x1l, w0l, s.a10));                   \
            s.a11 = mcuc_smlad(x1h, w1h, mcuc_smlad(x1l, w1l, s.a11));                   \
        }                                                                                \
    } while (0)
        MCUC_PE16_GROUP(0);
        MCUC_PE16_GROUP(1);
        MCUC_PE16_GROUP(2);
        MCUC_PE16_GROUP(3);
#undef MCUC_PE16_GROUP
        pe_ch_t c0 = {0, 0, 0, 0}, c1 = {0, 0, 0, 0};
        MCUC_LDRD(c0.m, c1.m, ep, 8);
        MCUC_LDRD(c0.k, c1.k, ep, 16);
        MCUC_LDRD(c0.e, c1.e, ep, 24);
        pe_store(NULL, yo, d, 0, 1, &c0, &c1, s, two, 1);
    }
}

/* Widened weights, 16 taps, d even, the fast epilogue: the tokens in order, two at a time
 * (the last alone when hp * wp is odd; a pair may span two bands), their doubled image
 * pairs into a 64-byte buffer (fill_patch), then every channel pair against them. Both
 * patches are read before either token is written, and no token is written before its
 * band's image rows of earlier tokens are read, so the planner's overlap holds. */
void mcuc_pe_wide16(const mcuc_patch_embed_params_t *p, const int8_t *x, int8_t *y)
{
    uint32_t xbuf[16]; /* 4 words per group of four taps */
    const int16_t *const w16 = p->weights16;
    const int32_t *const epi = p->epi;
    /* Locals: the stores through y may alias *p for the compiler. */
    const int32_t d = p->d, wp = p->wp, pw = p->pw, band_x = p->ph * p->w_in;
    const int32_t n = p->hp * wp;
    const int8_t *xb = x; /* the current band's image */
    int32_t px = 0;       /* the next token's patch column */
    const int one4x4 = p->c_in == 1 && pw == 4, w_in = p->w_in;
    const uint32_t zp2 = mcuc_dup16(p->x_zp);
    for (int32_t t = 0; t < n; t += 2) {
        if (one4x4) {
            fill_4x4(xb + px * pw, w_in, zp2, xbuf);
        } else {
            fill_patch(p, xb + px * pw, xbuf);
        }
        if (++px == wp) {
            px = 0;
            xb += band_x;
        }
        int8_t *const yo = y + (int64_t)t * d;
        if (t + 1 < n) {
            if (one4x4) {
                fill_4x4(xb + px * pw, w_in, zp2, xbuf + 2);
            } else {
                fill_patch(p, xb + px * pw, xbuf + 2);
            }
            if (++px == wp) {
                px = 0;
                xb += band_x;
            }
            pe16_channels(xbuf, w16, epi, d, yo, 1);
        } else {
            pe16_channels(xbuf, w16, epi, d, yo, 0);
        }
    }
}

/* --- Larger patches: both operands unpacked in registers as they are loaded. */

/* Patches at x0 and x0 + dx (when two) against the channels at w and w + dw: per image row
 * its whole words, then its pw % 4 bytes (pw4, a constant: pw == 4, one flat loop); x -
 * x_zp by SSUB16. */
MCUC_ALWAYS_INLINE static pe_acc_t dot_rows(const mcuc_patch_embed_params_t *p,
                                            const int8_t *x0, int32_t dx, const int8_t *w,
                                            int32_t dw, int32_t i0, int32_t i1, int two,
                                            int pw4)
{
    pe_acc_t s = {i0, i1, i0, i1};
    const int32_t w_in = p->w_in, pw = p->pw, x_zp = p->x_zp, plane = p->h_in * w_in;
    const int32_t n4 = pw >> 2, rem = pw & 3;
    const uint32_t zp2 = mcuc_dup16(x_zp);
    if (pw4) { /* one word per row: one flat loop per channel */
        const int32_t ph = p->ph, c_in = p->c_in;
        for (int32_t c = 0; c < c_in; ++c) {
            const int8_t *xr = x0 + c * plane;
            const int8_t *const wend = w + 4 * ph;
            do {
                const uint32_t xw0 = mcuc_read32(xr), xw1 = two ? mcuc_read32(xr + 4) : 0;
                const uint32_t x0l = mcuc_ssub16(mcuc_sxtb16(xw0), zp2);
                const uint32_t x0h = mcuc_ssub16(mcuc_sxtb16_ror8(xw0), zp2);
                const uint32_t x1l = mcuc_ssub16(mcuc_sxtb16(xw1), zp2);
                const uint32_t x1h = mcuc_ssub16(mcuc_sxtb16_ror8(xw1), zp2);
                const uint32_t ww1 = mcuc_read32(w + dw), ww0 = mcuc_read32(w);
                xr += w_in;
                w += 4;
                MCUC_PE_MAC(s, x0l, x0h, x1l, x1h, ww0, ww1, two);
            } while (w != wend);
        }
        return s;
    }
    for (int32_t c = 0; c < p->c_in; ++c) {
        const int8_t *xr = x0 + c * plane;
        for (int32_t ky = 0; ky < p->ph; ++ky, xr += w_in) {
            const int8_t *xi = xr;
            for (int32_t i = 0; i < n4; ++i, xi += 4, w += 4) {
                const uint32_t xw0 = mcuc_read32(xi), xw1 = two ? mcuc_read32(xi + dx) : 0;
                uint32_t x0l = mcuc_sxtb16(xw0), x0h = mcuc_sxtb16_ror8(xw0);
                uint32_t x1l = mcuc_sxtb16(xw1), x1h = mcuc_sxtb16_ror8(xw1);
                x0l = mcuc_ssub16(x0l, zp2); /* zp2 = 0: unchanged (one copy for both) */
                x0h = mcuc_ssub16(x0h, zp2);
                x1l = mcuc_ssub16(x1l, zp2);
                x1h = mcuc_ssub16(x1h, zp2);
                const uint32_t ww1 = mcuc_read32(w + dw), ww0 = mcuc_read32(w);
                MCUC_PE_MAC(s, x0l, x0h, x1l, x1h, ww0, ww1, two);
            }
            for (int32_t i = 0; i < rem; ++i, ++xi, ++w) {
                const int32_t v0 = xi[0] - x_zp, u0 = w[0], u1 = w[dw];
                s.a00 += v0 * u0;
                s.a01 += v0 * u1;
                if (two) {
                    const int32_t v1 = xi[dx] - x_zp;
                    s.a10 += v1 * u0;
                    s.a11 += v1 * u1;
                }
            }
        }
    }
    return s;
}

/* dot_rows for two (a constant) as a function of its own: the sums get the registers, the
 * band loops keep theirs. */
__attribute__((noinline)) static pe_acc_t dot_rows2(const mcuc_patch_embed_params_t *p,
                                                   const int8_t *x0, const int8_t *w,
                                                   int32_t dw, int32_t i0, int32_t i1, int pw4)
{
    return pw4 ? dot_rows(p, x0, 4, w, dw, i0, i1, 1, 1)
               : dot_rows(p, x0, p->pw, w, dw, i0, i1, 1, 0);
}

__attribute__((noinline)) static pe_acc_t dot_rows1(const mcuc_patch_embed_params_t *p,
                                                   const int8_t *x0, const int8_t *w,
                                                   int32_t dw, int32_t i0, int32_t i1, int pw4)
{
    return pw4 ? dot_rows(p, x0, 0, w, dw, i0, i1, 0, 1)
               : dot_rows(p, x0, 0, w, dw, i0, i1, 0, 0);
}

/* Every band, larger patches: channel pairs outer (their epilogue hoisted), patch pairs
 * inner; fast is a constant at each call. */
MCUC_ALWAYS_INLINE static void pe_large(const mcuc_patch_embed_params_t *p, const int8_t *x,
                                        int8_t *y, int32_t taps, int fast, int pw4)
{
    const int32_t d = p->d, wp = p->wp, pw = p->pw, hp = p->hp, band_x = p->ph * p->w_in;
    const int32_t kz = 2 * p->y_zp + 1;
    const int8_t *const weights = p->weights;
    const int32_t *const bias = p->bias, *const mult = p->mult, *const shift = p->shift;
    for (int32_t py = 0; py < hp; ++py) {
        const int8_t *const xb = x + (int64_t)py * band_x;
        int8_t *const yb = y + (int64_t)py * wp * d;
        for (int32_t o = 0; o < d; o += 2) {
            const int32_t do1 = o + 1 < d ? 1 : 0;
            const int8_t *const w = weights + (int64_t)o * taps;
            const pe_ch_t c0 = pe_channel(bias, mult, shift, kz, o, fast);
            const pe_ch_t c1 = pe_channel(bias, mult, shift, kz, o + do1, fast);
            for (int32_t q = 0; q < wp; q += 2) {
                const int8_t *const xq = xb + q * pw;
                int8_t *const yq = yb + (int64_t)q * d + o;
                pe_acc_t s;
                const int two = q + 1 < wp;
                if (two) {
                    s = dot_rows2(p, xq, w, do1 * taps, c0.init, c1.init, pw4);
                } else {
                    s = dot_rows1(p, xq, w, do1 * taps, c0.init, c1.init, pw4);
                }
                const pe_acc_t s2 = {s.a00 + s.a00, s.a01 + s.a01, s.a10 + s.a10, s.a11 + s.a11};
                pe_store(p, yq, d, o, do1, &c0, &c1, s2, two, fast);
            }
        }
    }
}

void mcuc_pe_large_fast(const mcuc_patch_embed_params_t *p, const int8_t *x, int8_t *y,
                        int32_t taps)
{
    pe_large(p, x, y, taps, 1, p->pw == 4);
}

void mcuc_pe_large_any(const mcuc_patch_embed_params_t *p, const int8_t *x, int8_t *y,
                       int32_t taps)
{
    pe_large(p, x, y, taps, 0, p->pw == 4);
}
#endif /* MCUC_ARM_DSP */
