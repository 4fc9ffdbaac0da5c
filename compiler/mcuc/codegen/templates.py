"""The one Jinja environment for every generated file (C sources, Makefiles, linker
scripts, Renode scripts): one loader and one set of options, built once per process."""

from __future__ import annotations

from functools import cache

import jinja2

from mcuc.paths import templates_dir


def environment() -> jinja2.Environment:
    """Undefined names fail (a typo in a template is an error, not an empty string);
    files keep their last newline."""
    return _environment(str(templates_dir()))


@cache
def _environment(folder: str) -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(folder),
                              undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
