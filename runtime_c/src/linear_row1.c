/* The token-wise linear layer's one-row loop (MCUC_ARM_DSP): mcuc_lin_row1, which
 * mcuc_linear_s8 (linear.c) calls for a call of one row whose weights are widened, whose
 * zero point is folded (x_zp == 0) and whose outputs all take the short epilogue
 * (short_ok), with n >= 4, k % 16 == 0 and k <= MCUC_PRE_MAX_K (lin_row1_ok). That is a
 * ViT's classifier head (one pooled token: k = 64, n = 10 on the default model), whose
 * weights the compiler widens, and whose kept zero point it folds into a bias of zeros,
 * in every DSP build when the widening costs at most 4 KB (schedule/widen.py widen_heads).
 *
 * Why a loop of its own: the plans of linear_dsp.c serve row pairs; a call of one row
 * paid their fixed costs (unpack_rows' loop of its own, dot1's generic loop for the
 * channels past the blocks of four) and, over int8 weights, the SXTB16 unpacking of every
 * weight word that no second row shared: 2.8 instructions per MAC on the head, 1.2 here.
 * The first block of four channels unpacks x into SXTB16 lane pairs while it multiplies,
 * storing them for the next blocks: per sixteen inputs (one loop step) 66 instructions
 * (four LDRs of x, eight SXTB16, four STRDs, sixteen LDRDs of weights, 32 SMLADs, the
 * loop's compare and branch: the pointer steps ride on post-indexed loads and stores),
 * then 54 for each further block (four LDRDs of unpacked x instead) and 30 for a pair of
 * the channels past the blocks (plain rows; a last odd channel goes through the same loop).
 * The sums start at the biases and end in short_out (linear_epi.h). The buffer (2 k bytes
 * <= 1 KB) is on the stack, as unpacked_rows' is (tests/test_stack_frames.py). */
#include "linear_internal.h"
#include "mcuc/simd.h"

#ifdef MCUC_ARM_DSP
#include "linear_epi.h" /* short_out, short_c */

/* lo, hi = the two words of the widened weights at w + off (int16s, off may be negative;
 * w 8-aligned there: a block's words and a plain row's, k % 16 == 0), one LDRD; the _POST
 * form reads at w and then advances w by step int16s (the loops' pointer increments ride
 * on their first loads). Flash constants: the asm reads no memory the compiler could have
 * changed. */
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
#define R1_LDRD_W(lo, hi, w, off) \
    __asm__("ldrd %0, %1, [%2, #%c3]" : "=r"(lo), "=r"(hi) : "r"(w), "i"(2 * (off)))
#define R1_LDRD_W_POST(lo, hi, w, step) \
    __asm__("ldrd %0, %1, [%2], #%c3" : "=r"(lo), "=r"(hi), "+r"(w) : "i"(2 * (step)))
/* x's word at xi, then xi += step bytes (an unaligned LDR, post-indexed). */
#define R1_LDR_X_POST(v, xi, step) __asm__("ldr %0, [%1], #%c2" : "=r"(v), "+r"(xi) : "i"(step))
#define R1_LDR_X(v, xi, off) (v) = mcuc_read32((xi) + (off))
#else
#define R1_LDRD_W(lo, hi, w, off)          \
    do {                                   \
        uint32_t v_[2];                    \
        memcpy(v_, (w) + (off), sizeof v_); \
        (lo) = v_[0];                      \
        (hi) = v_[1];                      \
    } while (0)
#define R1_LDRD_W_POST(lo, hi, w, step)    \
    do {                                   \
        R1_LDRD_W(lo, hi, w, 0);           \
        (w) += (step);                     \
    } while (0)
#define R1_LDR_X_POST(v, xi, step)         \
    do {                                   \
        (v) = mcuc_read32(xi);             \
        (xi) += (step);                    \
    } while (0)
#define R1_LDR_X(v, xi, off) (v) = mcuc_read32((xi) + (off))
#endif

/* p[off / 4] = lo, p[off / 4 + 1] = hi (uint32_t *p, constant byte offset, may be
 * negative): one STRD; the _POST form stores at p, then advances p by step bytes. */
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
#define R1_STRD(p, off, lo, hi) \
    __asm__("strd %1, %2, [%0, #%c3]" : : "r"(p), "r"(lo), "r"(hi), "i"(off) : "memory")
#define R1_STRD_POST(p, step, lo, hi) \
    __asm__("strd %1, %2, [%0], #%c3" : "+r"(p) : "r"(lo), "r"(hi), "i"(step) : "memory")
#else
#define R1_STRD(p, off, lo, hi)    \
    do {                           \
        (p)[(off) / 4] = (lo);     \
        (p)[(off) / 4 + 1] = (hi); \
    } while (0)
#define R1_STRD_POST(p, step, lo, hi) \
    do {                              \
        R1_STRD(p, 0, lo, hi);        \
        (p) += (step) / 4;            \
    } while (0)
#endif

/* acc += the lane pairs xl (x0, x2), xh (x1, x3) times a widened weight word (lo, hi). */
#define R1_MAC(acc, xl, xh, lo, hi) acc = mcuc_smlad(xh, hi, mcuc_smlad(xl, lo, acc))

/* a1..a3 += the block's last three channels' words for four inputs (at w + off, int16s:
 * words 4 int16s apart) against xl, xh. */
#define R1_QUAD3(xl, xh, w, off)                                                 \
    do {                                                                         \
        uint32_t lo_, hi_;                                                       \
        R1_LDRD_W(lo_, hi_, w, off);                                             \
        R1_MAC(a1, xl, xh, lo_, hi_);                                            \
        R1_LDRD_W(lo_, hi_, w, (off) + 4);                                       \
        R1_MAC(a2, xl, xh, lo_, hi_);                                            \
        R1_LDRD_W(lo_, hi_, w, (off) + 8);                                       \
        R1_MAC(a3, xl, xh, lo_, hi_);                                            \
    } while (0)

/* a0..a3 += the block's four channels' words for four inputs (at w + off) against xl, xh;
 * _POST: at w, then w advances by the loop step's 64 int16s. */
#define R1_QUAD(xl, xh, w, off)                                                  \
    do {                                                                         \
        uint32_t lo0_, hi0_;                                                     \
        R1_LDRD_W(lo0_, hi0_, w, off);                                           \
        R1_MAC(a0, xl, xh, lo0_, hi0_);                                          \
        R1_QUAD3(xl, xh, w, (off) + 4);                                          \
    } while (0)
#define R1_QUAD_POST(xl, xh, w)                                                  \
    do {                                                                         \
        uint32_t lo0_, hi0_;                                                     \
        R1_LDRD_W_POST(lo0_, hi0_, w, 64);                                       \
        R1_MAC(a0, xl, xh, lo0_, hi0_);                                          \
        R1_QUAD3(xl, xh, w, -60);                                                \
    } while (0)

/* Inputs 4 t..4 t+3 of a loop step (t = 1, 2, 3; xi, xo and w already advanced by the
 * step's 16 bytes, 64 bytes and 64 int16s) unpacked, stored and multiplied in. */
#define R1_FIRST_STEP(xi, xo, w, t)                                              \
    do {                                                                         \
        uint32_t xw_;                                                            \
        R1_LDR_X(xw_, xi, 4 * (t) - 16);                                         \
        const uint32_t xl_ = mcuc_sxtb16(xw_), xh_ = mcuc_sxtb16_ror8(xw_);      \
        R1_STRD(xo, 8 * (t) - 32, xl_, xh_);                                     \
        R1_QUAD(xl_, xh_, w, 16 * (t) - 64);                                     \
    } while (0)

/* The same from the unpacked inputs at xp (advanced by the step's 32 bytes). */
#define R1_STEP(xp, w, t)                                                        \
    do {                                                                         \
        uint32_t xl_, xh_;                                                       \
        MCUC_LDRD(xl_, xh_, xp, 8 * (t) - 32);                                   \
        R1_QUAD(xl_, xh_, w, 16 * (t) - 64);                                     \
    } while (0)

/* y0 = output of the pair's first channel, y1 = its second's, from their sums (short_out;
 * the sums started at the biases): one LDRD for the pair's m2 words, one for its t words.
 * y1 is stored first: a last odd channel passes y1 = y0, its padded lane's byte then
 * overwritten. */
MCUC_ALWAYS_INLINE static void row1_out2(const int32_t *e, int32_t s0, int32_t s1, int8_t *y0,
                                         int8_t *y1, int32_t y_c)
{
    int32_t m0, m1, t0, t1;
    MCUC_LDRD(m0, m1, e, 4 * RQ_MULT);
    MCUC_LDRD(t0, t1, e, 4 * RQ_SHIFT);
    *y1 = short_out(s1, m1, t1, y_c);
    *y0 = short_out(s0, m0, t0, y_c);
}

/* One block of four channels (weights w: the block's start; e: its first rq pair) into
 * y[0..3]; first: x is read and unpacked into xu (up to xend: k / 2 words) on the way,
 * else read from xu. Returns w past the block: the next block's start. */
MCUC_ALWAYS_INLINE static const int16_t *row1_quad(const int8_t *x, uint32_t *xu,
                                                   const uint32_t *xend, const int16_t *w,
                                                   const int32_t *e, int8_t *y, int32_t y_c,
                                                   int first)
{
    int32_t a0, a1, a2, a3;
    MCUC_LDRD(a0, a1, e, 4 * RQ_BIAS);
    MCUC_LDRD(a2, a3, e, 4 * (RQ_PAIR + RQ_BIAS));
    const int8_t *xi = x;
    uint32_t *xp = xu;
    do { /* k % 16 == 0, k >= 16: sixteen inputs per step */
        if (first) {
            uint32_t xw;
            R1_LDR_X_POST(xw, xi, 16);
            const uint32_t xl = mcuc_sxtb16(xw), xh = mcuc_sxtb16_ror8(xw);
            R1_STRD_POST(xp, 32, xl, xh);
            R1_QUAD_POST(xl, xh, w);
            R1_FIRST_STEP(xi, xp, w, 1);
            R1_FIRST_STEP(xi, xp, w, 2);
            R1_FIRST_STEP(xi, xp, w, 3);
        } else {
            uint32_t xl, xh;
            MCUC_LDRD_POST(xl, xh, xp, 32);
            R1_QUAD_POST(xl, xh, w);
            R1_STEP(xp, w, 1);
            R1_STEP(xp, w, 2);
            R1_STEP(xp, w, 3);
        }
    } while (xp != xend);
    row1_out2(e, a0, a1, y, y + 1, y_c);
    row1_out2(e + RQ_PAIR, a2, a3, y + 2, y + 3, y_c);
    return w;
}

/* Four unpacked inputs (t-th of a loop step, xp and w0, w1 advanced by the step) against
 * two plain rows. */
#define R1_ROWS_STEP(xp, t)                                                      \
    do {                                                                         \
        uint32_t xl_, xh_, lo_, hi_;                                             \
        MCUC_LDRD(xl_, xh_, xp, 8 * (t) - 32);                                   \
        R1_LDRD_W(lo_, hi_, w0, 4 * (t) - 16);                                   \
        R1_MAC(s0, xl_, xh_, lo_, hi_);                                          \
        R1_LDRD_W(lo_, hi_, w1, 4 * (t) - 16);                                   \
        R1_MAC(s1, xl_, xh_, lo_, hi_);                                          \
    } while (0)

/* Channels j and j + 1 past the blocks of four (plain rows of widened weights w0 and w1;
 * e: their rq pair) from the unpacked xu (up to xend) into *y0 and *y1 (a last odd
 * channel: w1 = w0 and y1 = y0, see row1_out2). Returns w1 past its row: the next pair's
 * first row. */
MCUC_ALWAYS_INLINE static const int16_t *row1_rows(const uint32_t *xu, const uint32_t *xend,
                                                   const int16_t *w0, const int16_t *w1,
                                                   const int32_t *e, int8_t *y0, int8_t *y1,
                                                   int32_t y_c)
{
    int32_t s0, s1;
    MCUC_LDRD(s0, s1, e, 4 * RQ_BIAS);
    const uint32_t *xp = xu;
    do { /* k % 16 == 0, k >= 16 */
        uint32_t xl, xh, lo, hi;
        MCUC_LDRD_POST(xl, xh, xp, 32);
        R1_LDRD_W_POST(lo, hi, w0, 16);
        R1_MAC(s0, xl, xh, lo, hi);
        R1_LDRD_W_POST(lo, hi, w1, 16);
        R1_MAC(s1, xl, xh, lo, hi);
        R1_ROWS_STEP(xp, 1);
        R1_ROWS_STEP(xp, 2);
        R1_ROWS_STEP(xp, 3);
    } while (xp != xend);
    row1_out2(e, s0, s1, y0, y1, y_c);
    return w1;
}

int mcuc_lin_row1_ok(const mcuc_linear_params_t *p)
{
    return lin_row1_ok(p);
}

/* The row of a call of one row (p->rows is not read: mcuc_linear_s8 checks it). */
#ifdef __GNUC__
__attribute__((noinline))
#endif
void mcuc_lin_row1(const mcuc_linear_params_t *p, const int8_t *x, int8_t *y)
{
    const int32_t k = p->k, y_c = short_c(p->y_zp);
    uint32_t xu[MCUC_PRE_MAX_K / 2];
    const uint32_t *const xend = xu + (k >> 1); /* k > 0 */
    int8_t *const yq = y + (p->n & ~3), *const yn = y + p->n; /* past the blocks, the end */
    const int32_t *e = p->rq;
    /* each loop leaves w at the next block's or row pair's start */
    const int16_t *w = row1_quad(x, xu, xend, p->weights16, e, y, y_c, 1); /* n >= 4 */
    for (y += 4, e += 2 * RQ_PAIR; y != yq; y += 4, e += 2 * RQ_PAIR) {
        w = row1_quad(x, xu, xend, w, e, y, y_c, 0);
    }
    for (; y < yn; y += 2, e += RQ_PAIR) { /* pairs, then a last odd channel */
        const int32_t two = y + 1 != yn;
        w = row1_rows(xu, xend, w, w + (k & -two), e, y, y + two, y_c);
    }
}
#else
typedef int mcuc_linear_row1_empty; /* ISO C wants a declaration in every file */
#endif /* MCUC_ARM_DSP */
