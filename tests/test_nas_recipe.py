"""mcuc.nas.recipe: `mcuc search` and the benchmark default to the measured recipe,
--budget scales it, explicit options override it, and both front ends add the recipe's
options from one definition."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from dataclasses import asdict, fields
from pathlib import Path

import pytest

from mcuc.cli import main, parser, search_options
from mcuc.nas.recipe import BUDGETS, HOURS, PRESETS, Recipe, budget_preset, option_table

ROOT = Path(__file__).resolve().parent.parent


def _search(*args: str) -> argparse.Namespace:
    return parser().parse_args(["search", "--out", "x", *args])


def test_the_default_recipe_is_the_measured_one() -> None:
    """bench/search.md's table and the bundled default model (models/default.json):
    supernet 20 epochs on a 400-subnet pool drawn by MACs, crops and flips, an 8-epoch
    teacher distilled into supernet and pick, evolution 16 x 8, six proxy shapes and
    their plain variants trained 8 epochs, the pick retrained 50 epochs from scratch at
    lr 2e-3 (the bench's BASELINE_LR; default.json's recipe)."""
    assert Recipe() == PRESETS["standard"] == Recipe(
        limit=None, epochs=20, pool=400, sampling="macs", augment=True, population=16,
        generations=8, distill_epochs=8, distill_supernet=True, finalists=1,
        proxy_epochs=8, proxy_shapes=6, proxy_plain=True, finetune_init="scratch",
        finetune_epochs=50, finetune_lr=2e-3)
    opts = search_options(_search())
    assert {k: getattr(opts, k) for k in asdict(Recipe())} == asdict(Recipe())


def test_the_docs_table_is_the_presets() -> None:
    """docs/search.md's budget table lists every preset's values."""
    text = (ROOT / "docs" / "search.md").read_text()
    flags = {names[0]: field for field, names, _ in option_table()}
    rows = {}
    for line in text.splitlines():
        m = re.match(r"^\| `(--[a-z-]+)` \| ([^|]+) \| ([^|]+) \| ([^|]+) \|", line)
        if m and m.group(1) in flags:
            rows[flags[m.group(1)]] = [c.strip() for c in m.groups()[1:]]
    assert set(rows) == {f.name for f in fields(Recipe)}
    for field, cells in rows.items():
        for budget, cell in zip(BUDGETS, cells, strict=True):
            want = getattr(PRESETS[budget], field)
            shown = {True: "on", False: "off", None: "all"}.get(want, want) \
                if isinstance(want, bool) or want is None else want
            assert cell.replace(",", "") == (f"{shown:g}" if isinstance(shown, float)
                                             else str(shown)), (field, budget, cell)


def test_budgets_scale_the_recipe() -> None:
    q, s, f = (PRESETS[b] for b in BUDGETS)
    for knob in ("epochs", "pool", "population", "generations", "distill_epochs",
                 "proxy_epochs", "proxy_shapes", "finetune_epochs"):
        assert getattr(q, knob) < getattr(s, knob) < getattr(f, knob), knob
    assert q.limit is not None and s.limit is None and f.limit is None
    # every stage still runs in a quick run: it is a smoke test of the standard pipeline
    assert (q.distill_supernet, q.proxy_plain, q.finetune_init) == (True, True, "scratch")
    assert HOURS["quick"] < HOURS["standard"] < HOURS["full"]
    o = search_options(_search("--budget", "quick"))
    assert {k: getattr(o, k) for k in asdict(q)} == asdict(q)


@pytest.mark.parametrize("text, want", [
    ("quick", "quick"), ("Standard", "standard"), ("full", "full"), ("10m", "quick"),
    ("0.2h", "quick"), ("90m", "standard"), ("2h", "standard"), ("5", "standard"),
    ("7h", "standard"), ("8h", "full"), ("24h", "full"),
])
def test_hours_map_to_the_nearest_preset(text: str, want: str) -> None:
    assert budget_preset(text) == want


def test_an_explicit_option_overrides_the_budget() -> None:
    o = search_options(_search("--budget", "quick", "--epochs", "7", "--no-augment",
                               "--finetune-init", "inherited"))
    assert (o.epochs, o.augment, o.finetune_init) == (7, False, "inherited")
    assert (o.pool, o.limit) == (PRESETS["quick"].pool, PRESETS["quick"].limit)
    assert search_options(_search("--supernet-epochs", "3")).epochs == 3   # the bench's name
    # a stage the preset turns on gives way to an option that rules it out
    o = search_options(_search("--finalists", "2"))
    assert (o.finalists, o.proxy_epochs, o.proxy_plain) == (2, 0, False)
    o = search_options(_search("--distill-epochs", "0"))
    assert (o.distill_epochs, o.distill_supernet) == (0, False)
    o = search_options(_search("--proxy-epochs", "0", "--proxy-plain"))
    assert o.proxy_plain   # asked for explicitly: run_search refuses it with one line


def test_a_recipe_file_replaces_the_preset_and_options_override_it(tmp_path: Path) -> None:
    f = tmp_path / "r.toml"
    f.write_text("epochs = 3\naugment = false\nfinetune_lr = 1\n")
    o = search_options(_search("--budget", "full", "--recipe", str(f), "--augment"))
    assert (o.epochs, o.augment, o.finetune_lr) == (3, True, 1.0)
    assert o.pool == PRESETS["full"].pool


@pytest.mark.parametrize("args, needle", [
    (["--budget", "bogus"], "bad budget 'bogus': give quick, standard, full or a time"),
    (["--budget", "0h"], "bad budget '0h'"),
    (["--recipe", "/nonexistent.toml"], "recipe file not found"),
])
def test_a_bad_budget_is_a_one_line_usage_error(args: list[str], needle: str, tmp_path: Path,
                                                capsys) -> None:
    with pytest.raises(SystemExit) as e:
        main(["search", *args, "--out", str(tmp_path)])
    assert e.value.code == 2
    err = capsys.readouterr().err
    (line,) = [ln for ln in err.splitlines() if "error" in ln]
    assert line.startswith("mcuc search: error: ") and needle in line, err


@pytest.mark.parametrize("text, needle", [
    ("epoch = 3\n", "unknown key 'epoch'"), ("epochs = 1.5\n", "epochs must be a int"),
    ("augment = 1\n", "augment must be a bool"), ("epochs = [\n", "cannot read recipe"),
])
def test_a_bad_recipe_file_is_one_line(text: str, needle: str, tmp_path: Path, capsys) -> None:
    f = tmp_path / "r.toml"
    f.write_text(text)
    with pytest.raises(SystemExit) as e:
        main(["search", "--recipe", str(f), "--out", str(tmp_path)])
    assert e.value.code == 2 and needle in capsys.readouterr().err


def test_bogus_budget_from_the_shell_has_no_traceback(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, "-m", "mcuc.cli", "search", "--budget", "bogus",
                          "--out", str(tmp_path)], capture_output=True, text=True)
    assert run.returncode == 2
    assert "Traceback" not in run.stderr
    assert run.stderr.strip().splitlines()[-1] == (
        "mcuc search: error: argument --budget: bad budget 'bogus': give quick, standard, "
        "full or a time such as 2h or 90m")


def _actions(p: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {a.dest: a for a in p._actions}


def test_cli_and_bench_share_one_option_definition() -> None:
    """Every recipe option, --budget and --recipe are the same in `mcuc search` and
    scripts/bench_search.py (flags, dest, type, choices, action, help), and both resolve
    a command line to the same recipe; the bench's defaults are mcuc search's."""
    pytest.importorskip("torch")
    sys.path.insert(0, str(ROOT / "scripts"))
    import bench_search

    search = next(a for a in parser()._actions if isinstance(a, argparse._SubParsersAction))
    cli = _actions(search.choices["search"])
    bench = _actions(bench_search.arg_parser())
    keys = ("option_strings", "dest", "type", "choices", "help", "default", "nargs")
    for dest in [f for f, _, _ in option_table()] + ["budget", "recipe"]:
        assert dest in cli and dest in bench, dest
        assert type(cli[dest]) is type(bench[dest]), dest
        assert {k: getattr(cli[dest], k) for k in keys} == \
            {k: getattr(bench[dest], k) for k in keys}, dest
    a = bench_search.parse_args([])
    assert {f.name: getattr(a, f.name) for f in fields(Recipe)} == asdict(Recipe())
    args = ["--budget", "quick", "--pool", "9", "--no-proxy-plain", "--init", "inherited"]
    b = bench_search.parse_args(args)
    o = search_options(_search(*args))
    assert {f.name: getattr(b, f.name) for f in fields(Recipe)} == \
        {f.name: getattr(o, f.name) for f in fields(Recipe)}


@pytest.mark.parametrize("args", [
    [], ["--budget", "quick"], ["--budget", "full", "--no-augment", "--finetune-lr", "1e-3",
                                "--baseline", "best", "--repeats", "2"],
    ["--init", "inherited", "--proxy-epochs", "0", "--shared-finalists", "--limit", "600"],
])
def test_the_bench_reports_a_command_that_reruns_its_recipe(args: list[str]) -> None:
    """bench/search.md's "Made by" line, run again, resolves to the same recipe (every
    recipe option spelt out, so the line does not depend on the presets)."""
    pytest.importorskip("torch")
    sys.path.insert(0, str(ROOT / "scripts"))
    import shlex

    import bench_search
    import bench_search_report

    a = bench_search.parse_args(args)
    line = bench_search_report._command(a)
    assert line.startswith("python scripts/bench_search.py")
    again = bench_search.parse_args(shlex.split(line)[2:])
    same = [k for k in vars(a) if k not in ("budget", "recipe")]   # spelt out instead
    assert {k: getattr(again, k) for k in same} == {k: getattr(a, k) for k in same}, line
