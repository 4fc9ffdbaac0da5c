"""The search recipe: the one definition of `mcuc search`'s training and search knobs,
their measured defaults, the `--budget` presets that scale them, and the argparse
options that both `mcuc search` and the benchmark (scripts/bench_search.py) add.

`Recipe()` is the recipe behind the best measured models (bench/search.md, the
2026-11-29 table and its "Plain variants at 32 KB" run, whose pick is the bundled
default model): a 20-epoch supernet on 400 budget-feasible subnets drawn by MACs, with
crops and flips and a small CNN teacher (8 epochs) distilled into it; an evolution of 16
candidates over 8 generations; the 6 best shapes and their plain variants trained 8
epochs from scratch as a proxy ranking; the proxy's pick retrained from scratch for 50
epochs at lr 2e-3 with the same teacher. `--budget` scales it (PRESETS); any option
given explicitly overrides the preset, and `--recipe FILE` (a TOML table of Recipe's
fields) replaces the preset's values it names. The library's `SearchOptions` keeps its
bare defaults (each stage off unless asked); this module is what the command lines use.
"""

from __future__ import annotations

import argparse
import math
import re
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Recipe:
    """Training and search knobs; the defaults are the measured ("standard") recipe."""
    limit: int | None = None        # first N training images (None: all)
    epochs: int = 20                # supernet epochs
    pool: int = 400                 # budget-feasible subnets the supernet trains
    sampling: str = "macs"          # supernet subnet draw
    augment: bool = True            # random crops and flips
    population: int = 16
    generations: int = 8
    distill_epochs: int = 8         # CNN teacher epochs (0: no teacher)
    distill_supernet: bool = True   # the teacher's labels in the supernet's loss too
    finalists: int = 1
    proxy_epochs: int = 8           # the best shapes trained from scratch (0: off)
    proxy_shapes: int = 6
    proxy_plain: bool = True        # each shape's plain variant is a proxy trainee too
    finetune_init: str = "scratch"  # the pick retrained from scratch (or "inherited")
    finetune_epochs: int = 50
    finetune_lr: float = 2e-3
    qat_epochs: int = 0             # quantization-aware fine-tuning of the pick (0: off)
    qat_lr: float = 1e-4


BUDGETS = ("quick", "standard", "full")

PRESETS: dict[str, Recipe] = {
    # every stage runs, on 1,000 images for one epoch each: a smoke test of the pipeline
    "quick": Recipe(limit=1000, epochs=1, pool=24, population=6, generations=2,
                    distill_epochs=1, proxy_epochs=1, proxy_shapes=1, finetune_epochs=1),
    "standard": Recipe(),
    # twice the training, a wider search and proxy ranking; not measured to be better
    "full": Recipe(epochs=40, pool=600, population=24, generations=12, distill_epochs=12,
                   proxy_epochs=12, proxy_shapes=8, finetune_epochs=100),
}

# Estimated hours on this project's 2-core CPU at 16-32 KB SRAM / 256 KB flash (bigger
# budgets train bigger models and take longer); docs/search.md shows the sums.
HOURS: dict[str, float] = {"quick": 0.05, "standard": 5.0, "full": 10.0}

_KIND = {"int": int, "int | None": int, "str": str, "bool": bool, "float": float}
_HOURS = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(h|m|min)?\s*$", re.IGNORECASE)


def budget_preset(text: str) -> str:
    """'quick', 'standard', 'full', or a time ('2h', '90m', '3') -> the preset's name:
    the one whose estimated time (HOURS) is nearest on a log scale."""
    name = str(text).strip().lower()
    if name in PRESETS:
        return name
    m = _HOURS.match(name)
    hours = float(m.group(1)) / (60.0 if m and m.group(2) in ("m", "min") else 1.0) \
        if m else 0.0
    if hours <= 0:
        raise argparse.ArgumentTypeError(
            f"bad budget {text!r}: give quick, standard, full or a time such as 2h or 90m")
    return min(BUDGETS, key=lambda b: abs(math.log(hours / HOURS[b])))


def load_recipe_file(text: str) -> dict[str, Any]:
    """A recipe TOML (some of Recipe's fields) -> its values, checked."""
    path = Path(text)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise argparse.ArgumentTypeError(f"recipe file not found: {text}") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise argparse.ArgumentTypeError(f"cannot read recipe {text}: {e}") from None
    kinds = {f.name: _KIND[str(f.type)] for f in fields(Recipe)}
    for key, value in data.items():
        if key not in kinds:
            raise argparse.ArgumentTypeError(
                f"recipe {text}: unknown key {key!r} (known: {', '.join(kinds)})")
        want = kinds[key]
        ok = isinstance(value, bool) if want is bool else not isinstance(value, bool) and \
            isinstance(value, (int, float) if want is float else want)
        if not ok:
            raise argparse.ArgumentTypeError(
                f"recipe {text}: {key} must be a {want.__name__}, not {value!r}")
    return {k: float(v) if kinds[k] is float else v for k, v in data.items()}


@dataclass(frozen=True)
class Option:
    """One command-line option of the recipe: its Recipe field, flags and argparse
    keywords (no default: None means "from the --budget preset")."""
    field: str
    flags: tuple[str, ...]
    kw: dict[str, Any]


def _options() -> tuple[Option, ...]:
    from mcuc.nas.space import SAMPLING

    flag = {"action": argparse.BooleanOptionalAction}
    return (
        Option("limit", ("--limit",), {"type": int,
               "help": "use only the first N training images (standard: all)"}),
        Option("epochs", ("--epochs", "--supernet-epochs"), {"type": int,
               "help": "supernet training epochs (standard: 20)"}),
        Option("pool", ("--pool",), {"type": int,
               "help": "budget-feasible subnets the supernet trains (standard: 400)"}),
        Option("sampling", ("--sampling",), {"choices": SAMPLING,
               "help": "supernet subnet draw: weighted by MACs or uniform (standard: macs)"}),
        Option("augment", ("--augment",), {**flag,
               "help": "random crops and flips while training (standard: on)"}),
        Option("population", ("--population",), {"type": int,
               "help": "evolution: candidates a generation (standard: 16)"}),
        Option("generations", ("--generations",), {"type": int,
               "help": "evolution: generations (standard: 8)"}),
        Option("distill_epochs", ("--distill-epochs",), {"type": int,
               "help": "train a small CNN teacher this many epochs and distil its labels "
                       "into the final training (0: no teacher; standard: 8)"}),
        Option("distill_supernet", ("--distill-supernet",), {**flag,
               "help": "distil the teacher's labels into the supernet too (standard: on)"}),
        Option("finalists", ("--finalists",), {"type": int,
               "help": "train the best candidate of each of this many patch-size families "
                       "and keep the best on held-out images (standard: 1)"}),
        Option("proxy_epochs", ("--proxy-epochs",), {"type": int,
               "help": "train the best candidate of each of the --proxy-shapes best shapes "
                       "(resolution, patch, dim, depth) from scratch this many epochs; the "
                       "best on held-out images is the finalist (0: off; standard: 8)"}),
        Option("proxy_shapes", ("--proxy-shapes",), {"type": int,
               "help": "shapes the proxy trains (standard: 6)"}),
        Option("proxy_plain", ("--proxy-plain",), {**flag,
               "help": "the proxy also trains each shape's plain variant (one MLP ratio "
                       "and rank in every block, the most MACs that fit; standard: on)"}),
        Option("finetune_init", ("--finetune-init", "--init"), {
               "choices": ("inherited", "scratch"),
               "help": "the pick's final training starts from the supernet's weights or "
                       "from scratch (the supernet then picks the architecture only; "
                       "standard: scratch)"}),
        Option("finetune_epochs", ("--finetune-epochs",), {"type": int,
               "help": "epochs of the pick's final training (0: none; standard: 50)"}),
        Option("finetune_lr", ("--finetune-lr",), {"type": float,
               "help": "learning rate of the final training (standard: 2e-3)"}),
        Option("qat_epochs", ("--qat-epochs",), {"type": int,
               "help": "quantization-aware fine-tuning of the pick after its training, "
                       "computing what the int8 firmware computes (models/qat.py; 0: off; "
                       "standard: 0, see bench/quant.md)"}),
        Option("qat_lr", ("--qat-lr",), {"type": float,
               "help": "learning rate of the quantization-aware fine-tuning (standard: 1e-4)"}),
    )


def add_recipe_args(p: argparse.ArgumentParser) -> None:
    """--budget, --recipe and the recipe's options as one advanced group; the same
    definition for `mcuc search` and scripts/bench_search.py."""
    p.add_argument("--budget", type=budget_preset, default=None,
                   help="time budget: quick (minutes, a smoke test), standard (the measured "
                        "recipe, about 5 h on a 2-core CPU), full (about twice that), or a "
                        "time such as 2h (the nearest preset; default standard)")
    p.add_argument("--recipe", type=load_recipe_file, default=None, metavar="FILE",
                   help="TOML of recipe options (the names below with _ for -): they "
                        "replace the --budget preset's values")
    g = p.add_argument_group("recipe (advanced)",
                             "each overrides the --budget preset (and --recipe); see "
                             "docs/search.md")
    for o in _options():
        g.add_argument(*o.flags, dest=o.field, default=None, **o.kw)


def option_table() -> list[tuple[str, tuple[str, ...], dict[str, Any]]]:
    """The options add_recipe_args adds, for checking that two parsers agree."""
    return [(o.field, o.flags, o.kw) for o in _options()]


def resolve(a: argparse.Namespace) -> Recipe:
    """The recipe a parsed command line asks for: the --budget preset, then --recipe's
    values, then every option given explicitly (a preset's proxy ranking gives way to
    an explicit --finalists above 1, --proxy-plain to no proxy, --distill-supernet to no
    teacher). Sets the resolved values on `a` too
    (and a.budget to the preset's name)."""
    a.budget = a.budget or "standard"
    r = replace(PRESETS[a.budget], **(a.recipe or {}))
    given = {f.name: getattr(a, f.name) for f in fields(Recipe)
             if getattr(a, f.name, None) is not None}
    r = replace(r, **given)
    # a stage a preset turns on gives way to an explicit option that rules it out
    if "proxy_epochs" not in given and "finalists" in given and r.finalists > 1:
        r = replace(r, proxy_epochs=0)
    if "proxy_plain" not in given and r.proxy_epochs <= 0:
        r = replace(r, proxy_plain=False)
    if "distill_supernet" not in given and r.distill_epochs <= 0:
        r = replace(r, distill_supernet=False)
    for f in fields(Recipe):
        setattr(a, f.name, getattr(r, f.name))
    return r
