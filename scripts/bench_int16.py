"""Mixed precision (`--int16`) on project issue 27's class-token ViT: agreement with float.

The model is timm's VisionTransformer (3x32x32, patch 4, dim 64, depth 2, 4 heads, 10
classes, class token) with timm's own random initialization (`torch.manual_seed(seed)`;
tests/zoo.timm_cls_init), whose class token starts near zero. Calibration: 64 standard
normal images (seed 0); test: 100 more (seed 1), the first 8 of them being "8 inputs".
Agreement is argmax(mcuc's integer reference) == argmax(torch float); the generated C
equals the reference bit for bit (tests/test_int16.py checks it on the host and in the
Unicorn engine). For model seed 0 it also measures each candidate tensor alone in int16
(which tensors' int8 error hurts) and, with --firmware, one stm32f746 inference in the
Unicorn engine (instructions are counts, not cycles). Writes a section of bench/quant.md
with --write.

    PYTHONPATH=compiler .venv/bin/python scripts/bench_int16.py --seeds 5 --firmware --write
"""

from __future__ import annotations

import argparse
import datetime
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from mcuc.frontend import load_model  # noqa: E402
from mcuc.pipeline import Compiled, compile_graph  # noqa: E402
from mcuc.quant.wide import AUTO_ARENA_FACTOR, candidates  # noqa: E402
from mcuc.schedule import execute  # noqa: E402

BEGIN, END = "<!-- bench_int16.py: begin -->", "<!-- bench_int16.py: end -->"


def agreement(c: Compiled, xs: np.ndarray, want: np.ndarray) -> np.ndarray:
    """Per input: 1 where the integer reference's argmax equals the float model's."""
    got = [int(np.argmax(execute.run(c.schedule, execute.quantize_input(c.schedule, x[None]),
                                     c.plan))) for x in xs]
    return (np.asarray(got) == want).astype(int)


def one_seed(seed: int, calib: np.ndarray, xs: np.ndarray, per_tensor: bool) -> dict:
    import torch

    from zoo import timm_cls_init

    model, shape = timm_cls_init(seed)
    with torch.no_grad():
        want = model(torch.from_numpy(xs)).numpy().argmax(axis=1)
    graph = load_model(model, shape)
    c8 = compile_graph(graph, calib)
    c16 = compile_graph(graph, calib, int16="auto")
    row = {"seed": seed, "int8": agreement(c8, xs, want), "auto": agreement(c16, xs, want),
           "arena8": c8.plan.arena_bytes, "arena16": c16.plan.arena_bytes,
           "rec": c16.quant["int16"], "cands": candidates(graph)}
    if per_tensor:
        row["alone"] = {}
        for t in row["cands"]:
            c = compile_graph(graph, calib, int16=(t,))
            row["alone"][t] = (agreement(c, xs, want), c.plan.arena_bytes)
        call = compile_graph(graph, calib, int16=tuple(row["cands"]))
        row["all"] = (agreement(call, xs, want), call.plan.arena_bytes)
    return row


def firmware(seed: int, calib: np.ndarray) -> dict[str, dict]:
    """One stm32f746 inference in the Unicorn engine, int8 and --int16 auto."""
    import torch

    from mcuc import api

    from zoo import timm_cls_init

    model, shape = timm_cls_init(seed)
    out: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as d:
        onnx_path, calib_path = Path(d) / "issue.onnx", Path(d) / "calib.npy"
        torch.onnx.export(model, torch.zeros(shape), str(onnx_path), dynamo=False)
        np.save(calib_path, calib)
        for mode in ("", "auto"):
            rep = api.build(onnx_path, board="stm32f746", out=Path(d) / f"b{mode}",
                            calib=calib_path, int16=mode, samples=1)
            out[mode or "int8"] = {k: rep.get(k) for k in (
                "arena_bytes", "weights_bytes", "flash_bytes", "ram_bytes", "instructions")}
    return out


def _frac(v: np.ndarray) -> str:
    return f"{int(v[:8].sum())} of 8, {int(v.sum())} of {len(v)}"


def report(rows: list[dict], fw: dict | None, n: int) -> str:
    r0 = rows[0]
    lines = [f"Issue 27's class-token ViT, timm initialization, seed {r0['seed']}: "
             f"agreement with float (argmax) on the first 8 and all {n} test inputs.", "",
             "| int16 tensors | agreement | arena |", "|---|---|---|",
             f"| none (per-tensor int8) | {_frac(r0['int8'])} | {r0['arena8']:,} B |"]
    for t, (agree, arena) in r0["alone"].items():
        lines.append(f"| `{t}` alone | {_frac(agree)} | {arena:,} B |")
    lines.append(f"| all {len(r0['cands'])} candidates | {_frac(r0['all'][0])} | "
                 f"{r0['all'][1]:,} B |")
    rec = r0["rec"]
    lines.append(f"| `--int16 auto`: {', '.join(f'`{t}`' for t in rec['tensors']) or 'none'} | "
                 f"{_frac(r0['auto'])} | {r0['arena16']:,} B "
                 f"({r0['arena16'] / r0['arena8']:.2f}x) |")
    lines += ["", f"Sensitivity as `--int16 auto` measured it (fake-quantized float runs on "
              f"{rec['images']} calibration images; output mean squared error relative to "
              f"the float output's): all-int8 {rec['int8_error']:.3g}; one tensor int16: "
              + ", ".join(f"`{t}` {e:.3g}" for t, e in rec["alone"].items())
              + f"; chosen set {rec['error']:.3g}. Budget {AUTO_ARENA_FACTOR}x the int8 arena "
              f"= {rec['budget']:,} B.", "",
              "Other model seeds (`--int16 auto`):", "",
              "| seed | int8 agreement | int16 agreement | arena int8 -> int16 | int16 tensors |",
              "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['seed']} | {_frac(r['int8'])} | {_frac(r['auto'])} | "
                     f"{r['arena8']:,} -> {r['arena16']:,} B ({r['arena16'] / r['arena8']:.2f}x)"
                     f" | {len(r['rec']['tensors'])} of {len(r['cands'])} |")
    if fw:
        lines += ["", f"stm32f746 firmware (seed {r0['seed']}, one inference in the Unicorn "
                  "engine; instructions are exact counts, not cycles):", "",
                  "| build | arena | weights | flash (ELF) | RAM (ELF+stack) | instructions |",
                  "|---|---|---|---|---|---|"]
        for k, v in fw.items():
            lines.append(f"| {k} | {v['arena_bytes']:,} B | {v['weights_bytes']:,} B | "
                         f"{v['flash_bytes'] or 0:,} B | {v['ram_bytes'] or 0:,} B | "
                         f"{v['instructions'] or 0:,} |")
    return "\n".join(lines) + "\n"


def write_section(path: Path, text: str) -> None:
    """Replace the text between this script's markers in `path` (appended if absent)."""
    old = path.read_text()
    if BEGIN not in old:
        old = old.rstrip("\n") + f"\n\n## Mixed precision: `--int16`\n\n{BEGIN}\n{END}\n"
    head, rest = old.split(BEGIN, 1)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(head + BEGIN + "\n" + text + END + rest.split(END, 1)[1])
    tmp.replace(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5, help="model seeds 0..N-1")
    ap.add_argument("--inputs", type=int, default=100, help="test inputs")
    ap.add_argument("--firmware", action="store_true", help="stm32f746 in Unicorn (seed 0)")
    ap.add_argument("--write", action="store_true", help="write the bench/quant.md section")
    a = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    calib = np.random.default_rng(0).standard_normal((64, 3, 32, 32)).astype(np.float32)
    xs = np.random.default_rng(1).standard_normal((a.inputs, 3, 32, 32)).astype(np.float32)
    rows = [one_seed(s, calib, xs, s == 0) for s in range(a.seeds)]
    fw = firmware(0, calib) if a.firmware else None
    text = report(rows, fw, a.inputs)
    print(text)
    if a.write:
        cmd = (f"PYTHONPATH=compiler .venv/bin/python scripts/bench_int16.py --seeds {a.seeds} "
               f"--inputs {a.inputs}{' --firmware' if a.firmware else ''} --write")
        write_section(ROOT / "bench" / "quant.md",
                      f"Measured {datetime.date.today()} with `{cmd}`.\n\n" + text)


if __name__ == "__main__":
    main()
