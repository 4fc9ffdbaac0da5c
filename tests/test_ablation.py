"""Every combination of memory techniques compiles to C that equals its reference.

Techniques change where bytes live, never what is computed; the one numeric effect is
that `fusion` also folds scalar multiplies into the producer's requantization (one
rounding instead of two), so each combination is compared with its own reference.
"""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from mcuc.cli import main
from mcuc.frontend import load_model
from mcuc.memory import validate
from mcuc.pipeline import compile_graph
from mcuc.schedule import execute
from mcuc.schedule.passes import TECHNIQUES
from mcuc.sim.host import build_host, run_host

from helpers import input_shape, random_config, random_inputs, random_model, write_c

COMBOS = [c for r in range(len(TECHNIQUES) + 1) for c in itertools.combinations(TECHNIQUES, r)]


@pytest.mark.parametrize("seed", [5, 11])
def test_every_combination_is_bit_exact(seed: int, tmp_path) -> None:
    cfg = random_config(seed)
    graph = load_model(random_model(cfg, seed), input_shape(cfg))
    calib = random_inputs(cfg, 8, seed)
    x = random_inputs(cfg, 1, seed + 1)[0]
    arenas = {}
    for k, disabled in enumerate(COMBOS):
        c = compile_graph(graph, calib, disabled)
        validate(c.schedule.liveness(), c.plan)
        x_q = execute.quantize_input(c.schedule, x[None])
        ref = execute.run(c.schedule, x_q, c.plan)
        np.testing.assert_array_equal(ref, execute.run(c.schedule, x_q))
        out = tmp_path / f"c{k}"
        write_c(c, out)
        np.testing.assert_array_equal(run_host(build_host(out), x_q), ref,
                                      err_msg=f"disabled={disabled}")
        arenas[disabled] = c.plan.arena_bytes
    assert arenas[()] <= arenas[TECHNIQUES]


def test_report_has_ablation_and_plot(tmp_path, capsys) -> None:
    out = tmp_path / "b"
    assert main(["build", "--out", str(out), "--report", "full"]) == 0
    assert "naive arena" in capsys.readouterr().out
    r = json.loads((out / "report.json").read_text())
    assert r["naive_arena_bytes"] > r["arena_bytes"]
    assert set(r["technique_savings_bytes"]) == set(TECHNIQUES)
    assert all(v >= 0 for v in r["technique_savings_bytes"].values())
    png = (out / "memory.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_default_build_skips_ablation_and_plot(tmp_path, capsys) -> None:
    out = tmp_path / "s"
    assert main(["build", "--out", str(out)]) == 0
    assert "naive arena" not in capsys.readouterr().out
    r = json.loads((out / "report.json").read_text())
    assert "naive_arena_bytes" not in r and not (out / "memory.png").exists()


def test_disable_all_matches_naive(tmp_path, capsys) -> None:
    out = tmp_path / "n"
    assert main(["build", "--out", str(out), "--disable", ",".join(TECHNIQUES),
                 "--report", "full"]) == 0
    capsys.readouterr()
    r = json.loads((out / "report.json").read_text())
    assert r["arena_bytes"] == r["naive_arena_bytes"]
    assert r["disabled"] == list(TECHNIQUES)


def test_unknown_technique_is_one_line(tmp_path, capsys) -> None:
    assert main(["build", "--out", str(tmp_path), "--disable", "fusion,warp-drive"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "warp-drive" in err
