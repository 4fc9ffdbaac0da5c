"""Issue 27's combined quantization table: every way of quantizing, on three models.

Rows: float (onnxruntime), mcuc's own PTQ (`--quant calibrate`), onnxruntime's PTQ
(`quantize_static`, QDQ format, per-channel int8 weights, int8 activations) run by
onnxruntime and compiled by mcuc (`--quant given`), mcuc QAT (models/qat.py) and mixed
precision (`--int16 auto`). Models: the bundled default model (Fashion-MNIST 28x28),
issue 27's class-token timm ViT (3x32x32, patch 4, dim 64, depth 2, 4 heads) and timm's
DeiT (VisionTransformerDistilled, distillation token) of the same size, both trained
here on Fashion-MNIST resized to 32x32 with the gray channel repeated 3 times.

Every row runs the same first N Fashion-MNIST test images: top-1, and argmax agreement
with the float model. mcuc rows run the compiler's integer reference (the generated C
equals it bit for bit); arena and flash are those of an stm32f746 build (flash: the
linked ELF, one 1-image sample set included). Calibration: the 64 seeded training images
`mcuc build` takes (resized and repeated for the timm models). Trained checkpoints are
cached in bench/cache/quant-table (out of git) under their recipe. Writes a section of
bench/quant.md with --write.

    PYTHONPATH=compiler .venv/bin/python scripts/bench_quant_table.py --write
"""

from __future__ import annotations

import argparse
import datetime
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "scripts"), str(ROOT / "tests")]

from bench_quant import calibration, ort_qdq, run_mcuc, run_ort, write_section  # noqa: E402
from mcuc.datasets import load_calibration, load_dataset, load_fashion_mnist  # noqa: E402
from mcuc.pipeline import DEFAULT_MODEL, build, compile_graph, load_graph  # noqa: E402
from mcuc.quant.wide import candidates  # noqa: E402

CACHE = ROOT / "bench" / "cache" / "quant-table"
BEGIN, END = "<!-- bench_quant_table.py: begin -->", "<!-- bench_quant_table.py: end -->"
TIMM_SHAPE = (1, 3, 32, 32)
QAT_NA = ("n/a: models/qat.py fine-tunes mcuc's own ViT modules (models/vit.py, "
          "nas subnets); a timm module is not one")


@dataclass
class Subject:
    """One model of the table and the data it is measured on."""
    title: str
    onnx: Path
    x: np.ndarray           # test images [N, C, H, W]
    y: np.ndarray
    calib: np.ndarray       # the 64 calibration images
    qat: Callable[[Path], Path] | str   # makes the QAT model's ONNX, or why not


@dataclass
class Row:
    name: str
    top1: float | None
    agree: float | None     # argmax agreement with the float model
    arena: int | None
    flash: int | None
    note: str = ""          # why a row has no figures


def timm_module(kind: str, seed: int):
    """Issue 27's ViT shape as timm's VisionTransformer ("vit", class token) or its
    VisionTransformerDistilled ("deit": class and distillation tokens, two heads whose
    logits an eval-mode forward averages)."""
    import torch

    from zoo import install_torchvision_stub

    install_torchvision_stub()
    from timm.models.deit import VisionTransformerDistilled
    from timm.models.vision_transformer import VisionTransformer

    cls = VisionTransformerDistilled if kind == "deit" else VisionTransformer
    torch.manual_seed(seed)
    return cls(img_size=32, patch_size=4, in_chans=3, embed_dim=64, depth=2, num_heads=4,
               num_classes=10)


def cached_train(path: Path, recipe: dict, model, fit: Callable[[], None]) -> float:
    """Load `model`'s weights from `path` if they were made by `recipe`, else run `fit`
    and keep them there; returns the training seconds (as recorded when cached)."""
    import torch

    if path.is_file():
        saved = torch.load(path, weights_only=True)
        if saved["recipe"] == recipe:
            model.load_state_dict(saved["state"])
            return float(saved["seconds"])
    t0 = time.perf_counter()
    fit()
    sec = time.perf_counter() - t0
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"recipe": recipe, "state": model.state_dict(), "seconds": sec}, path)
    return sec


def trained_timm(kind: str, epochs: int, seed: int) -> tuple[object, float]:
    """A timm model trained on the 60,000 Fashion-MNIST training images at 32x32
    (models/train.py's recipe: AdamW, one-cycle, lr 2e-3, crops and flips; the gray
    channel repeated inside a wrapper, so the images stay one channel in memory). DeiT
    trains both heads on the true labels: there is no teacher here to distil from."""
    from torch import nn

    from mcuc.models.train import seed_everything, train

    class Gray3(nn.Module):
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x.repeat(1, 3, 1, 1))

    model = timm_module(kind, seed)
    recipe = {"model": kind, "epochs": epochs, "seed": seed, "data": "fashion-mnist 32x32"}

    def fit() -> None:
        seed_everything(seed)
        x, y, _ = load_dataset("fashion-mnist", "train", size=32)
        train(Gray3(model), x, y, epochs=epochs, seed=seed, augment=True)

    sec = cached_train(CACHE / f"{kind}.pt", recipe, model, fit)
    return model.eval(), sec


def qat_default(epochs: int, lr: float, seed: int) -> Callable[[Path], Path]:
    """The default model after `epochs` of models/qat.py on the training split (the
    recipe of `scripts/qat_finetune.py --model default`), exported to the given path."""
    def make(path: Path) -> Path:
        from mcuc.models.qat import qat_finetune
        from mcuc.models.train import export_onnx, seed_everything
        from qat_finetune import default_model

        model = default_model()
        recipe = {"model": "default", "qat_epochs": epochs, "lr": lr, "seed": seed}

        def fit() -> None:
            seed_everything(seed)
            x, y = load_fashion_mnist("train")
            qat_finetune(model, x, y, epochs=epochs, lr=lr, seed=seed)

        sec = cached_train(CACHE / "default_qat.pt", recipe, model, fit)
        print(f"default QAT: {sec:.0f} s", flush=True)
        return export_onnx(model.eval(), (1, 1, 28, 28), path)
    return make


def subjects(tmp: Path, n: int, a: argparse.Namespace) -> list[Subject]:
    from mcuc.models.train import export_onnx

    x, y = load_fashion_mnist("test", limit=n)
    out = [Subject("bundled default model (Fashion-MNIST 28x28, p4 d64 L6 h2)",
                   DEFAULT_MODEL, x, y, calibration(),
                   qat_default(a.qat_epochs, a.qat_lr, a.seed))]
    x32, y32, _ = load_dataset("fashion-mnist", "test", limit=n, size=32, channels=3)
    calib32 = np.repeat(load_calibration("fashion-mnist", (1, 1, 32, 32), 64), 3, axis=1)
    for kind, title in (("vit", "issue 27's timm ViT, class token (3x32x32 p4 d64 L2 h4)"),
                        ("deit", "timm DeiT, class + distillation tokens "
                                 "(VisionTransformerDistilled, 3x32x32 p4 d64 L2 h4)")):
        model, sec = trained_timm(kind, a.epochs, a.seed)
        print(f"{kind}: trained {a.epochs} epochs in {sec:.0f} s", flush=True)
        path = export_onnx(model, TIMM_SHAPE, tmp / f"{kind}.onnx")
        out.append(Subject(f"{title}, {a.epochs} epochs here", path, x32, y32, calib32,
                           QAT_NA))
    return out


def mcuc_row(name: str, s: Subject, model: Path, f_top: np.ndarray, out: Path,
             quant: str = "calibrate", int16: str | tuple = ()) -> Row:
    """Integer reference on the test images, and the stm32f746 build's arena and flash."""
    c = compile_graph(load_graph(model), s.calib, quant=quant, int16=int16)
    top = run_mcuc(c, s.x).argmax(1)
    rep = build(model, "stm32f746", calib=s.calib, out_dir=out, samples=1, emulate=False,
                quant=quant, int16=int16)
    if rep["arena_bytes"] != c.plan.arena_bytes:
        raise SystemExit(f"{name}: build arena {rep['arena_bytes']} != {c.plan.arena_bytes}")
    if int16:
        names = [t.replace("_output_0", "").replace("/blocks/blocks.", "blocks.").lstrip("/")
                 for t in c.quant["int16"]["tensors"]]
        listed = ": " + ", ".join(f"`{t}`" for t in names) if 0 < len(names) <= 3 else ""
        name += f", {len(names)} of {len(candidates(c.graph))} tensors int16{listed}"
    return Row(name, float(np.mean(top == s.y)), float(np.mean(top == f_top)),
               rep["arena_bytes"], rep["flash_bytes"])


def measure(s: Subject, tmp: Path) -> list[Row]:
    """Every row for one model."""
    f_top = run_ort(s.onnx, s.x).argmax(1)
    rows = [Row("float (onnxruntime)", float(np.mean(f_top == s.y)), None, None, None),
            mcuc_row("mcuc PTQ (`--quant calibrate`)", s, s.onnx, f_top, tmp / "ptq")]
    qdq = ort_qdq(s.onnx, tmp / "qdq.onnx", s.calib)
    o_top = run_ort(qdq, s.x).argmax(1)
    rows += [Row("onnxruntime PTQ (QDQ), run by onnxruntime", float(np.mean(o_top == s.y)),
                 float(np.mean(o_top == f_top)), None, None),
             mcuc_row("onnxruntime PTQ (QDQ), mcuc `--quant given`", s, qdq, f_top,
                      tmp / "given", quant="given")]
    if callable(s.qat):
        qat = s.qat(tmp / "qat.onnx")
        qf = float(np.mean(run_ort(qat, s.x).argmax(1) == s.y))
        rows.append(mcuc_row(f"mcuc QAT (its float model: {_pct(qf)}), int8 by mcuc PTQ", s,
                             qat, f_top, tmp / "qat"))
    else:
        rows.append(Row("mcuc QAT", None, None, None, None, s.qat))
    rows.append(mcuc_row("mixed precision (`--int16 auto`)", s, s.onnx, f_top, tmp / "i16",
                         int16="auto"))
    return rows


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def _bytes(v: int | None) -> str:
    return "-" if v is None else f"{v:,} B"


def report(results: list[tuple[Subject, list[Row]]], n: int) -> str:
    lines = [f"Fashion-MNIST test images 0..{n - 1} for every row; \"agrees\" is argmax "
             "agreement with the float model; arena and flash of the stm32f746 build "
             "(flash: the linked ELF with one sample image; - where the row does not run "
             "on the MCU).", ""]
    for s, rows in results:
        lines += [f"**{s.title}**", "", "| quantization | top-1 | agrees with float | arena "
                  "| flash (ELF) |", "|---|---|---|---|---|"]
        for r in rows:
            lines.append(f"| {r.name} | {r.note} | | | |" if r.note else
                         f"| {r.name} | {_pct(r.top1)} | {_pct(r.agree)} | {_bytes(r.arena)} "
                         f"| {_bytes(r.flash)} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=1000, help="test images (default 1000)")
    ap.add_argument("--epochs", type=int, default=4, help="timm models' training epochs")
    ap.add_argument("--qat-epochs", type=int, default=1, help="default model's QAT epochs")
    ap.add_argument("--qat-lr", type=float, default=1e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--write", action="store_true", help="write the bench/quant.md section")
    a = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    t0 = time.time()
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-quant-table-") as d:
        for k, s in enumerate(subjects(Path(d), a.images, a)):
            sub = Path(d) / f"m{k}"
            sub.mkdir()
            results.append((s, measure(s, sub)))
            print(report([results[-1]], a.images), flush=True)
    text = report(results, a.images)
    print(f"({time.time() - t0:.0f} s)")
    if a.write:
        cmd = (f"PYTHONPATH=compiler .venv/bin/python scripts/bench_quant_table.py --images "
               f"{a.images} --epochs {a.epochs} --qat-epochs {a.qat_epochs} --qat-lr "
               f"{a.qat_lr:g} --seed {a.seed} --write")
        write_section(ROOT / "bench" / "quant.md",
                      f"Measured {datetime.date.today()} with `{cmd}`.\n\n" + text,
                      BEGIN, END)


if __name__ == "__main__":
    main()
