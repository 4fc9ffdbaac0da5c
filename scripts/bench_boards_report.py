"""bench/search_boards.md from the board rows (scripts/bench_boards.py): the table, the
limits each model meets, the goal line and the run's costs."""

from __future__ import annotations

import json
import time

from bench_search_report import _acc_cell, _cfg_text, _command, _fw_cell, mean_acc

KB = 1024
GOAL = ("stm32f746", 320 * KB, 100.0, 0.93)   # issue 26: 93.0% int8 on the F746 in 100 ms


def limits_text(lim: dict) -> str:
    """'320 KB / 1024 KB / 100 ms (21,600,000 instr.)'."""
    t = ("no time limit" if lim["ms"] is None else
         f"{lim['ms']:g} ms ({lim['instructions']:,} instr.)")
    return f"{lim['sram'] // KB} KB / {lim['flash'] // KB} KB / {t}"


def ms_at(instructions: int | None, board: str) -> float | None:
    """Milliseconds at the board's clock, latency.ASSUMED_CPI cycles per instruction."""
    from mcuc import latency
    from mcuc.boards import load_board

    if instructions is None:
        return None
    return latency.ms_of(instructions, load_board(board).clock_hz)


def over(lim: dict, m: dict) -> list[str]:
    """Which of the row's limits the measured model exceeds (RAM and flash from the ELF,
    instructions counted by the emulator); empty when it meets them all."""
    bad = [what for what, used, cap in (("RAM", m["ram"], lim["sram"]),
                                        ("flash", m["flash"], lim["flash"]))
           if used is None or used > cap]
    if lim["instructions"] is not None and (m["instructions"] is None
                                            or m["instructions"] > lim["instructions"]):
        bad.append("time")
    return bad


def _fw(m: dict) -> str:
    if any(run["fw_acc"] is None for run in [m, *m.get("repeats", [])]):
        return "not run (does not link on qemu-m7)"
    return _fw_cell(m)


def _latency(m: dict, board: str) -> str:
    ms = ms_at(m["instructions"], board)
    return "n/a" if ms is None else f"{ms:.1f}"


def _count(n: int | None) -> str:
    return "n/a" if n is None else f"{n:,}"


def _predicted(m: dict) -> str:
    """The build's prediction and the search's (fast schedule), beside the count."""
    build, fast = m.get("predicted_instructions"), m["search_cost"]["instructions"]
    cell = " / ".join(_count(n) for n in (build, fast))
    if build and m["instructions"]:
        cell += f" ({100 * (build - m['instructions']) / m['instructions']:+.2f}%)"
    return cell


def table(rows: list[dict]) -> list[str]:
    head = ("| board | SRAM / flash / time | model | config | params | MACs | float test | "
            "int8 test | firmware (first N) | ms at clock | instructions (emulator) | "
            "predicted: build / search (build vs emulator) | RAM B (ELF) | flash B (ELF) | "
            "meets limits |")
    lines = [head, "|" + "---|" * 15]
    for r in rows:
        lim = r["limits"]
        for label in ("searched", "baseline"):
            m = r[label]
            if m is None:
                lines.append(f"| {lim['board']} | {limits_text(lim)} | {label} | nothing "
                             "meets the limits |" + " |" * 11)
                continue
            bad = over(lim, m)
            lines.append(
                f"| {lim['board']} | {limits_text(lim)} | {label} | {_cfg_text(m['config'])} "
                f"| {m['params']:,} | {m['macs']:,} | {_acc_cell(m, 'float_acc')} | "
                f"{_acc_cell(m, 'int8_acc')} | {_fw(m)} | {_latency(m, lim['board'])} | "
                f"{_count(m['instructions'])} | {_predicted(m)} | {m['ram']:,} | {m['flash']:,} | "
                f"{'yes' if not bad else 'NO: ' + ', '.join(bad)} |")
    return lines


def compute_s(rows: list[dict]) -> dict:
    """Search, training and measuring seconds, each model trained once and each
    (model, board) measured once however many rows share it."""
    search = sum(r["searched"]["search_s"] for r in rows if r["searched"])
    trained: dict[str, float] = {}
    measured: dict[str, float] = {}
    for r in rows:
        for kind in ("searched", "baseline"):
            m = r[kind]
            if m is None:
                continue
            runs = [(kind, f) for f in m.get("finalists") or [m]]
            runs += [("proxy", f) for f in [*(m.get("proxies") or []), *(m.get("grid") or [])]]
            runs += [(f"{kind} repeat {i}", {"config": m["config"], **f})
                     for i, f in enumerate(m.get("repeats", []), 1)]
            for k, f in runs:
                trained.setdefault(k + json.dumps(f["config"], sort_keys=True), f["train_s"])
            for i, run in enumerate([m, *m.get("repeats", [])]):
                key = f"{kind}{i}{r['limits']['board']}{json.dumps(m['config'], sort_keys=True)}"
                measured.setdefault(key, run.get("measure_s", 0.0))
    return {"search": search, "train": sum(trained.values()),
            "measure": sum(measured.values())}


def _command_line(a) -> str:
    rows = " ".join(f"{r.board}:{r.sram // KB}:{r.flash // KB}:"
                    + ("-" if r.ms is None else f"{r.ms:g}") for r in a.rows)
    return (_command(a).replace("python scripts/bench_search.py",
                                f"python scripts/bench_boards.py --rows {rows}", 1)
            + f" --fw-images {a.fw_images}")


def _goal_line(rows: list[dict]) -> str:
    board, sram, ms, want = GOAL
    hit = [r for r in rows if r["searched"] and r["limits"]["board"] == board
           and r["limits"]["sram"] == sram and r["limits"]["ms"] == ms]
    if not hit:
        return f"The goal row ({board}, {sram // KB} KB, {ms:g} ms) was not run."
    acc = mean_acc(hit[0]["searched"], "int8_acc")
    return (f"{board} within {ms:g} ms: {100 * acc:.2f}% int8 "
            f"({'meets' if acc >= want else 'misses'} the {100 * want:.1f}% goal).")


def report(a, rows: list[dict], supernet_s: float, pool: int, teacher: dict | None,
           method: str) -> str:
    """The text of search_boards.md; `method`: bench_boards' docstring."""
    wins = sum(1 for r in rows if r["searched"] and (
        r["baseline"] is None
        or mean_acc(r["searched"], "int8_acc") > mean_acc(r["baseline"], "int8_acc")))
    cost = compute_s(rows)
    teach = 0.0 if teacher is None else float(teacher["seconds"])
    total = supernet_s + teach + sum(cost.values())
    return "\n".join([
        "# Architecture search at each board's limits",
        "",
        f"Made by `make bench-search-boards` (`{_command_line(a)}`) on "
        f"{time.strftime('%Y-%m-%d')}, on {a.machine}. Compute: {total / 60:.1f} min -- "
        f"supernet {supernet_s / 60:.1f} ({a.epochs} epochs on {pool} subnets), teacher "
        f"{teach / 60:.1f}, searches {cost['search'] / 60:.1f}, training "
        f"{cost['train'] / 60:.1f}, measuring {cost['measure'] / 60:.1f} min. Test images: "
        f"{a.test_limit or 'all'}.",
        "",
        method.split("\n\n", 1)[-1].strip(),
        "",
        "Times are instructions at the board's clock at 1 cycle per instruction (the "
        "search's assumption, latency.ASSUMED_CPI; no DWT figure yet), not cycles.",
        "",
        *table(rows),
        "",
        f"Searched ahead of the baseline (int8 test accuracy) at {wins} of {len(rows)} rows. "
        + _goal_line(rows),
        "",
        "Search time per row:",
        *[f"- {r['limits']['name']}: {r['searched']['candidates']} candidates in "
          f"{r['searched']['search_s']:.0f} s" for r in rows if r["searched"]],
        "",
    ])
