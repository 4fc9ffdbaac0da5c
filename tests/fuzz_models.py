"""Mutations of the bundled default model, for the fuzz test (tests/test_fuzz.py).

Each mutator takes a seeded `random.Random` and the default model (as a parsed
ModelProto, or its bytes) and returns the bytes of a damaged model plus a short text
saying what was done, so a failing case can be replayed from its seed alone. Mutators
imitate both careless users (a truncated download, a dynamic batch dim, a second output
left in the graph) and hostile files (byte flips, NaN/huge weights, absurd dims,
non-UTF-8 strings, an input shadowed by an initializer).
"""

from __future__ import annotations

import random
import struct
import sys
from collections.abc import Callable
from pathlib import Path

import onnx
from onnx import helper

DEFAULT_MODEL = (Path(__file__).resolve().parents[1] / "compiler" / "mcuc" / "models"
                 / "default.onnx")

Mutator = Callable[[random.Random, onnx.ModelProto, bytes], tuple[bytes, str]]

ODD_INTS = [0, -1, 1, 2, 3, 7, 100000, 2**31 - 1, -(2**31), 2**40, 2**62]
ODD_FLOATS = [float("nan"), float("inf"), float("-inf"), 1e30, -1e30, 1e-30, 0.0, 3.4e38,
              1e6, -7.5]
ODD_STRINGS = [b"\xff\xfe\x80", b"SAME_UPPER", b"", b"x" * 5000, b"tanh\n\x1b[31m"]
DTYPES = [onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE, onnx.TensorProto.INT8,
          onnx.TensorProto.INT64, onnx.TensorProto.STRING, onnx.TensorProto.BOOL,
          onnx.TensorProto.UNDEFINED, 77]


def base() -> tuple[onnx.ModelProto, bytes]:
    """The default model, parsed and as bytes."""
    data = DEFAULT_MODEL.read_bytes()
    return onnx.load_from_string(data), data


def _copy(m: onnx.ModelProto) -> onnx.ModelProto:
    c = onnx.ModelProto()
    c.CopyFrom(m)
    return c


# ----------------------------------------------------------------------- byte level

def truncate(rng: random.Random, m: onnx.ModelProto, data: bytes) -> tuple[bytes, str]:
    n = rng.randrange(0, len(data))
    return data[:n], f"truncate to {n} bytes"


def flip_bytes(rng: random.Random, m: onnx.ModelProto, data: bytes) -> tuple[bytes, str]:
    buf = bytearray(data)
    k = rng.choice([1, 2, 4, 16, 64])
    # most of the file is weight data; flip in the graph structure (the tail) half the time
    lo = 0 if rng.random() < 0.5 else max(0, len(buf) - 40000)
    for _ in range(k):
        i = rng.randrange(lo, len(buf))
        buf[i] ^= rng.randrange(1, 256)
    return bytes(buf), f"flip {k} bytes from offset {lo}"


def splice(rng: random.Random, m: onnx.ModelProto, data: bytes) -> tuple[bytes, str]:
    i = rng.randrange(len(data))
    j = rng.randrange(len(data))
    n = rng.choice([1, 8, 100, 1000])
    return data[:i] + data[j:j + n] + data[i:], f"insert {n} bytes from {j} at {i}"


# ----------------------------------------------------------------------- field edits

def input_dims(rng: random.Random, m: onnx.ModelProto, data: bytes) -> tuple[bytes, str]:
    m = _copy(m)
    dims = m.graph.input[0].type.tensor_type.shape.dim
    choice = rng.choice(["value", "param", "add", "drop", "huge"])
    if choice == "value":
        k = rng.randrange(len(dims))
        dims[k].dim_value = rng.choice(ODD_INTS + [14, 56])
        what = f"input dim {k} = {dims[k].dim_value}"
    elif choice == "param":
        k = rng.randrange(len(dims))
        dims[k].dim_param = "batch\n\x1b[2J"
        what = f"input dim {k} symbolic"
    elif choice == "add":
        dims.add().dim_value = rng.choice([1, 3])
        what = "input rank + 1"
    elif choice == "drop":
        del dims[rng.randrange(len(dims))]
        what = "input rank - 1"
    else:
        dims[2].dim_value, dims[3].dim_value = 100000, 100000
        what = "input 100000x100000"
    return m.SerializeToString(), what


def input_dtype(rng: random.Random, m: onnx.ModelProto, data: bytes) -> tuple[bytes, str]:
    m = _copy(m)
    t = rng.choice(DTYPES)
    m.graph.input[0].type.tensor_type.elem_type = t
    return m.SerializeToString(), f"input elem_type {t}"


def _float_inits(m: onnx.ModelProto) -> list[onnx.TensorProto]:
    return [t for t in m.graph.initializer if t.data_type == onnx.TensorProto.FLOAT]


def init_values(rng: random.Random, m: onnx.ModelProto, data: bytes) -> tuple[bytes, str]:
    m = _copy(m)
    t = rng.choice(_float_inits(m))
    value = rng.choice(ODD_FLOATS)
    raw = bytearray(t.raw_data)
    n = len(raw) // 4
    every = rng.random() < 0.3
    for i in range(n) if every else [rng.randrange(n) for _ in range(rng.choice([1, 5]))]:
        raw[4 * i:4 * i + 4] = struct.pack("<f", value)
    t.raw_data = bytes(raw)
    return m.SerializeToString(), f"initializer {t.name} {'all' if every else 'some'} = {value}"


def init_scale(rng: random.Random, m: onnx.ModelProto, data: bytes) -> tuple[bytes, str]:
    """Scale a whole weight tensor, keeping it finite: multipliers then leave int32."""
    import numpy as np
    from onnx import numpy_helper

    m = _copy(m)
    t = rng.choice(_float_inits(m))
    factor = rng.choice([0.0, 1e-30, 1e-12, 1e-5, 1e4, 1e7, 1e12, 1e30])
    arr = numpy_helper.to_array(t).astype(np.float64) * factor
    t.CopyFrom(numpy_helper.from_array(arr.astype(np.float32), t.name))
    return m.SerializeToString(), f"initializer {t.name} x {factor}"


def init_dims(rng: random.Random, m: onnx.ModelProto, data: bytes) -> tuple[bytes, str]:
    m = _copy(m)
    t = rng.choice(list(m.graph.initializer))
    choice = rng.choice(["dim", "huge", "drop", "dtype"])
    if choice == "dim" and t.dims:
        k = rng.randrange(len(t.dims))
        t.dims[k] = rng.choice(ODD_INTS)
        what = f"initializer {t.name} dim {k} = {t.dims[k]}"
    elif choice == "huge":
        del t.dims[:]
        t.dims.extend([2**20, 2**20, 2**10])
        what = f"initializer {t.name} dims 2^50 elements"
    elif choice == "drop":
        t.raw_data = t.raw_data[: len(t.raw_data) // 2]
        what = f"initializer {t.name} half its data"
    else:
        t.data_type = rng.choice(DTYPES)
        what = f"initializer {t.name} data_type {t.data_type}"
    return m.SerializeToString(), what


def attribute(rng: random.Random, m: onnx.ModelProto, data: bytes) -> tuple[bytes, str]:
    m = _copy(m)
    nodes = [n for n in m.graph.node if n.attribute and n.op_type != "Constant"]
    node = rng.choice(nodes)
    a = rng.choice(list(node.attribute))
    if a.type == onnx.AttributeProto.INT:
        a.i = rng.choice(ODD_INTS)
        what = f"{node.op_type} {a.name} = {a.i}"
    elif a.type == onnx.AttributeProto.INTS:
        vals = [rng.choice(ODD_INTS) for _ in range(rng.choice([0, 1, len(a.ints), 5]))]
        del a.ints[:]
        a.ints.extend(vals)
        what = f"{node.op_type} {a.name} = {vals}"
    elif a.type == onnx.AttributeProto.FLOAT:
        a.f = rng.choice(ODD_FLOATS)
        what = f"{node.op_type} {a.name} = {a.f}"
    else:
        a.type = onnx.AttributeProto.STRING
        a.s = rng.choice(ODD_STRINGS)
        what = f"{node.op_type} {a.name} becomes a string"
    return m.SerializeToString(), what


def string_attribute(rng: random.Random, m: onnx.ModelProto, data: bytes) -> tuple[bytes, str]:
    """A string attribute (Gelu's approximate, Conv's auto_pad, an unknown one) with odd bytes."""
    m = _copy(m)
    node = rng.choice(list(m.graph.node))
    name = rng.choice(["auto_pad", "approximate", "mode", "note"])
    node.attribute.append(helper.make_attribute(name, rng.choice(ODD_STRINGS)))
    return m.SerializeToString(), f"{node.op_type} gets string attribute {name}"


def constant_value(rng: random.Random, m: onnx.ModelProto, data: bytes) -> tuple[bytes, str]:
    import numpy as np
    from onnx import numpy_helper

    m = _copy(m)
    node = rng.choice([n for n in m.graph.node if n.op_type == "Constant"])
    t = node.attribute[0].t
    arr = numpy_helper.to_array(t)
    if arr.dtype.kind in "iu":
        new = np.full(arr.shape, rng.choice(ODD_INTS[:8]), arr.dtype)
    else:
        new = np.full(arr.shape, rng.choice(ODD_FLOATS), arr.dtype)
    if rng.random() < 0.3:
        new = new.reshape(-1)[:0] if rng.random() < 0.5 else np.concatenate([new.reshape(-1)] * 2)
    t.CopyFrom(numpy_helper.from_array(new, t.name))
    return m.SerializeToString(), f"Constant {node.name} = {new.reshape(-1)[:3].tolist()}"


def nodes(rng: random.Random, m: onnx.ModelProto, data: bytes) -> tuple[bytes, str]:
    m = _copy(m)
    g = m.graph
    k = rng.randrange(len(g.node))
    choice = rng.choice(["delete", "duplicate", "swap", "op_type", "domain", "cycle"])
    if choice == "delete":
        del g.node[k]
    elif choice == "duplicate":
        g.node.insert(rng.randrange(len(g.node)), g.node[k])
    elif choice == "swap":
        j = rng.randrange(len(g.node))
        a, b = onnx.NodeProto(), onnx.NodeProto()
        a.CopyFrom(g.node[k])
        b.CopyFrom(g.node[j])
        g.node[k].CopyFrom(b)
        g.node[j].CopyFrom(a)
    elif choice == "op_type":
        g.node[k].op_type = rng.choice(["Relu", "Softmax", "Gelu", "Loop", "Exp", "Foo",
                                        "MatMul", "Add", "Conv", "Identity", "",
                                        "QuantizeLinear", "DequantizeLinear"])
    elif choice == "domain":
        g.node[k].domain = rng.choice(["com.microsoft", "ai.onnx.ml", "\x00"])
    else:
        g.node[k].input.append(g.node[-1].output[0])
    return m.SerializeToString(), f"node {k} {choice}"


def rename(rng: random.Random, m: onnx.ModelProto, data: bytes) -> tuple[bytes, str]:
    m = _copy(m)
    g = m.graph
    node = rng.choice(list(g.node))
    field = node.input if node.input and rng.random() < 0.5 else node.output
    k = rng.randrange(len(field))
    field[k] = rng.choice(["", "input", "logits", "missing\n", "x" * 300,
                           g.node[rng.randrange(len(g.node))].output[0]])
    return m.SerializeToString(), f"rename an edge of {node.op_type}"


def outputs(rng: random.Random, m: onnx.ModelProto, data: bytes) -> tuple[bytes, str]:
    m = _copy(m)
    g = m.graph
    choice = rng.choice(["second", "none", "input", "unknown"])
    if choice == "second":
        src = rng.choice(list(g.node)).output[0]
        g.output.append(helper.make_tensor_value_info(src, onnx.TensorProto.FLOAT, None))
    elif choice == "none":
        del g.output[:]
    elif choice == "input":
        g.output[0].name = g.input[0].name
    else:
        g.output[0].name = "nowhere"
    return m.SerializeToString(), f"outputs: {choice}"


def shadow_input(rng: random.Random, m: onnx.ModelProto, data: bytes) -> tuple[bytes, str]:
    import numpy as np
    from onnx import numpy_helper

    m = _copy(m)
    vi = m.graph.input[0]
    shape = [min(d.dim_value, 64) for d in vi.type.tensor_type.shape.dim]  # small, always
    if rng.random() < 0.5:
        shape = [1, 1]
    m.graph.initializer.append(numpy_helper.from_array(np.zeros(shape, np.float32), vi.name))
    return m.SerializeToString(), f"input shadowed by an initializer {shape}"


def metadata(rng: random.Random, m: onnx.ModelProto, data: bytes) -> tuple[bytes, str]:
    m = _copy(m)
    choice = rng.choice(["opset", "ir", "functions", "graph_name", "no_nodes"])
    if choice == "opset":
        m.opset_import[0].version = rng.choice([1, 7, 12, 13, 99, -1])
    elif choice == "ir":
        m.ir_version = rng.choice([0, 1, 3, 99])
    elif choice == "functions":
        f = m.functions.add()
        f.name, f.domain = "f", "local"
    elif choice == "graph_name":
        m.graph.name = rng.choice(["", "x" * 1000, "a\nb", "\x1b[31mred"])
    else:
        del m.graph.node[:]
    return m.SerializeToString(), f"metadata {choice}"


def qdq(rng: random.Random, m: onnx.ModelProto, data: bytes) -> tuple[bytes, str]:
    """A QuantizeLinear -> DequantizeLinear pair on an activation, or a DequantizeLinear of
    an int8 copy of a weight, with sane or odd scales, zero points and axes."""
    import numpy as np
    from onnx import numpy_helper

    m = _copy(m)
    g = m.graph
    shape = rng.choice([(), (1,), (3,), (64,), (2, 2)])
    scale = rng.choice([0.02, 0.02, 1.0, -1.0] + ODD_FLOATS)
    zdt = rng.choice([np.int8, np.int8, np.uint8, np.int16, np.int32, np.float32])
    g.initializer.extend([
        numpy_helper.from_array(np.full(shape, scale, np.float32), "fz_scale"),
        numpy_helper.from_array(np.zeros(shape, zdt), "fz_zp")])
    attrs = {} if rng.random() < 0.5 else {rng.choice(["axis", "block_size", "saturate"]):
                                           rng.choice([0, 1, 2, -1, 7, -9])}
    k = rng.randrange(len(g.node))
    if rng.random() < 0.5:
        x = g.node[k].output[0]
        what = "activation"
        new = [helper.make_node("QuantizeLinear", [x, "fz_scale", "fz_zp"], ["fz_q"], **attrs),
               helper.make_node("DequantizeLinear", ["fz_q", "fz_scale", "fz_zp"], ["fz_dq"],
                                **attrs)]
    else:
        init = rng.choice(list(g.initializer)[:-2])
        x = init.name
        what = f"initializer {list(init.dims)}"
        q = np.clip(numpy_helper.to_array(init).astype(np.float64) * 50, -128, 127)
        g.initializer.append(numpy_helper.from_array(q.astype(np.int8), "fz_w"))
        new = [helper.make_node("DequantizeLinear", ["fz_w", "fz_scale", "fz_zp"], ["fz_dq"],
                                **attrs)]
        k = -1
    for n in g.node:
        n.input[:] = ["fz_dq" if i == x else i for i in n.input]
    for j, n in enumerate(new):
        g.node.insert(k + 1 + j, n)
    return m.SerializeToString(), (f"QDQ on an {what}: scale {scale} {list(shape)}, zero "
                                   f"point {np.dtype(zdt).name}, {attrs}")


MUTATORS: list[Mutator] = [truncate, flip_bytes, splice, input_dims, input_dtype, init_values,
                           init_scale, init_dims, attribute, string_attribute, constant_value,
                           nodes, rename, outputs, shadow_input, metadata, qdq]


def mutate(seed: int, model: onnx.ModelProto, data: bytes) -> tuple[bytes, str]:
    """Case `seed`: one to three mutations (proto edits first, byte edits last)."""
    rng = random.Random(seed)
    picks = [rng.choice(MUTATORS) for _ in range(rng.choice([1, 1, 1, 2, 3]))]
    picks.sort(key=lambda f: f in (truncate, flip_bytes, splice))
    whats = []
    for f in picks:
        try:
            m = onnx.load_from_string(data) if data is not None else model
        except Exception:  # an earlier byte edit broke parsing: keep editing bytes only
            m = None
        if m is None and f not in (truncate, flip_bytes, splice):
            continue
        try:
            data, what = f(rng, m if m is not None else model, data)
        except (IndexError, ValueError):  # nothing left to edit (no nodes, no dims, ...)
            continue
        whats.append(f"{f.__name__}: {what}")
    return data, "; ".join(whats)


# ----------------------------------------------------------------------- running a case

def _child(args: list[str], log: str, compile_c: bool, mem_bytes: int) -> None:
    """In the forked child: run `mcuc` with stderr to `log`, exit with its code."""
    import os
    import resource
    import traceback

    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(fd, 2)
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    # pytest's capture replaces sys.stderr with its own stream; the child's must be fd 2
    sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115 - lives until os._exit
    sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
    resource.setrlimit(resource.RLIMIT_AS, (mem_bytes, mem_bytes))
    try:
        if not compile_c:  # C for a sample of cases only: gcc is most of a build's time
            import mcuc.sim.host

            mcuc.sim.host.build_host = lambda *a, **k: None
        from mcuc.cli import main

        rc = main(args)
    except BaseException:  # noqa: BLE001 - exactly what the fuzzer is looking for
        traceback.print_exc()
        rc = 99
    sys.stderr.flush()
    os._exit(rc)


def _vm_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    return 0


def run_case(args: list[str], log: Path, compile_c: bool = False, timeout: float = 60.0,
             extra_mem: int = 3 << 30) -> tuple[str, str]:
    """Run `mcuc *args` in a forked child (imports shared, memory capped at what the
    parent maps plus `extra_mem`, killed after `timeout` s). Returns (outcome, stderr):
    'build' (exit 0, nothing on stderr but `mcuc: warning:` lines, which a QDQ model's
    conversions print), 'error' (exit 2, one `mcuc: error:` line), or
    'bad' (anything else: a traceback, several lines, a crash, running out of memory)
    or 'hang'."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    p = ctx.Process(target=_child, args=(args, str(log), compile_c, _vm_bytes() + extra_mem))
    p.start()
    p.join(timeout)
    if p.is_alive():
        p.kill()
        p.join()
        return "hang", log.read_text(errors="replace") if log.exists() else ""
    err = log.read_text(errors="replace") if log.exists() else ""
    lines = err.splitlines()
    if p.exitcode == 0 and all(ln.startswith("mcuc: warning: ") for ln in lines):
        return "build", err
    if p.exitcode == 2 and len(lines) == 1 and lines[0].startswith("mcuc: error: "):
        # out of memory under the cap: an allocation that no limit checked first
        oom = any(w in lines[0] for w in ("out of memory", "MemoryError", "Unable to allocate"))
        return ("bad" if oom else "error"), err
    return "bad", f"exit {p.exitcode}: {err}"
