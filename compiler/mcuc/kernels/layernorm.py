"""layernorm reference: integer-only LayerNorm over each row.

Working on d_i = cols * x_i - sum (cols times the centred value) keeps the mean exact,
and the input scale and zero point cancel out except inside eps_q; the only
irrational step is an exact floor square root. Fully vectorised over rows.

The C kernel has an ARMv7E-M variant (MCUC_ARM_DSP: SMLAD statistics, per-row constants
with SMLAWB/SMLAWT and SMMLA, or SMMUL/SMMLA, instead of the int64 division, the exact
formula for the rare element near a rounding boundary) that must equal this reference bit
for bit. Its fastest loop reads gamma and beta from `fast` (fast_table: the same
constants, scaled and ordered for that loop); ref ignores that field.
"""

from __future__ import annotations

import numpy as np

from mcuc.kernels.fixedpoint import INT32_MAX, RequantError, clamp_s8, round_half_away
from mcuc.kernels.registry import Field, KernelDef, register

FRAC = 16  # gamma_q / beta_q fixed-point fraction bits


def isqrt(v: np.ndarray) -> np.ndarray:
    """Exact floor(sqrt(v)) for int64 0 <= v < 2^62 (float guess, then integer fix-up)."""
    v = np.asarray(v, dtype=np.int64)
    s = np.floor(np.sqrt(v.astype(np.float64))).astype(np.int64)
    for _ in range(2):  # the float guess is off by at most one; fix both ways
        s = np.where(s * s > v, s - 1, s)
        s = np.where((s + 1) * (s + 1) <= v, s + 1, s)
    return s


def ref(p: dict, x: np.ndarray) -> np.ndarray:
    rows, cols = p["rows"], p["cols"]
    if rows * cols == 0:
        return np.zeros(0, dtype=np.int8)
    if p["eps_q"] < 0:
        raise ValueError("layernorm eps_q must be >= 0")
    xv = x[: rows * cols].astype(np.int64).reshape(rows, cols)
    d = cols * xv - xv.sum(axis=1, keepdims=True)
    var = (d * d).sum(axis=1, keepdims=True) // cols + p["eps_q"]  # >= 0: floor == trunc
    if var.max() >= 2**62:
        raise ValueError("layernorm variance overflows (cols too large or eps_q too big)")
    sigma = np.maximum(isqrt(var), 1)
    gamma = np.asarray(p["gamma_q"], dtype=np.int64)[:cols]
    beta = np.asarray(p["beta_q"], dtype=np.int64)[:cols]
    num = d * gamma + beta * sigma
    den = sigma << FRAC
    q = np.sign(num) * ((np.abs(num) + den // 2) // den)  # den is even: exact halves
    return clamp_s8(p["y_zp"] + q).reshape(-1)


def make_params(
    gamma: np.ndarray, beta: np.ndarray, eps: float, cols: int, s_x: float, s_y: float
) -> tuple[np.ndarray, np.ndarray, int]:
    """(gamma_q int32[cols], beta_q int32[cols], eps_q) as the header defines them."""
    gq = round_half_away(np.asarray(gamma, dtype=np.float64) / s_y * (1 << FRAC))
    bq = round_half_away(np.asarray(beta, dtype=np.float64) / s_y * (1 << FRAC))
    if not (np.isfinite(gq).all() and np.isfinite(bq).all()) or \
            max(np.abs(gq).max(initial=0), np.abs(bq).max(initial=0)) > INT32_MAX:
        raise RequantError("layernorm gamma/beta too large for the output scale")
    eps_q = round_half_away(eps * cols * cols / (s_x * s_x))
    if not (np.isfinite(eps_q) and 0 <= eps_q < 2**62):
        raise RequantError(f"layernorm epsilon {eps:.3g} is out of range for the input scale")
    eps_q = int(eps_q)
    return gq.astype(np.int32), bq.astype(np.int32), eps_q


FAST_GAMMA_LIMIT = 1 << 25  # |gamma_q| below it: 64 gamma_q fits int32
FAST_BETA_LIMIT = 1 << 30   # |beta_q| up to it, |y_zp| up to 4096: the loop's t fits int32
FAST_ZP_LIMIT = 4096


def fast_table(gamma_q: np.ndarray, beta_q: np.ndarray, y_zp: int) -> np.ndarray | None:
    """The `fast` field (kernels.h): gamma_q and beta_q as the ARMv7E-M variant's loop
    reads them, or None where its bounds fail (the variant then uses gamma_q / beta_q).

    Why: that loop computes t = floor(A g / 2^32) + c in units of 2^-16 of an output step
    with one SMMLA, so g = 64 gamma_q and c = beta_q + 2^15 (the rounding half) +
    2^16 (y_zp + 128) (the zero point, and the bias that makes USAT16 clamp to int8) are
    constants of the layer; pairs (g, c) in groups of four elements ordered 0, 2, 1, 3
    (the order in which the loop takes them from the byte lanes of one word), the last
    cols mod 4 in order."""
    g = np.asarray(gamma_q, dtype=np.int64).reshape(-1)
    b = np.asarray(beta_q, dtype=np.int64).reshape(-1)
    if g.size != b.size or g.size == 0 or abs(int(y_zp)) > FAST_ZP_LIMIT or \
            np.abs(g).max() >= FAST_GAMMA_LIMIT or np.abs(b).max() > FAST_BETA_LIMIT:
        return None
    pairs = np.stack([g * 64, b + (1 << 15) + (int(y_zp) + 128) * (1 << 16)], axis=1)
    n4 = g.size // 4 * 4
    order = np.concatenate([(np.arange(n4).reshape(-1, 4)[:, [0, 2, 1, 3]]).reshape(-1),
                            np.arange(n4, g.size)]).astype(np.int64)
    return pairs[order].reshape(-1).astype(np.int32)


# The struct members both LayerNorm kernels share (layernorm16 has these alone).
PARAM_FIELDS = (
    Field("rows", "int32"),
    Field("cols", "int32"),
    Field("y_zp", "int32"),
    Field("eps_q", "int64"),
    Field("gamma_q", "int32[]"),
    Field("beta_q", "int32[]"),
)

KERNEL = register(
    KernelDef(
        name="layernorm",
        c_func="mcuc_layernorm_s8",
        c_params_type="mcuc_layernorm_params_t",
        fields=(
            *PARAM_FIELDS,
            Field("fast", "int32[]", nullable=True),  # fast_table(); not read by ref
        ),
        n_inputs=1,
        ref=ref,
        inplace_ok=True,
        variants=("MCUC_ARM_DSP",),  # SMLAD statistics, SMMUL/SMMLA normalization
        macs=lambda p: 0,  # only GEMM-like kernels count MACs
    )
)
