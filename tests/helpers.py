"""Shared test helpers: random ViT configurations and compiling them end to end."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from mcuc.codegen.render import render
from mcuc.models.vit import ViTConfig, build_vit
from mcuc.pipeline import Compiled, compile_graph


def random_config(seed: int) -> ViTConfig:
    rng = random.Random(seed)
    img = rng.choice([8, 12, 16, 24, 28, 32])
    patch = rng.choice([p for p in (2, 4, 7, 8) if img % p == 0 and img // p >= 2])
    heads = rng.choice([1, 2, 4])
    dim = heads * rng.choice([4, 8, 12, 16])
    return ViTConfig(
        img_size=img, in_chans=rng.choice([1, 3]), patch=patch, dim=dim,
        depth=rng.choice([1, 2, 3]), heads=heads, mlp_ratio=rng.choice([1.0, 2.0, 4.0]),
        num_classes=rng.choice([3, 10]), pool=rng.choice(["cls", "mean"]),
        encoder=rng.choice(["mcuc", "mcuc", "torch"]),
    )


def random_model(cfg: ViTConfig, seed: int) -> torch.nn.Module:
    """A ViT with weights large enough that attention and LayerNorm see real spread."""
    torch.manual_seed(seed)
    model = build_vit(cfg).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Linear):
                m.weight.normal_(0, 1.5 / m.weight.shape[1] ** 0.5)
                m.bias.normal_(0, 0.1)
            elif isinstance(m, torch.nn.LayerNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
        model.pos_embed.normal_(0, 0.5)
        if model.cls_token is not None:
            model.cls_token.normal_(0, 0.5)
    return model


def patch_vit(chans: int, hw: tuple[int, int], patch: tuple[int, int], dim: int, heads: int,
              pool: str, encoder: str, mlp: float, seed: int) -> torch.nn.Module:
    """A one-block ViT of any image and patch size (non-square, leftover rows and columns
    the conv never reads): the zoo ViT with its patch conv and position embedding swapped
    for ones of the right shape."""
    (h, w), (ph, pw) = hw, patch
    cfg = ViTConfig(img_size=2 * ph, in_chans=chans, patch=ph, dim=dim, depth=1, heads=heads,
                    mlp_ratio=mlp, pool=pool, encoder=encoder)
    m = random_model(cfg, seed)
    torch.manual_seed(seed)
    tokens = (h // ph) * (w // pw) + (pool == "cls")
    m.patch_embed = torch.nn.Conv2d(chans, dim, (ph, pw), stride=(ph, pw))
    m.pos_embed = torch.nn.Parameter(torch.randn(1, tokens, dim) * 0.5)
    return m.eval()


def input_shape(cfg: ViTConfig) -> tuple[int, ...]:
    return (1, cfg.in_chans, cfg.img_size, cfg.img_size)


def random_inputs(cfg: ViTConfig, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.random((n,) + input_shape(cfg)[1:], dtype=np.float32)


def compile_random(seed: int, disabled: tuple[str, ...] = ()) -> tuple[ViTConfig, Compiled]:
    from mcuc.frontend import load_model

    cfg = random_config(seed)
    graph = load_model(random_model(cfg, seed), input_shape(cfg))
    return cfg, compile_graph(graph, random_inputs(cfg, 16, seed), disabled)


def write_c(c: Compiled, out: Path) -> None:
    render(c.schedule, c.plan, out, model_name="test_model")


def cli_error_line(capsys, argv: list[str]) -> str:
    """Run the CLI, expect exit code 2 and exactly one `mcuc: error:` line; return it."""
    from mcuc.cli import main

    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("mcuc: error: "), err
    assert "Traceback" not in err
    return err
