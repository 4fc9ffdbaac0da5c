"""Where the non-Python parts (templates, runtime_c, boards) live.

A wheel carries them under mcuc/_data; a source checkout (editable install or tests)
has them at the repository root. Both layouts are looked up the same way.
"""

from __future__ import annotations

from pathlib import Path

_PKG = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """Directory `name` (templates, runtime_c or boards) from the wheel or the checkout."""
    for base in (_PKG / "_data", _PKG.parent.parent):
        candidate = base / name
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"mcuc data directory '{name}' not found (broken install?)")


def templates_dir() -> Path:
    return data_dir("templates")


def runtime_dir() -> Path:
    return data_dir("runtime_c")


def boards_dir() -> Path:
    return data_dir("boards")
