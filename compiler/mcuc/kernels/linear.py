"""linear reference (token-wise x @ W.T + b) and the helpers that build its constants.

The accumulator is exact (int64) and saturated to int32 before requantization, as the
C kernel does; conv2d reuses the helpers since its weights are also per-channel.

The C kernel has an ARMv7E-M variant (MCUC_ARM_DSP: SMLAD on SXTB16-unpacked pairs) that
sums in int32: |x - x_zp| <= 255 and |w| <= 128 bound every partial sum by 255 * 128 * k,
which fits int32 up to DSP_MAX_K; above it the variant runs the exact int64 loop.

The compiler prepares the operands for that loop (issue 23, item 2):
- `pack_weights`: the C kernels read W interleaved four output channels at a time, so
  the inner loop walks one pointer through contiguous words (same bytes, same size).
- `fold_zero_point`: sum (x - zp) w + b == sum x w + (b - zp * sum w) exactly, so lowering
  moves the input zero point into an existing bias where the folded bias fits int32; the loop
  then skips the per-pair subtraction. The reference computes the same integers either
  way (int64 sum, one int32 saturation), so the fold cannot change a result.
"""

from __future__ import annotations

import numpy as np

from mcuc.kernels.fixedpoint import (
    clamp_s8,
    quantize_multipliers,
    requantize,
    sat32,
)
from mcuc.kernels.registry import Field, KernelDef, register
from mcuc.quant.qparams import quantize_bias  # noqa: F401  (one definition; re-exported)

# Largest k whose sum of (x - x_zp) * w provably fits int32 (MCUC_DSP_MAX_K, linear_internal.h).
DSP_MAX_K = (2**31 - 1) // (255 * 128)


def weights_of(p: dict) -> np.ndarray:
    """W [n][k] (plain order) of either storage: int8 `weights`, or `weights16` after
    `widen` (--optimize speed; the same values as int16)."""
    w = p.get("weights")
    return np.asarray(w if w is not None else p["weights16"])


def ref(p: dict, x: np.ndarray) -> np.ndarray:
    rows, k, n = p["rows"], p["k"], p["n"]
    xs = x.astype(np.int64).reshape(rows, k) - p["x_zp"]
    w = weights_of(p).astype(np.int64).reshape(n, k)
    acc = xs @ w.T
    if p.get("bias") is not None:
        acc = acc + p["bias"].astype(np.int64)
    y = p["y_zp"] + requantize(sat32(acc), p["mult"], p["shift"])
    return clamp_s8(y).reshape(-1)


def pack_weights(w: np.ndarray, n: int, k: int) -> np.ndarray:
    """W [n][k] in the order linear.c reads it: for each block of four output channels
    j..j+3 (j < n4 = n - n % 4), the words w[j+c][i:i+4] for c = 0..3 at each i = 0, 4,
    .. < k4 = k - k % 4, then the bytes w[j+c][i] for c = 0..3 at each tail i >= k4;
    channels past n4 stay plain rows. Block j starts at byte j * k, as a plain row does."""
    w = np.asarray(w).reshape(n, k)
    n4, k4 = n - n % 4, k - k % 4
    blocks = w[:n4].reshape(n4 // 4, 4, k)
    body = blocks[:, :, :k4].reshape(n4 // 4, 4, k4 // 4, 4).transpose(0, 2, 1, 3)
    tail = blocks[:, :, k4:].transpose(0, 2, 1)
    nb = n4 // 4
    packed = np.concatenate([body.reshape(nb, 4 * k4), tail.reshape(nb, 4 * (k - k4))], axis=1)
    return np.concatenate([packed.reshape(-1), w[n4:].reshape(-1)])


def widen_layout(w: np.ndarray, n: int, k: int) -> np.ndarray:
    """W [n][k] as int16 in linear.c's widened order: pack_weights' positions, and within
    each four-weight word (block words and the k4 part of plain rows) the order 0, 2, 1, 3,
    so that one 8-byte load gives the lane pairs (w0, w2) and (w1, w3) that SXTB16 makes
    of the input."""
    packed = pack_weights(np.asarray(w).astype(np.int16), n, k)
    n4, k4 = n - n % 4, k - k % 4
    words = np.zeros(packed.size, dtype=bool)  # positions that are part of a word
    for j in range(0, n4, 4):
        words[j * k: j * k + 4 * k4] = True
    for j in range(n4, n):
        words[j * k: j * k + k4] = True
    idx = np.arange(packed.size)
    starts = idx[words][::4]
    perm = np.concatenate([starts, starts + 2, starts + 1, starts + 3])
    dest = np.concatenate([starts, starts + 1, starts + 2, starts + 3])
    out = packed.copy()
    out[dest] = packed[perm]
    return out


def widen(p: dict) -> dict:
    """p with its weights stored as int16 (`weights16`): twice the flash for the
    weights, and an inner loop without the SXTB16 unpacking of the weights (linear.c)."""
    if p.get("weights") is None:
        return p
    return {**p, "weights": None, "weights16": np.asarray(p["weights"]).astype(np.int16)}


def fold_zero_point(p: dict) -> dict:
    """p with x_zp moved into the bias (x_zp = 0), when it has a bias and every folded
    bias fits int32; else p unchanged. Exact: the reference's int64 sum is the same
    integer. A layer without a bias keeps its zero point: a new bias array would make
    flash depend on calibration, which the search's cost model cannot see."""
    if p["x_zp"] == 0 or p.get("bias") is None:
        return p
    w = weights_of(p).astype(np.int64).reshape(p["n"], p["k"])
    folded = p["bias"].astype(np.int64) - int(p["x_zp"]) * w.sum(axis=1)
    if folded.min() < -(2**31) or folded.max() > 2**31 - 1:
        return p
    return {**p, "x_zp": 0, "bias": folded.astype(np.int32)}


def requant_words(p: dict) -> np.ndarray:
    """bias, mult and shift as linear.c reads them (`rq`): for each pair of output channels
    (j, j + 1), j even, the six words bias_j, bias_j+1, m2_j, m2_j+1, t_j, t_j+1 (a missing
    bias is 0, which adds nothing; an odd n's last pair is padded with zeros). Why one
    pointer: the epilogue of a block of channels then reads its constants with three 8-byte
    loads per pair, not from three arrays that stay live, and spill, around the inner loop;
    the flash is the same three words per channel. Why m2 = 2 mult mod 2^32 and t = ~shift
    (low byte) with mult's sign bit in bit 31: the short epilogue's SMMLAR takes m2 and its
    shift takes t as stored (linear.c short_out), and both decode losslessly for the others
    (linear.c rq_mult, rq_shift). Raises ValueError for a shift outside [-128, 127]."""
    n = p["n"]
    bias = p.get("bias")
    mult = np.asarray(p["mult"], np.int64).reshape(-1)
    shift = np.asarray(p["shift"], np.int64).reshape(-1)
    if shift.size and (shift.min() < -128 or shift.max() > 127):
        raise ValueError("linear: a requantization shift outside [-128, 127]")
    m2 = (2 * mult) & 0xFFFFFFFF
    t = (~shift & 0xFF) | (mult & 0x80000000)
    cols = [np.zeros(n, np.int64) if bias is None else np.asarray(bias, np.int64), m2, t]
    pairs = (n + 1) // 2
    out = np.zeros((pairs, 3, 2), np.int64)
    for f, col in enumerate(cols):
        padded = np.zeros(2 * pairs, np.int64)
        padded[:n] = col.reshape(-1)
        out[:, f, :] = padded.reshape(pairs, 2)
    return out.reshape(-1).astype(np.uint32).view(np.int32)


def short_epilogue_ok(bias, mult, shift, k: int) -> bool:
    """linear.c short_epilogue_ok on the spec's params (the C struct's short_ok): every
    multiplier in [2^30, 2^31), every shift in [-31, -1] and 255 * 128 * k + max |bias|
    < 2^30. Computed here once per layer so that the firmware does not loop over the
    channels per call; tests/test_linear_short_ok.py checks it against the C."""
    m, s = np.asarray(mult, np.int64), np.asarray(shift, np.int64)
    if m.size and (m.min() < 2**30 or s.max() > -1 or s.min() < -31):
        return False
    b = None if bias is None else np.asarray(bias, np.int64)
    bias_max = int(np.abs(b).max()) if b is not None and b.size else 0
    return 255 * 128 * k + bias_max < 2**30


def derived(p: dict) -> dict:
    """The C struct's fields computed from the spec's params: rq and short_ok."""
    ok = short_epilogue_ok(p.get("bias"), p["mult"], p["shift"], p["k"])
    return {"rq": requant_words(p), "short_ok": int(ok)}


def make_requant(s_x: float, s_w: np.ndarray, s_y: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-output-channel (mult, shift) for real multiplier s_x * s_w[c] / s_y."""
    return quantize_multipliers(s_x * np.asarray(s_w, dtype=np.float64) / s_y)


KERNEL = register(
    KernelDef(
        name="linear",
        c_func="mcuc_linear_s8",
        c_params_type="mcuc_linear_params_t",
        fields=(
            *(Field(n, "int32") for n in ("rows", "k", "n", "x_zp", "y_zp")),
            Field("weights", "int8[]", nullable=True,
                  layout=lambda p, w: pack_weights(w, p["n"], p["k"])),
            Field("weights16", "int16[]", nullable=True,
                  layout=lambda p, w: widen_layout(w, p["n"], p["k"])),
            Field("rq", "int32[]"),
            Field("short_ok", "int32"),
        ),
        n_inputs=1,
        ref=ref,
        derived=derived,
        spec_only=(("bias", True), ("mult", False), ("shift", False)),
        macs=lambda p: p["rows"] * p["k"] * p["n"],
        variants=("MCUC_ARM_DSP",),
    )
)
