/*
 * STM32F427 system init, register level (RM0090). Not tested on hardware; the Unicorn
 * engine runs it on a Cortex-M4 model against register models of the F4's RCC, PWR,
 * FLASH and USART (compiler/mcuc/sim/chips.py: ready flags, clock tree, baud rate), not
 * against silicon. It follows the reference manual's sequence:
 *   HSI 16 MHz -> PLL (M=16, N=360, P=2, Q=8) -> SYSCLK 180 MHz (no crystal assumed),
 *   PWR scale 1 + over-drive, FLASH 5 wait states + caches + prefetch,
 *   AHB 180 MHz, APB1 45 MHz (/4), APB2 90 MHz (/2),
 *   USART1 TX on PA9 (AF7), 115200 8N1, DWT cycle counter.
 * Polls are bounded; on a timeout the core stays on HSI and the error code is returned.
 */
#include <stdint.h>

#include "board.h"
#include "cortexm.h"

#define RCC_BASE   0x40023800u
#define RCC_CR      MCUC_REG(RCC_BASE + 0x00u)
#define RCC_PLLCFGR MCUC_REG(RCC_BASE + 0x04u)
#define RCC_CFGR    MCUC_REG(RCC_BASE + 0x08u)
#define RCC_AHB1ENR MCUC_REG(RCC_BASE + 0x30u)
#define RCC_APB1ENR MCUC_REG(RCC_BASE + 0x40u)
#define RCC_APB2ENR MCUC_REG(RCC_BASE + 0x44u)
#define PWR_CR      MCUC_REG(0x40007000u)
#define PWR_CSR     MCUC_REG(0x40007004u)
#define FLASH_ACR   MCUC_REG(0x40023C00u)
#define GPIOA_MODER MCUC_REG(0x40020000u)
#define GPIOA_AFRH  MCUC_REG(0x40020024u)
#define USART1_SR   MCUC_REG(0x40011000u)
#define USART1_DR   MCUC_REG(0x40011004u)
#define USART1_BRR  MCUC_REG(0x40011008u)
#define USART1_CR1  MCUC_REG(0x4001100Cu)

#define HSI_HZ   16000000u
#define APB2_HZ  90000000u
#define BAUD       115200u

static int uart_broken;

static void uart_init(uint32_t pclk2_hz)
{
    RCC_AHB1ENR |= 1u << 0;
    RCC_APB2ENR |= 1u << 4;
    (void)RCC_APB2ENR;
    GPIOA_MODER = (GPIOA_MODER & ~(3u << 18)) | (2u << 18);
    GPIOA_AFRH = (GPIOA_AFRH & ~(0xFu << 4)) | (7u << 4);
    /* BRR = mantissa.fraction/16 of pclk / (16 * baud), i.e. round(pclk / baud). */
    USART1_BRR = (pclk2_hz + BAUD / 2u) / BAUD;
    USART1_CR1 = (1u << 13) | (1u << 3);    /* UE, TE; 8N1 */
}

void mcuc_board_puts(const char *s)
{
    for (; *s != '\0' && !uart_broken; ++s) {
        if (mcuc_poll(&USART1_SR, 1u << 7, 1u << 7, 1000000u)) {
            uart_broken = 1;
            break;
        }
        USART1_DR = (uint32_t)(uint8_t)*s;
    }
}

static int clock_init(void)
{
    RCC_CR |= 1u << 0;
    if (mcuc_poll(&RCC_CR, 1u << 1, 1u << 1, MCUC_POLL_LIMIT)) {
        return MCUC_BOARD_ERR_HSI;
    }
    RCC_APB1ENR |= 1u << 28;
    (void)RCC_APB1ENR;
    PWR_CR |= 3u << 14;                              /* VOS scale 1 */
    RCC_CR &= ~(1u << 24);
    if (mcuc_poll(&RCC_CR, 1u << 25, 0u, MCUC_POLL_LIMIT)) {
        return MCUC_BOARD_ERR_PLL;
    }
    /* PLLM=16, PLLN=360, PLLP=2 (00), PLLSRC=HSI (0), PLLQ=8 (48 MHz USB clock is 45). */
    RCC_PLLCFGR = 16u | (360u << 6) | (0u << 16) | (8u << 24);
    RCC_CR |= 1u << 24;
    if (mcuc_poll(&RCC_CR, 1u << 25, 1u << 25, MCUC_POLL_LIMIT)) {
        return MCUC_BOARD_ERR_PLL;
    }
    PWR_CR |= 1u << 16;                              /* ODEN */
    if (mcuc_poll(&PWR_CSR, 1u << 16, 1u << 16, MCUC_POLL_LIMIT)) {
        return MCUC_BOARD_ERR_VOS;
    }
    PWR_CR |= 1u << 17;                              /* ODSWEN */
    if (mcuc_poll(&PWR_CSR, 1u << 17, 1u << 17, MCUC_POLL_LIMIT)) {
        return MCUC_BOARD_ERR_VOS;
    }
    FLASH_ACR = 5u | (1u << 8) | (1u << 9) | (1u << 10);  /* 5 WS, PRFTEN, ICEN, DCEN */
    if (mcuc_poll(&FLASH_ACR, 0xFu, 5u, MCUC_POLL_LIMIT)) {
        return MCUC_BOARD_ERR_FLASH;
    }
    RCC_CFGR = (RCC_CFGR & ~((0xFu << 4) | (7u << 10) | (7u << 13))) | (5u << 10) | (4u << 13);
    RCC_CFGR = (RCC_CFGR & ~3u) | 2u;
    if (mcuc_poll(&RCC_CFGR, 3u << 2, 2u << 2, MCUC_POLL_LIMIT)) {
        return MCUC_BOARD_ERR_SWITCH;
    }
    return 0;
}

int mcuc_board_init(void)
{
    int err = clock_init();
    if (err != 0) {
        RCC_CFGR &= ~((3u) | (7u << 13));
    }
    uart_init(err == 0 ? APB2_HZ : HSI_HZ);
    mcuc_dwt_start();
    return err;
}
