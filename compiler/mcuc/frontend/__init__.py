"""Model import: ONNX files or torch modules -> canonical mcuc Graph.

`import_onnx` keeps the file's ops (raw graph, static shapes); `canonicalize` rewrites to
the op set documented in `mcuc.ir.graph`; `load_model` does both for any source.
"""

from __future__ import annotations

from pathlib import Path

import onnx

from mcuc import McucError
from mcuc.frontend.canonicalize import CANONICAL, canonicalize
from mcuc.frontend.onnx_import import import_onnx
from mcuc.frontend.torch_import import from_torch
from mcuc.ir.graph import Graph

__all__ = ["CANONICAL", "canonicalize", "from_torch", "import_onnx", "load_model"]


def load_model(source: str | Path | onnx.ModelProto | object,
               input_shape: tuple[int, ...] | None = None) -> Graph:
    """Import and canonicalize an ONNX path/proto or a torch.nn.Module (needs input_shape)."""
    if not isinstance(source, str | Path | onnx.ModelProto):
        if not hasattr(source, "state_dict"):
            raise McucError(f"cannot load a model from a {type(source).__name__}; give an "
                            "ONNX path, an onnx.ModelProto or a torch.nn.Module")
        if input_shape is None:
            raise McucError("a torch module needs an input shape (e.g. --input-shape "
                            "1,1,28,28)")
        source = from_torch(source, tuple(input_shape))
        input_shape = None
    return canonicalize(import_onnx(source, input_shape))
