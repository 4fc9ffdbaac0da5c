"""ARM semihosting (the AArch32 calls newlib's rdimon uses), served from Python.

The guest executes ``BKPT 0xAB`` (Thumb) with r0 = operation and r1 = argument (usually a pointer
to a block of 32-bit words); the result goes back in r0. Files are in memory: ``files`` maps names
to contents; files the guest opens for writing are kept in :attr:`Semihost.written`. The console
(``:tt``) writes to ``emit``; console reads see end-of-file. The magic file
``:semihosting-features`` advertises SH_EXT_EXIT_EXTENDED and SH_EXT_STDOUT_STDERR, so rdimon's
``exit(n)`` uses SYS_EXIT_EXTENDED and the exit status survives (as with QEMU).
"""

from __future__ import annotations

import logging
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger("mcuc.sim")

SYS_OPEN, SYS_CLOSE, SYS_WRITEC, SYS_WRITE0, SYS_WRITE, SYS_READ = 1, 2, 3, 4, 5, 6
SYS_READC, SYS_ISERROR, SYS_ISTTY, SYS_SEEK, SYS_FLEN = 0x07, 0x08, 0x09, 0x0A, 0x0C
SYS_TMPNAM, SYS_REMOVE, SYS_RENAME, SYS_CLOCK, SYS_TIME = 0x0D, 0x0E, 0x0F, 0x10, 0x11
SYS_SYSTEM, SYS_ERRNO, SYS_GET_CMDLINE, SYS_HEAPINFO = 0x12, 0x13, 0x15, 0x16
SYS_EXIT, SYS_EXIT_EXTENDED = 0x18, 0x20
SYS_ELAPSED, SYS_TICKFREQ = 0x30, 0x31
ADP_Stopped_ApplicationExit = 0x20026
FEATURES = b"SHFB\x03"
EBADF, ENOENT, EINVAL = 9, 2, 22
NOMINAL_HZ = 216_000_000  # SYS_CLOCK / SYS_ELAPSED: one instruction per cycle at this clock


@dataclass
class _File:
    name: str
    data: bytearray
    tty: str | None = None  # "in" | "out" | None
    pos: int = 0
    writable: bool = False


@dataclass
class Semihost:
    read_mem: Callable[[int, int], bytes]
    write_mem: Callable[[int, bytes], None]
    emit: Callable[[bytes], None]
    clock: Callable[[], int]                       # retired instructions so far
    files: dict[str, bytes] = field(default_factory=dict)
    heapinfo: tuple[int, int, int, int] = (0, 0, 0, 0)
    exit_code: int | None = None
    written: dict[str, bytearray] = field(default_factory=dict)

    def __post_init__(self):
        self.errno = 0
        self.handles: dict[int, _File] = {
            0: _File(":tt", bytearray(), "in"),
            1: _File(":tt", bytearray(), "out", writable=True),
            2: _File(":tt", bytearray(), "out", writable=True),
        }

    def _words(self, addr: int, n: int) -> tuple[int, ...]:
        return struct.unpack(f"<{n}I", self.read_mem(addr, 4 * n))

    def _cstr(self, addr: int, limit: int = 4096) -> bytes:
        out = bytearray()
        while len(out) < limit:
            a = addr + len(out)
            chunk = self.read_mem(a, 64 - (a & 63))  # never cross a page end
            nul = chunk.find(b"\0")
            if nul >= 0:
                return bytes(out + chunk[:nul])
            out += chunk
        return bytes(out)

    def _fail(self, err: int) -> int:
        self.errno = err
        return -1

    def call(self, op: int, arg: int) -> int:
        """Perform one call; returns the value for r0. Sets :attr:`exit_code` on SYS_EXIT*."""
        handler = self._ops.get(op)
        if handler is None:
            log.warning("unsupported semihosting call 0x%x", op)
            return self._fail(EINVAL)
        return handler(self, arg)

    def _open(self, arg: int) -> int:
        ptr, mode, length = self._words(arg, 3)
        name = self.read_mem(ptr, length).decode("utf-8", "replace")
        if name == ":tt":
            return 0 if mode < 4 else (1 if mode < 8 else 2)
        if name == ":semihosting-features":
            f = _File(name, bytearray(FEATURES))
        elif mode < 4:
            data = self.files.get(name)
            if data is None:
                data = next((v for k, v in self.files.items()
                             if k.rsplit("/", 1)[-1] == name), None)
            if data is None:
                return self._fail(ENOENT)
            f = _File(name, bytearray(data), writable=mode >= 2)
        else:
            buf = self.written.setdefault(name, bytearray())
            if mode < 8:
                del buf[:]
            f = _File(name, buf, writable=True, pos=len(buf))
        h = max(self.handles) + 1
        self.handles[h] = f
        return h

    def _close(self, arg: int) -> int:
        (h,) = self._words(arg, 1)
        if h not in self.handles:
            return self._fail(EBADF)
        if h > 2:
            del self.handles[h]
        return 0

    def _writec(self, arg: int) -> int:
        self.emit(self.read_mem(arg, 1))
        return 0

    def _write0(self, arg: int) -> int:
        self.emit(self._cstr(arg, 1 << 20))
        return 0

    def _write(self, arg: int) -> int:
        h, ptr, n = self._words(arg, 3)
        f = self.handles.get(h)
        if f is None or not f.writable:
            self.errno = EBADF
            return n
        data = self.read_mem(ptr, n)
        if f.tty:
            self.emit(data)
        else:
            f.data[f.pos:f.pos + n] = data
            f.pos += n
        return 0

    def _read(self, arg: int) -> int:
        h, ptr, n = self._words(arg, 3)
        f = self.handles.get(h)
        if f is None:
            self.errno = EBADF
            return -1
        if f.tty:
            return n  # console input: end of file
        data = bytes(f.data[f.pos:f.pos + n])
        self.write_mem(ptr, data)
        f.pos += len(data)
        return n - len(data)

    def _readc(self, arg: int) -> int:
        return -1

    def _iserror(self, arg: int) -> int:
        (status,) = struct.unpack("<i", self.read_mem(arg, 4))
        return int(status < 0)

    def _istty(self, arg: int) -> int:
        f = self.handles.get(self._words(arg, 1)[0])
        return self._fail(EBADF) if f is None else int(f.tty is not None)

    def _seek(self, arg: int) -> int:
        h, pos = self._words(arg, 2)
        f = self.handles.get(h)
        if f is None or f.tty:
            return self._fail(EBADF)
        f.pos = pos
        return 0

    def _flen(self, arg: int) -> int:
        f = self.handles.get(self._words(arg, 1)[0])
        if f is None or f.tty:
            return self._fail(EBADF)
        return len(f.data)

    def _remove(self, arg: int) -> int:
        ptr, length = self._words(arg, 2)
        name = self.read_mem(ptr, length).decode("utf-8", "replace")
        return 0 if self.written.pop(name, None) is not None else self._fail(ENOENT)

    def _unsupported(self, arg: int) -> int:
        return self._fail(EINVAL)

    def _clock(self, arg: int) -> int:
        return self.clock() * 100 // NOMINAL_HZ

    def _time(self, arg: int) -> int:
        return int(time.time())

    def _errno(self, arg: int) -> int:
        return self.errno

    def _cmdline(self, arg: int) -> int:
        ptr, size = self._words(arg, 2)
        if size < 1:
            return -1
        self.write_mem(ptr, b"\0")
        self.write_mem(arg + 4, struct.pack("<I", 0))
        return 0

    def _heapinfo(self, arg: int) -> int:
        (block,) = self._words(arg, 1)
        self.write_mem(block, struct.pack("<4I", *self.heapinfo))
        return 0

    def _exit(self, arg: int) -> int:
        # AArch32 SYS_EXIT: r1 is the reason code itself; only ApplicationExit is success.
        self.exit_code = 0 if arg == ADP_Stopped_ApplicationExit else 1
        return 0

    def _exit_extended(self, arg: int) -> int:
        reason, subcode = self._words(arg, 2)
        if reason == ADP_Stopped_ApplicationExit:
            self.exit_code = struct.unpack("<i", struct.pack("<I", subcode))[0]
        else:
            self.exit_code = 1
        return 0

    def _elapsed(self, arg: int) -> int:
        self.write_mem(arg, struct.pack("<Q", self.clock()))
        return 0

    def _tickfreq(self, arg: int) -> int:
        return NOMINAL_HZ

    _ops = {
        SYS_OPEN: _open, SYS_CLOSE: _close, SYS_WRITEC: _writec, SYS_WRITE0: _write0,
        SYS_WRITE: _write, SYS_READ: _read, SYS_READC: _readc, SYS_ISERROR: _iserror,
        SYS_ISTTY: _istty, SYS_SEEK: _seek, SYS_FLEN: _flen, SYS_TMPNAM: _unsupported,
        SYS_REMOVE: _remove, SYS_RENAME: _unsupported, SYS_CLOCK: _clock, SYS_TIME: _time,
        SYS_SYSTEM: _unsupported, SYS_ERRNO: _errno, SYS_GET_CMDLINE: _cmdline,
        SYS_HEAPINFO: _heapinfo, SYS_EXIT: _exit, SYS_EXIT_EXTENDED: _exit_extended,
        SYS_ELAPSED: _elapsed, SYS_TICKFREQ: _tickfreq,
    }
