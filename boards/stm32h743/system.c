/*
 * STM32H743 system init, register level (RM0433, silicon revision V). Not tested on
 * hardware; the Unicorn engine runs it on a Cortex-M7 model against register models of
 * the H7's RCC, PWR, SYSCFG, FLASH and USART (compiler/mcuc/sim/chips.py: ready flags,
 * clock tree, baud rate), not against silicon. It follows the reference manual's sequence:
 *   LDO supply, VOS1 then VOS0 (SYSCFG over-drive) for 480 MHz,
 *   HSI 64 MHz -> PLL1 (M=4 -> 16 MHz, N=60 -> VCO 960 MHz, P=2) -> SYSCLK 480 MHz,
 *   FLASH 4 wait states / WRHIGHFREQ 2, AHB 240 MHz (/2), APB1..4 120 MHz (/2),
 *   USART1 TX on PA9 (AF7), 115200 8N1, L1 caches, DWT cycle counter.
 * Polls are bounded; on a timeout the core stays on HSI and the error code is returned.
 */
#include <stdint.h>

#include "board.h"
#include "cortexm.h"

#define RCC_BASE 0x58024400u
#define RCC_CR        MCUC_REG(RCC_BASE + 0x000u)
#define RCC_CFGR      MCUC_REG(RCC_BASE + 0x010u)
#define RCC_D1CFGR    MCUC_REG(RCC_BASE + 0x018u)
#define RCC_D2CFGR    MCUC_REG(RCC_BASE + 0x01Cu)
#define RCC_D3CFGR    MCUC_REG(RCC_BASE + 0x020u)
#define RCC_PLLCKSELR MCUC_REG(RCC_BASE + 0x028u)
#define RCC_PLLCFGR   MCUC_REG(RCC_BASE + 0x02Cu)
#define RCC_PLL1DIVR  MCUC_REG(RCC_BASE + 0x030u)
#define RCC_AHB4ENR   MCUC_REG(RCC_BASE + 0x0E0u)
#define RCC_APB2ENR   MCUC_REG(RCC_BASE + 0x0F0u)
#define RCC_APB4ENR   MCUC_REG(RCC_BASE + 0x0F4u)
#define PWR_CSR1      MCUC_REG(0x58024804u)
#define PWR_CR3       MCUC_REG(0x5802480Cu)
#define PWR_D3CR      MCUC_REG(0x58024818u)
#define SYSCFG_PWRCR  MCUC_REG(0x5800042Cu)
#define FLASH_ACR     MCUC_REG(0x52002000u)
#define GPIOA_MODER   MCUC_REG(0x58020000u)
#define GPIOA_AFRH    MCUC_REG(0x58020024u)
#define USART1_CR1    MCUC_REG(0x40011000u)
#define USART1_BRR    MCUC_REG(0x4001100Cu)
#define USART1_ISR    MCUC_REG(0x4001101Cu)
#define USART1_TDR    MCUC_REG(0x40011028u)

#define HSI_HZ   64000000u
#define APB2_HZ 120000000u
#define BAUD       115200u

static int uart_broken;

static void uart_init(uint32_t pclk2_hz)
{
    RCC_AHB4ENR |= 1u << 0;                 /* GPIOA */
    RCC_APB2ENR |= 1u << 4;                 /* USART1 */
    (void)RCC_APB2ENR;
    GPIOA_MODER = (GPIOA_MODER & ~(3u << 18)) | (2u << 18);
    GPIOA_AFRH = (GPIOA_AFRH & ~(0xFu << 4)) | (7u << 4);
    USART1_CR1 = 0u;
    USART1_BRR = (pclk2_hz + BAUD / 2u) / BAUD;
    USART1_CR1 = (1u << 3) | (1u << 0);     /* TE, UE */
}

void mcuc_board_puts(const char *s)
{
    for (; *s != '\0' && !uart_broken; ++s) {
        if (mcuc_poll(&USART1_ISR, 1u << 7, 1u << 7, 1000000u)) {
            uart_broken = 1;
            break;
        }
        USART1_TDR = (uint32_t)(uint8_t)*s;
    }
}

static int clock_init(void)
{
    /* Supply: LDO on, SMPS bypassed (the reset configuration of most boards). */
    PWR_CR3 = (PWR_CR3 & ~(1u << 2)) | (1u << 1);
    if (mcuc_poll(&PWR_CSR1, 1u << 13, 1u << 13, MCUC_POLL_LIMIT)) {   /* ACTVOSRDY */
        return MCUC_BOARD_ERR_VOS;
    }
    PWR_D3CR = (PWR_D3CR & ~(3u << 14)) | (3u << 14);                    /* VOS1 */
    if (mcuc_poll(&PWR_D3CR, 1u << 13, 1u << 13, MCUC_POLL_LIMIT)) {
        return MCUC_BOARD_ERR_VOS;
    }
    RCC_APB4ENR |= 1u << 1;                                              /* SYSCFG */
    (void)RCC_APB4ENR;
    SYSCFG_PWRCR |= 1u;                                                  /* VOS0 */
    if (mcuc_poll(&PWR_D3CR, 1u << 13, 1u << 13, MCUC_POLL_LIMIT)) {
        return MCUC_BOARD_ERR_VOS;
    }
    if (mcuc_poll(&RCC_CR, 1u << 2, 1u << 2, MCUC_POLL_LIMIT)) {         /* HSIRDY */
        return MCUC_BOARD_ERR_HSI;
    }
    RCC_CR &= ~(1u << 24);
    if (mcuc_poll(&RCC_CR, 1u << 25, 0u, MCUC_POLL_LIMIT)) {
        return MCUC_BOARD_ERR_PLL;
    }
    RCC_PLLCKSELR = (RCC_PLLCKSELR & ~((3u << 0) | (0x3Fu << 4))) | (4u << 4);  /* HSI, M=4 */
    /* PLL1: input 8-16 MHz (RGE=3), wide VCO, P output enabled. */
    RCC_PLLCFGR = (RCC_PLLCFGR & ~(0xFu)) | (3u << 2) | (1u << 16);
    RCC_PLL1DIVR = (60u - 1u) | ((2u - 1u) << 9) | ((4u - 1u) << 16) | ((2u - 1u) << 24);
    RCC_CR |= 1u << 24;
    if (mcuc_poll(&RCC_CR, 1u << 25, 1u << 25, MCUC_POLL_LIMIT)) {
        return MCUC_BOARD_ERR_PLL;
    }
    FLASH_ACR = 4u | (2u << 4);
    if (mcuc_poll(&FLASH_ACR, 0x3Fu, 4u | (2u << 4), MCUC_POLL_LIMIT)) {
        return MCUC_BOARD_ERR_FLASH;
    }
    RCC_D1CFGR = (8u << 0) | (4u << 4);      /* HPRE /2, D1PPRE /2, D1CPRE /1 */
    RCC_D2CFGR = (4u << 4) | (4u << 8);      /* D2PPRE1 /2, D2PPRE2 /2 */
    RCC_D3CFGR = (4u << 4);                  /* D3PPRE /2 */
    RCC_CFGR = (RCC_CFGR & ~7u) | 3u;        /* SW = PLL1 */
    if (mcuc_poll(&RCC_CFGR, 7u << 3, 3u << 3, MCUC_POLL_LIMIT)) {
        return MCUC_BOARD_ERR_SWITCH;
    }
    return 0;
}

int mcuc_board_init(void)
{
    int err = clock_init();
    uart_init(err == 0 ? APB2_HZ : HSI_HZ);
    mcuc_m7_enable_caches();
    mcuc_dwt_start();
    return err;
}
