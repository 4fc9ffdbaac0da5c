"""bench/search.md from the bench's rows: the table, the goal line and the run's costs."""

from __future__ import annotations

import json
import time

from bench_search_stages import BASELINE_LR

NATIVE = 28   # Fashion-MNIST's side: other input resolutions are named in the table


def _shape_text(c: dict) -> str:
    res = "" if c["resolution"] == NATIVE else f"{c['resolution']}px "
    return f"{res}p{c['patch']} d{c['dim']} L{c['depth']}"


def _cfg_text(c: dict) -> str:
    low = sorted(set(c["lowrank"]))
    return (f"{_shape_text(c)} h{'/'.join(map(str, c['heads']))} "
            f"mlp{'/'.join(f'{m:g}' for m in c['mlp_ratio'])} r{'/'.join(f'{r:g}' for r in low)}")


def _finalists_text(m: dict, m_kb: int) -> str:
    fins = m.get("finalists") or []
    if len(fins) < 2:
        return ""
    return "; finalists (held-out after fine-tune): " + ", ".join(
        f"{_shape_text(f['config'])} {100 * f['val_acc']:.2f}%"
        + (f" (the {f['found_at']} KB search's)" if f.get("found_at", m_kb) != m_kb else "")
        for f in fins)


def _proxies_text(m: dict, m_kb: int) -> str:
    ps = m.get("proxies") or []
    if not ps:
        return ""
    return (f"; proxy ranking ({ps[0]['epochs']} epochs from scratch, held-out; "
            "inherited in brackets): " + ", ".join(
                f"{_cfg_text(p['config']) if p.get('plain') else _shape_text(p['config'])}"
                f"{' (plain)' if p.get('plain') else ''} {100 * p['val_acc']:.2f}% "
                f"({100 * p['inherited_acc']:.2f}%)"
                + (f" (the {p['found_at']} KB search's)" if p["found_at"] != m_kb else "")
                for p in ps))


def _grid_line(r: dict) -> str | None:
    """--baseline best: budget r's grid proxies, best first, the pick in bold."""
    base = r["baseline"]
    if not base or not base.get("grid"):
        return None
    ranked = sorted(base["grid"], key=lambda g: -g["val_acc"])
    return f"- {r['budget_kb']} KB: " + ", ".join(
        (f"**{_shape_text(g['config'])} {100 * g['val_acc']:.2f}%**"
         if g["config"] == base["config"] else
         f"{_shape_text(g['config'])} {100 * g['val_acc']:.2f}%") for g in ranked)


def _runs(m: dict) -> list[dict]:
    """A table model's measured runs: the first training seed and its --repeats."""
    return [m, *m.get("repeats", [])]


def mean_acc(m: dict, key: str) -> float:
    """`key` (float_acc, int8_acc, ...) averaged over the model's training seeds."""
    runs = _runs(m)
    return sum(r[key] for r in runs) / len(runs)


def _acc_cell(m: dict, key: str) -> str:
    runs = _runs(m)
    each = "" if len(runs) < 2 else " (" + " / ".join(f"{100 * r[key]:.2f}" for r in runs) + ")"
    return f"{100 * mean_acc(m, key):.2f}%{each}"


def _fw_cell(m: dict) -> str:
    runs = _runs(m)
    exact = sum(r["fw_bit_exact"] for r in runs)
    images = sum(r["fw_images"] for r in runs)
    return f"{100 * mean_acc(m, 'fw_acc'):.1f}% ({exact}/{images} bit-exact)"


def _search_line(r: dict) -> str:
    m = r["searched"]
    where = f" on {m['device']}" if m.get("device") else ""
    again = (f"the {m['first_budget']} KB budget's model, trained once"
             if m["first_budget"] != r["budget_kb"] else f"{m['train_s']:.0f} s{where}")
    return (f"- {r['budget_kb']} KB: {m['candidates']} candidates in {m['search_s']:.0f} s; "
            f"held-out accuracy {100 * m['inherited_acc']:.2f}% inherited, "
            f"{100 * m['val_acc']:.2f}% fine-tuned; fine-tune: {again}"
            + _finalists_text(m, r["budget_kb"]) + _proxies_text(m, r["budget_kb"]))


def _proxy_check_line(r: dict) -> str | None:
    """Would the proxy have ordered this budget's searched model and baseline as their
    full training did (held-out accuracy, both)?"""
    m, base = r["searched"], r["baseline"]
    if base is None or "proxy" not in base or not m.get("proxies"):
        return None
    want = m["config"]
    mine = next(p["val_acc"] for p in m["proxies"] if p["config"] == want)
    same = (mine > base["proxy"]["val_acc"]) == (m["val_acc"] > base["val_acc"])
    return (f"- {r['budget_kb']} KB: proxy {100 * mine:.2f}% searched vs "
            f"{100 * base['proxy']['val_acc']:.2f}% baseline; full training "
            f"{100 * m['val_acc']:.2f}% vs {100 * base['val_acc']:.2f}%"
            f": {'the same order' if same else 'the order reversed'}")


def _command(a) -> str:
    """The bench's command line, every recipe option spelt out (mcuc.nas.recipe: an
    option left out would now mean the measured recipe's value)."""
    def on(name: str, flag: str) -> str:
        return flag + " " if getattr(a, name, False) else "--no-" + flag[2:] + " "

    proxy = getattr(a, "proxy_epochs", 0)
    return (f"python scripts/bench_search.py --supernet-epochs {a.epochs} "
            f"--finetune-epochs {a.finetune_epochs} --finetune-lr {a.finetune_lr:g} "
            f"--distill-epochs {a.distill_epochs} "
            + (on("distill_supernet", "--distill-supernet") if a.distill_epochs else "")
            + (f"--finalists {a.finalists} " if getattr(a, "finalists", 1) != 1 else "")
            + f"--init {getattr(a, 'finetune_init', 'inherited')} "
            + ("--shared-finalists " if getattr(a, "shared_finalists", False) else "")
            + (f"--proxy-epochs {proxy} --proxy-shapes {a.proxy_shapes} " if proxy
               else "--proxy-epochs 0 ")
            + (on("proxy_plain", "--proxy-plain") if proxy else "")
            + ("--proxy-check " if getattr(a, "proxy_check", False) else "")
            + ("--baseline best " if getattr(a, "baseline", "rule") == "best" else "")
            + (f"--repeats {a.repeats} " if getattr(a, "repeats", 1) > 1 else "")
            + f"--population {a.population} "
            f"--generations {a.generations} --pool {a.pool} --sampling {a.sampling} "
            + on("augment", "--augment").strip()
            + (f" --limit {a.limit}" if a.limit else "")
            + (f" --test-limit {a.test_limit}" if a.test_limit else "")
            + (f" --space {a.space}" if getattr(a, "space", None) else "")
            + (" --grid-dims " + " ".join(map(str, a.grid_dims))
               if getattr(a, "grid_dims", None) else ""))


def compute_seconds(rows: list[dict], supernet_s: float, teacher: dict | None) -> dict:
    """What the run cost, part by part, each model counted once (the parts may have run
    in separate processes, partly in parallel, so their sum is the cost, not the wall
    time)."""
    train = measure = search = 0.0
    trained: set[str] = set()   # a finalist that several budgets weigh is trained once
    for r in rows:
        search += r["searched"]["search_s"]
        for kind, m in (("searched", r["searched"]), ("baseline", r["baseline"])):
            if m is None:
                continue
            runs = [(kind, f) for f in m.get("finalists") or [m]]
            runs += [(f"{kind} repeat {i}", {"config": m["config"], **f})
                     for i, f in enumerate(m.get("repeats", []), 1)]
            runs += [("proxy", p) for p in m.get("proxies") or []]
            if "proxy" in m:   # --proxy-check: the baseline trained as a proxy too
                runs.append(("proxy", {"config": m["config"], **m["proxy"]}))
            for k, f in runs:
                key = k + json.dumps(f["config"], sort_keys=True)
                if key not in trained:
                    trained.add(key)
                    train += f["train_s"]
            if m["first_budget"] == r["budget_kb"]:
                measure += sum(f.get("measure_s", 0.0) for f in _runs(m))
    teach = 0.0 if teacher is None else float(teacher["seconds"])
    return {"supernet": supernet_s, "teacher": teach, "search": search, "train": train,
            "measure": measure, "total": supernet_s + teach + search + train + measure}


def report(a, rows: list[dict], supernet_s: float, pool: int,
           teacher: dict | None = None, machine: str = "this project's 2-core CPU machine",
           method: str = "") -> str:
    """bench/search.md's text; `method` is the bench's description (bench_search's
    docstring: its paragraphs after the first go into the report)."""

    head = ("| SRAM budget | model | config | params | MACs | arena B | RAM B (ELF) | "
            "flash B (ELF) | float test | int8 test | firmware (first N) |")
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        for label, m in (("searched", r["searched"]), ("baseline", r["baseline"])):
            if m is None:
                lines.append(f"| {r['budget_kb']} KB | {label} | nothing in the grid fits "
                             "| | | | | | | | |")
                continue
            lines.append(
                f"| {r['budget_kb']} KB | {label} | {_cfg_text(m['config'])} | {m['params']:,} "
                f"| {m['macs']:,} | {m['arena']:,} | {m['ram']:,} | {m['flash']:,} | "
                f"{_acc_cell(m, 'float_acc')} | {_acc_cell(m, 'int8_acc')} | {_fw_cell(m)} |")
    wins = sum(1 for r in rows if r["baseline"] is None
               or mean_acc(r["searched"], "int8_acc") > mean_acc(r["baseline"], "int8_acc"))
    at64 = [mean_acc(r["searched"], "int8_acc") for r in rows if r["budget_kb"] == 64]
    goal = (f"{100 * at64[0]:.2f}% int8 at 64 KB "
            f"({'meets' if at64[0] >= 0.9 else 'misses'} the 90% goal)"
            if at64 else "64 KB not run")
    seeds = getattr(a, "repeats", 1)
    averaged = ("" if seeds < 2 else
                f" Every table model was trained {seeds} times (training seeds {a.seed}-"
                f"{a.seed + seeds - 1}; split, teacher, supernet and search fixed): accuracies "
                "are the means, each seed's in brackets; the firmware column sums them.")
    cost = compute_seconds(rows, supernet_s, teacher)
    checks = [line for r in rows if (line := _proxy_check_line(r))]
    grids = [line for r in rows if (line := _grid_line(r))]
    return "\n".join([
        "# Architecture-search benchmark",
        "",
        f"Made by `make bench-search` (`{_command(a)}`) on {time.strftime('%Y-%m-%d')}, on "
        f"{machine}. Compute, summed over the parts (some ran in parallel): "
        f"{cost['total'] / 60:.0f} min -- supernet {cost['supernet'] / 60:.1f}, teacher "
        f"{cost['teacher'] / 60:.1f}, searches {cost['search'] / 60:.1f}, training the "
        f"searched models and baselines {cost['train'] / 60:.1f}, measuring "
        f"{cost['measure'] / 60:.1f} min.",
        "",
        method.split("\n\n", 1)[-1].strip(),
        "",
        f"Supernet: {a.epochs} epochs on {pool} budget-feasible subnets, "
        f"{supernet_s / 60:.1f} min. "
        + (f"Searched models: retrained from scratch {a.finetune_epochs} epochs with the "
           f"baselines' recipe (the search picks the architecture only). "
           if getattr(a, "finetune_init", "inherited") == "scratch" else
           f"Searched models: inherited weights fine-tuned {a.finetune_epochs} epochs "
           f"(lr {a.finetune_lr:g}). ")
        + f"Baselines: {a.finetune_epochs} "
        f"epochs from scratch (lr {BASELINE_LR:g}). Augmentation (random crops and flips): "
        f"{'on' if a.augment else 'off'}, for every model. "
        + ("No distillation. " if teacher is None else
           f"Every model (searched and baseline) is trained with hard-label distillation "
           f"from the same small CNN teacher ({a.distill_epochs} epochs, "
           f"{float(teacher['seconds']) / 60:.1f} min; {100 * float(teacher['test_acc']):.2f}% "
           "test; host-only, never compiled)"
           + (", and so is the supernet. " if getattr(a, "distill_supernet", False) else ". "))
        + f"Test images: {rows[0]['searched']['test_images']:,}. "
        "Board overheads (stack, data, code) are the STM32F746's; flash budget 256 KB."
        + averaged,
        "",
        "\n".join(lines),
        "",
        f"Searched ahead of the baseline ({'mean ' if seeds > 1 else ''}int8 test accuracy) "
        f"at {wins} of {len(rows)} "
        f"budgets; {goal}.",
        "",
        "Search time per budget:",
        *[_search_line(r) for r in rows],
        "",
        *([f"Baselines picked from the grid (`--baseline best`: every grid model that fits, "
           f"{a.proxy_epochs} epochs from scratch, held-out accuracy; the pick in bold):",
           *grids, ""] if grids else []),
        *([f"Proxy check ({a.proxy_epochs} epochs from scratch; each baseline trained as a "
           "proxy too, held-out accuracy; not used to pick anything):", *checks, ""]
          if checks else []),
        "Pareto fronts: " + ", ".join(f"[{r['budget_kb']} KB](search_pareto_{r['budget_kb']}k.png)"
                                       for r in rows),
        "",
    ])
