"""`--optimize speed`: the linear layers' weights stored as int16 (kernels/linear.py `widen`).

Why: on ARMv7E-M the int8 inner loop spends two SXTB16 per weight word unpacking what
the compiler could have unpacked once; widened weights take one 8-byte load instead
(linear.c: 27 -> 17 instructions per 16 MACs in the single-row loop). The price is flash:
each linear weight takes two bytes. The arena, the results and the numpy reference are
unchanged; `Schedule.weights_bytes()` counts the wider arrays, so the fit check sees them.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from mcuc import McucError
from mcuc.kernels import add as k_add
from mcuc.kernels import layernorm as k_layernorm
from mcuc.kernels import linear as k_linear
from mcuc.kernels import patch_embed as k_patch
from mcuc.schedule.schedule import Schedule
from mcuc.text import one_line

OPTIMIZE = ("size", "speed")  # `mcuc build --optimize`; size is the default


def check_optimize(optimize: str) -> None:
    """One line for a value outside OPTIMIZE (checked before any work is done)."""
    if optimize not in OPTIMIZE:
        raise McucError(f"optimize must be one of {', '.join(OPTIMIZE)}, not "
                        f"{one_line(str(optimize))}")


def widen_params(kernel: str, p: dict) -> dict:
    """A step's params with its linear weights widened (other kernels unchanged)."""
    if kernel == "linear":
        return k_linear.widen(p)
    if kernel == "tokenwise":
        for stage in ("l1", "l2"):
            if p.get(stage) is not None and p[stage].get("weights") is not None:
                p = {**p, stage: k_linear.widen(p[stage])}
    return p


def widen_weights(s: Schedule) -> Schedule:
    """Every linear and token-wise step with int16 weights; returns a new Schedule."""
    steps = []
    for st in s.steps:
        p = widen_params(st.kernel, st.params)
        steps.append(st if p is st.params else replace(st, params=p))
    return replace(s, steps=steps)


def widen_patch_embed(s: Schedule) -> Schedule:
    """Every patch_embed step that the ARMv7E-M variant's widened loop takes, with its
    weights as int16 and its epilogue's words (kernels/patch_embed.py `widen`); for boards
    with the variant (their default build: +2 KB of flash on the default model, the arena
    unchanged). Returns s itself when no step changes."""
    steps, changed = [], False
    for st in s.steps:
        p = k_patch.widen(st.params) if st.kernel == "patch_embed" else st.params
        changed |= p is not st.params
        steps.append(st if p is st.params else replace(st, params=p))
    return replace(s, steps=steps) if changed else s


# The most flash widen_heads spends on one layer: its n * k extra bytes (the default
# model's head: 640 B). A ViT's classifier head is a few KB at most; a larger one-row
# linear keeps its int8 weights (the row-pair plans serve it, at about 2.8 instructions
# per MAC instead of 1.2).
HEAD_WIDEN_MAX_BYTES = 4096


def _head(p: dict) -> dict:
    """A one-row linear's params for linear_row1.c: weights as int16 (if not yet), and an
    input zero point that lowering kept (a layer without a bias: linear.py
    fold_zero_point) folded into a bias of zeros. That costs no flash: the rq words hold
    a bias per channel either way (zeros without one); the fold is exact, and refused
    where a folded bias would leave int32."""
    if p["x_zp"] != 0 and p.get("bias") is None:
        folded = k_linear.fold_zero_point({**p, "bias": np.zeros(p["n"], np.int32)})
        p = folded if folded["x_zp"] == 0 else p
    return k_linear.widen(p)


def widen_heads(s: Schedule) -> Schedule:
    """Every linear step of one row (a classifier head) with its weights as int16 when the
    extra flash (n * k bytes) is at most HEAD_WIDEN_MAX_BYTES, its zero point folded
    (_head): linear_row1.c's loop then serves it without unpacking the weights (SXTB16
    alone would cost 0.5 instructions per MAC); for boards with the ARMv7E-M variant.
    Returns s itself when no step changes."""
    steps, changed = [], False
    for st in s.steps:
        p = st.params
        if st.kernel == "linear" and p["rows"] == 1 and (
                p.get("weights16") is not None  # --optimize speed widened it already
                or p["n"] * p["k"] <= HEAD_WIDEN_MAX_BYTES):
            p = _head(p)
        changed |= p is not st.params
        steps.append(st if p is st.params else replace(st, params=p))
    return replace(s, steps=steps) if changed else s


def _ln_fast(p: dict) -> dict:
    """LayerNorm params with the ARMv7E-M loop's table (kernels/layernorm.py fast_table)."""
    return {**p, "fast": k_layernorm.fast_table(p["gamma_q"], p["beta_q"], p["y_zp"])}


def layernorm_tables(s: Schedule) -> Schedule:
    """Every int8 LayerNorm (alone or as a token-wise step's first stage) with the table the
    ARMv7E-M variant's four-elements-a-step loop reads; for boards with the variant only,
    since the portable loop never reads it (6.6 KB of flash on the default model)."""
    steps = []
    for st in s.steps:
        p = st.params
        if st.kernel == "layernorm":
            p = _ln_fast(p)
        elif st.kernel == "tokenwise" and p.get("ln") is not None and not p.get("x_wide"):
            p = {**p, "ln": _ln_fast(p["ln"])}
        steps.append(st if p is st.params else replace(st, params=p))
    return replace(s, steps=steps)


def add_tables(s: Schedule) -> Schedule:
    """Every add (alone or as a token-wise step's residual stage) with the 1 KB tables (one,
    or two where neither input is at multiplier 1/2) of the ARMv7E-M variant's add_tab
    loop where it can take them (kernels/add.py `tables`; 13 KB of flash on the default
    model); for boards with the variant only, since the portable loop never reads them."""
    steps = []
    for st in s.steps:
        p = st.params
        if st.kernel == "add":
            p = k_add.with_tables(p)
        elif st.kernel == "tokenwise" and p.get("add") is not None:
            p = {**p, "add": k_add.with_tables(p["add"])}
        steps.append(st if p is st.params else replace(st, params=p))
    return replace(s, steps=steps)


def for_board(s: Schedule, dsp: bool, optimize: str = "size") -> Schedule:
    """The constants the build prepares for its kernels, in one place for the compiler and
    the search's cost model (so the flash the search predicts is the build's): `--optimize
    speed`'s int16 linear weights; with the ARMv7E-M variants (Board.dsp) the widened patch
    embedding, a classifier head's int16 weights (widen_heads), LayerNorm's table and the
    adds' tables."""
    check_optimize(optimize)
    if optimize == "speed":
        s = widen_weights(s)
    if dsp:
        s = add_tables(layernorm_tables(widen_heads(widen_patch_embed(s))))
    return s
