"""int8 kernels: each module defines one KernelDef (C binding + numpy reference)."""

from mcuc.kernels import (  # noqa: F401  (importing registers each kernel)
    add,
    add16,
    attention,
    conv2d,
    copy,
    copy16,
    layernorm,
    layernorm16,
    linear,
    lut,
    matmul,
    mean,
    patch_embed,
    rescale,
    softmax,
    tokenwise,
)
from mcuc.kernels.registry import REGISTRY, Field, KernelDef, get, register

__all__ = ["REGISTRY", "Field", "KernelDef", "get", "register"]
