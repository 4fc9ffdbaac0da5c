"""The Python API: `mcuc.build`, `mcuc.run`, `mcuc.validate`, `mcuc.export`.

Each takes the options of its CLI command under the same names (`--weights-region` is
`weights_region=`) and returns what the command prints, as data. The CLI is these calls
plus printing, so the two cannot drift apart. Errors are `mcuc.McucError` (one line), as
the CLI prints them. docs/python-api.md has examples.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mcuc import McucError
from mcuc.text import one_line

if TYPE_CHECKING:
    from mcuc.runner import RunResult
    from mcuc.validation import Validation

REPORTS = ("summary", "full")


def build(model=None, *, board: str = "host", out: str | Path = "build/model",
          calib="fashion-mnist", calib_method: str | None = None,
          calib_percentile: float | None = None, calib_images: int | None = None,
          input_shape: tuple[int, ...] | None = None, disable: tuple[str, ...] = (),
          samples: int = 4, report: str = "summary", stream_input: bool = False,
          kernels: str = "optimized", optimize: str = "size", name: str | None = None,
          weights_region: str = "flash", profile: bool = False, quant: str = "auto",
          int16: str = "", lib: bool = False, progress: bool = False) -> dict:
    """`mcuc build`: compile `model` (an ONNX path, a torch.nn.Module with `input_shape`,
    or None for the bundled model) for `board` into `out`; returns the report (also
    written to out/report.json), with "lib" set to the library folder when `lib`.
    `calib` is a named data set, an .npy path or an array; None options keep the
    compiler's defaults. `int16` as --int16: tensor names, comma-separated, or "auto"."""
    from mcuc.pipeline import build as compile_build
    from mcuc.quant.wide import parse_names

    if report not in REPORTS:
        raise McucError(f"report must be one of {', '.join(REPORTS)}, not "
                        f"{one_line(repr(report), 40)}")
    given = {"calib_method": calib_method, "calib_percentile": calib_percentile,
             "calib_images": calib_images}
    rep = compile_build(model, board, calib, out, input_shape, tuple(disable),
                        progress=progress, samples=samples, stream_input=stream_input,
                        kernels=kernels, report_full=report == "full", optimize=optimize,
                        profile=profile, quant=quant, name=name,
                        weights_region=weights_region, int16=parse_names(str(int16)),
                        **{k: v for k, v in given.items() if v is not None})
    if lib:
        rep["lib"] = str(export(out))
    return rep


def run(out: str | Path, input, *, engine: str | None = None, profile: bool = False,
        allow_nonfinite: bool = False) -> RunResult:
    """`mcuc run`: one inference of the build at `out` on `input` (an array, float or
    int8 quantized, or an .npy path); `engine` as --engine (an emulator, or
    "serial:PORT" for a board)."""
    from mcuc.runner import load_input, run_built

    x = load_input(input) if isinstance(input, str | Path) else np.asarray(input)
    return run_built(out, x, engine, allow_nonfinite=allow_nonfinite, profile=profile)


def validate(out: str | Path, *, data: str = "fashion-mnist:1000", labels=None,
             engine: str | None = None, per_layer: bool = False, model=None,
             progress: bool = False) -> Validation:
    """`mcuc validate`: the float model, the int8 reference and the build on `data`;
    returns the figures (Validation; .to_dict() is the --json output)."""
    from mcuc.validation import validate as run_validation

    return run_validation(out, data, labels, engine, progress=progress,
                          per_layer=per_layer, model=model)


def export(build_dir: str | Path, out: str | Path | None = None) -> Path:
    """`mcuc export`: the build's model and kernels as a library folder (default
    <build_dir>/lib); returns its path."""
    from mcuc.library import export_library

    return export_library(build_dir, out)
