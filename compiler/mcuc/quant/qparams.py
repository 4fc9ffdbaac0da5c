"""Quantization parameters: per-tensor affine activations, per-channel symmetric weights."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

QMIN, QMAX = -128, 127


def round_half_away(x: np.ndarray | float) -> np.ndarray:
    """Round halves away from zero: the rounding every compile-time constant uses."""
    x = np.asarray(x, dtype=np.float64)
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


@dataclass(frozen=True)
class QParams:
    """real = scale * (q - zero_point), q in [-128, 127]; with bits 16 (A16: the tensors
    `--int16` widens, quant/wide.py) q is int16, symmetric (zero point 0)."""

    scale: float
    zero_point: int
    bits: int = 8

    @staticmethod
    def from_range(lo: float, hi: float) -> QParams:
        lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
        if hi - lo < 1e-12:
            return QParams(1.0 / 256.0, 0)
        scale = (hi - lo) / (QMAX - QMIN)
        zp = int(round_half_away(QMIN - lo / scale))
        return QParams(scale, max(QMIN, min(QMAX, zp)))

    @staticmethod
    def symmetric16(lo: float, hi: float) -> QParams:
        """int16, zero point 0, the range's larger magnitude at 32767."""
        amax = max(abs(float(lo)), abs(float(hi)))
        return QParams(amax / 32767.0 if amax > 1e-12 else 1.0 / 32768.0, 0, 16)

    @property
    def wide(self) -> bool:
        return self.bits == 16

    def quantize(self, x: np.ndarray) -> np.ndarray:
        q = round_half_away(np.asarray(x, dtype=np.float64) / self.scale) + self.zero_point
        if self.wide:
            return np.clip(q, -32768, 32767).astype(np.int16)
        return np.clip(q, QMIN, QMAX).astype(np.int8)

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        return (np.asarray(q, dtype=np.float64) - self.zero_point) * self.scale

    def to_dict(self) -> dict:
        d = {"scale": self.scale, "zero_point": self.zero_point}
        return {**d, "bits": 16} if self.wide else d


# Softmax output is fixed, as in TFLM: [0, 1) in steps of 1/256.
SOFTMAX_OUT = QParams(1.0 / 256.0, -128)


def quantize_weights_per_channel(w: np.ndarray, floor: np.ndarray | None = None
                                 ) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 per output channel (axis 0); returns (int8 weights, float scales).
    `floor` (per channel) makes a scale at least that coarse (see quantize_weighted)."""
    flat = np.asarray(w, dtype=np.float64).reshape(w.shape[0], -1)
    amax = np.abs(flat).max(axis=1)
    scales = np.where(amax > 0, amax / 127.0, 1.0)
    if floor is not None:
        scales = np.where(floor > scales, floor, scales)
    q = np.clip(round_half_away(flat / scales[:, None]), -127, 127).astype(np.int8)
    return q.reshape(w.shape), scales


def quantize_weighted(w: np.ndarray, b: np.ndarray | None, s_x: float,
                      given: np.ndarray | None = None
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(int8 weights, their per-channel scales, int32 bias) for a kernel that accumulates
    bias + sum((x - zp) * w) in int32 and then requantizes.

    The bias lives at scale s_x * s_w[c]. When that is tiny -- a channel fed by a nearly
    constant input, such as a low-rank branch that training left almost dead, where s_x
    was 1.6e-8 -- b / (s_x * s_w) does not fit int32, and clipping it added a wrong
    constant to the residual stream (one such layer cost a searched ViT 1 point of int8
    accuracy). Such channels get a coarser weight scale, just large enough that the bias
    plus the largest possible sum of products (k x 255 x 127) fits int32 exactly; their
    weights matter little there, since the bias dominates them. Other channels keep their
    scale, so models without the problem compile bit for bit as before.

    `given` (per channel, from a QDQ model: quant/given.py) replaces the scales mcuc would
    choose; its weights may use -128, as the model's int8 grid does (so the sum of
    products is bounded by k x 255 x 128 there).
    """
    floor = None if b is None else bias_floor(w, b, s_x, 127 if given is None else 128)
    if given is None:
        q, s_w = quantize_weights_per_channel(
            w, floor=None if floor is None else floor * (1 + 1e-9))
    else:
        s_w = np.asarray(given, dtype=np.float64)
        if floor is not None:
            s_w = np.where(floor > s_w, floor * (1 + 1e-9), s_w)
        flat = np.asarray(w, dtype=np.float64).reshape(w.shape[0], -1)
        q = np.clip(round_half_away(flat / s_w[:, None]), QMIN, QMAX).astype(np.int8)
        q = q.reshape(w.shape)
    return q, s_w, quantize_bias(b, s_x, s_w)


def bias_floor(w: np.ndarray, b: np.ndarray, s_x: float, w_max: int = 127) -> np.ndarray:
    """The smallest weight scale per channel at which bias + sum of products fits int32
    (see quantize_weighted)."""
    k = int(np.prod(w.shape[1:]))
    room = float(2**31 - 1 - k * 255 * w_max)
    if room < 2**20:
        from mcuc import McucError

        raise McucError(f"{k} products per output overflow an int32 accumulator")
    return np.abs(np.asarray(b, dtype=np.float64)) / (s_x * room)


def quantize_bias(b: np.ndarray | None, s_x: float, s_w: np.ndarray) -> np.ndarray | None:
    """int32 bias at scale s_x * s_w[c], rounded half away from zero and saturated."""
    if b is None:
        return None
    q = round_half_away(np.asarray(b, dtype=np.float64) / (s_x * s_w))
    return np.clip(q, -(2**31), 2**31 - 1).astype(np.int32)


def prepare_input(x: np.ndarray, shape: tuple[int, ...], qp: QParams,
                  allow_nonfinite: bool = False) -> np.ndarray:
    """A user's input as flat int8: int8 arrays pass as they are, floats are quantized.
    NaN or infinite floats are refused unless `allow_nonfinite` (limits.check_input_values):
    quantizing NaN silently gave 0 and a confident class."""
    from mcuc import McucError
    from mcuc.limits import check_input_values

    x = np.asarray(x)
    shape = tuple(shape)
    if x.shape != shape and (1,) + tuple(x.shape) != shape:
        raise McucError(f"input has shape {tuple(x.shape)}; the model expects {shape}")
    if x.dtype == np.int8:
        return x.reshape(-1)
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise McucError(f"input dtype {x.dtype} is neither int8 nor a number type")
    x = check_input_values(x, allow_nonfinite)
    return qp.quantize(x.astype(np.float64)).reshape(-1)
