"""Patch-decomp on 3-channel images (issue 23, item 5).

Why: the tokens are written over image rows already read (schedule/patch.py), but their
shared parent used to be planned as one block held as long as the tokens, so a CHW
image's bytes stayed taken through the class-token concat or the whole encoder and the
overlap never paid: a 3x128x96 ViT (patch 16, dim 128) planned image + tokens = 43,008
B. Now the bytes above the tokens die with the image (a tail, Buffer.above), so the
peak is the image plus one token band, the firmware must still equal the reference bit
for bit, and streaming the input must still need less.
"""

from __future__ import annotations

import numpy as np
import pytest

from mcuc import memory
from mcuc.pipeline import Compiled, compile_graph, load_graph
from mcuc.schedule import execute
from mcuc.schedule.patch import image_offset, overlapped
from mcuc.schedule.stream import stream_input
from mcuc.sim.host import build_host, run_host
from mcuc.target.unicorn import run_unicorn, unicorn_available
from test_qemu import build_firmware, quantize, reference

from helpers import patch_vit, write_c

HW, PATCH, DIM = (128, 96), 16, 128
IMAGE = 3 * HW[0] * HW[1]                      # 36,864 B
TOKEN_BAND = HW[1] // PATCH * DIM              # 768 B: one row of patches' tokens
TOKENS = HW[0] // PATCH * HW[1] // PATCH * DIM  # 6,144 B


@pytest.fixture(scope="module", params=["mean", "cls"])
def vit(request) -> tuple[Compiled, np.ndarray, str]:
    """The issue's model with one encoder block, compiled with every technique."""
    model = patch_vit(3, HW, (PATCH, PATCH), DIM, 4, request.param, "mcuc", 1.0, 23)
    g = load_graph(model, (1, 3) + HW)
    xs = np.random.default_rng(23).random((11, 3) + HW, dtype=np.float32)
    return compile_graph(g, xs[:8]), xs[8:], request.param


def test_arena_is_the_image_plus_one_token_band(vit) -> None:
    c, xs, _ = vit
    s = c.schedule
    (i,) = overlapped(s)
    assert image_offset(s.steps[i].params) == TOKEN_BAND  # Bo <= Bx: a is one band
    assert c.plan.arena_bytes <= IMAGE + TOKEN_BAND < IMAGE + TOKENS
    bufs = s.liveness()
    memory.validate(bufs, c.plan)
    # The image's bytes above the tokens are a tail that dies at the patch step (time
    # i + 1), though the tokens live on.
    tail = next(b for b in bufs if b.above is not None)
    base = next(b for b in bufs if b.name == tail.above)
    assert tail.last == i + 1 < base.last and base.size == TOKENS
    # The planned reference (one arena, tokens over the image) equals the unplanned one.
    for x in xs:
        x_q = execute.quantize_input(s, x[None])
        np.testing.assert_array_equal(execute.run(s, x_q, c.plan), execute.run(s, x_q))
    # Streaming the image band by band still needs less.
    st = stream_input(s)
    st_bufs = st.liveness()
    st_plan = memory.plan(st_bufs)
    memory.validate(st_bufs, st_plan)
    assert st_plan.arena_bytes < c.plan.arena_bytes


def test_host_c_equals_reference(vit, tmp_path) -> None:
    c, xs, _ = vit
    write_c(c, tmp_path)
    exe = build_host(tmp_path, sanitize=True)
    outs = set()
    for x in xs:
        x_q = execute.quantize_input(c.schedule, x[None])
        got = run_host(exe, x_q)
        np.testing.assert_array_equal(got, execute.run(c.schedule, x_q, c.plan))
        outs.add(got.tobytes())
    assert len(outs) > 1


@pytest.mark.skipif(not unicorn_available(), reason="mcuc.sim.unicorn_m7 not available")
@pytest.mark.parametrize("vit", ["cls"], indirect=True)  # one model on the slow path
def test_f746_firmware_equals_reference(vit, tmp_path) -> None:
    c, xs, _ = vit
    xq = quantize(c, xs[:2])
    build_firmware(c, "stm32f746", tmp_path, np.zeros_like(xq))
    res = run_unicorn(tmp_path / "firmware.elf", xq)   # patched over model_samples
    ref = reference(c, xq)
    assert len(res["outputs"]) == 2
    for g, r in zip(res["outputs"], ref, strict=True):
        np.testing.assert_array_equal(g, r)
