/*
 * bench_vs_cmsis harness: CMSIS-NN's per-channel fully connected layer and mcuc's linear
 * kernel (int8 and widened weights) on the same shapes, in one firmware, counted by the
 * project's Unicorn engine through the profiling marker (mcuc.sim.unicorn_m7): case i
 * opens steps 3 i + 1 (CMSIS-NN), 3 i + 2 (mcuc, int8 weights) and 3 i + 3 (mcuc, int16
 * weights), each closed right after its call. Both libraries get the same operands:
 * seeded pseudo-random inputs and weights, per-channel multipliers near 2^30 with a
 * right shift of 8, biases small enough for either side's fast epilogue, input zero
 * point 0 (mcuc folds it into the bias; CMSIS-NN adds its offset in the loop either way).
 * Weights live in RAM (filled at start): instruction counts do not depend on where.
 */
#include <stdint.h>
#include <string.h>

#include "arm_nnfunctions.h"
#include "mcuc/kernels.h"

#define MAX_ROWS 144
#define MAX_K 768
#define MAX_N 768
#define MAX_W (768 * 192) /* the largest k * n below */

volatile uint32_t mcuc_prof_marker;

extern uint32_t _estack;
void Reset_Handler(void);

__attribute__((section(".isr_vector"), used)) void *const vectors[2] = {
    (void *)&_estack, (void *)Reset_Handler};

static int8_t x[MAX_ROWS * MAX_K];
static int8_t y[MAX_ROWS * MAX_N];
static int8_t w8[MAX_W];
static int16_t w16[MAX_W] __attribute__((aligned(8)));
static int32_t bias[MAX_N], mult[MAX_N], shift[MAX_N];
static int32_t rq[3 * MAX_N]; /* mcuc's bias, mult, shift interleaved per channel pair */

static const struct {
    int32_t rows, k, n;
} FC[] = {{50, 64, 192}, {50, 64, 64}, {50, 64, 96}, {50, 96, 64}, {144, 192, 768},
          {144, 768, 192}};

static uint32_t seed; /* set in fill: no .data (the harness has no startup copy) */

static int32_t next(void)
{
    seed = seed * 1664525u + 1013904223u;
    return (int32_t)(seed >> 8);
}

static void fill(void)
{
    seed = 12345u;
    for (int32_t i = 0; i < MAX_ROWS * MAX_K; ++i) {
        x[i] = (int8_t)next();
    }
    for (int32_t i = 0; i < MAX_W; ++i) {
        w8[i] = (int8_t)next();
        w16[i] = w8[i];
    }
    for (int32_t j = 0; j < MAX_N; ++j) {
        bias[j] = next() % 4096;
        mult[j] = (1 << 30) + next() % (1 << 29);
        shift[j] = -8;
    }
    for (int32_t j = 0; j < MAX_N; ++j) { /* kernels.h: six words per pair (j, j + 1) */
        rq[6 * (j / 2) + j % 2] = bias[j];
        rq[6 * (j / 2) + 2 + j % 2] = (int32_t)((uint32_t)mult[j] << 1); /* m2 */
        rq[6 * (j / 2) + 4 + j % 2] = (int32_t)((uint32_t)~shift[j] & 0xFFu); /* t (mult > 0) */
    }
}

static void cmsis_fc(int32_t rows, int32_t k, int32_t n)
{
    const cmsis_nn_context ctx = {NULL, 0};
    const cmsis_nn_fc_params fc = {0, -3, 0, {-128, 127}};
    const cmsis_nn_per_channel_quant_params q = {mult, shift};
    const cmsis_nn_dims in_dims = {rows, 1, 1, k}, w_dims = {k, 1, 1, n};
    const cmsis_nn_dims b_dims = {1, 1, 1, n}, out_dims = {rows, 1, 1, n};
    arm_fully_connected_per_channel_s8(&ctx, &fc, &q, &in_dims, x, &w_dims, w8, &b_dims, bias,
                                       &out_dims, y);
}

static void mcuc_fc(int32_t rows, int32_t k, int32_t n, int wide)
{
    /* short_ok (kernels.h): mult in [2^30, 2^31), shift -8, 255 * 128 * k + 4095 < 2^30 */
    const mcuc_linear_params_t p = {rows, k, n, 0, -3, wide ? NULL : w8, wide ? w16 : NULL, rq,
                                    255 * 128 * k + 4095 < (1 << 30)};
    mcuc_linear_s8(&p, x, y);
}

void Reset_Handler(void)
{
    *(volatile uint32_t *)0xE000ED88u |= 0xFu << 20; /* CPACR: FPU on, as a startup does */
    fill();
    mcuc_prof_marker = 0xFFFFFFFFu;
    for (uint32_t i = 0; i < sizeof FC / sizeof FC[0]; ++i) {
        mcuc_prof_marker = 3 * i + 2;
        cmsis_fc(FC[i].rows, FC[i].k, FC[i].n);
        mcuc_prof_marker = 0;
        mcuc_prof_marker = 3 * i + 3;
        mcuc_fc(FC[i].rows, FC[i].k, FC[i].n, 0);
        mcuc_prof_marker = 0;
        mcuc_prof_marker = 3 * i + 4;
        mcuc_fc(FC[i].rows, FC[i].k, FC[i].n, 1);
        mcuc_prof_marker = 0;
    }
    mcuc_prof_marker = 0xFFFFFFFEu;
    for (;;) {
        __asm__ volatile("wfi");
    }
}
