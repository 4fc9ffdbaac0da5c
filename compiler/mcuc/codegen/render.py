"""Codegen: render a planned Schedule into <name>.h, <name>.c, <name>_weights.{h,c} (the
model, self-contained) and a driver."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mcuc import __version__
from mcuc.codegen.modelname import check_name, model_files
from mcuc.codegen.names import MAX_IDENT, PREFIX, CNames, c_comment, c_string
from mcuc.codegen.templates import environment
from mcuc.kernels import registry
from mcuc.memory import Plan
from mcuc.paths import runtime_dir
from mcuc.schedule.schedule import Schedule

CTYPES = {"int8[]": ("int8_t", np.int8), "int16[]": ("int16_t", np.int16),
          "int32[]": ("int32_t", np.int32), "uint32[]": ("uint32_t", np.uint32)}
# Arrays the kernels read with 8-byte loads (LDRD): linear.c's widened weights.
ALIGN8 = ("int16[]",)


@dataclass
class CArray:
    name: str
    ctype: str
    size: int
    body: str
    comment: str
    align: int = 0  # bytes, 0 = the type's own


def _body(values: np.ndarray, per_line: int = 16) -> str:
    flat = [str(int(v)) for v in np.asarray(values).reshape(-1)]
    if not flat:
        return "    0"
    lines = [", ".join(flat[i: i + per_line]) for i in range(0, len(flat), per_line)]
    return "    " + ",\n    ".join(lines)


def _int(v: int, ctype: str) -> str:
    v = int(v)
    if ctype == "int64":
        return f"INT64_C({v})"
    return "INT32_MIN" if v == -(2**31) else str(v)


def _context(schedule: Schedule, plan: Plan, model_name: str, ident: str) -> dict:
    """Template values. Every name the model chose reaches C only through `names`: step
    structs and weight arrays are identifiers from one table, prefixed with the model's
    checked name `ident`; names in comments and strings are escaped; model_name appears only in
    comments."""
    ids = CNames(f"{ident}_{PREFIX}", limit=len(ident) + 1 + MAX_IDENT)
    arrays: list[CArray] = []
    const_ids = {name: ids.of(("const", name), name) for name in schedule.consts}
    for name, data in schedule.consts.items():
        arrays.append(CArray(const_ids[name], "int8_t", int(data.size), _body(data),
                             "constant tensor " + c_comment(name)))
    steps = []
    for i, st in enumerate(schedule.steps):
        kdef = registry.get(st.kernel)
        sid = ids.of(("step", i), st.name)
        fields = []
        for leaf in registry.leaves(kdef, st.params):   # nested structs: "l1.weights"
            f, v = leaf.field, leaf.value
            if f.ctype in CTYPES:
                if v is None:
                    value = "NULL"
                else:
                    ctype, dtype = CTYPES[f.ctype]
                    arr = f.c_array(leaf.owner).astype(dtype)
                    suffix = leaf.path.replace(".", "_")
                    aname = ids.of(("field", i, leaf.path), f"{st.name}_{suffix}")
                    arrays.append(CArray(aname, ctype, int(arr.size), _body(arr),
                                         f"{c_comment(st.name)}.{leaf.path}",
                                         8 if f.ctype in ALIGN8 else 0))
                    value = aname
            elif f.ctype == "int32[6]":
                value = "{" + ", ".join(_int(x, "int32") for x in v) + "}"
            else:
                value = _int(v, f.ctype)
            fields.append({"name": leaf.path, "value": value})
        off = lambda name: schedule.offset_of(name, plan.offsets)  # noqa: E731
        args = [f"a + {off(op.name)}" if op.kind == "buf" else const_ids[op.name]
                for op in st.inputs]
        args.append(f"a + {off(st.output)}")
        if st.scratch:
            args.append(f"a + {plan.offsets[schedule.scratch_name(st)]}")
        ins = ", ".join(c_comment(op.name) for op in st.inputs)
        bands = kdef.bands(st.params)
        steps.append({
            "name": sid, "label": c_string(st.name), "kernel": st.kernel,
            "op": c_comment(st.op), "macs": st.macs,
            "c_func": kdef.c_func, "c_params_type": kdef.c_params_type, "fields": fields,
            "args": args,
            "comment": f"{i}: {c_comment(st.op)} ({ins}) -> {c_comment(st.output)}",
            # A streamed step runs once per band, its output moved by one band's bytes.
            "row_bytes": bands.out_bytes if bands else 0,
        })
    buffers = sorted(
        ({"name": c_comment(b.name), "offset": schedule.offset_of(b.name, plan.offsets),
          "size": b.size, "shape": b.shape}
         for b in schedule.buffers.values() if schedule.root(b.name)[0] in plan.offsets),
        key=lambda b: (b["offset"], b["name"]))
    return {
        "p": ident, "P": ident.upper(), "files": model_files(ident),
        "model_name": c_comment(model_name), "version": __version__, "steps": steps,
        "arrays": arrays,
        "buffers": buffers, "arena_bytes": plan.arena_bytes,
        "lower_bound_bytes": plan.lower_bound_bytes, "macs": schedule.macs(),
        "weights_bytes": schedule.weights_bytes(),
        "input_shape": list(schedule.input_shape), "output_shape": list(schedule.output_shape),
        "input_size": int(np.prod(schedule.input_shape)),
        "output_size": int(np.prod(schedule.output_shape)),
        "input_scale": repr(float(np.float32(schedule.input_qp.scale))),
        "input_zp": schedule.input_qp.zero_point,
        "output_scale": repr(float(np.float32(schedule.output_qp.scale))),
        "output_zp": schedule.output_qp.zero_point,
        "input_offset": schedule.offset_of(schedule.input_buffer, plan.offsets),
        "output_offset": schedule.offset_of(schedule.output_buffer, plan.offsets),
        "exe": "model",
        "stream": _stream_context(schedule) if schedule.stream else None,
    }


def _stream_context(schedule: Schedule) -> dict:
    """Band geometry for <name>.h/<name>.c/main.c of a streaming build."""
    from mcuc.schedule.stream import band_rows

    bands, chans, rows, width = band_rows(schedule)
    height = int(schedule.input_shape[-2])
    return {"bands": bands, "channels": chans, "rows": rows, "width": width,
            "height": height, "band_size": chans * rows * width}


def render(schedule: Schedule, plan: Plan, out_dir: Path, model_name: str = "model",
           driver: str = "main_host.c.j2", makefile: str | None = "Makefile.host.j2",
           name: str = "model") -> None:
    """Write the generated sources and a copy of the runtime into `out_dir`: the model's
    own files are named after `name` (checked here: a C identifier prefix), `model_name`
    (model text) only goes into comments."""
    check_name(name)
    out_dir.mkdir(parents=True, exist_ok=True)
    env = environment()
    ctx = _context(schedule, plan, model_name, name)
    mf = ctx["files"]
    files = {mf["header"]: "model.h.j2", mf["source"]: "model.c.j2",
             mf["weights_header"]: "weights.h.j2", mf["weights"]: "weights.c.j2",
             "main.c": driver}
    if makefile:
        files["Makefile"] = makefile
    for out, tpl in files.items():
        (out_dir / out).write_text(env.get_template(tpl).render(**ctx))
    rt = out_dir / "runtime"
    if rt.exists():
        shutil.rmtree(rt)
    shutil.copytree(runtime_dir(), rt, ignore=shutil.ignore_patterns("*.o", "*.so"))
