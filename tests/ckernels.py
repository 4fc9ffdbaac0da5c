"""Build runtime_c and drive it from Python, with the structs derived from the KernelDefs.

The ctypes Structures are generated from each KernelDef's fields, and struct_layout_c()
emits a C program printing the real sizeof/offsetof, so a field that is missing,
misordered or mistyped in Python fails a test instead of silently feeding C garbage.
emit_driver() writes the same cases as a standalone C program (designated initializers,
exactly sized const arrays) for the sanitizer build.
"""

from __future__ import annotations

import ctypes
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "compiler") not in sys.path:
    sys.path.insert(0, str(ROOT / "compiler"))

from mcuc.kernels import REGISTRY, Field, KernelDef, get  # noqa: E402
from mcuc.kernels.registry import leaves  # noqa: E402

INCLUDE = ROOT / "runtime_c" / "include"
SOURCES = sorted((ROOT / "runtime_c" / "src").glob("*.c"))
CFLAGS = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", f"-I{INCLUDE}"]

_SCALAR = {"int32": ctypes.c_int32, "int64": ctypes.c_int64}
_ARRAY = {"int8[]": (np.int8, "int8_t"), "int16[]": (np.int16, "int16_t"),
          "int32[]": (np.int32, "int32_t"), "uint32[]": (np.uint32, "uint32_t")}
GUARD = 64  # sentinel bytes after every output buffer
DSP = ("-DMCUC_ARM_DSP",)  # the defines of an ARMv7E-M board's build (the DSP variants)


def gcc(args: list[str]) -> None:
    res = subprocess.run(["gcc", *args], capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"gcc {' '.join(args)}\n{res.stderr}")


def struct_class(kdef: KernelDef) -> type[ctypes.Structure]:
    fields: list[tuple[str, type]] = []
    for f in kdef.fields:
        if f.ctype in _SCALAR:
            fields.append((f.name, _SCALAR[f.ctype]))
        elif f.ctype == "int32[6]":
            fields.append((f.name, ctypes.c_int32 * 6))
        elif f.ctype == "struct":
            fields.append((f.name, struct_class(get(f.kernel))))
        else:
            fields.append((f.name, ctypes.c_void_p))
    return type(kdef.c_params_type, (ctypes.Structure,), {"_fields_": fields})


def _members(kdef: KernelDef, prefix: str = "") -> list[tuple[str, Field]]:
    """Every member of kdef's struct as (C member designator, field), nested ones too."""
    out: list[tuple[str, Field]] = []
    for f in kdef.fields:
        out.append((prefix + f.name, f))
        if f.ctype == "struct":
            out += _members(get(f.kernel), f"{prefix}{f.name}.")
    return out


def struct_layout_c() -> str:
    """C program printing `type size` and `type.member offset` lines for every kernel."""
    lines = ["#include <stddef.h>", "#include <stdio.h>", '#include "mcuc/kernels.h"',
             "int main(void)", "{"]
    for k in REGISTRY.values():
        t = k.c_params_type
        lines.append(f'    printf("{t} %zu\\n", sizeof({t}));')
        for path, _ in _members(k):
            lines.append(f'    printf("{t}.{path} %zu\\n", offsetof({t}, {path}));')
    lines += ["    return 0;", "}"]
    return "\n".join(lines) + "\n"


def struct_layout_py() -> dict[str, int]:
    out: dict[str, int] = {}
    for k in REGISTRY.values():
        cls = struct_class(k)
        out[k.c_params_type] = ctypes.sizeof(cls)
        for path, _ in _members(k):
            off, c = 0, cls
            for part in path.split("."):
                member = getattr(c, part)
                off += member.offset
                c = dict(c._fields_)[part]
            out[f"{k.c_params_type}.{path}"] = off
    return out


def fill_struct(kdef: KernelDef, params: dict, keep: list) -> ctypes.Structure:
    """kdef's ctypes struct for params (nested structs and derived fields included); the
    arrays it points to are appended to `keep`, which must outlive the call."""
    st = struct_class(kdef)()
    for leaf in leaves(kdef, params):
        *outer, name = leaf.path.split(".")
        target = st
        for part in outer:
            target = getattr(target, part)
        f, v = leaf.field, leaf.value
        if f.ctype in _SCALAR:
            setattr(target, name, int(v))
        elif f.ctype == "int32[6]":
            setattr(target, name, (ctypes.c_int32 * 6)(*[int(e) for e in v]))
        elif v is None:
            assert f.nullable, leaf.path
            setattr(target, name, None)
        else:
            arr = _c_array(f.c_array(leaf.owner), _ARRAY[f.ctype][0])
            assert f.ctype != "int16[]" or arr.ctypes.data % 8 == 0  # LDRD, as render
            keep.append(arr)
            setattr(target, name, arr.ctypes.data)
    return st


def _c_array(v: object, dtype: type) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(v), dtype=dtype)


class CKernels:
    """The runtime as a shared library; run() calls one kernel on numpy buffers."""

    def __init__(self, build_dir: Path, defines: tuple[str, ...] = ()) -> None:
        """`defines` (e.g. ("-DMCUC_ARM_DSP",)) select a kernel variant, as a board does."""
        so = build_dir / "libmcuc.so"
        gcc(["-shared", "-fPIC", "-O2", *CFLAGS, *defines, *map(str, SOURCES), "-o", str(so)])
        self.lib = ctypes.CDLL(str(so))

    def run(self, name: str, params: dict, inputs: list[np.ndarray], out_size: int,
            out_init: np.ndarray | None = None, inplace: bool = False) -> np.ndarray:
        """Run kernel `name`; returns the output buffer (asserting the guard is intact)."""
        kdef = REGISTRY[name]
        keep: list[np.ndarray] = []
        st = fill_struct(kdef, params, keep)
        ins = [_c_array(x, np.int8) for x in inputs]
        if inplace:
            buf = ins[0]  # output aliases the first input
            assert buf.size >= out_size
        else:
            buf = np.full(out_size + GUARD, 0x5A, dtype=np.int8)
            if out_init is not None:
                buf[:out_size] = out_init
        # A kernel with scratch gets it after the output, pre-filled and guarded too.
        n_scr = int(kdef.scratch(params))
        scr = np.full(n_scr + GUARD, 0x5A, dtype=np.int8)
        extra = [ctypes.c_void_p(scr.ctypes.data)] if n_scr else []
        fn = getattr(self.lib, kdef.c_func)
        fn.restype = None
        fn(ctypes.byref(st), *[ctypes.c_void_p(x.ctypes.data) for x in ins],
           ctypes.c_void_p(buf.ctypes.data), *extra)
        if not inplace:
            assert np.all(buf[out_size:] == 0x5A), f"{name} wrote past its output"
        assert np.all(scr[n_scr:] == 0x5A), f"{name} wrote past its scratch"
        return buf[:out_size].copy()


def _arr_lit(a: np.ndarray) -> str:
    """C initializer list; {0} for an empty array (C has no empty initializers)."""
    flat = np.asarray(a).reshape(-1)
    return "{" + (", ".join(str(int(v)) for v in flat) if flat.size else "0") + "}"


def emit_case(i: int, name: str, params: dict, inputs: list[np.ndarray],
              expected: np.ndarray, out_init: np.ndarray | None = None) -> tuple[str, str]:
    """(globals, statements) running one case and comparing it to `expected`."""
    kdef = REGISTRY[name]
    g: list[str] = []
    inits: list[str] = []
    for leaf in leaves(kdef, params):
        f, v, path = leaf.field, leaf.value, leaf.path
        if f.ctype in _SCALAR:
            inits.append(f".{path} = {int(v)}")
        elif f.ctype == "int32[6]":
            inits.append(f".{path} = {_arr_lit(np.asarray(v)[:6])}")
        elif v is None:
            inits.append(f".{path} = NULL")
        else:
            dt, ct = _ARRAY[f.ctype]
            a = _c_array(f.c_array(leaf.owner), dt)
            align = " __attribute__((aligned(8)))" if f.ctype == "int16[]" else ""  # as render
            cname = f"c{i}_{path.replace('.', '_')}"
            g.append(f"static const {ct} {cname}[{max(a.size, 1)}]{align} = {_arr_lit(a)};")
            inits.append(f".{path} = {cname}")
    g.append(f"static const {kdef.c_params_type} c{i}_p = {{{', '.join(inits)}}};")
    args = []
    for j, x in enumerate(inputs):  # writable: a tokenwise step with x_free writes over x
        g.append(f"static int8_t c{i}_in{j}[{max(x.size, 1)}] = {_arr_lit(x)};")
        args.append(f"c{i}_in{j}")
    n = max(expected.size, 1)
    init = out_init if out_init is not None else np.zeros(expected.size, np.int8)
    g.append(f"static int8_t c{i}_out[{n}] = {_arr_lit(init)};")
    g.append(f"static const int8_t c{i}_exp[{n}] = {_arr_lit(expected)};")
    out_args = f"c{i}_out"
    n_scr = int(kdef.scratch(params))
    if n_scr:
        g.append(f"static int8_t c{i}_scr[{n_scr}];")
        out_args += f", c{i}_scr"
    body = (f"    {kdef.c_func}(&c{i}_p, {', '.join(args)}, {out_args});\n"
            f"    if (memcmp(c{i}_out, c{i}_exp, {expected.size})) "
            f'{{ printf("case {i} ({name}) mismatch\\n"); bad = 1; }}')
    return "\n".join(g), body


def emit_driver(cases: list[tuple]) -> str:
    """A main() running every (name, params, inputs, expected[, out_init]) case."""
    parts = [emit_case(i, *c) for i, c in enumerate(cases)]
    return "\n".join([
        "#include <stdio.h>", "#include <string.h>", '#include "mcuc/kernels.h"',
        *(g for g, _ in parts),
        "int main(void)", "{", "    int bad = 0;", *(b for _, b in parts),
        '    printf("%d cases %s\\n", ' + str(len(parts)) + ', bad ? "FAILED" : "ok");',
        "    return bad;", "}",
    ]) + "\n"


def run_sanitized(cases: list[tuple], tmp_path: Path, defines: tuple[str, ...] = ()) -> None:
    """Every (name, params, inputs, expected[, out_init]) case through the C runtime built
    with ASan and UBSan (and `defines`, e.g. a kernel variant's): each must match, and
    the sanitizers must stay silent."""
    src, exe = tmp_path / "driver.c", tmp_path / "driver"
    src.write_text(emit_driver(cases))
    gcc([*CFLAGS, *defines, "-O1", "-g", "-fsanitize=address,undefined",
         "-fno-sanitize-recover=all", "-fno-omit-frame-pointer", str(src),
         *map(str, SOURCES), "-o", str(exe)])
    res = subprocess.run([str(exe)], capture_output=True, text=True,
                         env={"ASAN_OPTIONS": "detect_leaks=0"})
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.strip() == f"{len(cases)} cases ok" and not res.stderr
