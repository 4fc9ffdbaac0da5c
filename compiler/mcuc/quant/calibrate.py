"""Calibration: observe activation ranges on sample inputs, then fix every tensor's QParams.

Two range methods. `minmax` takes each tensor's min/max over the calibration set; one
rare outlier then stretches the whole int8 grid. `percentile` clips each tensor's range
to the lower/upper percentile of all its values over all calibration images (numpy's
'linear' definition), which trades a few saturated outliers for a finer grid everywhere
else. Percentile 100 is exactly minmax.

minmax stays the default because percentile did not win on every model (10,000 test
images, 64 or 256 training images): it gained 0.17-0.28 points int8 on a long-trained
searched ViT (88.68% -> 88.85-88.96%; measured before the int32-bias fix in
quant/qparams.py, which took that model to 89.56% with minmax) but lost 0.02-0.16
points and 0.3-0.5 points of float agreement on the previous bundled default, a uniform
ViT (88.97% -> 88.81-88.95%), and up to 0.37 points on a 4-block baseline ViT
(89.58% -> 89.21% at 99.99).

The graph input keeps its min/max under either method: it is the image, whose range is
known (pixels in [0, 1]); measured on Fashion-MNIST its 99.99th and 99.999th percentiles
equal its max (about 1% of pixels are exactly 1.0), so clipping it changes nothing there,
and at lower percentiles it would only saturate real pixels before the first layer.
Ops that only move bytes (Reshape, Transpose, Slice) keep their input's parameters so
they never requantize; Softmax output is fixed at 1/256 and never observed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from mcuc import McucError
from mcuc.ir import interpreter
from mcuc.ir.graph import Graph
from mcuc.quant.qparams import SOFTMAX_OUT, QParams
from mcuc.text import one_line

PASS_THROUGH = {"Reshape", "Transpose", "Slice"}
METHODS = ("minmax", "percentile")
DEFAULT_METHOD = "minmax"
DEFAULT_PERCENTILE = 99.99
DEFAULT_IMAGES = 64


@dataclass
class QGraph:
    """A float graph with int8 parameters for every activation tensor, and the per output
    channel scales of weights whose quantization the model gave (QDQ; quant/given.py):
    other weights are quantized by qparams.quantize_weighted when lowered."""

    graph: Graph
    qparams: dict[str, QParams]
    weight_scales: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def input_name(self) -> str:
        return self.graph.inputs[0]

    @property
    def output_name(self) -> str:
        return self.graph.outputs[0]


def check_method(method: str, percentile: float) -> None:
    """Reject a bad method or percentile with one line, before any work is done (a bad
    percentile too under minmax, where it would otherwise be silently ignored)."""
    if method not in METHODS:
        raise McucError(f"calibration method must be one of {', '.join(METHODS)}, "
                        f"not {method!r}")
    if not (isinstance(percentile, int | float) and 50.0 < percentile <= 100.0):
        raise McucError(f"calibration percentile must be in (50, 100], not {percentile}")


def describe(method: str, images: int, percentile: float) -> dict:
    """How a model was calibrated, for report.json and default.json."""
    return {"method": method, "images": int(images),
            **({"percentile": percentile} if method == "percentile" else {})}


def _lerp(a: float, b: float, t: float) -> float:
    """numpy's own linear interpolation (function_base._lerp), so results match it."""
    d = b - a
    return float(b - d * (1.0 - t)) if t >= 0.5 else float(a + d * t)


class Tails:
    """The k smallest and k largest values one tensor takes over all calibration images.

    numpy's 'linear' percentile q of n sorted values a is a[i] + g*(a[i+1] - a[i]) with
    h = (n - 1) * q / 100, i = floor(h), g = h - i: it reads only two order statistics.
    With n (images x numel) known up front, the upper percentile needs only the n - i
    largest values and the lower only the i + 2 smallest, so memory is O(k), not O(n).
    """

    def __init__(self, total: int, percentile: float) -> None:
        self.total = total
        self.h_hi = (total - 1) * (percentile / 100.0)
        self.h_lo = (total - 1) * ((100.0 - percentile) / 100.0)
        self.k_hi = min(total, total - math.floor(self.h_hi))
        self.k_lo = min(total, math.floor(self.h_lo) + 2)
        self.seen = 0
        self.lo = np.empty(0, dtype=np.float64)  # k_lo smallest so far, unsorted
        self.hi = np.empty(0, dtype=np.float64)  # k_hi largest so far, unsorted

    def add(self, values: np.ndarray) -> None:
        v = np.asarray(values, dtype=np.float64).reshape(-1)
        self.seen += v.size
        if self.seen > self.total:
            raise McucError(f"calibration saw {self.seen} values, expected {self.total}")
        self.hi = _keep(self.hi, v, self.k_hi, largest=True)
        self.lo = _keep(self.lo, v, self.k_lo, largest=False)

    def range(self) -> tuple[float, float]:
        """(lower, upper) percentile of everything added; needs all `total` values."""
        if self.seen != self.total:
            raise McucError(f"calibration saw {self.seen} values, expected {self.total}")
        lo, hi = np.sort(self.lo), np.sort(self.hi)
        return _pick(lo, self.h_lo, 0), _pick(hi, self.h_hi, self.total - hi.size)

    def extremes(self) -> tuple[float, float]:
        return float(self.lo.min()), float(self.hi.max())


def _keep(kept: np.ndarray, v: np.ndarray, k: int, largest: bool) -> np.ndarray:
    """The k largest (smallest) of kept + v. Values that cannot enter a full set are
    dropped by one comparison first, so the partition only sees a few candidates."""
    if kept.size == k:
        v = v[v > kept.min()] if largest else v[v < kept.max()]
        if v.size == 0:
            return kept
    both = np.concatenate([kept, v])
    if both.size <= k:
        return both
    return np.partition(both, -k)[-k:] if largest else np.partition(both, k - 1)[:k]


def _pick(sorted_part: np.ndarray, h: float, offset: int) -> float:
    """Order statistic interpolation at virtual index h of the whole set, where
    sorted_part holds the whole set's order statistics offset, offset+1, ..."""
    i = math.floor(h)
    a = sorted_part[i - offset]
    if i + 1 - offset >= sorted_part.size:
        return float(a)
    return _lerp(a, sorted_part[i + 1 - offset], h - i)


def observe_tails(graph: Graph, samples: np.ndarray, percentile: float = 100.0,
                  progress: bool = False) -> dict[str, Tails]:
    """Tails of every activation over `samples` ([N, ...input shape without batch])."""
    if len(graph.inputs) != 1:
        raise McucError(f"mcuc compiles single-input models; this one has {len(graph.inputs)}")
    if len(samples) == 0:
        raise McucError("calibration needs at least one sample")
    in_name = graph.inputs[0]
    in_shape = graph.tensors[in_name].shape
    tails: dict[str, Tails] = {}
    for i, x in enumerate(tqdm(samples, desc="calibrating", disable=not progress,
                               leave=False)):
        feeds = {in_name: np.asarray(x, dtype=np.float32).reshape(in_shape)}
        with np.errstate(all="ignore"):  # a non-finite result is refused just below
            values = interpreter.run(graph, feeds, keep_all=True)
        for name, v in values.items():
            t = graph.tensors.get(name)
            if t is None or t.is_const:
                continue
            if np.asarray(v).dtype.kind == "f" and not np.isfinite(v).all():
                raise McucError(f"activation '{one_line(name)}' is NaN or infinite on "
                                f"calibration image {i}: the model overflows or divides by "
                                "zero (corrupt or absurd weights)")
            if name not in tails:
                tails[name] = Tails(len(samples) * int(np.size(v)), percentile)
            tails[name].add(v)
    return tails


def observe_ranges(graph: Graph, samples: np.ndarray, progress: bool = False,
                   percentile: float = 100.0) -> dict[str, tuple[float, float]]:
    """(lower, upper) percentile of every activation; 100 gives min/max."""
    tails = observe_tails(graph, samples, percentile, progress)
    return {name: t.range() for name, t in tails.items()}


def assign_qparams(graph: Graph, choose: Callable[[str], QParams]) -> QGraph:
    """QParams for every activation: views keep their input's, Softmax output is fixed,
    every other tensor (graph inputs included) gets `choose(name)`."""
    qp: dict[str, QParams] = {name: choose(name) for name in graph.inputs}
    for node in graph.nodes:
        for out in node.outputs:
            if node.op in PASS_THROUGH:
                qp[out] = qp[node.inputs[0]]
            elif node.op == "Softmax":
                qp[out] = SOFTMAX_OUT
            else:
                qp[out] = choose(out)
    return QGraph(graph, qp)


def calibrate(graph: Graph, samples: np.ndarray, progress: bool = False,
              method: str = DEFAULT_METHOD, percentile: float = DEFAULT_PERCENTILE,
              clip_input: bool = False) -> QGraph:
    """Observe ranges by `method`, then QParams (range always holding 0) for every
    tensor; the graph input keeps its min/max unless `clip_input` (see module doc)."""
    check_method(method, percentile)
    tails = observe_tails(graph, samples, percentile if method == "percentile" else 100.0,
                          progress)
    keep = set() if clip_input else set(graph.inputs)

    def choose(name: str) -> QParams:
        t = tails[name]
        return QParams.from_range(*(t.extremes() if name in keep else t.range()))

    return assign_qparams(graph, choose)
