/*
 * Cortex-M startup shared by the MCU boards: vector table, Reset_Handler (FPU on, copy
 * the ITCM code and .data from flash, zero .bss, then main) and default exception handlers.
 * Symbols come from the linker script mcuc renders for each board (templates/
 * linker_cortexm.ld.j2). MCUC_IRQ_COUNT (from board.toml) sizes the vector table.
 */
#include <stdint.h>
#include <string.h>

#include "board.h"
#include "cortexm.h"

#ifndef MCUC_IRQ_COUNT
#define MCUC_IRQ_COUNT 32
#endif

extern uint32_t _estack;
extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss;
#if defined(MCUC_BOARD_HAS_ITCM)
/* The hot kernels' code (.itcm_text): runs at _sitcm.._eitcm in ITCM, loaded at _litcm. */
extern uint32_t _sitcm, _eitcm, _litcm;
#endif

int main(void);
void Reset_Handler(void);
void Default_Handler(void);

void NMI_Handler(void) __attribute__((weak, alias("Default_Handler")));
void HardFault_Handler(void) __attribute__((weak, alias("Default_Handler")));
void MemManage_Handler(void) __attribute__((weak, alias("Default_Handler")));
void BusFault_Handler(void) __attribute__((weak, alias("Default_Handler")));
void UsageFault_Handler(void) __attribute__((weak, alias("Default_Handler")));
void SVC_Handler(void) __attribute__((weak, alias("Default_Handler")));
void DebugMon_Handler(void) __attribute__((weak, alias("Default_Handler")));
void PendSV_Handler(void) __attribute__((weak, alias("Default_Handler")));
void SysTick_Handler(void) __attribute__((weak, alias("Default_Handler")));

typedef union {
    void (*handler)(void);
    void *stack_top;
} mcuc_vector_t;

__attribute__((section(".isr_vector"), used))
const mcuc_vector_t mcuc_vectors[16 + MCUC_IRQ_COUNT] = {
    [0] = {.stack_top = &_estack},
    [1] = {.handler = Reset_Handler},
    [2] = {.handler = NMI_Handler},
    [3] = {.handler = HardFault_Handler},
    [4] = {.handler = MemManage_Handler},
    [5] = {.handler = BusFault_Handler},
    [6] = {.handler = UsageFault_Handler},
    [11] = {.handler = SVC_Handler},
    [12] = {.handler = DebugMon_Handler},
    [14] = {.handler = PendSV_Handler},
    [15] = {.handler = SysTick_Handler},
    [16 ... 16 + MCUC_IRQ_COUNT - 1] = {.handler = Default_Handler},
};

void Default_Handler(void)
{
    mcuc_board_fault();
}

void Reset_Handler(void)
{
    SCB_VTOR = (uint32_t)(uintptr_t)mcuc_vectors;
#if defined(__ARM_FP)
    /* CP10/CP11 full access before any floating-point instruction can run. */
    SCB_CPACR |= (0xFu << 20);
    mcuc_dsb();
    mcuc_isb();
#endif
#if defined(MCUC_BOARD_HAS_ITCM)
    /* memcpy itself stays in flash (it is not in the ITCM list). The barriers make the
     * copied instructions visible to instruction fetch before anything calls them. */
    memcpy(&_sitcm, &_litcm, (size_t)((uintptr_t)&_eitcm - (uintptr_t)&_sitcm));
    mcuc_dsb();
    mcuc_isb();
#endif
    memcpy(&_sdata, &_sidata, (size_t)((uintptr_t)&_edata - (uintptr_t)&_sdata));
    memset(&_sbss, 0, (size_t)((uintptr_t)&_ebss - (uintptr_t)&_sbss));
    (void)main();
    mcuc_board_exit(0);
}
