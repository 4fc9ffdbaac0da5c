"""attention reference: matmul -> softmax -> matmul fused, one score row at a time.

Why: the unfused chain materializes a [batch, q_len, kv_len] score matrix, which with
the Q/K/V copies dominates a ViT's peak memory. The fused kernel needs one int8 row of
scores (kv_len bytes of scratch) and reads q, k and v through strided views, so the
transposes and head slices that feed attention (and the transpose of its output) need
not be copied at all.

Semantics (bit-identical to matmul -> softmax_s8 -> matmul with the same params):
  qv = q_table[q + 128] if q_table else q (same for k with k_table, v with v_table)
  s[b,i,j] = clamp(s_zp + requantize(sat32(sum_d (qv[b,i,d] - q_zp)(kv[b,j,d] - k_zp)),
                                     s_mult, s_shift))
  p[b,i,:] = softmax_s8(s[b,i,:], exp_table)            (zero point -128)
  y[b,i,c] = clamp(o_zp + requantize(sat32(sum_j (p[b,i,j] + 128)(vv[b,j,c] - v_zp)),
                                     o_mult, o_shift))
Operand X[b,r,c] lives at X_off + b * X_bs + r * X_rs + c * X_cs (element units), y too.
The optional int8 tables let an elementwise op on an operand (a rescale, a LUT) be
absorbed into the read, which the head-split pass needs for exporters that scale q and
k separately.

The C kernel has an ARMv7E-M variant (MCUC_ARM_DSP: SMLAD on SXTB16/UXTB16 pairs) for
unit column strides without tables, d <= ATT_DSP_MAX_D and kv_len <= ATT_DSP_MAX_LEN; it
sums in int32 with the k and v zero points folded out: every factor is at most 255 in
magnitude, so every partial sum over n terms is at most 255 * 255 * n, which stays below
2^30 up to ATT_DSP_MAX_LEN (the margin lets the requantization round in int32). Other
operands, and s_shift outside [-22, -1], take the exact reference loop. QK^T runs two
query rows per pass (a 2 x 2 SMLAD block) where kv_len <= 256 (the second score row is a
stack buffer: the arena's scratch stays one row), else each row as both; P.V runs the
same block against V^T of the head (a stack buffer) where also dv * kv_len (rounded up
to 4) <= 2048 and o_shift lies in [-22, -1], else one row at a time.
"""

from __future__ import annotations

import numpy as np

from mcuc.kernels import matmul, softmax
from mcuc.kernels.fixedpoint import clamp_s8, requantize
from mcuc.kernels.registry import Field, KernelDef, register

P_ZP = -128  # softmax_s8's output zero point

# The int32 bound of the ARMv7E-M variant (MCUC_ATT_DSP_MAX_LEN, attention_internal.h): the
# largest d and kv_len for which 255 * 255 * n < 2^30; and its q-row buffer's size.
ATT_DSP_MAX_LEN = (2**30 - 1) // (255 * 255)
ATT_DSP_MAX_D = 128
assert 255 * 255 * ATT_DSP_MAX_LEN < 2**30 and ATT_DSP_MAX_D <= ATT_DSP_MAX_LEN

VIEWS = ("q", "k", "v", "o")
SHAPE_FIELDS = ("batch", "q_len", "kv_len", "d", "dv")
VIEW_FIELDS = tuple(f"{x}_{s}" for x in VIEWS for s in ("off", "bs", "rs", "cs"))
QUANT_FIELDS = ("q_zp", "k_zp", "s_zp", "s_mult", "s_shift", "v_zp", "o_zp", "o_mult",
                "o_shift")
TABLES = ("q_table", "k_table", "v_table")


def view_shape(p: dict, x: str) -> tuple[int, int, int]:
    """(batch, rows, cols) of view `x` in ("q", "k", "v", "o")."""
    rows = {"q": p["q_len"], "k": p["kv_len"], "v": p["kv_len"], "o": p["q_len"]}[x]
    cols = {"q": p["d"], "k": p["d"], "v": p["dv"], "o": p["dv"]}[x]
    return p["batch"], rows, cols


def view_index(p: dict, x: str) -> np.ndarray:
    """Element index of every [b, r, c] of view `x`, as a [batch, rows, cols] int64 array."""
    b, r, c = view_shape(p, x)
    return (p[f"{x}_off"]
            + np.arange(b, dtype=np.int64)[:, None, None] * p[f"{x}_bs"]
            + np.arange(r, dtype=np.int64)[None, :, None] * p[f"{x}_rs"]
            + np.arange(c, dtype=np.int64)[None, None, :] * p[f"{x}_cs"])


def _read(p: dict, x: str, buf: np.ndarray) -> np.ndarray:
    v = np.asarray(buf).reshape(-1)[view_index(p, x)]
    table = p.get(f"{x}_table")
    if table is not None:
        v = np.asarray(table, dtype=np.int8)[v.astype(np.int64) + 128]
    return v.astype(np.int8)


def ref(p: dict, q: np.ndarray, k: np.ndarray, v: np.ndarray, *,
        out: np.ndarray | None = None) -> np.ndarray:
    """The unfused chain, vectorised, reusing the matmul and softmax references.

    Like copy, the output is written through a view: `out` (if given) is updated in
    place; without it a zero buffer just large enough for the written indices is returned.
    """
    bt, m, n, d, dv = (p[f] for f in SHAPE_FIELDS)
    qv = _read(p, "q", q)
    kt = np.ascontiguousarray(_read(p, "k", k).transpose(0, 2, 1))  # [b, d, kv]
    vv = _read(p, "v", v)
    s = matmul.ref({"batch": bt, "m": m, "k": d, "n": n, "a_zp": p["q_zp"],
                    "b_zp": p["k_zp"], "y_zp": p["s_zp"], "mult": p["s_mult"],
                    "shift": p["s_shift"]}, qv.reshape(-1), kt.reshape(-1))
    probs = softmax.ref({"rows": bt * m, "cols": n, "exp_table": p["exp_table"]}, s)
    y = matmul.ref({"batch": bt, "m": m, "k": n, "n": dv, "a_zp": P_ZP, "b_zp": p["v_zp"],
                    "y_zp": p["o_zp"], "mult": p["o_mult"], "shift": p["o_shift"]},
                   probs, vv.reshape(-1))
    dst = view_index(p, "o").reshape(-1)
    if out is None:
        out = np.zeros(int(dst.max(initial=-1)) + 1, dtype=np.int8)
    out[dst] = y
    return out


def table_of(step_kernel: str, params: dict) -> np.ndarray | None:
    """The 256-entry int8 table of an elementwise step (rescale or lut), else None."""
    x = np.arange(-128, 128, dtype=np.int64)
    if step_kernel == "lut":
        return np.asarray(params["table"], dtype=np.int8).copy()
    if step_kernel == "rescale":
        r = requantize(x - params["x_zp"], params["mult"], params["shift"])
        return clamp_s8(params["y_zp"] + r)
    return None


KERNEL = register(
    KernelDef(
        name="attention",
        c_func="mcuc_attention_s8",
        c_params_type="mcuc_attention_params_t",
        fields=(
            *(Field(n, "int32") for n in SHAPE_FIELDS + VIEW_FIELDS + QUANT_FIELDS),
            Field("exp_table", "uint32[]"),
            *(Field(n, "int8[]", nullable=True) for n in TABLES),
        ),
        n_inputs=3,
        ref=ref,
        writes_through=True,
        macs=lambda p: p["batch"] * p["q_len"] * p["kv_len"] * (p["d"] + p["dv"]),
        scratch=lambda p: p["kv_len"],
        variants=("MCUC_ARM_DSP",),
    )
)
