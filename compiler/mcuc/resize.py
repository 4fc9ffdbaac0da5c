"""Resizing images to a model's input resolution.

The architecture search may pick an input resolution other than the dataset's (the
search space's `resolution`); the supernet then resizes inside its forward pass with
torch's bilinear interpolation. Everything after the search (fine-tuning, held-out and
test accuracy, int8 calibration, the firmware's test images) must feed the chosen model
the *same* pixels, so this module is that one resize, in numpy (no torch on the build
path): bilinear with half-pixel centres and edge clamping, no antialiasing, which is
what `torch.nn.functional.interpolate(mode="bilinear", align_corners=False)` computes.
"""

from __future__ import annotations

import numpy as np

from mcuc import McucError


def _axis_weights(n_in: int, n_out: int) -> np.ndarray:
    """[n_out, n_in] matrix that resamples one axis: each output pixel mixes the two
    input pixels around its centre mapped back to input coordinates."""
    scale = n_in / n_out
    src = np.maximum((np.arange(n_out, dtype=np.float64) + 0.5) * scale - 0.5, 0.0)
    lo = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = src - lo
    w = np.zeros((n_out, n_in), dtype=np.float64)
    rows = np.arange(n_out)
    np.add.at(w, (rows, lo), 1.0 - frac)
    np.add.at(w, (rows, hi), frac)
    return w


def resize_images(x: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Images [N, C, H, W] resized to `size` (an int for square) as float32; the input
    itself (as float32) when it already has that size."""
    if x.ndim != 4:
        raise McucError(f"resize wants images shaped [N, C, H, W], not {list(x.shape)}")
    h, w = (size, size) if isinstance(size, int) else size
    if h < 1 or w < 1:
        raise McucError(f"cannot resize images to {h}x{w}")
    if x.shape[2:] == (h, w):
        return np.ascontiguousarray(x, dtype=np.float32)
    wy = _axis_weights(x.shape[2], h).astype(np.float32)
    wx = _axis_weights(x.shape[3], w).astype(np.float32)
    return np.ascontiguousarray(wy @ x.astype(np.float32) @ wx.T)
