"""A small CNN teacher for hard-label distillation into the ViTs mcuc compiles.

Why: in the few epochs a CPU affords, a small ViT has not learnt the locality that a
convolution has built in, and its accuracy stalls; a CNN learns Fashion-MNIST in a few
epochs, and training the ViT on the CNN's predicted labels as well as the true ones
carries that prior across (DeiT, Touvron et al. 2021, hard distillation; here through
the class token alone, so the compiled graph does not change). The teacher only ever
runs on the host: it is not compiled, and its size does not count against any budget.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from mcuc import McucError


def build_teacher(in_chans: int = 1, num_classes: int = 10) -> nn.Sequential:
    """Five 3x3 conv layers (32-32-pool-64-64-pool-128), global average pool, linear."""
    def conv(c_in: int, c_out: int) -> list[nn.Module]:
        return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                nn.ReLU()]

    return nn.Sequential(
        *conv(in_chans, 32), *conv(32, 32), nn.MaxPool2d(2),
        *conv(32, 64), *conv(64, 64), nn.MaxPool2d(2),
        *conv(64, 128), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2),
        nn.Linear(128, num_classes))


def train_teacher(x: np.ndarray, y: np.ndarray, epochs: int, num_classes: int = 10,
                  seed: int = 0, progress: bool = True, device: str = "cpu"
                  ) -> nn.Sequential:
    """The teacher trained on (x, y) with crops and flips (they help a CNN even in a few
    epochs, unlike the ViTs); callers pass training images only, never the test set."""
    from mcuc.models.train import seed_everything, train

    if epochs <= 0:
        raise McucError(f"teacher epochs must be positive, not {epochs}")
    seed_everything(seed)  # the initial weights too: torch seeds each process at random
    net = build_teacher(x.shape[1], num_classes)
    train(net, x, y, epochs, lr=2e-3, seed=seed, progress=progress, augment=True,
          device=device)
    return recalibrate_batchnorm(net, x)


@torch.no_grad()
def recalibrate_batchnorm(net: nn.Module, x: np.ndarray, images: int = 4096,
                          batch_size: int = 256) -> nn.Module:
    """Recompute BatchNorm statistics as a plain average over training images under the
    final weights: the running averages lag behind the weights, which ruins short runs
    (a 16-step teacher predicted one class) and costs a little in long ones."""
    norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None          # cumulative average over the batches below
    net.train()
    for i in range(0, min(images, len(x)), batch_size):
        net(torch.from_numpy(np.ascontiguousarray(x[i:i + batch_size], dtype=np.float32)))
    for m, mom in zip(norms, saved, strict=True):
        m.momentum = mom
    return net.eval()


def distill_targets(x: np.ndarray, y: np.ndarray, epochs: int, num_classes: int = 10,
                    seed: int = 0, progress: bool = True, device: str = "cpu"
                    ) -> tuple[nn.Sequential, np.ndarray]:
    """Train the teacher on (x, y) and label the same images: what search and bench both
    need (the teacher, to score it; its labels, to distil)."""
    teacher = train_teacher(x, y, epochs, num_classes, seed, progress, device)
    return teacher, teacher_labels(teacher, x)


def teacher_labels(teacher: nn.Module, x: np.ndarray) -> np.ndarray:
    """The teacher's predicted class per image: the distillation targets."""
    from mcuc.models.train import predict

    return predict(teacher, x).argmax(axis=1).astype(np.int64)
