"""Small vision transformers in PyTorch: the bundled default model and the test zoo.

Two encoder styles, so the frontend sees what users write: `mcuc` (attention written
out by hand, qkv in one Linear, as timm does) and `torch` (nn.TransformerEncoderLayer).
Torch is imported lazily by callers; this module needs it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass
class ViTConfig:
    img_size: int = 28
    in_chans: int = 1
    patch: int = 4
    dim: int = 64
    depth: int = 4
    heads: int = 2
    mlp_ratio: float = 2.0
    num_classes: int = 10
    pool: str = "cls"        # "cls" (class token) or "mean" (global average pooling)
    encoder: str = "mcuc"    # "mcuc" (hand-written blocks) or "torch" (nn.TransformerEncoder)

    def __post_init__(self) -> None:
        if self.img_size % self.patch:
            raise ValueError(f"img_size {self.img_size} is not a multiple of patch {self.patch}")
        if self.dim % self.heads:
            raise ValueError(f"dim {self.dim} is not a multiple of heads {self.heads}")
        if self.pool not in ("cls", "mean"):
            raise ValueError(f"pool must be 'cls' or 'mean', not {self.pool!r}")
        if self.encoder not in ("mcuc", "torch"):
            raise ValueError(f"encoder must be 'mcuc' or 'torch', not {self.encoder!r}")

    @property
    def num_patches(self) -> int:
        return (self.img_size // self.patch) ** 2

    @property
    def hidden(self) -> int:
        return int(round(self.dim * self.mlp_ratio))

    def to_dict(self) -> dict:
        return asdict(self)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q @ k.transpose(-2, -1)) * self.scale
        attn = attn.softmax(dim=-1)
        out = (attn @ v).transpose(1, 2).reshape(b, n, d)
        return self.proj(out)


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, hidden: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VisionTransformer(nn.Module):
    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.dim
        self.patch_embed = nn.Conv2d(cfg.in_chans, d, cfg.patch, stride=cfg.patch)
        n_tokens = cfg.num_patches + (1 if cfg.pool == "cls" else 0)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d)) if cfg.pool == "cls" else None
        self.pos_embed = nn.Parameter(torch.randn(1, n_tokens, d) * 0.02)
        if cfg.encoder == "mcuc":
            self.blocks = nn.Sequential(
                *[Block(d, cfg.heads, cfg.hidden) for _ in range(cfg.depth)]
            )
        else:
            layer = nn.TransformerEncoderLayer(
                d, cfg.heads, cfg.hidden, dropout=0.0, activation="gelu",
                batch_first=True, norm_first=True,
            )
            self.blocks = nn.TransformerEncoder(layer, cfg.depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, cfg.num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        if self.cls_token is not None:
            nn.init.trunc_normal_(self.cls_token, std=0.02)
        fan_in = self.cfg.in_chans * self.cfg.patch**2
        nn.init.uniform_(self.patch_embed.weight, -1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = self.blocks(x + self.pos_embed)
        x = self.norm(x)
        x = x[:, 0] if self.cfg.pool == "cls" else x.mean(dim=1)
        return self.head(x)


def build_vit(cfg: ViTConfig | None = None, **kwargs) -> VisionTransformer:
    return VisionTransformer(cfg or ViTConfig(**kwargs))
