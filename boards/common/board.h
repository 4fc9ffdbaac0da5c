/*
 * What the generated firmware main.c needs from a board: init, a console, a clean end.
 * Each board implements it in its own system.c (or common/semihost.c); main.c stays
 * the same for all boards. Board capabilities arrive as -D flags from board.toml:
 *   MCUC_BOARD_HAS_CYCLES  mcuc_board_cycles() reads a cycle counter (DWT)
 *   MCUC_INPUTS_FROM_FILE  inputs come from a semihosting file (else from flash)
 */
#ifndef MCUC_BOARD_H
#define MCUC_BOARD_H

#include <stdint.h>

/* Status codes the firmware can print in MCUC_STATUS besides mcuc_status_t (0..15). */
#define MCUC_FW_ERR_NO_INPUT_FILE  16 /* semihosting could not open the inputs file */
#define MCUC_FW_ERR_SHORT_INPUT    17 /* the inputs file ends inside an input */
#define MCUC_BOARD_ERR_HSE         32 /* external oscillator never became ready */
#define MCUC_BOARD_ERR_PLL         33 /* PLL never locked */
#define MCUC_BOARD_ERR_VOS         34 /* voltage scaling / overdrive never ready */
#define MCUC_BOARD_ERR_FLASH       35 /* flash wait states did not take */
#define MCUC_BOARD_ERR_SWITCH      36 /* system clock switch never completed */
#define MCUC_BOARD_ERR_HSI         37 /* internal oscillator never became ready */

/* Clocks, console and counters. Returns 0, or an MCUC_BOARD_ERR_* code; the console
 * works even after an error (on the reset clock) so that the code can be printed. */
int mcuc_board_init(void);

/* Write a NUL-terminated string to the board's console (UART or semihosting). */
void mcuc_board_puts(const char *s);

/* Done: semihosting boards exit the emulator (status 0: success); real boards idle. */
void mcuc_board_exit(int status) __attribute__((noreturn));

/* Called by every unexpected exception (HardFault, ...). */
void mcuc_board_fault(void) __attribute__((noreturn));

#ifdef MCUC_BOARD_HAS_CYCLES
uint32_t mcuc_board_cycles(void);
#endif

#ifdef MCUC_INPUTS_FROM_FILE
/* Open a host file for reading; returns a handle >= 0 or -1. */
int mcuc_board_open(const char *name);
/* Read up to n bytes; returns the number of bytes read (0 at end of file). */
uint32_t mcuc_board_read(int handle, void *buf, uint32_t n);
void mcuc_board_close(int handle);
#endif

#endif /* MCUC_BOARD_H */
