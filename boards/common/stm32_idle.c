/*
 * What every STM32 board does the same way: cycles from the DWT, idling after the run
 * (no WFI, no BKPT: a debugger stays attached and no semihosting host is needed), and
 * reporting a fault on the console before idling.
 */
#include "board.h"
#include "cortexm.h"

uint32_t mcuc_board_cycles(void)
{
    return DWT_CYCCNT;
}

void mcuc_board_exit(int status)
{
    (void)status;
    for (;;) {
    }
}

void mcuc_board_fault(void)
{
    mcuc_board_puts("MCUC_FAULT\n");
    mcuc_board_exit(1);
}
