"""PyTorch module -> ONNX ModelProto, through either torch exporter.

"dynamo" (torch.export based, the default going forward) emits opset >= 18 natively and
down-converts when asked for 17, keeping 18 when the conversion fails; "torchscript" is
the legacy tracer (`dynamo=False`), which emits any opset 17-20 directly. Both results
import the same way. torch is imported lazily so ONNX-only use needs no torch.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings

import onnx

from mcuc import McucError

EXPORTERS = ("dynamo", "torchscript")


@contextlib.contextmanager
def _quiet():
    """The exporters print progress and warnings freely; mcuc reports its own errors."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR + 10)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, lvl in zip(loggers, levels, strict=True):
            lg.setLevel(lvl)


@contextlib.contextmanager
def _no_mha_fastpath(torch):
    mha = getattr(torch.backends, "mha", None)
    before = mha.get_fastpath_enabled() if mha is not None else None
    if mha is not None:
        mha.set_fastpath_enabled(False)
    try:
        with torch.enable_grad():  # older torch: grad mode alone also disables the fast path
            yield
    finally:
        if mha is not None:
            mha.set_fastpath_enabled(before)


def from_torch(module, input_shape: tuple[int, ...], *, exporter: str = "dynamo",
               opset: int = 18) -> onnx.ModelProto:
    """Export `module` in eval mode with a fixed batch-1 input of `input_shape`."""
    import torch

    if exporter not in EXPORTERS:
        raise McucError(f"unknown exporter {exporter!r} (choose from {', '.join(EXPORTERS)})")
    if not isinstance(module, torch.nn.Module):
        raise McucError(f"expected a torch.nn.Module, got {type(module).__name__}")
    shape = tuple(int(d) for d in input_shape)
    if not shape or shape[0] != 1:
        raise McucError(f"mcuc models have batch 1; got input shape {list(shape)}")
    was_training = module.training
    module.eval()
    dummy = torch.zeros(shape)
    try:
        # nn.TransformerEncoderLayer / MultiheadAttention have a fused inference fast path
        # (aten::_transformer_encoder_layer_fwd) that the exporters cannot translate
        with _quiet(), _no_mha_fastpath(torch):
            if exporter == "torchscript":
                buf = io.BytesIO()
                torch.onnx.export(module, (dummy,), buf, dynamo=False, opset_version=opset,
                                  input_names=["input"], output_names=["logits"],
                                  do_constant_folding=True)
                return onnx.load_from_string(buf.getvalue())
            prog = torch.onnx.export(module, (dummy,), dynamo=True, opset_version=opset,
                                     input_names=["input"], output_names=["logits"],
                                     verbose=False)
            return prog.model_proto
    except McucError:
        raise
    except Exception as e:
        msg = " ".join(str(e).split())[:400]
        raise McucError(f"torch {exporter} export failed: {type(e).__name__}: {msg}") from None
    finally:
        module.train(was_training)
