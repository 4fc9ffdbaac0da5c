"""The Python API (issue 25 item 6): mcuc.build / run / validate / export take the CLI's
options under the same names and return what the CLI prints, as data."""

from __future__ import annotations

import argparse
import inspect
import json

import numpy as np
import pytest

import mcuc
from mcuc import McucError, api
from mcuc.cli import main, parser
from mcuc.datasets import load_fashion_mnist

# CLI destinations that are output formatting, not options of the library call.
CLI_ONLY = {"fn", "json", "cmd"}
# CLI name -> API name where the CLI's positional differs.
RENAMED = {("run", "input"): "input", ("export", "build"): "build_dir"}


def _subparser(cmd: str) -> argparse.ArgumentParser:
    sub = next(a for a in parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[cmd]


@pytest.mark.parametrize("cmd", ["build", "run", "validate", "export"])
def test_every_cli_option_is_an_api_parameter(cmd: str) -> None:
    dests = {a.dest for a in _subparser(cmd)._actions
             if not isinstance(a, argparse._HelpAction)} - CLI_ONLY
    params = set(inspect.signature(getattr(api, cmd)).parameters)
    missing = {d for d in dests if RENAMED.get((cmd, d), d) not in params}
    assert not missing, f"mcuc.{cmd} lacks the CLI's options {sorted(missing)}"
    assert getattr(mcuc, cmd) is getattr(api, cmd)


def test_build_run_validate_export_from_python(tmp_path, capsys) -> None:
    out = tmp_path / "b"
    rep = mcuc.build(board="host", out=out, name="fm", lib=True)
    assert rep["name"] == "fm" and (out / "fm.c").is_file()
    assert rep["lib"] == str(out / "lib") and (out / "lib" / "CMakeLists.txt").is_file()
    x, _ = load_fashion_mnist("test", 3)
    res = mcuc.run(out, x[0][None])
    np.save(tmp_path / "x.npy", x[0][None])
    assert main(["run", str(out), "--input", str(tmp_path / "x.npy"), "--json"]) == 0
    cli = json.loads(capsys.readouterr().out)
    assert cli["output"] == res.output.tolist() and cli["argmax"] == res.argmax
    assert mcuc.run(out, tmp_path / "x.npy").output.tolist() == cli["output"]
    v = mcuc.validate(out, data="fashion-mnist:3")
    assert v.bit_exact and v.images == 3 and v.engine == "host"
    assert mcuc.export(out, tmp_path / "lib2") == tmp_path / "lib2"


def test_api_errors_are_one_line() -> None:
    with pytest.raises(McucError, match="report must be one of"):
        mcuc.build(report="everything")
    with pytest.raises(AttributeError):
        mcuc.no_such_function  # noqa: B018
