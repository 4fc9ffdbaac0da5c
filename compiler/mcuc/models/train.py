"""Train, evaluate and export the small ViTs that mcuc compiles.

Kept deliberately plain (AdamW, one-cycle schedule, optional label smoothing and light
augmentation) so that the bundled default model can be reproduced on a laptop CPU in
minutes, and so that tests can train a toy model in seconds with the same code path.
"""

from __future__ import annotations

import functools
import math
import os
import random
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from mcuc import McucError


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch so that a training run is repeatable on one machine."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    if name not in ("cpu", "cuda"):
        raise McucError(f"--device must be cpu or cuda, not {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise McucError("--device cuda asked for, but torch sees no CUDA device "
                        f"(torch {torch.__version__})")
    return torch.device(name)


def augment_batch(xb: torch.Tensor, gen: torch.Generator, pad: int = 2) -> torch.Tensor:
    """Random crop (zero padding `pad`) and horizontal flip, per image, vectorised.

    Fashion-MNIST items are roughly left/right symmetric and centred, so small shifts and
    flips add a little accuracy at almost no cost; rotations would only hurt. The draws
    come from `gen` (a CPU generator, so a run is the same on any device); the pixels
    are moved wherever `xb` lives.
    """
    n, _, h, w = xb.shape
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen).to(xb.device)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen).to(xb.device)
    flip = (torch.rand(n, generator=gen) < 0.5).to(xb.device)
    padded = nn.functional.pad(xb, (pad, pad, pad, pad))
    ar = functools.partial(torch.arange, device=xb.device)
    rows = (dy[:, None] + ar(h)[None, :])[:, None, :, None]  # [n,1,h,1]
    cols = (dx[:, None] + ar(w)[None, :])[:, None, None, :]  # [n,1,1,w]
    out = padded[ar(n)[:, None, None, None], ar(xb.shape[1])[None, :, None, None], rows, cols]
    return torch.where(flip[:, None, None, None], out.flip(-1), out)


NO_DECAY_NAMES = ("embed", "token", "pos", "patch_")


def make_optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW that decays matrices only: decaying biases, norms and embeddings costs accuracy."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        small = p.ndim <= 1 or any(k in name for k in NO_DECAY_NAMES)
        (no_decay if small else decay).append(p)
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0}],
        lr=lr,
    )


def one_cycle(opt: torch.optim.Optimizer, lr: float, total_steps: int, warmup_frac: float
              ) -> torch.optim.lr_scheduler.OneCycleLR:
    """Linear warm-up then cosine decay: converges fast without tuning, which matters on CPU.

    Very short runs (tests, smoke runs) get at least two warm-up steps, so that neither
    phase of the schedule is empty (torch divides by each phase's length)."""
    total_steps = max(total_steps, 4)
    pct = min(0.5, max(warmup_frac, 2.0 / total_steps))
    return torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=lr, total_steps=total_steps, pct_start=pct,
        anneal_strategy="cos", div_factor=25.0, final_div_factor=1e3,
    )

class Batches:
    """The training set on the training device, served a batch of indices at a time.

    On a GPU the images go over once (Fashion-MNIST is 190 MB as float32), not per step:
    these models are so small that copying and indexing on the host, not the maths,
    bounded a GPU step."""

    def __init__(self, x: np.ndarray, y: np.ndarray, distill: np.ndarray | None,
                 device: torch.device) -> None:
        self.device = device
        self.x = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(device)
        self.y = torch.from_numpy(np.asarray(y, dtype=np.int64)).to(device)
        self.t = (None if distill is None
                  else torch.from_numpy(np.asarray(distill, dtype=np.int64)).to(device))

    def __len__(self) -> int:
        return len(self.x)

    def get(self, idx: torch.Tensor, augment_gen: torch.Generator | None
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Images (augmented when a generator is given), labels and teacher labels."""
        i = idx.to(self.device)
        xb = self.x[i]
        xb = xb if augment_gen is None else augment_batch(xb, augment_gen)
        return xb, self.y[i], None if self.t is None else self.t[i]


def check_distill(distill: np.ndarray | None, images: int, weight: float) -> None:
    """One teacher label per image, and a loss share in [0, 1]."""
    if distill is not None and len(distill) != images:
        raise McucError(f"need a teacher label per image (got {len(distill)} for {images})")
    if not 0.0 <= weight <= 1.0:
        raise McucError(f"distillation weight must be in [0, 1], not {weight}")


def distilled(loss: torch.Tensor, out: torch.Tensor, teacher: torch.Tensor | None,
              weight: float) -> torch.Tensor:
    """(1 - w) x `loss` + w x CE(out, the teacher's labels): DeiT's hard distillation."""
    if teacher is None:
        return loss
    return (1 - weight) * loss + weight * nn.functional.cross_entropy(out, teacher)


def optimizer_step(model: nn.Module, loss: torch.Tensor, opt: torch.optim.Optimizer,
                   sched: torch.optim.lr_scheduler.LRScheduler) -> torch.Tensor:
    """Backward, clip the gradient norm to 1 (ViTs spike early without it), step; the loss,
    left on the device (reading it every step would stall a GPU's queue)."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    sched.step()
    return loss.detach()


def train(
    model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    epochs: int,
    batch_size: int = 128,
    lr: float = 2e-3,
    seed: int = 0,
    progress: bool = True,
    weight_decay: float = 0.05,
    label_smoothing: float = 0.1,
    augment: bool = False,
    warmup_frac: float = 0.1,
    on_epoch: Callable[[int, float], None] | None = None,
    distill: np.ndarray | None = None,
    distill_weight: float = 0.5,
    device: str = "cpu",
    resume: Path | None = None,
    resume_key: object = None,
) -> nn.Module:
    """Train `model` in place on (x float32 [N,C,H,W], y int [N]) and return it.

    AdamW with a one-cycle (linear warm-up, cosine decay) schedule: it converges fast
    without tuning, which matters for a few CPU epochs. The loss history (mean loss per
    epoch) is left on `model.train_losses` for callers and tests.

    `distill` (a teacher's predicted class per image, see models/teacher.py) mixes in
    hard-label distillation: loss = (1 - w) x CE(true label) + w x CE(teacher's label).
    With `augment` the teacher's labels are those of the unaugmented images: a 2-pixel
    shift or a flip does not change a garment's class.

    `device` ("cpu" or "cuda") is where the steps run; the images stay in host memory
    (a batch at a time goes over), and the model comes back on the CPU, where export,
    `evaluate` and the compiler expect it.

    `resume`: a file where the state after each epoch is kept (weights, optimiser,
    schedule, random generators) and from which a run with the same `resume_key` goes on,
    giving the same weights as an uninterrupted run; removed when training ends. Long
    bench trainings outlast a session this way.
    """
    if epochs <= 0:
        raise McucError(f"epochs must be positive, not {epochs}")
    if len(x) != len(y) or len(x) == 0:
        raise McucError(f"need matching, non-empty x and y (got {len(x)} and {len(y)})")
    check_distill(distill, len(x), distill_weight)
    dev = resolve_device(device)
    seed_everything(seed)
    gen = torch.Generator().manual_seed(seed)
    data = Batches(x, y, distill, dev)
    steps_per_epoch = math.ceil(len(data) / batch_size)
    total_steps = epochs * steps_per_epoch

    model.to(dev)
    opt = make_optimizer(model, lr, weight_decay)
    sched = one_cycle(opt, lr, total_steps, warmup_frac)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    first, losses = _resumed(resume, resume_key, model, opt, sched, gen)
    model.train()
    for epoch in range(first, epochs):
        perm = torch.randperm(len(data), generator=gen)
        total, seen = torch.zeros((), device=dev, dtype=torch.float64), 0
        bar = tqdm(
            range(steps_per_epoch), desc=f"epoch {epoch + 1}/{epochs}", disable=not progress,
            leave=True, dynamic_ncols=True,
        )
        for step in bar:
            idx = perm[step * batch_size : (step + 1) * batch_size]
            xb, yb, tb = data.get(idx, gen if augment else None)
            out = model(xb)
            loss = distilled(loss_fn(out, yb), out, tb, distill_weight)
            total += optimizer_step(model, loss, opt, sched).double() * len(idx)
            seen += len(idx)
            if progress and (step % 20 == 0 or step == steps_per_epoch - 1):
                bar.set_postfix(loss=f"{total.item() / seen:.4f}",
                                lr=f"{sched.get_last_lr()[0]:.2e}")
        losses.append(total.item() / seen)
        if resume is not None:
            _keep(resume, resume_key, epoch + 1, losses, model, opt, sched, gen)
        if on_epoch is not None:
            on_epoch(epoch, losses[-1])
    if resume is not None:
        resume.unlink(missing_ok=True)
    model.cpu().eval()
    model.train_losses = losses  # type: ignore[attr-defined]
    return model


def _keep(path: Path, key: object, epoch: int, losses: list[float], model: nn.Module,
          opt: torch.optim.Optimizer, sched, gen: torch.Generator) -> None:
    """The state after `epoch` epochs, written atomically (a kill never tears it)."""
    save_checkpoint(path, {"key": key, "epoch": epoch, "losses": losses,
                           "model": model.state_dict(), "opt": opt.state_dict(),
                           "sched": sched.state_dict(), "gen": gen.get_state(),
                           "rng": torch.get_rng_state()})


def save_checkpoint(path: Path, state: dict) -> None:
    """Write atomically so an interrupted run never leaves a torn checkpoint."""
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_state(path: Path | str, what: str) -> dict:
    """A checkpoint written by `save_checkpoint`, loaded with weights_only=True: tensors,
    dicts, lists, str/int/float only, so a crafted file cannot run code (a pickle with
    objects, or an old checkpoint holding some, is refused with one line)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - unpickling refusals, torn or foreign files
        msg = " ".join(str(e).split())[:300]
        raise McucError(f"cannot read {what} {path} as plain data (weights_only): "
                        f"{type(e).__name__}: {msg}") from None
    if not isinstance(state, dict):
        raise McucError(f"{what} {path} holds a {type(state).__name__}, not a checkpoint")
    return state


def _resumed(path: Path | None, key: object, model: nn.Module, opt: torch.optim.Optimizer,
             sched, gen: torch.Generator) -> tuple[int, list[float]]:
    """(epochs done, their losses) of a kept state for `key`, restored; else (0, [])."""
    if path is None or not path.is_file():
        return 0, []
    state = load_state(path, "training state")
    if state.get("key") != key:
        return 0, []
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["opt"])
    sched.load_state_dict(state["sched"])
    gen.set_state(state["gen"])
    torch.set_rng_state(state["rng"])
    return state["epoch"], list(state["losses"])


@torch.no_grad()
def predict(model: nn.Module, x: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Float logits [N, classes] in eval mode, batched so the full test set fits anywhere."""
    was_training = model.training
    model.eval()
    out = []
    for i in range(0, len(x), batch_size):
        xb = torch.from_numpy(np.ascontiguousarray(x[i : i + batch_size], dtype=np.float32))
        out.append(model(xb).numpy())
    model.train(was_training)
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def evaluate(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy in [0, 1]."""
    if len(x) == 0:
        raise McucError("cannot evaluate on an empty set")
    return float((predict(model, x).argmax(axis=1) == np.asarray(y)).mean())


def _export_torchscript(
    model: nn.Module, dummy: torch.Tensor, path: Path, opset: int
) -> None:
    """The legacy TorchScript exporter: plain opset ops, weights inlined, no onnxscript
    functions, which keeps the graph simple for the mcuc frontend."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        # nn.MultiheadAttention's shape checks trip the tracer; they are constants at batch 1.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            model, (dummy,), str(path), dynamo=False, opset_version=opset,
            input_names=["input"], output_names=["logits"], do_constant_folding=True,
            export_params=True,
        )


def _export_dynamo(model: nn.Module, dummy: torch.Tensor, path: Path, opset: int) -> None:
    """The torch.export-based exporter, used when the legacy one is unavailable."""
    prog = torch.onnx.export(
        model, (dummy,), dynamo=True, opset_version=opset, input_names=["input"],
        output_names=["logits"], external_data=False,
    )
    prog.save(str(path), external_data=False)


def export_onnx(
    model: nn.Module,
    input_shape: tuple[int, ...] | list[int],
    path: Path | str,
    opset: int = 17,
    atol: float = 1e-4,
    seed: int = 0,
) -> Path:
    """Export `model` (eval mode, fixed batch 1, weights inlined) to ONNX at `path`.

    torch 2.13 still ships the TorchScript exporter behind `dynamo=False`; it is preferred
    because it emits plain opset ops. Falls back to the dynamo exporter if the legacy one
    is gone. The file is then run in onnxruntime and must match torch within `atol`, so a
    silently wrong export never reaches the compiler.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = tuple(int(d) for d in input_shape)
    if shape[0] != 1:
        raise McucError(f"mcuc models have batch 1; got input shape {list(shape)}")
    was_training = model.training
    model.eval()
    dummy = torch.rand(shape, generator=torch.Generator().manual_seed(seed))
    try:
        try:
            _export_torchscript(model, dummy, path, opset)
        except (ImportError, AttributeError, TypeError):
            _export_dynamo(model, dummy, path, opset)
        with torch.no_grad():
            ref = model(dummy).numpy()
    finally:
        model.train(was_training)
    got = run_onnx(path, dummy.numpy())
    err = float(np.max(np.abs(got - ref)))
    if not np.isfinite(err) or err > atol:
        raise McucError(f"ONNX export of {path} differs from torch by {err:.3g} (> {atol})")
    return path


def run_onnx(path: Path | str, x: np.ndarray) -> np.ndarray:
    """Run one input through onnxruntime on CPU; used to verify exports."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return sess.run(None, {name: np.ascontiguousarray(x, dtype=np.float32)})[0]


def count_params(model: nn.Module) -> int:
    """Trainable parameters; the MCU flash budget is roughly this many bytes at int8."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


class Timer:
    """Wall-clock context manager: `with Timer() as t: ...; t.seconds`."""

    def __enter__(self) -> Timer:
        self._t0 = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._t0
