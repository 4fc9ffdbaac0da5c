"""Per-translation-block instruction counters for Unicorn's UC_HOOK_BLOCK.

Two implementations with one interface (``register(uc)``, ``total``, ``last``):

* :class:`NativeBlockCounter`: the hook is a few lines of C (a hash table from (address, size)
  to instruction count, a running total, the budget check), compiled once with the host C
  compiler into ~/.cache/mcuc (or $XDG_CACHE_HOME/mcuc) and loaded with ctypes. Python runs
  only on the first execution of each block (the ``miss`` callback). ~5x faster than the
  Python hook.
* :class:`PyBlockCounter`: the same in Python (a ctypes callback per block: a dict lookup and an
  add). Used when no C compiler is available, or with ``MCUC_SIM_PY_HOOK=1``.

:class:`CodeCounter` counts with a UC_HOOK_CODE per instruction instead: slow, the reference the
block counters are tested against.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from unicorn import UC_HOOK_BLOCK, UC_HOOK_CODE, UcError
from unicorn.unicorn_py3 import unicorn as _ucpy

from mcuc.sim.thumb import is_thumb32

log = logging.getLogger("mcuc.sim")

_C_SOURCE = r"""
#include <stdint.h>
typedef struct { uint64_t key, n; } ent_t;
typedef struct {
    uint64_t total, limit, last;
    ent_t *table;
    uint64_t mask, used;
    uint32_t (*miss)(uint64_t address, uint32_t size);
    int (*stop)(void *uc);
} counter_t;

void mcuc_block_hook(void *uc, uint64_t address, uint32_t size, void *user_data) {
    counter_t *c = (counter_t *)user_data;
    uint64_t key = address | ((uint64_t)size << 32);
    uint64_t i = ((key * 0x9E3779B97F4A7C15ull) >> 32) & c->mask;
    c->last = key;
    for (;;) {
        ent_t *e = &c->table[i];
        if (e->key == key) { c->total += e->n; break; }
        if (e->key == 0) {
            uint32_t n = c->miss(address, size);
            if (2 * c->used < c->mask) { e->key = key; e->n = n; c->used++; }
            c->total += n;
            break;
        }
        i = (i + 1) & c->mask;
    }
    if (c->total >= c->limit) c->stop(uc);
}
"""

_MISS_CB = ctypes.CFUNCTYPE(ctypes.c_uint32, ctypes.c_uint64, ctypes.c_uint32)


class _Ent(ctypes.Structure):
    _fields_ = [("key", ctypes.c_uint64), ("n", ctypes.c_uint64)]


class _Counter(ctypes.Structure):
    _fields_ = [("total", ctypes.c_uint64), ("limit", ctypes.c_uint64),
                ("last", ctypes.c_uint64), ("table", ctypes.POINTER(_Ent)),
                ("mask", ctypes.c_uint64), ("used", ctypes.c_uint64),
                ("miss", _MISS_CB), ("stop", ctypes.c_void_p)]


_lib_cache: list = []  # [CDLL | None] once tried


def _native_lib():
    if _lib_cache:
        return _lib_cache[0]
    lib = None
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc and os.environ.get("MCUC_SIM_PY_HOOK") != "1":
        tag = hashlib.sha256(_C_SOURCE.encode()).hexdigest()[:16]
        cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mcuc"
        so = cache / f"blockhook-{tag}.so"
        try:
            cache.mkdir(parents=True, exist_ok=True, mode=0o700)
            if so.is_file() and so.stat().st_uid != os.getuid():
                raise OSError(f"{so} belongs to another user")
            if not so.is_file():
                with tempfile.TemporaryDirectory() as tmp:
                    src = Path(tmp) / "blockhook.c"
                    src.write_text(_C_SOURCE)
                    out = cache / f".blockhook-{tag}-{os.getpid()}.so"  # same filesystem
                    subprocess.run([cc, "-O2", "-shared", "-fPIC", "-o", str(out), str(src)],
                                   check=True, capture_output=True, timeout=60)
                    os.replace(out, so)  # atomic: concurrent builders are fine
            lib = ctypes.CDLL(str(so))
        except (OSError, subprocess.SubprocessError) as e:
            log.info("native block counter unavailable (%s); using the Python hook", e)
            lib = None
    _lib_cache.append(lib)
    return lib


def _add_hook(uc, fn, kind: int = UC_HOOK_BLOCK) -> None:
    h = _ucpy.uc_hook_h()
    err = _ucpy.uclib.uc_hook_add(uc._uch, ctypes.byref(h), kind, fn[0], fn[1],
                                  ctypes.c_uint64(1), ctypes.c_uint64(0))
    if err:
        raise UcError(err)


class NativeBlockCounter:
    TABLE_BITS = 17

    def __init__(self, lib, miss: Callable[[int, int], int], limit: int):
        self._table = (_Ent * (1 << self.TABLE_BITS))()
        self._miss = _MISS_CB(miss)
        self._c = _Counter(total=0, limit=limit, last=0,
                           table=ctypes.cast(self._table, ctypes.POINTER(_Ent)),
                           mask=(1 << self.TABLE_BITS) - 1, used=0, miss=self._miss,
                           stop=ctypes.cast(_ucpy.uclib.uc_emu_stop, ctypes.c_void_p))
        self._fn = ctypes.cast(lib.mcuc_block_hook, ctypes.c_void_p)

    def register(self, uc) -> None:
        _add_hook(uc, (self._fn, ctypes.cast(ctypes.pointer(self._c), ctypes.c_void_p)))

    @property
    def total(self) -> int:
        return self._c.total

    @property
    def last(self) -> int:
        return self._c.last


class PyBlockCounter:
    def __init__(self, miss: Callable[[int, int], int], limit: int):
        counts: dict[int, int] = {}
        stop = _ucpy.uclib.uc_emu_stop
        total = last = 0

        def hook(handle, address, size, _ud):
            nonlocal total, last
            key = last = address | (size << 32)
            try:
                total += counts[key]
            except KeyError:
                n = counts[key] = miss(address, size)
                total += n
            if total >= limit:
                stop(handle)

        def state():
            return total, last

        self._fn = _ucpy.HOOK_CODE_CFUNC(hook)
        self._state = state

    def register(self, uc) -> None:
        _add_hook(uc, (self._fn, None))

    @property
    def total(self) -> int:
        return self._state()[0]

    @property
    def last(self) -> int:
        return self._state()[1]


def block_counter(miss: Callable[[int, int], int], limit: int, native: bool = True):
    """The fastest available counter; ``miss(address, size)`` returns a block's instruction
    count (called once per distinct block) and must not raise."""
    lib = _native_lib() if native else None
    return NativeBlockCounter(lib, miss, limit) if lib is not None else PyBlockCounter(miss, limit)


class CodeCounter:
    """Counts one per UC_HOOK_CODE call. Unicorn does not call the hook for an IT block
    instruction whose condition fails, but such an instruction is architecturally executed (as
    a NOP): when an IT instruction is hooked, its whole block is counted up front and the hooks
    of those instructions are skipped when they come. ``total``: instructions so far; ``cur``:
    the ordinal of the one executing. A ``b .`` calls ``on_idle`` and stops."""

    def __init__(self, read: Callable[[int, int], bytes], limit: int,
                 on_idle: Callable[[], None]):
        self.total = self.cur = 0
        info: dict[int, tuple[bool, tuple[int, ...]]] = {}
        precounted: dict[int, int] = {}  # address -> its ordinal in the instruction stream
        stop = _ucpy.uclib.uc_emu_stop

        def decode(address):
            hw = int.from_bytes(read(address, 2), "little")
            covered: tuple[int, ...] = ()
            if hw & 0xFF00 == 0xBF00 and hw & 0xF:  # IT{x{y{z}}}
                k, nxt, out = 4 - ((hw & 0xF) & -(hw & 0xF)).bit_length() + 1, address + 2, []
                for _ in range(k):
                    out.append(nxt)
                    nxt += 4 if is_thumb32(int.from_bytes(read(nxt, 2), "little")) else 2
                covered = tuple(out)
            info[address] = (hw == 0xE7FE, covered)
            return info[address]

        def hook(handle, address, size, _ud):
            cur = precounted.pop(address, None)
            if cur is None:
                precounted.clear()
                self.total += 1
                cur = self.total
            self.cur = cur
            spin, covered = info.get(address) or decode(address)
            for i, a in enumerate(covered):
                precounted[a] = cur + 1 + i
            self.total += len(covered)
            if self.total >= limit:
                stop(handle)
            if spin:
                on_idle()
                stop(handle)

        self._fn = _ucpy.HOOK_CODE_CFUNC(hook)

    def register(self, uc) -> None:
        _add_hook(uc, (self._fn, None), UC_HOOK_CODE)
