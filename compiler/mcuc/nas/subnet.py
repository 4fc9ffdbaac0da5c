"""A search-space candidate as a torch module: the models/vit.py ViT, per-layer.

Same structure as models/vit.py (class token, positional embedding, pre-norm blocks,
final LayerNorm, linear head), with per-block heads and MLP ratio and, where a block's
low-rank ratio is below 1, each of qkv/proj/fc1/fc2 decomposed MCUFormer-style into
Linear(d_in, r, no bias) -> Linear(r, r, no bias) -> Linear(r, d_out). Built by
composition so models/vit.py stays the one hand-written reference. This is what a
trained candidate is exported from; nas/cost.py's graph builder mirrors what the
frontend makes of it.
"""

from __future__ import annotations

import math

from torch import nn

from mcuc.models.vit import Attention, Block, VisionTransformer, ViTConfig
from mcuc.nas.space import SubnetConfig


def make_linear(d_in: int, d_out: int, rank: int | None) -> nn.Module:
    """A full-rank Linear, or the three-factor low-rank replacement."""
    if rank is None:
        return nn.Linear(d_in, d_out)
    return nn.Sequential(nn.Linear(d_in, rank, bias=False), nn.Linear(rank, rank, bias=False),
                         nn.Linear(rank, d_out))


class SubnetAttention(Attention):
    """models/vit.py's Attention (forward inherited) with (possibly low-rank) qkv and proj."""

    def __init__(self, dim: int, heads: int, rank: int | None) -> None:
        super().__init__(dim, heads)
        self.qkv = make_linear(dim, 3 * dim, rank)
        self.proj = make_linear(dim, dim, rank)


class SubnetBlock(Block):
    """models/vit.py's pre-norm Block (forward inherited) with per-block sizes and ranks."""

    def __init__(self, dim: int, heads: int, hidden: int, rank: int | None) -> None:
        super().__init__(dim, heads, hidden)
        self.attn = SubnetAttention(dim, heads, rank)
        self.mlp = nn.Sequential(make_linear(dim, hidden, rank), nn.GELU(),
                                 make_linear(hidden, dim, rank))


class SubnetViT(VisionTransformer):
    """VisionTransformer whose blocks follow a SubnetConfig; embedding, class token,
    positional embedding, final norm, head, init and forward are inherited."""

    def __init__(self, cfg: SubnetConfig) -> None:
        base = ViTConfig(img_size=cfg.resolution, in_chans=cfg.in_chans, patch=cfg.patch,
                         dim=cfg.dim, depth=cfg.depth, heads=1, mlp_ratio=1.0,
                         num_classes=cfg.num_classes)
        super().__init__(base)
        self.subnet = cfg
        self.blocks = nn.Sequential(*[
            SubnetBlock(cfg.dim, cfg.heads[i], cfg.hidden(i), cfg.rank(i))
            for i in range(cfg.depth)
        ])
        self._init_weights()

    def _init_weights(self) -> None:
        """models/vit.py's init, tolerating the bias-free low-rank factors."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        if self.cls_token is not None:
            nn.init.trunc_normal_(self.cls_token, std=0.02)
        fan_in = self.cfg.in_chans * self.cfg.patch**2
        bound = 1 / math.sqrt(fan_in)
        nn.init.uniform_(self.patch_embed.weight, -bound, bound)


def build_subnet(cfg: SubnetConfig) -> SubnetViT:
    return SubnetViT(cfg)
