"""The one-shot supernet: every candidate of a search space shares one set of weights.

Weight entanglement as in AutoFormer: a subnet uses the leading slice of each
super-weight (first `dim` channels, first `hidden` MLP units, first `depth` blocks,
first `rank` low-rank factors), so training any subnet trains the shared part of all
of them. The qkv projection is sliced per q/k/v part, so a narrower subnet sees the
same q, k and v weights a wider one does. Heads only reshape q/k/v, so they share
everything. Each linear keeps a full-rank weight *and* one set of low-rank factors
(d_in -> R -> R -> d_out at the space's largest rank), because a low-rank product is
not a slice of a dense matrix; both share the bias. Patch embeddings are per patch
size and positional embeddings per (resolution, patch): they differ in shape.

`extract(cfg)` copies a subnet's slice into a plain `SubnetViT`, which exports to the
ONNX the compiler reads; tests check the two compute the same function.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from mcuc.nas.space import SearchSpace, SubnetConfig, lowrank_rank
from mcuc.nas.subnet import SubnetViT


def _trunc(*shape: int, std: float = 0.02) -> nn.Parameter:
    t = torch.empty(*shape)
    nn.init.trunc_normal_(t, std=std)
    return nn.Parameter(t)


def _row_picker(rows: int | torch.Tensor):
    """Leading `rows` rows, or the rows an index tensor names (qkv's three parts)."""
    return (lambda w: w[:rows]) if isinstance(rows, int) else (lambda w: w[rows])


class SuperLinear(nn.Module):
    """A dense weight plus low-rank factors (a: R x in, b: R x R, c: out x R), one bias.

    The factors start as a (kaiming-scaled, identity, small) product so a low-rank
    subnet begins near the scale of the dense one instead of at 0.02^3.
    """

    def __init__(self, d_in: int, d_out: int, rank: int) -> None:
        super().__init__()
        self.weight = _trunc(d_out, d_in)
        self.bias = nn.Parameter(torch.zeros(d_out))
        self.rank = rank
        if rank:
            self.a = nn.Parameter(torch.randn(rank, d_in) / math.sqrt(d_in))
            self.b = nn.Parameter(torch.eye(rank))
            self.c = _trunc(d_out, rank)

    def forward(self, x: torch.Tensor, cols: int, rows: int | torch.Tensor,
                rank: int | None) -> torch.Tensor:
        """x[..., :cols] -> `rows` outputs (a count, or an index tensor for qkv)."""
        pick = _row_picker(rows)
        if rank is None:
            return F.linear(x, pick(self.weight)[:, :cols], pick(self.bias))
        h = F.linear(x, self.a[:rank, :cols])
        h = F.linear(h, self.b[:rank, :rank])
        return F.linear(h, pick(self.c)[:, :rank], pick(self.bias))

    def export(self, cols: int, rows: int | torch.Tensor, rank: int | None) -> nn.Module:
        """This slice as the module `subnet.make_linear` builds for the same shape."""
        pick = _row_picker(rows)
        d_out = rows if isinstance(rows, int) else len(rows)
        with torch.no_grad():
            if rank is None:
                lin = nn.Linear(cols, d_out)
                lin.weight.copy_(pick(self.weight)[:, :cols])
                lin.bias.copy_(pick(self.bias))
                return lin
            mods = [nn.Linear(cols, rank, bias=False), nn.Linear(rank, rank, bias=False),
                    nn.Linear(rank, d_out)]
            mods[0].weight.copy_(self.a[:rank, :cols])
            mods[1].weight.copy_(self.b[:rank, :rank])
            mods[2].weight.copy_(pick(self.c)[:, :rank])
            mods[2].bias.copy_(pick(self.bias))
        return nn.Sequential(*mods)


class SuperLayerNorm(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = x.shape[-1]
        return F.layer_norm(x, (d,), self.weight[:d], self.bias[:d], 1e-5)

    def export_into(self, ln: nn.LayerNorm) -> None:
        d = ln.normalized_shape[0]
        with torch.no_grad():
            ln.weight.copy_(self.weight[:d])
            ln.bias.copy_(self.bias[:d])


def _qkv_rows(dim: int, max_dim: int) -> torch.Tensor:
    """Rows of the [3*max_dim] qkv super-weight that a `dim`-wide subnet uses."""
    return torch.cat([torch.arange(dim) + k * max_dim for k in range(3)])


class SuperBlock(nn.Module):
    def __init__(self, dim: int, hidden: int, rank: int) -> None:
        super().__init__()
        self.max_dim = dim
        self.norm1 = SuperLayerNorm(dim)
        self.qkv = SuperLinear(dim, 3 * dim, rank)
        self.proj = SuperLinear(dim, dim, rank)
        self.norm2 = SuperLayerNorm(dim)
        self.fc1 = SuperLinear(dim, hidden, rank)
        self.fc2 = SuperLinear(hidden, dim, rank)

    def forward(self, x: torch.Tensor, heads: int, hidden: int, rank: int | None
                ) -> torch.Tensor:
        b, n, d = x.shape
        qkv = self.qkv(self.norm1(x), d, _qkv_rows(d, self.max_dim).to(x.device), rank)
        qkv = qkv.reshape(b, n, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = ((q @ k.transpose(-2, -1)) * (d // heads) ** -0.5).softmax(dim=-1)
        x = x + self.proj((attn @ v).transpose(1, 2).reshape(b, n, d), d, d, rank)
        h = F.gelu(self.fc1(self.norm2(x), d, hidden, rank))
        return x + self.fc2(h, hidden, d, rank)


def _key(resolution: int, patch: int) -> str:
    return f"r{resolution}p{patch}"


class SuperViT(nn.Module):
    """The weight-sharing ViT over a SearchSpace; `forward(x, cfg)` runs one subnet."""

    def __init__(self, space: SearchSpace) -> None:
        super().__init__()
        self.space = space
        d = max(space.dim)
        self.max_dim = d
        hidden = max(int(round(d * m)) for m in space.mlp_ratio)
        rank = max((lowrank_rank(r, d) for r in space.lowrank_ratio if r < 1.0), default=0)
        self.patch_w = nn.ParameterDict()
        self.patch_b = nn.ParameterDict()
        for p in space.patch:
            bound = 1 / math.sqrt(space.in_chans * p * p)
            self.patch_w[f"p{p}"] = nn.Parameter(
                torch.empty(d, space.in_chans, p, p).uniform_(-bound, bound))
            self.patch_b[f"p{p}"] = nn.Parameter(torch.zeros(d))
        self.pos = nn.ParameterDict({
            _key(r, p): nn.Parameter(torch.randn(1, (r // p) ** 2 + 1, d) * 0.02)
            for r, p in space.families})
        self.cls_token = _trunc(1, 1, d)
        self.blocks = nn.ModuleList(SuperBlock(d, hidden, rank) for _ in range(max(space.depth)))
        self.norm = SuperLayerNorm(d)
        self.head = SuperLinear(d, space.num_classes, 0)

    def forward(self, x: torch.Tensor, cfg: SubnetConfig) -> torch.Tensor:
        if x.shape[-1] != cfg.resolution or x.shape[-2] != cfg.resolution:
            x = F.interpolate(x, size=(cfg.resolution, cfg.resolution), mode="bilinear",
                              align_corners=False)
        d, p = cfg.dim, cfg.patch
        x = F.conv2d(x, self.patch_w[f"p{p}"][:d], self.patch_b[f"p{p}"][:d], stride=p)
        x = x.flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token[:, :, :d].expand(x.shape[0], -1, -1), x], dim=1)
        x = x + self.pos[_key(cfg.resolution, p)][:, :, :d]
        for i in range(cfg.depth):
            x = self.blocks[i](x, cfg.heads[i], cfg.hidden(i), cfg.rank(i))
        x = self.norm(x)[:, 0]
        return self.head(x, d, cfg.num_classes, None)

    def extract(self, cfg: SubnetConfig) -> SubnetViT:
        """A standalone SubnetViT holding this subnet's slice of the shared weights."""
        self.space.check(cfg)
        net = SubnetViT(cfg)
        d, p, key = cfg.dim, cfg.patch, _key(cfg.resolution, cfg.patch)
        with torch.no_grad():
            net.patch_embed.weight.copy_(self.patch_w[f"p{p}"][:d])
            net.patch_embed.bias.copy_(self.patch_b[f"p{p}"][:d])
            net.cls_token.copy_(self.cls_token[:, :, :d])
            net.pos_embed.copy_(self.pos[key][:, :, :d])
        for i, blk in enumerate(net.blocks):
            sb: SuperBlock = self.blocks[i]
            rank, hidden = cfg.rank(i), cfg.hidden(i)
            sb.norm1.export_into(blk.norm1)
            sb.norm2.export_into(blk.norm2)
            blk.attn.qkv = sb.qkv.export(d, _qkv_rows(d, self.max_dim), rank)
            blk.attn.proj = sb.proj.export(d, d, rank)
            blk.mlp[0] = sb.fc1.export(d, hidden, rank)
            blk.mlp[2] = sb.fc2.export(hidden, d, rank)
        self.norm.export_into(net.norm)
        net.head = self.head.export(d, cfg.num_classes, None)
        return net.eval()
