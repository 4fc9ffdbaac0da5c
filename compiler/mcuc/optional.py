"""Dependencies that a plain `pip install mcuc` leaves out (pyproject's extras): a command
that needs one stops with one line naming the extra, not with a traceback."""

from __future__ import annotations

import importlib.util

from mcuc import McucError


def require(module: str, extra: str, what: str) -> None:
    """McucError unless the top-level package `module` can be imported."""
    if importlib.util.find_spec(module) is None:
        raise McucError(f"{what} needs {module}, which is not installed: "
                        f"pip install 'mcuc[{extra}]'")
