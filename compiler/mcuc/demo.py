"""`make demo`: build the bundled model as STM32F746 firmware, run it in the emulator.

The firmware ELF is the file one would flash; the Unicorn engine runs it (clock init,
USART1 output and all), one Fashion-MNIST test image at a time, and counts instructions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mcuc.datasets import load_fashion_mnist
from mcuc.pipeline import build
from mcuc.report import format_report
from mcuc.runner import run_built

CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
           "Sneaker", "Bag", "Ankle boot"]


def demo(out: Path, board: str = "stm32f746", n_images: int = 10) -> int:
    from mcuc.limits import MAX_DEMO_IMAGES, check_count

    # checked before the build: the test split has 10000 images, and each is one emulator run
    n_images = check_count(n_images, "demo images (--images)", MAX_DEMO_IMAGES)
    print(f"mcuc demo: building the bundled Fashion-MNIST ViT for {board} ...")
    report = build(None, board, "fashion-mnist", out)
    print(format_report(report))
    x, y = load_fashion_mnist("test", limit=n_images)
    print(f"\nrunning {out}/firmware.elf in the emulator on {n_images} Fashion-MNIST "
          "test images:" if board != "host" else
          f"\nrunning the compiled C program on {n_images} Fashion-MNIST test images:")
    correct = 0
    for i in range(n_images):
        res = run_built(out, x[i])
        ok = res.argmax == int(y[i])
        correct += ok
        instr = f", {res.instructions:,} instructions" if res.instructions else ""
        print(f"  image {i:>2}: predicted {CLASSES[res.argmax]:<12} "
              f"true {CLASSES[int(y[i])]:<12} {'ok  ' if ok else 'MISS'} "
              f"(score {float(np.max(res.scores)):.2f}{instr})")
    print(f"\n{correct}/{n_images} correct on {board}; arena {report['arena_bytes']:,} B, "
          f"weights {report['weights_bytes']:,} B; build in {out}/")
    return 0
