#!/usr/bin/env python3
"""Train and measure one ViT config exactly as `make bench-search` trains a searched model.

For a pick made outside a full bench run (e.g. by `python scripts/bench_search.py ...
--proxy-plain --budgets 32`, whose proxy ranking picks the config): the same recipe,
teacher, held-out split and model cache (OUT/models/), so `scripts/promote_default.py`
takes its model as it takes a full run's. Prints the table row as one JSON line.

Usage: .venv/bin/python scripts/bench_config.py --config CONFIG [--repeat I] -- BENCH FLAGS
CONFIG is a JSON object or file with SubnetConfig's keys (as in search.json); heads,
mlp_ratio and lowrank may be one number for every block.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench_search import parse_args, train_config
from mcuc import McucError
from mcuc.nas.space import SubnetConfig


def config(text: str) -> SubnetConfig:
    """A JSON object (inline or in a file), per-block keys broadcast from one number."""
    path = Path(text)
    try:
        d = json.loads(path.read_text() if path.is_file() else text)
    except json.JSONDecodeError as e:
        raise McucError(f"--config is neither a JSON object nor a JSON file: {e}") from None
    if not isinstance(d, dict):
        raise McucError("--config must be a JSON object")
    depth = d.get("depth")
    for key in ("heads", "mlp_ratio", "lowrank"):
        if isinstance(d.get(key), int | float) and isinstance(depth, int):
            d[key] = [d[key]] * depth
    return SubnetConfig.from_dict(d)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ours, bench = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv \
        else (argv, [])
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True, help="JSON object or file (see above)")
    ap.add_argument("--repeat", type=int, default=0, help="training seed --seed + this")
    a = ap.parse_args(ours)
    try:
        row = train_config(parse_args(bench), config(a.config), a.repeat)
    except McucError as e:
        raise SystemExit(f"mcuc: error: {e}") from None
    print(json.dumps(row, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
