/* The token-wise linear layer's one-row loop (MCUC_ARM_DSP): mcuc_lin_row1, which
 * mcuc_linear_s8 (linear.c) calls for a call of one row whose weights are widened, whose
 * zero point is folded (x_zp == 0) and whose outputs all take the short epilogue
 * (short_ok), with n >= 4, k % 16 == 0 and k <= MCUC_PRE_MAX_K (mcuc_lin_row1_ok). That
 * is a ViT's classifier head (one pooled token: k = 64, n = 10 on the default model),
 * whose weights the compiler widens in every DSP build when that costs little flash
 * (schedule/widen.py widen_heads).
 *
 * Why a loop of its own: the plans of linear_dsp.c serve row pairs; a call of one row
 * paid their fixed costs (unpack_rows' loop of its own, dot1's generic loop for the
 * channels past the blocks of four, the plan's dispatch) and, over int8 weights, the
 * SXTB16 unpacking of every weight word that no second row shared: 2.8 instructions per
 * MAC on the head. Here the first block of four channels unpacks x into SXTB16 lane pairs
 * while it multiplies, storing them for the next blocks: 17 instructions per four inputs
 * of the block (one LDR, two SXTB16, one STRD, four LDRDs of weights, eight SMLADs, and a
 * quarter of the loop's five), then 14 for each further block (one LDRD of x instead of
 * LDR, SXTB16s and STRD) and 8 per four inputs of a pair of the channels past the blocks
 * (plain rows); sixteen inputs per loop step. The sums start at the biases (the pairs':
 * at 0, chan_out adds them) and end in short_out (linear_epi.h). The buffer (2 k bytes <=
 * 1 KB) is on the stack, as unpacked_rows' is (tests/test_stack_frames.py). */
#include "linear_internal.h"
#include "mcuc/simd.h"

#ifdef MCUC_ARM_DSP
#include "linear_epi.h" /* quad_out, chan_out, short_c */

/* lo, hi = the two words of the widened weights at w + off (int16s; w 8-aligned there: a
 * block's words and the k4 part of a plain row, k % 4 == 0), one LDRD; flash constants,
 * so the asm reads no memory the compiler could have changed. */
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
#define R1_LDRD_W(lo, hi, w, off) \
    __asm__("ldrd %0, %1, [%2, #(" #off ") * 2]" : "=r"(lo), "=r"(hi) : "r"(w))
#else
#define R1_LDRD_W(lo, hi, w, off)          \
    do {                                   \
        uint32_t v_[2];                    \
        memcpy(v_, (w) + (off), sizeof v_); \
        (lo) = v_[0];                      \
        (hi) = v_[1];                      \
    } while (0)
#endif

/* p[off / 4] = lo, p[off / 4 + 1] = hi (uint32_t *p, constant byte offset): one STRD. */
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
#define R1_STRD(p, off, lo, hi) \
    __asm__("strd %1, %2, [%0, #%c3]" : : "r"(p), "r"(lo), "r"(hi), "i"(off) : "memory")
#else
#define R1_STRD(p, off, lo, hi)    \
    do {                           \
        (p)[(off) / 4] = (lo);     \
        (p)[(off) / 4 + 1] = (hi); \
    } while (0)
#endif

/* a0..a3 += the block's four channels' words for four inputs (at w + off, int16s: four
 * words, 4 int16s apart) against the input lane pairs xl (x0, x2) and xh (x1, x3). */
#define R1_QUAD(xl, xh, w, off)                                                  \
    do {                                                                         \
        uint32_t lo_, hi_;                                                       \
        R1_LDRD_W(lo_, hi_, w, off);                                             \
        a0 = mcuc_smlad(xh, hi_, mcuc_smlad(xl, lo_, a0));                       \
        R1_LDRD_W(lo_, hi_, w, (off) + 4);                                       \
        a1 = mcuc_smlad(xh, hi_, mcuc_smlad(xl, lo_, a1));                       \
        R1_LDRD_W(lo_, hi_, w, (off) + 8);                                       \
        a2 = mcuc_smlad(xh, hi_, mcuc_smlad(xl, lo_, a2));                       \
        R1_LDRD_W(lo_, hi_, w, (off) + 12);                                      \
        a3 = mcuc_smlad(xh, hi_, mcuc_smlad(xl, lo_, a3));                       \
    } while (0)

/* Inputs i..i+3 (i = off / 4 past xi) unpacked, stored at xo (8 bytes per four inputs)
 * and multiplied into the block (weights 16 int16s per four inputs). */
#define R1_FIRST_STEP(xi, xo, w, off)                                            \
    do {                                                                         \
        const uint32_t xw_ = mcuc_read32((xi) + (off));                          \
        const uint32_t xl_ = mcuc_sxtb16(xw_), xh_ = mcuc_sxtb16_ror8(xw_);      \
        R1_STRD(xo, 2 * (off), xl_, xh_);                                        \
        R1_QUAD(xl_, xh_, w, 4 * (off));                                         \
    } while (0)

/* The same from the unpacked inputs at xp. */
#define R1_STEP(xp, w, off)                                                      \
    do {                                                                         \
        uint32_t xl_, xh_;                                                       \
        MCUC_LDRD(xl_, xh_, xp, 2 * (off));                                      \
        R1_QUAD(xl_, xh_, w, 4 * (off));                                         \
    } while (0)

/* One block of four channels (weights w: the block's start; e: its first rq pair) into
 * y[0..3]; first: x is read and unpacked into xu on the way, else read from xu. */
MCUC_ALWAYS_INLINE static void row1_quad(const int8_t *x, uint32_t *xu, int32_t k,
                                         const int16_t *w, const int32_t *e, int8_t *y,
                                         int32_t y_c, int first)
{
    int32_t a0 = e[RQ_BIAS], a1 = e[RQ_BIAS + 1];
    int32_t a2 = e[RQ_PAIR + RQ_BIAS], a3 = e[RQ_PAIR + RQ_BIAS + 1];
    const int8_t *xi = x;
    uint32_t *xp = xu;
    uint32_t *const xend = xu + k / 2;
    do { /* k % 16 == 0, k >= 16 */
        if (first) {
            R1_FIRST_STEP(xi, xp, w, 0);
            R1_FIRST_STEP(xi, xp, w, 4);
            R1_FIRST_STEP(xi, xp, w, 8);
            R1_FIRST_STEP(xi, xp, w, 12);
        } else {
            R1_STEP(xp, w, 0);
            R1_STEP(xp, w, 4);
            R1_STEP(xp, w, 8);
            R1_STEP(xp, w, 12);
        }
        xp += 8;
        xi += 16;
        w += 64;
    } while (xp != xend);
    const int32_t a[4] = {a0, a1, a2, a3};
    quad_out(e, a, y, 0, y_c, 1);
}

/* acc += plain row's word at w + off (int16s) against the lane pairs xl, xh. */
#define R1_ROW(acc, w, off, xl, xh)                                              \
    do {                                                                         \
        uint32_t lo_, hi_;                                                       \
        R1_LDRD_W(lo_, hi_, w, off);                                             \
        acc = mcuc_smlad(xh, hi_, mcuc_smlad(xl, lo_, acc));                     \
    } while (0)

/* Four unpacked inputs (at xp + off / 2 words) against two plain rows. */
#define R1_ROWS_STEP(xp, off)                                                    \
    do {                                                                         \
        uint32_t xl_, xh_;                                                       \
        MCUC_LDRD(xl_, xh_, xp, 2 * (off));                                      \
        R1_ROW(s0, w0, off, xl_, xh_);                                           \
        R1_ROW(s1, w1, off, xl_, xh_);                                           \
    } while (0)

/* Channels j and j + 1 past the blocks of four (plain rows of widened weights w0 and w1)
 * from the unpacked xu into y[j] and, when two, y[j + 1] (else w1 is w0 again, its sum
 * unused: a last odd channel). */
MCUC_ALWAYS_INLINE static void row1_rows(const uint32_t *xu, int32_t k, const int16_t *w0,
                                         const int16_t *w1, const int32_t *rq, int32_t j,
                                         int8_t *y, int32_t y_c, int two)
{
    int32_t s0 = 0, s1 = 0;
    const uint32_t *xp = xu;
    const uint32_t *const xend = xu + k / 2;
    do { /* k % 16 == 0, k >= 16 */
        R1_ROWS_STEP(xp, 0);
        R1_ROWS_STEP(xp, 4);
        R1_ROWS_STEP(xp, 8);
        R1_ROWS_STEP(xp, 12);
        xp += 8;
        w0 += 16;
        w1 += 16;
    } while (xp != xend);
    y[j] = chan_out(rq, j, s0, 0, y_c, 1);
    if (two) {
        y[j + 1] = chan_out(rq, j + 1, s1, 0, y_c, 1);
    }
}

int mcuc_lin_row1_ok(const mcuc_linear_params_t *p)
{
    return p->weights16 != NULL && p->x_zp == 0 && p->short_ok && p->n >= 4 &&
           (p->k & 15) == 0 && p->k != 0 && p->k <= MCUC_PRE_MAX_K;
}

/* The row of a call of one row (p->rows is not read: mcuc_linear_s8 checks it). */
#ifdef __GNUC__
__attribute__((noinline))
#endif
void mcuc_lin_row1(const mcuc_linear_params_t *p, const int8_t *x, int8_t *y)
{
    const int32_t k = p->k, n = p->n, n4 = n & ~3, y_c = short_c(p->y_zp);
    uint32_t xu[MCUC_PRE_MAX_K / 2];
    const int16_t *w = p->weights16;
    const int32_t *e = p->rq;
    row1_quad(x, xu, k, w, e, y, y_c, 1); /* n >= 4 */
    int32_t j = 4;
    for (w += 4 * k, e += 2 * RQ_PAIR; j < n4; j += 4, w += 4 * k, e += 2 * RQ_PAIR) {
        row1_quad(x, xu, k, w, e, y + j, y_c, 0);
    }
    for (; j < n; j += 2, w += 2 * k) { /* one loop for pairs and a last odd channel */
        const int two = j + 1 < n;
        row1_rows(xu, k, w, two ? w + k : w, p->rq, j, y, y_c, two);
    }
}
#else
typedef int mcuc_linear_row1_empty; /* ISO C wants a declaration in every file */
#endif /* MCUC_ARM_DSP */
