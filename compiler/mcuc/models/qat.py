"""Quantization-aware fine-tuning whose forward pass is mcuc's integer reference.

Why: post-training quantization can leave the int8 firmware worse than the float model
it was calibrated on. Fine-tuning with fake quantization can recover some of it, but
only if the fake quantization is the arithmetic the firmware runs. Generic fake-quant
(float round and clamp per tensor) is not: mcuc folds attention's scale into QK^T, rounds
Linear once with an int32 bias, runs LayerNorm and softmax in integers and GELU through a
256-entry table. So here every op of the forward pass is computed twice:

- the integer result, with the compiler's own parameters and arithmetic
  (quant/qparams.quantize_weighted, the lowering's multipliers, fixedpoint.requantize or
  the same integers faster (qat_ops.requant_s8), the layernorm, softmax, lut and add
  references, the lowering's GELU) and
  the activation QParams that mcuc's calibration gives the *current* float model
  (exported, calibrated as `mcuc build` does: `QatViT.calibrate`);
- the float result of the same op on the dequantized inputs, which carries the gradient.

The value passed on is float + (dequantized integer - float).detach(): its value is the
integer result exactly, its gradient that of the float op (a straight-through estimator).
Weights go through the same estimator on their per-channel int8 grid. The int8 logits
(`QatViT.int8_logits`) therefore equal the compiler's integer reference, which the
generated C equals bit for bit; tests/test_qat.py checks this against a compiled model.

The forward follows the module (models/vit.py's mcuc-style encoder with a class token,
and nas/subnet.py's per-block sizes and low-rank factors); the QParams come from the
exported graph, read node by node in the same order (`Tape`); after each calibration
every node's weights are checked against the module's, so a model the tape does not fit
is refused, not misread. bench/quant.md has what it measured (no gain over a float
fine-tune on the models tried, so it is off by default).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mcuc import McucError
from mcuc.models.qat_ops import QT, Tape, block, embed, layernorm, linear_any
from mcuc.models.vit import VisionTransformer
from mcuc.quant.qparams import QParams


class QatViT(nn.Module):
    """A ViT whose forward is the integer reference (value) with float gradients.

    `calibrate()` exports the float model and takes mcuc's calibration of it (as `mcuc
    build --calib` calibrates: a dataset name's `images` seeded training images, or an
    array such as the search's calib.npy; minmax); call it again when the
    weights have moved (`qat_finetune` does, every epoch). The parameters are the
    wrapped model's, so an optimizer over this module trains that model."""

    def __init__(self, model: VisionTransformer, calib: str | np.ndarray = "fashion-mnist",
                 images: int = 64) -> None:
        super().__init__()
        if model.cls_token is None or not isinstance(model.blocks, nn.Sequential):
            raise McucError("QAT supports the mcuc-style encoder with a class token")
        self.model = model
        self.calib, self.images = calib, images
        self.graph = None
        self.qparams: dict[str, QParams] = {}

    def calibrate(self) -> None:
        from mcuc.models.train import export_onnx
        from mcuc.pipeline import calibration_samples, load_graph
        from mcuc.quant.calibrate import calibrate

        c = self.model.cfg
        with tempfile.TemporaryDirectory() as tmp:
            path = export_onnx(self.model, (1, c.in_chans, c.img_size, c.img_size),
                               Path(tmp) / "qat.onnx")
            g = load_graph(path)
        samples = calibration_samples(g, self.calib, self.images)
        self.graph, self.qparams = g, calibrate(g, samples).qparams
        with torch.no_grad():  # the module's forward follows this graph, weights and all
            self.forward_q(torch.from_numpy(samples[:1].astype(np.float32)), check=True)

    def forward_q(self, x: torch.Tensor, check: bool = False) -> QT:
        """The int8 result (codes, value with float gradients) of the head; `check`
        compares every weight with the exported graph's (calibrate does, once)."""
        if self.graph is None:
            self.calibrate()
        tape = Tape(self.graph, self.qparams, check)
        m = self.model
        t = embed(tape, m, x, tape.qp(self.graph.inputs[0]))
        for blk in m.blocks:
            t = block(tape, t, blk)
        t = layernorm(tape, t, m.norm)
        out = linear_any(tape, QT(t.q[:, 0], t.v[:, 0], t.qp), m.head)
        if tape.pos != len(tape.nodes) or self.graph.outputs[0] not in tape.nodes[-1].outputs:
            raise McucError("QAT: the module's forward did not use the whole exported graph")
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_q(x).v

    @torch.no_grad()
    def int8_logits(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """The int8 logits [N, classes] mcuc's integer reference gives these images."""
        out = [self.forward_q(torch.from_numpy(np.ascontiguousarray(
            x[i: i + batch_size], dtype=np.float32))).q for i in range(0, len(x), batch_size)]
        return np.concatenate(out).astype(np.int8)


def qat_finetune(model: VisionTransformer, x: np.ndarray, y: np.ndarray, epochs: int,
                 lr: float = 1e-4, batch_size: int = 128, seed: int = 0,
                 progress: bool = True, augment: bool = True,
                 on_epoch: Callable[[int, float], None] | None = None,
                 calib: str | np.ndarray = "fashion-mnist", **train_kw) -> VisionTransformer:
    """Fine-tune `model` in place for `epochs` with the integer-exact forward, starting
    from mcuc's calibration of the float model and recalibrating after every epoch (the
    QParams `mcuc build` will choose follow the weights). models/train.py's loop
    (AdamW, one-cycle, progress bar) does the steps; returns the float model."""
    from mcuc.models.train import train

    qat = QatViT(model, calib)
    qat.calibrate()

    def epoch_done(epoch: int, loss: float) -> None:
        qat.calibrate()
        if on_epoch is not None:
            on_epoch(epoch, loss)

    train(qat, x, y, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
          progress=progress, augment=augment, on_epoch=epoch_done, **train_kw)
    model.eval()
    model.qat_losses = qat.train_losses  # type: ignore[attr-defined]
    return model


def qat_stage(net: VisionTransformer, x: np.ndarray, y: np.ndarray, x_val: np.ndarray,
              y_val: np.ndarray, calib: np.ndarray, epochs: int, lr: float,
              **train_kw) -> dict:
    """`mcuc search`'s QAT stage: fine-tune the pick, and its held-out int8 accuracy
    (calibrated on `calib`, as the search's calib.npy builds it) before and after."""
    import time

    def int8_acc() -> float:
        return float((QatViT(net, calib).int8_logits(x_val).argmax(1) == y_val).mean())

    t0, before = time.perf_counter(), int8_acc()
    qat_finetune(net, x, y, epochs=epochs, lr=lr, calib=calib, **train_kw)
    return {"epochs": epochs, "lr": lr, "val_int8_before": before,
            "val_int8_after": int8_acc(), "seconds": round(time.perf_counter() - t0, 1)}
