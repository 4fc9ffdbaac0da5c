"""What `mcuc validate` reports, and how its error figures are computed."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    pass


@dataclass
class Errors:
    """Dequantized outputs against a baseline (flattened over inputs and outputs)."""
    rmse: float
    cosine: float
    rel_l2: float
    max_abs: float


@dataclass
class Row:
    """One model's figures; `note` says why a model could not be run (then no figures)."""
    name: str
    accuracy: float | None = None
    agreement: float | None = None         # top-1 agreement with the int8 reference
    vs_float: Errors | None = None
    vs_reference: Errors | None = None     # the target only
    note: str | None = None


@dataclass
class LayerRow:
    """One step of the int8 reference against the float interpreter (--per-layer)."""
    step: str
    op: str
    tensor: str
    cosine: float
    max_abs: float
    max_lsb: float


@dataclass
class Validation:
    """What `validate` returns (and `mcuc validate --json` prints)."""
    build: str
    board: str
    engine: str
    data: str
    images: int
    labelled: bool
    float_model: Row
    reference: Row
    target: Row
    mismatches: int                        # inputs where target != reference (any bit)
    first_mismatch: int | None
    per_launch: int = 1                    # inputs per run of the program / emulator
    seconds: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    per_layer: list[LayerRow] | None = None

    @property
    def bit_exact(self) -> bool:
        return self.mismatches == 0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["bit_exact"] = self.bit_exact
        return d


def errors(a: np.ndarray, base: np.ndarray) -> Errors:
    """a against base (see the module doc)."""
    a, base = np.asarray(a, np.float64).reshape(-1), np.asarray(base, np.float64).reshape(-1)
    d = a - base
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(base))
    cos = float(a @ base / (na * nb)) if na > 0 and nb > 0 else float(na == nb)
    rel = float(np.linalg.norm(d) / nb) if nb > 0 else (0.0 if not d.any() else math.inf)
    return Errors(float(np.sqrt(np.mean(d * d))), cos, rel, float(np.abs(d).max(initial=0.0)))


def top1(scores: np.ndarray) -> np.ndarray:
    return np.argmax(scores.reshape(len(scores), -1), axis=1)
