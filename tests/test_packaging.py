"""A non-editable install must carry templates, runtime_c and boards with the package."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_carries_data_and_builds(tmp_path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path / "dist"), str(ROOT)], check=True, capture_output=True)
    wheel = next((tmp_path / "dist").glob("mcuc-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in ("mcuc/_data/templates/model.c.j2", "mcuc/_data/runtime_c/src/linear.c",
                     "mcuc/_data/runtime_c/include/mcuc/kernels.h",
                     "mcuc/_data/boards/host/board.toml", "mcuc/models/default.onnx",
                     "mcuc/cli.py"):
        assert required in names, required
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    # Run from the unpacked wheel, away from the checkout: PYTHONPATH wins over the
    # editable install, and the check below proves which copy was imported.
    env = dict(os.environ, PYTHONPATH=str(site))
    code = (
        "import mcuc, mcuc.paths, sys; from mcuc.cli import main;"
        f"assert mcuc.__file__.startswith({str(site)!r}), mcuc.__file__;"
        f"assert str(mcuc.paths.templates_dir()).startswith({str(site)!r});"
        "sys.exit(main(['build', '--out', 'b']))"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "b" / "model").is_file()
    assert (tmp_path / "b" / "report.json").is_file()
