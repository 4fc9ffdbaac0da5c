/*
 * Core (not vendor) registers of ARMv7-M used by every MCU board: SCB, FPU access,
 * caches (Cortex-M7 only) and the DWT cycle counter. Addresses from the ARMv7-M
 * Architecture Reference Manual (B3.2, C1.8); written out here so that no CMSIS
 * headers are needed.
 */
#ifndef MCUC_CORTEXM_H
#define MCUC_CORTEXM_H

#include <stdint.h>

#define MCUC_REG(addr) (*(volatile uint32_t *)(uintptr_t)(addr))

#define SCB_VTOR    MCUC_REG(0xE000ED08u)
#define SCB_CCR     MCUC_REG(0xE000ED14u)
#define SCB_CPACR   MCUC_REG(0xE000ED88u)
#define SCB_CCSIDR  MCUC_REG(0xE000ED80u)
#define SCB_CSSELR  MCUC_REG(0xE000ED84u)
#define SCB_ICIALLU MCUC_REG(0xE000EF50u)
#define SCB_DCISW   MCUC_REG(0xE000EF60u)
#define SCB_CCR_IC  (1u << 17)
#define SCB_CCR_DC  (1u << 16)

#define COREDEBUG_DEMCR MCUC_REG(0xE000EDFCu)
#define DEMCR_TRCENA    (1u << 24)
#define DWT_CTRL        MCUC_REG(0xE0001000u)
#define DWT_CYCCNT      MCUC_REG(0xE0001004u)
#define DWT_LAR         MCUC_REG(0xE0001FB0u)
#define DWT_CTRL_CYCCNTENA (1u << 0)

static inline void mcuc_dsb(void) { __asm__ volatile("dsb 0xF" ::: "memory"); }
static inline void mcuc_isb(void) { __asm__ volatile("isb 0xF" ::: "memory"); }

/* Start the free-running DWT cycle counter (cores with a DWT: M3/M4/M7). The lock
 * access register exists on M7 only; writing it elsewhere is ignored. */
static inline void mcuc_dwt_start(void)
{
    COREDEBUG_DEMCR |= DEMCR_TRCENA;
    DWT_LAR = 0xC5ACCE55u;
    DWT_CYCCNT = 0u;
    DWT_CTRL |= DWT_CTRL_CYCCNTENA;
}

/* Cortex-M7 L1 caches: invalidate, then enable (ARM Cortex-M7 TRM 4.8, the same steps
 * as CMSIS SCB_EnableICache/SCB_EnableDCache). No DMA is used, so no coherency work. */
static inline void mcuc_m7_enable_caches(void)
{
    mcuc_dsb();
    mcuc_isb();
    SCB_ICIALLU = 0u;
    mcuc_dsb();
    mcuc_isb();
    SCB_CCR |= SCB_CCR_IC;
    mcuc_dsb();
    mcuc_isb();

    SCB_CSSELR = 0u; /* level 1 data cache */
    mcuc_dsb();
    uint32_t ccsidr = SCB_CCSIDR;
    uint32_t sets = (ccsidr >> 13) & 0x7FFFu;
    do {
        uint32_t ways = (ccsidr >> 3) & 0x3FFu;
        do {
            SCB_DCISW = ((sets & 0x1FFu) << 5) | ((ways & 3u) << 30);
        } while (ways-- != 0u);
    } while (sets-- != 0u);
    mcuc_dsb();
    SCB_CCR |= SCB_CCR_DC;
    mcuc_dsb();
    mcuc_isb();
}

/* Poll until (reg & mask) == want, at most `limit` reads. Returns 0 when it got there,
 * 1 on timeout: a clock that never becomes ready must give an error code, not a hang. */
static inline int mcuc_poll(volatile uint32_t *reg, uint32_t mask, uint32_t want,
                            uint32_t limit)
{
    while (limit-- != 0u) {
        if ((*reg & mask) == want) {
            return 0;
        }
    }
    return 1;
}

#define MCUC_POLL_LIMIT 2000000u

#endif /* MCUC_CORTEXM_H */
