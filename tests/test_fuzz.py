"""Mutation fuzzing of the default model (tests/fuzz_models.py): every damaged model must
end in a successful `mcuc build --board host` or exactly one `mcuc: error:` line (exit
2) -- never a traceback, a multi-line dump, a crash or a hang.

Each case runs in a forked child (imports shared, memory capped, killed after a
timeout). gcc runs for every 10th case; the others stop after writing the C sources.
FUZZ_CASES (default 200) and FUZZ_SEED (default 0) choose the cases; `make fuzz` runs
3000. A failing case replays alone with FUZZ_SEED=<seed> FUZZ_CASES=1.
"""

from __future__ import annotations

import os
import shutil
import time
from collections import Counter
from pathlib import Path

import numpy as np

import fuzz_models as fm

CASES = int(os.environ.get("FUZZ_CASES", "200"))
FIRST = int(os.environ.get("FUZZ_SEED", "0"))
TIMEOUT_S = 60.0
C_EVERY = 10


def test_mutated_models_build_or_fail_in_one_line(tmp_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot  # noqa: F401 - imported once here, not in every child

    import mcuc.cli  # noqa: F401
    import mcuc.pipeline  # noqa: F401

    model, data = fm.base()
    calib = tmp_path / "calib.npy"
    np.save(calib, np.random.default_rng(0).random((2, 1, 28, 28), dtype=np.float32))
    counts: Counter[str] = Counter()
    bad: list[str] = []
    t0 = time.perf_counter()
    for seed in range(FIRST, FIRST + CASES):
        blob, what = fm.mutate(seed, model, data)
        path = tmp_path / "model.onnx"
        path.write_bytes(blob)
        out = tmp_path / "out"
        kind, err = fm.run_case(["build", "--board", "host", "--model", str(path),
                                 "--calib", str(calib), "--out", str(out)],
                                tmp_path / "stderr.txt", compile_c=seed % C_EVERY == 0,
                                timeout=TIMEOUT_S)
        counts[kind] += 1
        if kind in ("bad", "hang"):
            bad.append(f"seed {seed} ({what}): {kind}: {err[-600:]}")
        shutil.rmtree(out, ignore_errors=True)
    seconds = time.perf_counter() - t0
    table = (f"fuzz: {CASES} cases from seed {FIRST} in {seconds:.0f} s: "
             f"{counts['error']} clean errors, {counts['build']} builds, "
             f"{counts['bad']} tracebacks/other, {counts['hang']} hangs")
    print(table)
    assert not bad, table + "\n" + "\n".join(bad[:5])
    # the mutations must reach both ends: a fuzzer whose every case fails to parse (or
    # builds) would pass without testing the checks
    assert counts["build"] >= CASES // 20 and counts["error"] >= CASES // 3, table
