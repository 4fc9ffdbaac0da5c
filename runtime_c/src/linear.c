/* Token-wise linear layer.
 *
 * linear_ref is the portable reference (the C twin of compiler/mcuc/kernels/linear.py):
 * int64 accumulation keeps the sum exact for any k and bias; it is saturated to int32
 * before requantization, as the numpy spec does.
 *
 * With MCUC_ARM_DSP (boards whose board.toml says [cpu] dsp = true; see mcuc/simd.h) the
 * rows go through linear_dsp instead: one row against four output channels at a time,
 * four k per step as two SMLADs per channel on SXTB16-unpacked pairs, in int32.
 * Why int32 is exact: |x - x_zp| <= 255 and |w| <= 128, so every partial sum of
 * (x - x_zp) * w over k terms is at most 255 * 128 * k in magnitude, which fits int32
 * for k <= MCUC_DSP_MAX_K = 65793 (255 * 128 * 65793 = 2,147,483,520 <= 2^31 - 1;
 * checked below at compile time, and against the Python twin in linear.py by a test). Larger k (the compiler accepts dimensions up to 2^20) takes the
 * reference loop. The bias is then added with a saturating add (QADD): the exact sum
 * fits int32, so sat32(bias + sum) is exactly the reference's saturated int64 sum. */
#include "mcuc/kernels.h"

/* Without a variant this loop is mcuc_linear_s8 itself (a wrapper costs the loop a
 * spilled register on Cortex-M7: +1 instruction per MAC). */
#ifdef MCUC_ARM_DSP
static void linear_ref(const mcuc_linear_params_t *p, const int8_t *x, int8_t *y)
#else
void mcuc_linear_s8(const mcuc_linear_params_t *p, const int8_t *x, int8_t *y)
#endif
{
    for (int32_t r = 0; r < p->rows; ++r) {
        const int8_t *xr = x + (int64_t)r * p->k;
        int8_t *yr = y + (int64_t)r * p->n;
        for (int32_t j = 0; j < p->n; ++j) {
            const int8_t *wj = p->weights + (int64_t)j * p->k;
            int64_t acc = p->bias ? p->bias[j] : 0;
            for (int32_t i = 0; i < p->k; ++i) {
                acc += (int32_t)(xr[i] - p->x_zp) * (int32_t)wj[i];
            }
            const int32_t a = (int32_t)(acc > INT32_MAX ? INT32_MAX
                                        : (acc < INT32_MIN ? INT32_MIN : acc));
            const int64_t v = (int64_t)p->y_zp + mcuc_requantize(a, p->mult[j], p->shift[j]);
            yr[j] = (int8_t)(v < -128 ? -128 : (v > 127 ? 127 : v));
        }
    }
}

#ifdef MCUC_ARM_DSP
#include "mcuc/simd.h"

#define MCUC_DSP_MAX_K 65793
/* The int32 bound above, as a compile-time check (a negative array size fails). */
typedef char mcuc_dsp_k_bound_fits_int32[(255LL * 128 * MCUC_DSP_MAX_K <= INT32_MAX) ? 1 : -1];

/* The epilogue of output channel j: bias, requantization, zero point, clamp. */
static inline int8_t with_bias(const mcuc_linear_params_t *p, int32_t j, int32_t sum)
{
    const int32_t acc = p->bias ? mcuc_qadd(p->bias[j], sum) : sum;
    return mcuc_out_s8(p->y_zp, mcuc_requantize_fast(acc, p->mult[j], p->shift[j]));
}

/* One row: y[j] for every output channel j. */
static void linear_dsp_row(const mcuc_linear_params_t *p, const int8_t *xr, int8_t *yr)
{
    const int32_t k = p->k, n = p->n, k4 = k & ~3, x_zp = p->x_zp;
    const uint32_t zp2 = mcuc_dup16(x_zp);
    int32_t j = 0;
    for (; j + 4 <= n; j += 4) {
        const int8_t *w0 = p->weights + (int64_t)j * k;
        const int8_t *w1 = w0 + k;
        const int8_t *w2 = w1 + k;
        const int8_t *w3 = w2 + k;
        int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
        for (int32_t i = 0; i < k4; i += 4) {
            const uint32_t xw = mcuc_read32(xr + i);
            const uint32_t xl = mcuc_ssub16(mcuc_sxtb16(xw), zp2);
            const uint32_t xh = mcuc_ssub16(mcuc_sxtb16_ror8(xw), zp2);
            uint32_t ww = mcuc_read32(w0 + i);
            a0 = mcuc_smlad(xl, mcuc_sxtb16(ww), a0);
            a0 = mcuc_smlad(xh, mcuc_sxtb16_ror8(ww), a0);
            ww = mcuc_read32(w1 + i);
            a1 = mcuc_smlad(xl, mcuc_sxtb16(ww), a1);
            a1 = mcuc_smlad(xh, mcuc_sxtb16_ror8(ww), a1);
            ww = mcuc_read32(w2 + i);
            a2 = mcuc_smlad(xl, mcuc_sxtb16(ww), a2);
            a2 = mcuc_smlad(xh, mcuc_sxtb16_ror8(ww), a2);
            ww = mcuc_read32(w3 + i);
            a3 = mcuc_smlad(xl, mcuc_sxtb16(ww), a3);
            a3 = mcuc_smlad(xh, mcuc_sxtb16_ror8(ww), a3);
        }
        for (int32_t i = k4; i < k; ++i) {
            const int32_t xv = xr[i] - x_zp;
            a0 += xv * w0[i];
            a1 += xv * w1[i];
            a2 += xv * w2[i];
            a3 += xv * w3[i];
        }
        yr[j] = with_bias(p, j, a0);
        yr[j + 1] = with_bias(p, j + 1, a1);
        yr[j + 2] = with_bias(p, j + 2, a2);
        yr[j + 3] = with_bias(p, j + 3, a3);
    }
    for (; j < n; ++j) {
        const int8_t *w0 = p->weights + (int64_t)j * k;
        int32_t a0 = 0;
        for (int32_t i = 0; i < k4; i += 4) {
            const uint32_t xw = mcuc_read32(xr + i);
            const uint32_t ww = mcuc_read32(w0 + i);
            a0 = mcuc_smlad(mcuc_ssub16(mcuc_sxtb16(xw), zp2), mcuc_sxtb16(ww), a0);
            a0 = mcuc_smlad(mcuc_ssub16(mcuc_sxtb16_ror8(xw), zp2), mcuc_sxtb16_ror8(ww), a0);
        }
        for (int32_t i = k4; i < k; ++i) {
            a0 += (xr[i] - x_zp) * w0[i];
        }
        yr[j] = with_bias(p, j, a0);
    }
}

void mcuc_linear_s8(const mcuc_linear_params_t *p, const int8_t *x, int8_t *y)
{
    if (p->k > MCUC_DSP_MAX_K) {
        linear_ref(p, x, y);
        return;
    }
    for (int32_t r = 0; r < p->rows; ++r) {
        linear_dsp_row(p, x + (int64_t)r * p->k, y + (int64_t)r * p->n);
    }
}
#endif /* MCUC_ARM_DSP */
