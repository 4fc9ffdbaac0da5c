"""Test-model builders: each returns (torch module in eval mode, input shape).

Shared by the frontend tests and any later test that needs a zoo of small ViTs in the
shapes users actually export: the hand-written mcuc ViT (class token or mean pooling),
one built from nn.TransformerEncoderLayer, and timm's VisionTransformer.
"""

from __future__ import annotations

import enum
import importlib.machinery
import math
import sys
import types
from collections.abc import Callable

import torch

from mcuc.models.vit import ViTConfig, build_vit

Builder = Callable[[], tuple[torch.nn.Module, tuple[int, ...]]]


def install_torchvision_stub() -> bool:
    """Make `import timm` work when torchvision cannot be imported; return True if stubbed.

    timm imports torchvision at import time (transforms, datasets, FrozenBatchNorm2d),
    but torchvision's PyPI wheels cannot load next to the CPU torch this project must
    use: their C extension is a CUDA build and fails with `operator torchvision::nms
    does not exist`. Nothing in timm's VisionTransformer forward touches torchvision,
    so when (and only when) the real package fails to import, we register tiny
    placeholder modules: any attribute is a dummy class (timm subclasses some of them,
    e.g. transforms.ToTensor), and InterpolationMode is a real enum because timm builds
    dicts keyed by its members at import time. Calling any placeholder raises.
    """
    try:
        import torchvision  # noqa: F401

        return False
    except Exception:  # ImportError, or the CUDA-extension RuntimeError described above
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]

    class InterpolationMode(enum.Enum):
        NEAREST = "nearest"
        NEAREST_EXACT = "nearest-exact"
        BILINEAR = "bilinear"
        BICUBIC = "bicubic"
        BOX = "box"
        HAMMING = "hamming"
        LANCZOS = "lanczos"

    def make(name: str) -> types.ModuleType:
        mod = types.ModuleType(name)
        # a spec keeps importlib.util.find_spec (used by torch.onnx) working; a package
        # path lets submodule imports resolve through sys.modules
        mod.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)
        mod.__path__ = []  # a package, so submodule imports resolve through sys.modules
        cache: dict[str, type] = {}

        def getattr_(attr: str) -> type:
            if attr.startswith("__"):
                raise AttributeError(attr)
            if attr not in cache:
                def _unavailable(self, *args, **kwargs):
                    raise RuntimeError(f"torchvision stub: {name}.{attr} is unavailable")

                cache[attr] = type(attr, (), {"__init__": _unavailable})
            return cache[attr]

        mod.__getattr__ = getattr_  # type: ignore[attr-defined]
        sys.modules[name] = mod
        return mod

    names = ["torchvision", "torchvision.transforms", "torchvision.transforms.functional",
             "torchvision.ops", "torchvision.ops.misc", "torchvision.datasets",
             "torchvision.utils"]
    mods = {n: make(n) for n in names}
    mods["torchvision"].__version__ = "0.0.0+mcuc-stub"
    mods["torchvision.transforms.functional"].InterpolationMode = InterpolationMode
    mods["torchvision.transforms"].InterpolationMode = InterpolationMode
    for n, mod in mods.items():
        parent, _, child = n.rpartition(".")
        if parent:
            setattr(mods[parent], child, mod)
    return True


def _seeded(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Weights with real spread, so numerical mismatches are not hidden by tiny values."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=g) * (1.0 / p.shape[-1] ** 0.5))
            elif "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
    return module.eval()


def mcuc_cls() -> tuple[torch.nn.Module, tuple[int, ...]]:
    cfg = ViTConfig(img_size=16, patch=4, dim=16, depth=2, heads=2, pool="cls")
    return _seeded(build_vit(cfg), 1), (1, 1, 16, 16)


def mcuc_mean() -> tuple[torch.nn.Module, tuple[int, ...]]:
    cfg = ViTConfig(img_size=16, in_chans=3, patch=4, dim=16, depth=2, heads=2, pool="mean")
    return _seeded(build_vit(cfg), 2), (1, 3, 16, 16)


def torch_encoder() -> tuple[torch.nn.Module, tuple[int, ...]]:
    cfg = ViTConfig(img_size=16, patch=4, dim=16, depth=2, heads=2, encoder="torch")
    return _seeded(build_vit(cfg), 3), (1, 1, 16, 16)


def _timm(global_pool: str, seed: int) -> tuple[torch.nn.Module, tuple[int, ...]]:
    install_torchvision_stub()
    from timm.models.vision_transformer import VisionTransformer

    model = VisionTransformer(
        img_size=28, patch_size=7, in_chans=1, embed_dim=32, depth=2, num_heads=2,
        num_classes=10, global_pool=global_pool,
    )
    return _seeded(model, seed), (1, 1, 28, 28)


def timm_cls_init(seed: int = 0) -> tuple[torch.nn.Module, tuple[int, ...]]:
    """Project issue 27's class-token ViT (3x32x32, patch 4, dim 64, depth 2, 4 heads)
    with timm's own random initialization: its class token starts near zero (std 1e-6),
    which is what defeats per-tensor int8 (quant/wide.py). Not in ZOO."""
    install_torchvision_stub()
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(seed)
    model = VisionTransformer(
        img_size=32, patch_size=4, in_chans=3, embed_dim=64, depth=2, num_heads=4,
        num_classes=10, global_pool="token",
    )
    return model.eval(), (1, 3, 32, 32)


def timm_cls() -> tuple[torch.nn.Module, tuple[int, ...]]:
    return _timm("token", 4)


def timm_avg() -> tuple[torch.nn.Module, tuple[int, ...]]:
    return _timm("avg", 5)


# name -> (builder, depth): depth gives the expected LayerNorm count 2*depth+1
ZOO: dict[str, tuple[Builder, int]] = {
    "mcuc_cls": (mcuc_cls, 2),
    "mcuc_mean": (mcuc_mean, 2),
    "torch_encoder": (torch_encoder, 2),
    "timm_cls": (timm_cls, 2),
    "timm_avg": (timm_avg, 2),
}


class _HandNorm(torch.nn.Module):
    """LayerNorm spelled out, the way people write it in research code (three variants)."""

    def __init__(self, dim: int, style: int) -> None:
        super().__init__()
        self.style = style
        self.weight = torch.nn.Parameter(torch.ones(dim))
        self.bias = torch.nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mu = x.mean(-1, keepdim=True)
        if self.style == 0:
            var = ((x - mu) ** 2).mean(-1, keepdim=True)
            return (x - mu) / torch.sqrt(var + 1e-5) * self.weight + self.bias
        if self.style == 1:
            d = x - mu
            var = (d * d).mean(-1, keepdim=True)
            return self.weight * (d * torch.rsqrt(var + 1e-6)) + self.bias
        var = x.var(-1, keepdim=True, unbiased=False)
        return (x - mu) / (var + 1e-5).sqrt()  # no affine part


class _HandNet(torch.nn.Module):
    """Patch embedding, hand-written norms and every Gelu spelling; 3 LayerNorm, 4 Gelu."""

    def __init__(self, dim: int = 16) -> None:
        super().__init__()
        self.embed = torch.nn.Conv2d(1, dim, 4, stride=4, padding=0)
        self.norms = torch.nn.ModuleList(_HandNorm(dim, s) for s in range(3))
        self.fc = torch.nn.ModuleList(torch.nn.Linear(dim, dim) for _ in range(4))
        self.head = torch.nn.Linear(dim, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x).flatten(2).transpose(1, 2)
        x = self.norms[0](x)
        h = self.fc[0](x)
        x = x + 0.5 * h * (1.0 + torch.erf(h / math.sqrt(2.0)))
        h = self.fc[1](self.norms[1](x))
        x = x - torch.nn.functional.gelu(h, approximate="tanh")
        h = self.fc[2](x)
        x = x + h * 0.5 * (1 + torch.tanh(math.sqrt(2 / math.pi) * (h + 0.044715 * h * h * h)))
        h = self.fc[3](self.norms[2](x)) / 3.0
        x = torch.nn.functional.gelu(h) - 1.0
        return self.head(x.mean(dim=1))


def handwritten() -> tuple[torch.nn.Module, tuple[int, ...]]:
    return _seeded(_HandNet(), 6), (1, 1, 16, 16)


class _ConvStem(torch.nn.Module):
    """A conv stem with BatchNorm and a per-channel rescale before the patch tokens; no
    transformer: it exercises the Conv-epilogue folding (BN, scale, shift into the Conv)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False)
        self.bn = torch.nn.BatchNorm2d(8)
        self.proj = torch.nn.Conv2d(8, 16, 2, stride=2)
        self.gain = torch.nn.Parameter(torch.linspace(0.5, 1.5, 16).reshape(16, 1, 1))
        self.head = torch.nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn(self.conv(x)))
        x = self.proj(x) * self.gain + 0.25
        return self.head(x.flatten(2).mean(-1))


def conv_stem() -> tuple[torch.nn.Module, tuple[int, ...]]:
    model = _seeded(_ConvStem(), 7)
    with torch.no_grad():
        model.bn.running_mean.normal_(0, 0.2)
        model.bn.running_var.uniform_(0.5, 2.0)
    return model, (1, 3, 16, 16)
