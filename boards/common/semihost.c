/*
 * Board support over ARM semihosting (qemu-m7, and any debugger-attached core): console
 * output with SYS_WRITE0, inputs through SYS_OPEN/SYS_READ, and SYS_EXIT so that the
 * emulator process ends with the firmware's status. No UART, no clock tree: QEMU's
 * MPS2 boards need none. Operation numbers from ARM's "Semihosting for AArch32 and
 * AArch64" v2.0.
 */
#include <stdint.h>

#include "board.h"

#define SYS_OPEN   0x01
#define SYS_CLOSE  0x02
#define SYS_WRITE0 0x04
#define SYS_READ   0x06
#define SYS_EXIT   0x18
#define ADP_Stopped_ApplicationExit 0x20026u
#define ADP_Stopped_RunTimeErrorUnknown 0x20023u
#define OPEN_MODE_RB 1

static uint32_t semihost(uint32_t op, const void *arg)
{
    register uint32_t r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

int mcuc_board_init(void)
{
    return 0;
}

void mcuc_board_puts(const char *s)
{
    (void)semihost(SYS_WRITE0, s);
}

void mcuc_board_exit(int status)
{
    /* 32-bit SYS_EXIT passes the reason itself; ApplicationExit makes the host exit 0,
     * any other reason exit 1, which is all the distinction a test needs. */
    uint32_t reason = status == 0 ? ADP_Stopped_ApplicationExit
                                  : ADP_Stopped_RunTimeErrorUnknown;
    for (;;) {
        (void)semihost(SYS_EXIT, (const void *)(uintptr_t)reason);
    }
}

void mcuc_board_fault(void)
{
    mcuc_board_puts("MCUC_FAULT\n");
    mcuc_board_exit(1);
}

int mcuc_board_open(const char *name)
{
    uint32_t len = 0;
    while (name[len] != '\0') {
        ++len;
    }
    const uint32_t block[3] = {(uint32_t)(uintptr_t)name, OPEN_MODE_RB, len};
    return (int)semihost(SYS_OPEN, block);
}

uint32_t mcuc_board_read(int handle, void *buf, uint32_t n)
{
    const uint32_t block[3] = {(uint32_t)handle, (uint32_t)(uintptr_t)buf, n};
    uint32_t not_read = semihost(SYS_READ, block);
    return not_read > n ? 0u : n - not_read;
}

void mcuc_board_close(int handle)
{
    const uint32_t block[1] = {(uint32_t)handle};
    (void)semihost(SYS_CLOSE, block);
}
