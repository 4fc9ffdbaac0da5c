"""`make bench-search-boards`: the most accurate searched ViT at each board's own limits.

Each row is (board, SRAM, flash, time budget): `mcuc search` runs under exactly those
limits -- the board's own overheads (stack, data, runtime code) and, for the time, its
clock (`--latency`: the budget in instructions at latency.ASSUMED_CPI cycles each),
feasibility judged by the compiler's cost and latency model as `mcuc search` judges it.
The rows share one supernet, trained on a pool of subnets feasible at each row (an equal
share per row). The searched model of a row is picked and trained as `make bench-search`
picks and trains it (finalists fine-tuned, or `--proxy-epochs`, `--shared-finalists`:
another row's finalist that meets this row's limits is weighed too). The baseline is the
uniform ViT of the grid (scripts/bench_search.py; `--grid-dims` widens it) that meets
the same limits, time included by the same latency model, chosen by the same rule
(`--baseline rule`: the most MACs; `best`: the best held-out proxy) and trained from
scratch with the same recipe.

Both are measured by a build for the row's board: RAM and flash from the linked ELF,
instructions per inference counted by the board's emulator (Unicorn) beside the latency
model's prediction for the built schedule and the search's own prediction; float and
int8 test accuracy (the compiler's integer reference) on every test image, and the
firmware on qemu-m7 (a Cortex-M7 with the F746's limits; bit-exact against the reference)
on the first `--fw-images`, where the model links there.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import asdict
from pathlib import Path

from bench_boards_report import report
from bench_search import again, arg_parser, candidates, pick_baseline, pick_searched
from bench_search_measure import Limits
from bench_search_proxy import proxy_pick
from bench_search_stages import KB, finalists, measured, search, setup, supernet, trained
from mcuc import McucError
from mcuc.nas.recipe import resolve

# issue 26: each MCU board at its full limits with 100 ms, and the F746 at 50 and 200 ms
ISSUE_ROWS = ("stm32f746:320:1024:100", "stm32f427:192:1024:100", "stm32h743:512:2048:100",
              "stm32f746:320:1024:50", "stm32f746:320:1024:200")
_ROW = re.compile(r"^([a-z0-9_-]+):(\d+):(\d+):(\d+(?:\.\d+)?|-)$")


def parse_row(text: str) -> Limits:
    """'BOARD:SRAM_KB:FLASH_KB:MS' ('-' for no time budget) -> Limits, checked against
    the board: limits within its chip, a clock for a time budget."""
    from mcuc.boards import load_board

    m = _ROW.match(text)
    if not m:
        raise argparse.ArgumentTypeError(
            f"{text!r}: a row is BOARD:SRAM_KB:FLASH_KB:MS, e.g. stm32f746:320:1024:100")
    name, sram, flash, ms = m.groups()
    try:
        board = load_board(name)
    except McucError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    lim = Limits(name, int(sram) * KB, int(flash) * KB, None if ms == "-" else float(ms),
                 f"{name}_{sram}k_{flash}k_{ms.replace('-', 'notime')}"
                 + ("ms" if ms != "-" else ""))
    if not board.is_mcu or lim.sram > board.sram_bytes or lim.flash > board.flash_bytes:
        raise argparse.ArgumentTypeError(
            f"{text!r}: {name} has {board.sram_bytes // KB} KB SRAM and "
            f"{board.flash_bytes // KB} KB flash; a row's limits must be within them")
    if lim.ms is not None and (not board.clock_hz or lim.ms <= 0):
        raise argparse.ArgumentTypeError(f"{text!r}: a time budget needs a positive time "
                                         f"and a board with a clock ({name} has none)")
    return lim


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """bench_search's flags (recipe included) with --rows in place of --budgets."""
    ap = arg_parser()
    ap.description = __doc__.splitlines()[0]
    ap.add_argument("--rows", type=parse_row, nargs="+", default=None,
                    help="BOARD:SRAM_KB:FLASH_KB:MS rows (default: issue 26's five, "
                         + ", ".join(ISSUE_ROWS) + ")")
    ap.set_defaults(out="runs/bench-boards")
    a = ap.parse_args(argv)
    resolve(a)
    a.rows = a.rows or [parse_row(r) for r in ISSUE_ROWS]
    if len({r.name for r in a.rows}) != len(a.rows):
        ap.error("--rows: the same row twice")
    for flag, bad in (("--budgets/--only", a.only is not None or "--budgets" in (argv or [])),
                      ("--part", a.part not in ("all", "train")),
                      ("--repeat", a.repeat is not None),
                      ("--finalist", a.finalist is not None)):
        if bad:
            ap.error(f"{flag} is for bench_search.py; the board rows run whole (--part "
                     "train: everything trained, nothing measured, e.g. on a GPU machine)")
    if a.baseline == "best" and a.proxy_epochs <= 0:
        ap.error("--baseline best needs --proxy-epochs")
    if a.proxy_check and a.proxy_epochs <= 0:
        ap.error("--proxy-check needs --proxy-epochs")
    a.budgets = [r.name for r in a.rows]   # keys of the shared stages (recipe, pool)
    return a


def run(a: argparse.Namespace) -> tuple[str, list[dict]] | None:
    """Every row searched, trained and measured; (the report, its rows). With --part
    train every model is trained (and cached) but nothing measured: None."""
    import torch

    torch.set_num_threads(a.threads)
    c = setup(a, {r.name: r for r in a.rows})
    sn = supernet(c)
    founds = {r.name: search(c, r.name) for r in a.rows}
    fins = {k: finalists(c, f) for k, f in founds.items()}
    rows = []
    for lim in a.rows:
        k = lim.name
        proxies = None
        if a.proxy_epochs:
            best, proxies = proxy_pick(c, k, founds)
            picks = [best] if best is not None else []
        else:
            picks = candidates(c, k, fins)
        row: dict = {"limits": {**asdict(lim), "instructions": lim.instructions()},
                     "searched": None, "baseline": None}
        if picks:
            row["searched"] = pick_searched(c, k, founds, fins, picks, proxies, lim.board)
        cfg, grid = pick_baseline(c, k)
        if a.part == "train":
            if cfg is not None:
                trained(c, "baseline", cfg)
                again(c, "baseline", cfg)
            continue
        if picks:
            row["searched"]["search_cost"] = c.models[k].cost(
                _config(row["searched"])).to_dict()
        if cfg is not None:
            row["baseline"] = {**measured(c, "baseline", cfg, 0, lim.board),
                               "repeats": again(c, "baseline", cfg, lim.board),
                               "search_cost": c.models[k].cost(cfg).to_dict()}
            if grid is not None:
                row["baseline"]["grid"] = grid
        rows.append(row)
    if a.part == "train":
        return None
    (c.out / "bench_boards.json").write_text(json.dumps(rows, indent=1))
    return report(a, rows, sn.train_seconds, sn.pool_size, c.teacher, __doc__), rows


def _config(m: dict):
    from mcuc.nas.space import SubnetConfig

    return SubnetConfig.from_dict(m["config"])


def main(argv: list[str] | None = None) -> None:
    a = parse_args(argv)
    try:
        done = run(a)
    except McucError as e:
        raise SystemExit(f"mcuc: error: {e}") from None
    if done is None:
        print(f"trained every model under {a.out}; measure and report: the same command "
              "without --part train")
        return
    text = done[0]
    path = Path(a.bench_dir) / "search_boards.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print(text)
    print(f"wrote {path}")


if __name__ == "__main__":
    main(sys.argv[1:])
