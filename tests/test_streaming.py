"""Streaming input (issue 4): the image arrives band by band through a callback.

Why these tests: the streamed C reads bands into a buffer the planner may pack anywhere,
so it must equal the reference bit for bit (reference fed the same bands), equal the
non-streaming build's output (same quantization), actually shrink the arena when the
image is the peak, and refuse models whose first layer is not a patch embedding.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from mcuc import McucError, memory
from mcuc.pipeline import Compiled, build, calibration_samples, compile_graph, load_graph
from mcuc.schedule import execute
from mcuc.schedule.stream import ERROR, stream_input
from mcuc.sim.host import build_host, run_host

from helpers import compile_random, random_config, random_inputs, write_c


def streamed(c: Compiled) -> Compiled:
    """The same calibrated, lowered model with streaming input, planned again."""
    s = stream_input(c.schedule)
    bufs = s.liveness()
    plan = memory.plan(bufs, "best")
    memory.validate(bufs, plan)
    return replace(c, schedule=s, plan=plan)


def _check(c: Compiled, xs: np.ndarray, tmp_path) -> None:
    sc = streamed(c)
    assert sc.schedule.stream and sc.schedule.steps[0].params["stream"] >= 2
    p = sc.schedule.steps[0].params
    band = sc.schedule.buffers[sc.schedule.input_buffer].size
    assert band == p["c_in"] * p["ph"] * p["w_in"] < int(np.prod(c.schedule.input_shape))
    write_c(sc, tmp_path / "s")
    write_c(c, tmp_path / "n")
    exe_s = build_host(tmp_path / "s", sanitize=True)
    exe_n = build_host(tmp_path / "n")
    distinct = set()
    for x in xs:
        x_q = execute.quantize_input(c.schedule, x[None])
        ref = execute.run(c.schedule, x_q, c.plan)
        ref_s = execute.run(sc.schedule, x_q, sc.plan)
        np.testing.assert_array_equal(ref_s, ref)
        np.testing.assert_array_equal(execute.run(sc.schedule, x_q), ref)
        got = run_host(exe_s, x_q)
        np.testing.assert_array_equal(got, ref_s)
        np.testing.assert_array_equal(run_host(exe_n, x_q), got)
        distinct.add(got.tobytes())
    assert len(distinct) > 1


def test_default_model_streaming_equals_reference(tmp_path) -> None:
    g = load_graph()
    x = calibration_samples(g, "fashion-mnist")
    c = compile_graph(g, x[:16])
    _check(c, x[16:20], tmp_path)


def _seeds(chans: int, n: int) -> list[int]:
    return [s for s in range(40) if random_config(s).in_chans == chans][:n]


@pytest.mark.parametrize("seed", _seeds(1, 2) + _seeds(3, 2))
def test_random_vit_streaming_equals_reference(seed: int, tmp_path) -> None:
    cfg, c = compile_random(seed)
    _check(c, random_inputs(cfg, 3, seed + 1000), tmp_path)


def test_library_build_streaming_host_runs(tmp_path) -> None:
    """`build(stream_input=True)` renders the streaming API and the host driver serves
    bands from the input file, so `mcuc run` works unchanged."""
    from mcuc.runner import run_built

    rep = build(out_dir=tmp_path / "s", stream_input=True)
    build(out_dir=tmp_path / "n")
    assert rep["stream_input"] is True
    h = (tmp_path / "s" / "model.h").read_text()
    for name in ("mcuc_read_band_fn", "MCUC_STREAM_BANDS", "MCUC_STREAM_BAND_SIZE",
                 "mcuc_run_streaming", "MCUC_ERR_INPUT"):
        assert name in h
    assert "mcuc_run_streaming" not in (tmp_path / "n" / "model.h").read_text()
    x = np.random.default_rng(3).random((1, 1, 28, 28), dtype=np.float32)
    a = run_built(tmp_path / "s", x, None)
    b = run_built(tmp_path / "n", x, None)
    np.testing.assert_array_equal(a.output, b.output)


def test_streaming_shrinks_arena() -> None:
    """3x96x96 patch 8 with a small width: the image is the peak, so streaming it wins
    (a stand-in for mcuformer-t, whose 172,800-byte image dominates the same way)."""
    from mcuc.models.vit import ViTConfig, build_vit

    cfg = ViTConfig(img_size=96, in_chans=3, patch=8, dim=24, depth=1, heads=1,
                    mlp_ratio=2)
    shape = (1, 3, 96, 96)
    g = load_graph(build_vit(cfg).eval(), shape)
    x = np.random.default_rng(0).random((2,) + shape[1:], dtype=np.float32)
    plain = compile_graph(g, x)
    stream = compile_graph(g, x, stream_input=True)
    assert stream.plan.arena_bytes < plain.plan.arena_bytes
    assert plain.plan.arena_bytes >= 3 * 96 * 96
    assert stream.plan.arena_bytes < 3 * 96 * 96


def test_streaming_needs_patch_embedding_first() -> None:
    g = load_graph()
    x = calibration_samples(g, "fashion-mnist")[:4]
    with pytest.raises(McucError, match="patch-embedding first layer"):
        compile_graph(g, x, disabled=("patch-decomp",), stream_input=True)


def test_cli_error_is_one_line(tmp_path, capsys) -> None:
    from mcuc.cli import main

    rc = main(["build", "--stream-input", "--disable", "patch-decomp", "--out",
               str(tmp_path / "m")])
    err = capsys.readouterr().err
    assert rc == 2
    assert err == f"mcuc: error: {ERROR}\n"


CALLBACK_DRIVER = r"""
#include <stdio.h>
#include <string.h>

#include "model.h"

static union {
    uint8_t bytes[MCUC_ARENA_SIZE];
    int64_t align;
} arena;
static int calls;

static int fail_at_2(int8_t *band, int32_t index, void *ctx)
{
    (void)ctx;
    if (index != calls) {
        return 1;
    }
    ++calls;
    memset(band, 0, MCUC_STREAM_BAND_SIZE);
    return index == 2 ? 7 : 0;
}

static int count(int8_t *band, int32_t index, void *ctx)
{
    ++*(int *)ctx;
    memset(band, (int)index, MCUC_STREAM_BAND_SIZE);
    return 0;
}

int main(void)
{
    static int8_t out[MCUC_OUTPUT_SIZE];
    int n = 0;
    int a = (int)mcuc_run_streaming(arena.bytes, fail_at_2, NULL, out);
    int b = (int)mcuc_run_streaming(arena.bytes, count, &n, out);
    int c = (int)mcuc_run_streaming(arena.bytes, NULL, NULL, out);
    printf("%d %d %d %d %d\n", a, calls, b, n, c);
    return 0;
}
"""


def test_callback_failure_and_order(tmp_path) -> None:
    """A nonzero callback stops the run with MCUC_ERR_INPUT; bands come in order."""
    import subprocess

    g = load_graph()
    x = calibration_samples(g, "fashion-mnist")[:8]
    sc = streamed(compile_graph(g, x))
    write_c(sc, tmp_path)
    (tmp_path / "main.c").write_text(CALLBACK_DRIVER)
    exe = build_host(tmp_path, sanitize=True)
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout
    bands = sc.schedule.steps[0].params["stream"]
    assert out.split() == ["3", "3", "0", str(bands), "1"]
