/*
 * STM32F746G-DISCO system init, register level (RM0385):
 *   HSE 25 MHz crystal -> PLL (M=25, N=432, P=2, Q=9) -> SYSCLK 216 MHz,
 *   PWR scale 1 + over-drive (needed above 180 MHz), FLASH 7 wait states + ART + prefetch,
 *   AHB 216 MHz, APB1 54 MHz (/4), APB2 108 MHz (/2),
 *   USART1 on PA9 (AF7, the ST-LINK virtual COM port), 115200 8N1, TX only,
 *   L1 caches on, DWT cycle counter running.
 * Every ready-bit poll is bounded; on a timeout init stays on the 16 MHz HSI, sets the
 * UART up for that clock and returns an MCUC_BOARD_ERR_* code for main to print.
 */
#include <stdint.h>

#include "board.h"
#include "cortexm.h"

#define RCC_BASE   0x40023800u
#define RCC_CR       MCUC_REG(RCC_BASE + 0x00u)
#define RCC_PLLCFGR  MCUC_REG(RCC_BASE + 0x04u)
#define RCC_CFGR     MCUC_REG(RCC_BASE + 0x08u)
#define RCC_AHB1ENR  MCUC_REG(RCC_BASE + 0x30u)
#define RCC_APB1ENR  MCUC_REG(RCC_BASE + 0x40u)
#define RCC_APB2ENR  MCUC_REG(RCC_BASE + 0x44u)
#define RCC_DCKCFGR2 MCUC_REG(RCC_BASE + 0x90u)
#define RCC_CR_HSION   (1u << 0)
#define RCC_CR_HSIRDY  (1u << 1)
#define RCC_CR_HSEON   (1u << 16)
#define RCC_CR_HSERDY  (1u << 17)
#define RCC_CR_HSEBYP  (1u << 18)
#define RCC_CR_PLLON   (1u << 24)
#define RCC_CR_PLLRDY  (1u << 25)

#define PWR_BASE   0x40007000u
#define PWR_CR1      MCUC_REG(PWR_BASE + 0x00u)
#define PWR_CSR1     MCUC_REG(PWR_BASE + 0x04u)
#define PWR_CR1_VOS_SCALE1 (3u << 14)
#define PWR_CR1_ODEN   (1u << 16)
#define PWR_CR1_ODSWEN (1u << 17)
#define PWR_CSR1_VOSRDY  (1u << 14)
#define PWR_CSR1_ODRDY   (1u << 16)
#define PWR_CSR1_ODSWRDY (1u << 17)

#define FLASH_ACR  MCUC_REG(0x40023C00u)
#define FLASH_ACR_LATENCY_7WS 7u
#define FLASH_ACR_PRFTEN (1u << 8)
#define FLASH_ACR_ARTEN  (1u << 9)

#define GPIOA_BASE 0x40020000u
#define GPIOA_MODER   MCUC_REG(GPIOA_BASE + 0x00u)
#define GPIOA_OSPEEDR MCUC_REG(GPIOA_BASE + 0x08u)
#define GPIOA_AFRH    MCUC_REG(GPIOA_BASE + 0x24u)

#define USART1_BASE 0x40011000u
#define USART1_CR1 MCUC_REG(USART1_BASE + 0x00u)
#define USART1_CR2 MCUC_REG(USART1_BASE + 0x04u)
#define USART1_CR3 MCUC_REG(USART1_BASE + 0x08u)
#define USART1_BRR MCUC_REG(USART1_BASE + 0x0Cu)
#define USART1_ISR MCUC_REG(USART1_BASE + 0x1Cu)
#define USART1_TDR MCUC_REG(USART1_BASE + 0x28u)
#define USART_CR1_UE (1u << 0)
#define USART_CR1_TE (1u << 3)
#define USART_ISR_TC  (1u << 6)
#define USART_ISR_TXE (1u << 7)

#define HSI_HZ   16000000u
#define APB2_HZ 108000000u
#define BAUD       115200u
/* Bound on one character's TX wait: ~87 us at 115200 baud is far below this. */
#define UART_POLL_LIMIT 1000000u

static int uart_broken;

static void uart_init(uint32_t pclk2_hz)
{
    RCC_AHB1ENR |= 1u << 0;                 /* GPIOA clock */
    RCC_APB2ENR |= 1u << 4;                 /* USART1 clock */
    RCC_DCKCFGR2 &= ~(3u << 0);             /* USART1 kernel clock = PCLK2 */
    (void)RCC_APB2ENR;                      /* delay after enabling the clock */
    GPIOA_MODER = (GPIOA_MODER & ~(3u << 18)) | (2u << 18);  /* PA9 alternate function */
    GPIOA_OSPEEDR |= 3u << 18;
    GPIOA_AFRH = (GPIOA_AFRH & ~(0xFu << 4)) | (7u << 4);    /* AF7 = USART1_TX */
    USART1_CR1 = 0u;
    USART1_CR2 = 0u;                        /* 1 stop bit */
    USART1_CR3 = 0u;
    USART1_BRR = (pclk2_hz + BAUD / 2u) / BAUD;  /* oversampling by 16 */
    USART1_CR1 = USART_CR1_TE | USART_CR1_UE;    /* 8 data bits, no parity */
}

void mcuc_board_puts(const char *s)
{
    for (; *s != '\0' && !uart_broken; ++s) {
        if (*s == '\n') {
            if (mcuc_poll(&USART1_ISR, USART_ISR_TXE, USART_ISR_TXE, UART_POLL_LIMIT)) {
                uart_broken = 1;
                break;
            }
            USART1_TDR = '\r';
        }
        if (mcuc_poll(&USART1_ISR, USART_ISR_TXE, USART_ISR_TXE, UART_POLL_LIMIT)) {
            uart_broken = 1;  /* a dead UART must not hang the inference */
            break;
        }
        USART1_TDR = (uint32_t)(uint8_t)*s;
    }
    if (!uart_broken) {
        (void)mcuc_poll(&USART1_ISR, USART_ISR_TC, USART_ISR_TC, UART_POLL_LIMIT);
    }
}

static int clock_init(void)
{
    RCC_CR |= RCC_CR_HSION;
    if (mcuc_poll(&RCC_CR, RCC_CR_HSIRDY, RCC_CR_HSIRDY, MCUC_POLL_LIMIT)) {
        return MCUC_BOARD_ERR_HSI;
    }
    RCC_APB1ENR |= 1u << 28;                /* PWR clock */
    (void)RCC_APB1ENR;
    PWR_CR1 |= PWR_CR1_VOS_SCALE1;

    RCC_CR = (RCC_CR & ~RCC_CR_HSEBYP) | RCC_CR_HSEON;  /* crystal, not bypass */
    if (mcuc_poll(&RCC_CR, RCC_CR_HSERDY, RCC_CR_HSERDY, MCUC_POLL_LIMIT)) {
        return MCUC_BOARD_ERR_HSE;
    }
    RCC_CR &= ~RCC_CR_PLLON;
    if (mcuc_poll(&RCC_CR, RCC_CR_PLLRDY, 0u, MCUC_POLL_LIMIT)) {
        return MCUC_BOARD_ERR_PLL;
    }
    /* PLLM=25 -> 1 MHz, PLLN=432 -> VCO 432 MHz, PLLP=2 (00) -> 216 MHz, PLLQ=9, HSE. */
    RCC_PLLCFGR = 25u | (432u << 6) | (0u << 16) | (1u << 22) | (9u << 24);
    RCC_CR |= RCC_CR_PLLON;
    if (mcuc_poll(&RCC_CR, RCC_CR_PLLRDY, RCC_CR_PLLRDY, MCUC_POLL_LIMIT)) {
        return MCUC_BOARD_ERR_PLL;
    }
    PWR_CR1 |= PWR_CR1_ODEN;
    if (mcuc_poll(&PWR_CSR1, PWR_CSR1_ODRDY, PWR_CSR1_ODRDY, MCUC_POLL_LIMIT)) {
        return MCUC_BOARD_ERR_VOS;
    }
    PWR_CR1 |= PWR_CR1_ODSWEN;
    if (mcuc_poll(&PWR_CSR1, PWR_CSR1_ODSWRDY, PWR_CSR1_ODSWRDY, MCUC_POLL_LIMIT)) {
        return MCUC_BOARD_ERR_VOS;
    }
    FLASH_ACR = FLASH_ACR_LATENCY_7WS | FLASH_ACR_PRFTEN | FLASH_ACR_ARTEN;
    if (mcuc_poll(&FLASH_ACR, 0xFu, FLASH_ACR_LATENCY_7WS, MCUC_POLL_LIMIT)) {
        return MCUC_BOARD_ERR_FLASH;
    }
    /* HPRE /1, PPRE1 /4 (101), PPRE2 /2 (100), then SW = PLL (10). */
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
        RCC_CFGR &= ~((3u) | (7u << 13));   /* back to HSI, APB2 undivided */
    }
    uart_init(err == 0 ? APB2_HZ : HSI_HZ);
    mcuc_m7_enable_caches();
    mcuc_dwt_start();
    return err;
}
