"""QDQ import against onnxruntime: mcuc compiling a model quantized elsewhere.

Quantizes the bundled default model (Fashion-MNIST) with onnxruntime's `quantize_static`
(QDQ format; per-channel int8 weights with int8 activations, and per-tensor int8
weights with uint8 activations) on the 64 seeded training images `mcuc build` calibrates
on, and, where it works, with PyTorch fake quantization exported to ONNX. Each QDQ model
runs under onnxruntime (the CPU provider, default optimizations) and through mcuc's
integer reference (`--quant given`, the generated C equals it bit for bit) on the first N
test images; a few images also run as stm32f746 firmware in the Unicorn engine
(`mcuc validate`). Writes bench/quant.md with `--write`.

    PYTHONPATH=compiler .venv/bin/python scripts/bench_quant.py --images 1000 --write
"""

from __future__ import annotations

import argparse
import datetime
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mcuc.datasets import load_calibration, load_fashion_mnist
from mcuc.pipeline import DEFAULT_MODEL, Compiled, compile_graph, load_graph
from mcuc.schedule import execute

ROOT = Path(__file__).resolve().parent.parent
SHAPE = (1, 1, 28, 28)


def calibration() -> np.ndarray:
    """The images `mcuc build` calibrates on by default (64 seeded training images)."""
    return load_calibration("fashion-mnist", SHAPE, count=64)


def ort_qdq(src: Path, dst: Path, calib: np.ndarray, per_channel: bool = True,
            uint8_acts: bool = False, uint8_weights: bool = False) -> Path:
    """`src` quantized by onnxruntime's quantize_static in QDQ format (int8 weights;
    uint8 weights are asymmetric)."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    name = onnx.load(str(src)).graph.input[0].name

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter([{name: x[None].astype(np.float32)} for x in calib])

        def get_next(self):
            return next(self.it, None)

    quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=per_channel,
                    weight_type=QuantType.QUInt8 if uint8_weights else QuantType.QInt8,
                    activation_type=QuantType.QUInt8 if uint8_acts else QuantType.QInt8)
    return dst


def default_torch():
    """The default model as a torch module: mcuc's ViT class with the ONNX file's weights
    (MatMul weights are stored transposed and unnamed; their node names give the layer)."""
    import onnx
    import torch
    from onnx import numpy_helper

    from mcuc.models.vit import ViTConfig, build_vit

    m = onnx.load(str(DEFAULT_MODEL))
    init = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    net = build_vit(ViTConfig(28, 1, 4, 64, 6, 2, 1.5, 10, "cls", "mcuc")).eval()
    state = {k: torch.from_numpy(init[k].copy()) for k in net.state_dict() if k in init}
    for n in m.graph.node:
        if n.op_type == "MatMul" and n.input[1] in init:
            layer = ".".join(n.name.strip("/").split("/")[1:-1]).replace("mlp.mlp.", "mlp.")
            state[layer + ".weight"] = torch.from_numpy(init[n.input[1]].T.copy())
    net.load_state_dict(state)
    return net


def torch_qdq(dst: Path, calib: np.ndarray) -> Path:
    """The default model with PyTorch fake quantization around every Linear/Conv (input
    and output per tensor int8, weights per channel symmetric int8 in [-128, 127], ranges
    from torch.ao's MinMax observers on `calib`), exported by torch.onnx (TorchScript
    exporter, opset 17), where fake_quantize_* become QuantizeLinear/DequantizeLinear."""
    import torch
    from torch.ao.quantization import MinMaxObserver, PerChannelMinMaxObserver

    class Fq(torch.nn.Module):
        def __init__(self, mod: torch.nn.Module) -> None:
            super().__init__()
            self.mod, self.frozen = mod, False
            self.o_in = MinMaxObserver(dtype=torch.qint8)
            self.o_out = MinMaxObserver(dtype=torch.qint8)
            self.o_w = PerChannelMinMaxObserver(ch_axis=0, dtype=torch.qint8,
                                                qscheme=torch.per_channel_symmetric)

        def freeze(self) -> None:
            self.o_w(self.mod.weight)
            self.q_in = [float(v) for v in self.o_in.calculate_qparams()]
            self.q_out = [float(v) for v in self.o_out.calculate_qparams()]
            s, z = self.o_w.calculate_qparams()
            self.register_buffer("s_w", s.float())
            self.register_buffer("z_w", z.int())
            self.frozen = True

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if not self.frozen:
                self.o_in(x)
                y = self.mod(x)
                self.o_out(y)
                return y
            fq = torch.fake_quantize_per_tensor_affine
            w = torch.fake_quantize_per_channel_affine(self.mod.weight, self.s_w, self.z_w,
                                                       0, -128, 127)
            x = fq(x, self.q_in[0], int(self.q_in[1]), -128, 127)
            if isinstance(self.mod, torch.nn.Linear):
                y = torch.nn.functional.linear(x, w, self.mod.bias)
            else:
                y = torch.nn.functional.conv2d(x, w, self.mod.bias, self.mod.stride)
            return fq(y, self.q_out[0], int(self.q_out[1]), -128, 127)

    def wrap(mod: torch.nn.Module) -> None:
        for name, child in mod.named_children():
            if isinstance(child, torch.nn.Linear | torch.nn.Conv2d):
                setattr(mod, name, Fq(child))
            else:
                wrap(child)

    net = default_torch()
    wrap(net)
    xs = torch.from_numpy(calib)
    with torch.no_grad():
        net(xs)
        for m in net.modules():
            if isinstance(m, Fq):
                m.freeze()
        torch.onnx.export(net, xs[:1], str(dst), input_names=["input"],
                          output_names=["logits"], opset_version=17, dynamo=False)
    return dst


def run_ort(model: Path, xs: np.ndarray) -> np.ndarray:
    """onnxruntime's outputs [N, K] (float; a QDQ model's are dequantized int8)."""
    from mcuc.validation import run_float

    return run_float(model, xs, (1, *xs.shape[1:]))


def run_ort_unfused(model: Path, xs: np.ndarray) -> np.ndarray:
    """onnxruntime's outputs with graph optimizations off: every op of the QDQ graph as
    written (float between the Q/DQ pairs). Its default session fuses DQ -> op -> Q into
    QLinear kernels whose result depends on the host: on x86 without VNNI, MLAS's u8 x s8
    kernels add pairs of products in saturating int16 (vpmaddubsw), so the first
    QLinearConv of the default model is off by up to 27 LSB on 12% of its elements (20 images)."""
    from mcuc.validation import run_float

    return run_float(model, xs, (1, *xs.shape[1:]), as_written=True)


def run_mcuc(c: Compiled, xs: np.ndarray) -> np.ndarray:
    """mcuc's integer reference: int8 outputs [N, K]."""
    return np.stack([execute.run(c.schedule, execute.quantize_input(c.schedule, x[None]),
                                 c.plan).reshape(-1) for x in xs])


@dataclass
class Agreement:
    argmax: float      # share of images with the same top-1 class
    within1: float     # share of output elements within 1 LSB of onnxruntime's
    exact: float       # share of output elements equal to onnxruntime's
    max_lsb: int


def agreement(c: Compiled, q: np.ndarray, ort_out: np.ndarray) -> Agreement:
    """mcuc's int8 outputs against onnxruntime's dequantized ones, on mcuc's output grid
    (for a QDQ model the model's own output scale and zero point)."""
    qp = c.schedule.output_qp
    grid = np.clip(np.round(ort_out / qp.scale) + qp.zero_point, -128, 127)
    d = np.abs(q.astype(np.int64) - grid.astype(np.int64))
    return Agreement(float(np.mean(q.argmax(1) == ort_out.argmax(1))),
                     float(np.mean(d <= 1)), float(np.mean(d == 0)), int(d.max()))


def compile_model(model: Path | None, quant: str) -> Compiled:
    g = load_graph(model)
    return compile_graph(g, calibration(), quant=quant)


def firmware_check(model: Path, images: int, out: Path) -> dict:
    """Build for stm32f746 and run `images` test images as firmware in the Unicorn engine
    (`mcuc validate`: also rebuilds the reference from what mcuc.json records)."""
    from mcuc.pipeline import build
    from mcuc.validation import validate

    build(model, "stm32f746", out_dir=out, quant="given")
    v = validate(out, f"fashion-mnist:{images}", engine="unicorn")
    return {"images": v.images, "mismatches": v.mismatches,
            "argmax_vs_ort": v.float_model.agreement}


def divergence(model: Path, xs: np.ndarray) -> list[tuple[str, float, float, int]]:
    """Where mcuc and onnxruntime part: for each activation the model quantizes and mcuc
    computes in its own step (every memory technique off, so steps follow the graph),
    the share of elements equal to and within 1 LSB of onnxruntime's value on the
    model's grid, and the largest difference, over `xs`. onnxruntime runs unfused
    (`run_ort_unfused`): with its fusions on, making a tensor a graph output unfuses
    the ops around it, so the traced run would not be the run whose logits are compared."""
    import onnx
    import onnxruntime as ort

    from mcuc.schedule.passes import TECHNIQUES

    g = load_graph(model)
    c = compile_graph(g, calibration(), disabled=tuple(TECHNIQUES), quant="given")
    nodes, k, step_of, prev = c.qgraph.graph.nodes, -1, {}, ""
    for st in c.schedule.steps:      # steps come in node order; views have none
        base = re.sub(r"_part\d+$", "", st.name)   # a Concat writes in parts
        if base != prev:
            k += 1
            while nodes[k].op != st.op:
                k += 1
        prev = base
        step_of[nodes[k].outputs[0]] = st.name   # the last part
    tensor_of = {st: t for t, st in step_of.items()}
    wanted = [t for t in tensor_of.values() if t in g.given.acts]
    m = onnx.load(str(model))
    m.graph.output.extend(onnx.ValueInfoProto(name=t) for t in wanted)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(m.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    stats: dict[str, list[tuple[float, float, int]]] = {}
    for x in xs:
        trace: dict[str, np.ndarray] = {}
        execute.run(c.schedule, execute.quantize_input(c.schedule, x[None]), trace=trace)
        res = dict(zip(names, sess.run(None, {sess.get_inputs()[0].name: x[None]}),
                       strict=True))
        for step, t in tensor_of.items():
            if t not in res or step not in trace:
                continue
            qp = c.qgraph.qparams[t]
            ref = np.clip(np.round(res[t] / qp.scale) + qp.zero_point, -128, 127).reshape(-1)
            if ref.size != trace[step].size:
                continue
            d = np.abs(trace[step].astype(np.int64) - ref.astype(np.int64))
            stats.setdefault(step, []).append((float(np.mean(d == 0)), float(np.mean(d <= 1)),
                                               int(d.max())))
    return [(step, float(np.mean([v[0] for v in rows])), float(np.mean([v[1] for v in rows])),
             max(v[2] for v in rows)) for step, rows in stats.items()]


@dataclass
class Case:
    name: str          # how the QDQ model was made
    model: Path
    ort_acc: float
    mcuc_acc: float
    vs_ort: Agreement            # onnxruntime's default session (fused; host-dependent)
    vs_unfused: Agreement        # onnxruntime with graph optimizations off
    ort_vs_float: float
    unfused_acc: float           # onnxruntime unfused: top-1, and agreement with float
    unfused_vs_float: float
    mcuc_vs_float: float
    quant: dict        # report.json's "quant" (counts and warnings)


def measure(name: str, model: Path, x: np.ndarray, y: np.ndarray, f_top: np.ndarray) -> Case:
    c = compile_model(model, "given")
    ort_out, unf = run_ort(model, x), run_ort_unfused(model, x)
    q = run_mcuc(c, x)
    return Case(name, model, float(np.mean(ort_out.argmax(1) == y)),
                float(np.mean(q.argmax(1) == y)), agreement(c, q, ort_out),
                agreement(c, q, unf),
                float(np.mean(ort_out.argmax(1) == f_top)), float(np.mean(unf.argmax(1) == y)),
                float(np.mean(unf.argmax(1) == f_top)), float(np.mean(q.argmax(1) == f_top)),
                dict(c.quant))


def qdq_models(tmp: Path, calib: np.ndarray) -> list[tuple[str, Path]]:
    """(description, path) of each QDQ model made from the default model."""
    return [
        ("onnxruntime quantize_static, per-channel int8 weights, int8 activations",
         ort_qdq(DEFAULT_MODEL, tmp / "ort_pc_s8.onnx", calib, True, False)),
        ("onnxruntime quantize_static, per-tensor int8 weights, uint8 activations",
         ort_qdq(DEFAULT_MODEL, tmp / "ort_pt_u8.onnx", calib, False, True)),
        ("PyTorch fake quantization (Linear/Conv in and out, per-channel weights), "
         "torch.onnx.export", torch_qdq(tmp / "torch_fq.onnx", calib)),
    ]


def _pct(v: float) -> str:
    return f"{100 * v:.2f}%"


def table(n: int, float_acc: float, own: tuple[float, float], cases: list[Case],
          fw: dict | None, div: list[tuple[str, float, int]], div_images: int) -> str:
    lines = [f"Fashion-MNIST test images 0..{n - 1}; the bundled default model "
             "(compiler/mcuc/models/default.onnx).", "",
             "| model | top-1 | agrees with float |", "|---|---|---|",
             f"| float (onnxruntime) | {_pct(float_acc)} | - |",
             f"| mcuc's own PTQ (`--quant calibrate`, 64 images, minmax) | {_pct(own[0])} | "
             f"{_pct(own[1])} |"]
    for k, cs in enumerate(cases, 1):
        lines.append(f"| QDQ {k}, onnxruntime (default session) | {_pct(cs.ort_acc)} | "
                     f"{_pct(cs.ort_vs_float)} |")
        lines.append(f"| QDQ {k}, onnxruntime unfused | {_pct(cs.unfused_acc)} | "
                     f"{_pct(cs.unfused_vs_float)} |")
        lines.append(f"| QDQ {k}, mcuc `--quant given` | {_pct(cs.mcuc_acc)} | "
                     f"{_pct(cs.mcuc_vs_float)} |")
    lines += ["", "mcuc (`--quant given`, integer reference) against onnxruntime running the "
              "same QDQ model (its logits put on the model's own output grid); onnxruntime "
              "as its default session runs it (QLinear kernels; on a CPU without VNNI they "
              "saturate u8 x s8 pair sums to int16), and unfused (graph optimizations off: "
              "the QDQ graph as written, float between the pairs):", "",
              "| QDQ model | onnxruntime | argmax agreement | within 1 LSB | equal | "
              "max diff (LSB) |", "|---|---|---|---|---|---|"]
    for k, cs in enumerate(cases, 1):
        for how, a in (("default", cs.vs_ort), ("unfused", cs.vs_unfused)):
            lines.append(f"| {k}: {cs.name} | {how} | {_pct(a.argmax)} | {_pct(a.within1)} | "
                         f"{_pct(a.exact)} | {a.max_lsb} |")
    lines += ["", "What mcuc took from each model (report.json `quant`) and the warnings "
              "`mcuc build` printed:", ""]
    for k, cs in enumerate(cases, 1):
        qd = cs.quant
        lines.append(f"- QDQ {k}: {qd['given_activations']} activations with the model's "
                     f"scales, {qd['calibrated_activations']} calibrated, the rest views "
                     f"and Softmax outputs; {qd['given_weights']} weighted layers with the "
                     f"model's weight scales, {qd['mcuc_weights']} quantized by mcuc")
        for w in qd["warnings"]:
            lines.append(f"  - {w}")
    lines += ["", f"Where mcuc and onnxruntime (unfused) part (QDQ 1, first {div_images} test "
              "images, every memory technique and fusion off so each step is one graph "
              "node; block 0 in full, then block 1's norm1 and each block's output):", "",
              "| mcuc step | equal | within 1 LSB | max diff (LSB) |", "|---|---|---|---|"]
    for step, same, share, worst in div:
        if ("blocks_0_" in step or step.endswith("_Add_1") or "blocks_" not in step
                or step.endswith("blocks_1_norm1_LayerNormalization")):
            lines.append(f"| {step} | {_pct(same)} | {_pct(share)} | {worst} |")
    if fw is not None:
        lines += ["", f"Firmware (QDQ 1, stm32f746, Unicorn engine, `mcuc validate` on "
                  f"{fw['images']} test images): {fw['mismatches']} images differ from the "
                  "integer reference in any bit; argmax agreement with onnxruntime (default "
                  "session) "
                  f"{_pct(fw['argmax_vs_ort'])}."]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=1000, help="test images (default 1000)")
    ap.add_argument("--firmware-images", type=int, default=8,
                    help="test images run as firmware in the Unicorn engine (0: skip)")
    ap.add_argument("--trace-images", type=int, default=20,
                    help="test images for the step-by-step divergence table (default 20)")
    ap.add_argument("--write", action="store_true", help="write bench/quant.md")
    a = ap.parse_args()
    t0 = time.time()
    x, y = load_fashion_mnist("test", limit=a.images)
    calib = calibration()
    f = run_ort(DEFAULT_MODEL, x)
    f_top = f.argmax(1)
    own_c = compile_model(None, "calibrate")
    own_q = run_mcuc(own_c, x)
    own = (float(np.mean(own_q.argmax(1) == y)), float(np.mean(own_q.argmax(1) == f_top)))
    with tempfile.TemporaryDirectory(prefix="bench-quant-") as d:
        tmp = Path(d)
        cases = [measure(name, path, x, y, f_top) for name, path in qdq_models(tmp, calib)]
        fw = firmware_check(cases[0].model, a.firmware_images, tmp / "fw") \
            if a.firmware_images else None
        div = divergence(cases[0].model, x[:a.trace_images])
    text = table(len(x), float(np.mean(f_top == y)), own, cases, fw, div, a.trace_images)
    print(text)
    print(f"({time.time() - t0:.0f} s)")
    if a.write:
        write_section(ROOT / "bench" / "quant.md",
                      f"Measured {datetime.date.today().isoformat()} with `PYTHONPATH=compiler "
                      f".venv/bin/python scripts/bench_quant.py --images {a.images} "
                      f"--firmware-images {a.firmware_images} --trace-images "
                      f"{a.trace_images} --write`.\n\n" + text)


BEGIN, END = "<!-- bench_quant.py: begin -->", "<!-- bench_quant.py: end -->"


def write_section(path: Path, text: str, begin: str = BEGIN, end: str = END) -> None:
    """Replace what lies between the markers in `path` (the rest is prose kept by hand;
    scripts/bench_quant_table.py passes its own markers)."""
    old = path.read_text() if path.is_file() else f"# Quantization\n\n{begin}\n{end}\n"
    if begin not in old or end not in old:
        raise SystemExit(f"{path} lacks the markers {begin} ... {end}")
    head, rest = old.split(begin, 1)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(head + begin + "\n" + text + end + rest.split(end, 1)[1])
    tmp.replace(path)


if __name__ == "__main__":
    main()
