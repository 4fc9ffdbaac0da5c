/* Patch embedding (conv with kernel == stride, no padding) writing tokens [hp * wp][d]
 * directly, in token order: band j (row of patches) reads only image rows
 * [j * ph, (j + 1) * ph) of each channel and writes only tokens [j * wp, (j + 1) * wp), so
 * the planner may place y over image rows of bands already done (schedule/patch.py). The
 * widened loop's token pair may join band j's last patch to band j + 1's first: it reads
 * both before writing either, and its writes end below (j + 2) wp d, which the planner
 * keeps below band j + 1's image (patch.image_offset), so no unread byte is written over.
 * patch_embed_ref is the portable reference: the accumulator is int64 (exact) and
 * saturated to int32, as conv2d_s8 does.
 *
 * With MCUC_ARM_DSP (boards whose board.toml says [cpu] dsp = true) mcuc_patch_embed_s8
 * here picks the variant's SMLAD loops (patch_embed_dsp.c, whose opening comment says how
 * they work and why their int32 sums and fast epilogue are exact) or this reference. */
#include "mcuc/kernels.h"
#include "mcuc/simd.h" /* MCUC_ALWAYS_INLINE */
#include "patch_embed_internal.h"

/* Position of w[o][t] in weights16 (compiler/mcuc/kernels/patch_embed.py, wide_layout):
 * channels in pairs (o, o + 1), o even, the pair's block at element o * taps; in it, per
 * group of four taps (t < taps4 = taps & ~3) channel o's four then channel o + 1's, each
 * four in the order t = 0, 2, 1, 3 (one LDRD gives the lane pairs (w0, w2), (w1, w3) that
 * SXTB16 makes of the image), then the tail taps as (w[o][t], w[o + 1][t]). The last channel
 * of an odd d is a block of width one. */
static int64_t wide_pos(int32_t taps, int32_t d, int32_t o, int32_t t)
{
    const int32_t taps4 = taps & ~3, width = (o == d - 1 && (d & 1)) ? 1 : 2, c = o & 1;
    const int64_t base = (int64_t)(o & ~1) * taps;
    if (t < taps4) {
        return base + (int64_t)(t >> 2) * 4 * width + 4 * c + (((t & 1) << 1) | ((t >> 1) & 1));
    }
    return base + (int64_t)taps4 * width + (int64_t)(t - taps4) * width + c;
}

/* w[o][t] from the storage `wide` says (a constant where inlined). */
MCUC_ALWAYS_INLINE static int32_t weight_at(const mcuc_patch_embed_params_t *p, int wide,
                                            int32_t taps, int32_t o, int32_t t)
{
    if (wide) {
        return p->weights16[wide_pos(taps, p->d, o, t)];
    }
    return p->weights[(int64_t)o * taps + t];
}

/* The reference loop over either storage (wide: weights16), compiled once for each. */
MCUC_ALWAYS_INLINE static void ref_loop(const mcuc_patch_embed_params_t *p, const int8_t *x,
                                        int8_t *y, int wide)
{
    const int32_t taps = p->c_in * p->ph * p->pw;
    const int64_t plane = (int64_t)p->h_in * p->w_in;
    for (int32_t py = 0; py < p->hp; ++py) {
        for (int32_t px = 0; px < p->wp; ++px) {
            int8_t *yt = y + ((int64_t)py * p->wp + px) * p->d;
            for (int32_t o = 0; o < p->d; ++o) {
                int64_t acc = p->bias ? p->bias[o] : 0;
                for (int32_t c = 0; c < p->c_in; ++c) {
                    const int8_t *xc = x + c * plane + ((int64_t)py * p->ph) * p->w_in
                                       + (int64_t)px * p->pw;
                    const int32_t tc = c * p->ph * p->pw; /* the channel's first tap */
                    for (int32_t ky = 0; ky < p->ph; ++ky) {
                        for (int32_t kx = 0; kx < p->pw; ++kx) {
                            acc += (int32_t)(xc[(int64_t)ky * p->w_in + kx] - p->x_zp)
                                   * weight_at(p, wide, taps, o, tc + ky * p->pw + kx);
                        }
                    }
                }
                const int32_t a = mcuc_sat_s32(acc);
                const int64_t v = (int64_t)p->y_zp + mcuc_requantize(a, p->mult[o], p->shift[o]);
                yt[o] = mcuc_clamp_s8(v);
            }
        }
    }
}

#ifdef MCUC_ARM_DSP
/* The variant's fallback (shapes it does not take): one loop that tests the storage per
 * tap, as small as it was before weights16 (the fit estimate's code allowance). */
static void patch_embed_ref(const mcuc_patch_embed_params_t *p, const int8_t *x, int8_t *y)
{
    ref_loop(p, x, y, p->weights16 != NULL);
}
#else
/* Without a variant this is mcuc_patch_embed_s8 itself, compiled once per storage. */
void mcuc_patch_embed_s8(const mcuc_patch_embed_params_t *p, const int8_t *x, int8_t *y)
{
    if (p->weights16) {
        ref_loop(p, x, y, 1);
    } else {
        ref_loop(p, x, y, 0);
    }
}
#endif

#ifdef MCUC_ARM_DSP
/* Every channel takes the fast epilogue (patch_embed_dsp.c's opening comment). */
static int all_fast(const mcuc_patch_embed_params_t *p, int32_t taps)
{
    const int32_t bias_max = (1 << 30) - 1 - 255 * 128 * taps;
    for (int32_t o = 0; o < p->d; ++o) {
        const int32_t b = p->bias ? p->bias[o] : 0, s = p->shift[o];
        /* |b| <= bias_max, as one unsigned compare */
        if (s > -1 || s < -20 || p->mult[o] <= 0
            || (uint32_t)b + (uint32_t)bias_max > 2u * (uint32_t)bias_max) {
            return 0;
        }
    }
    return 1;
}

void mcuc_patch_embed_s8(const mcuc_patch_embed_params_t *p, const int8_t *x, int8_t *y)
{
    const int32_t taps = p->c_in * p->ph * p->pw;
    if (p->ph < 1 || p->pw < 1 || p->c_in < 1 || taps > MCUC_PE_MAX_TAPS) {
        patch_embed_ref(p, x, y);
        return;
    }
    const int fast = all_fast(p, taps);
    if (p->weights16) { /* the compiler widens exactly the shapes mcuc_pe_wide16 takes */
        if (taps == 16 && fast && (p->d & 1) == 0 && p->epi) {
            mcuc_pe_wide16(p, x, y);
        } else {
            patch_embed_ref(p, x, y);
        }
    } else {
        (fast ? mcuc_pe_large_fast : mcuc_pe_large_any)(p, x, y, taps);
    }
}
#endif /* MCUC_ARM_DSP */
