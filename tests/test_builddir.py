"""The build directory as a trust boundary (issue 22): where `mcuc build` refuses to write,
atomic and locked rebuilds (no planted link is followed, no earlier board's file survives,
an interrupted or failed rebuild leaves the previous build), and what `mcuc run` and
`mcuc flash` refuse to trust in a build (tampered mcuc.json, replaced binaries, hanging
programs, outputs outside int8, Tcl in the build path). Real gcc, make, arm-none-eabi-gcc
and the Unicorn engine throughout; stand-in programs only where a test needs a program
that misbehaves (hangs, prints garbage)."""

from __future__ import annotations

import json
import os
import random
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from mcuc import McucError
from mcuc.boards import load_board
from mcuc.builddir import MARKER, staging
from mcuc.buildmeta import load_build, write_meta
from mcuc.cli import main
from mcuc.flash import TCL_PLAIN, flash, flash_command
from mcuc.models.vit import ViTConfig
from mcuc.pipeline import build
from mcuc.runner import run_built
from mcuc.sim.host import build_host, parse_output, run_host
from mcuc.sim.protocol import parse_protocol
from mcuc.target.unicorn import run_unicorn, unicorn_available

from helpers import cli_error_line, random_model

CFG = ViTConfig(img_size=8, in_chans=1, patch=4, dim=8, depth=1, heads=2, mlp_ratio=2.0,
                num_classes=3, pool="cls", encoder="mcuc")
SHAPE = (1, 1, 8, 8)
QP = {"scale": 0.5, "zero_point": 0}




@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict:
    """A tiny ViT as ONNX, two different calibration sets, an input, and a host build."""
    d = tmp_path_factory.mktemp("tiny")
    onnx_path = d / "tiny.onnx"
    torch.onnx.export(random_model(CFG, 5), (torch.zeros(SHAPE),), str(onnx_path),
                      dynamo=False, opset_version=17)
    rng = np.random.default_rng(0)
    calib_a, calib_b = d / "calib_a.npy", d / "calib_b.npy"
    np.save(calib_a, rng.random((8,) + SHAPE[1:]).astype(np.float32))
    np.save(calib_b, (3 * rng.random((8,) + SHAPE[1:])).astype(np.float32))
    x = d / "x.npy"
    np.save(x, rng.random(SHAPE).astype(np.float32))
    host = d / "host"
    build(onnx_path, "host", str(calib_a), host)
    return {"onnx": onnx_path, "calib_a": calib_a, "calib_b": calib_b, "x": x, "host": host,
            "dir": d}


@pytest.fixture(scope="module")
def f746(tiny) -> Path:
    """The tiny model built for stm32f746 (no emulator run: not needed here)."""
    out = tiny["dir"] / "f746"
    build(tiny["onnx"], "stm32f746", str(tiny["calib_a"]), out, emulate=False)
    return out


def _copy(build_dir: Path, dest: Path) -> Path:
    shutil.copytree(build_dir, dest, symlinks=True)
    return dest


def _run_json(capsys, out: Path, x: Path) -> dict:
    assert main(["run", str(out), "--input", str(x), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


# ---------------------------------------------------------------- where a build may go


def _bad_outs(tmp_path: Path, monkeypatch) -> dict[str, tuple[str, str]]:
    """--out values that must be refused: name -> (value, phrase in the error)."""
    a_file = tmp_path / "a_file"
    a_file.write_text("precious\n")
    full = tmp_path / "full"
    full.mkdir()
    (full / "notes.txt").write_text("precious\n")
    target = tmp_path / "real"
    target.mkdir()
    (tmp_path / "link").symlink_to(target)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    # Root ignores permission bits, so there a directory of a read-only file system stands
    # in for a read-only one; both must be one line.
    if os.geteuid() == 0:
        readonly = "/proc/mcuc-test/out"
    else:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        readonly = str(ro / "out")
    return {
        "empty": ("", "empty"),
        "root": ("/", "root directory"),
        "home": (str(home), "home directory"),
        "cwd": (".", "current directory"),
        "parent of cwd": ("..", "contains the current directory"),
        "file": (str(a_file), "not a directory"),
        "non-empty": (str(full), "not an mcuc build"),
        "symlink": (str(tmp_path / "link"), "symbolic link"),
        "long name": (str(tmp_path / ("n" * 240)), "too long"),
        "long path": (str(tmp_path / "/".join(["d" * 200] * 25)), "too long"),
        "under a file": (str(a_file / "out"), "cannot"),
        "read-only": (readonly, "cannot"),
    }


def test_bad_out_is_refused_in_one_line(tiny, tmp_path, monkeypatch, capsys) -> None:
    cases = _bad_outs(tmp_path, monkeypatch)
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    for name, (value, phrase) in cases.items():
        err = cli_error_line(capsys, ["build", "--model", str(tiny["onnx"]), "--calib",
                                 str(tiny["calib_a"]), "--out", value])
        assert phrase in err, (name, err)
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before   # nothing written
    assert (tmp_path / "a_file").read_text() == "precious\n"


def test_existing_empty_dir_and_old_build_are_accepted(tmp_path) -> None:
    from mcuc.builddir import check_out

    empty = tmp_path / "empty"
    empty.mkdir()
    assert check_out(empty) == empty
    old = tmp_path / "old"      # made before the marker existed: has an mcuc.json
    old.mkdir()
    (old / "mcuc.json").write_text("{}")
    (old / "model.c").write_text("")
    assert check_out(old) == old


# ---------------------------------------------------------------- atomic, contained builds


def test_links_planted_in_old_build_are_never_followed(tiny, tmp_path) -> None:
    out = _copy(tiny["host"], tmp_path / "out")
    victim = tmp_path / "victim.txt"
    victim.write_text("victim\n")
    victim_dir = tmp_path / "victim_dir"
    victim_dir.mkdir()
    (victim_dir / "keep.c").write_text("int keep;\n")
    for name in ("report.json", "Makefile", "mcuc.json"):
        (out / name).unlink()
        (out / name).symlink_to(victim)
    shutil.rmtree(out / "runtime")
    (out / "runtime").symlink_to(victim_dir)
    build(tiny["onnx"], "host", str(tiny["calib_a"]), out)
    assert victim.read_text() == "victim\n"
    assert sorted(p.name for p in victim_dir.iterdir()) == ["keep.c"]
    assert not any(p.is_symlink() for p in out.rglob("*"))
    assert json.loads((out / "report.json").read_text())["board"] == "host"


def test_reused_out_keeps_no_files_of_another_board(tiny, f746, tmp_path) -> None:
    out = _copy(f746, tmp_path / "out")
    assert (out / "firmware.elf").is_file() and (out / "linker.ld").is_file()
    build(tiny["onnx"], "host", str(tiny["calib_a"]), out)
    names = {p.relative_to(out).parts[0] for p in out.rglob("*")}
    assert not names & {"firmware.elf", "linker.ld", "board", "renode", "mcuc_prof.h",
                        "linker.json"}, names
    assert not any(n.endswith("_samples.c") for n in names), names
    assert load_build(out).board == "host"


def test_failed_rebuild_leaves_previous_build(tiny, tmp_path, monkeypatch, capsys) -> None:
    """A rebuild that fails inside the build (here: no make on PATH) changes nothing."""
    out = _copy(tiny["host"], tmp_path / "out")
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    ref = _run_json(capsys, out, tiny["x"])
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    err = cli_error_line(capsys, ["build", "--model", str(tiny["onnx"]), "--calib",
                             str(tiny["calib_b"]), "--out", str(out)])
    assert "make" in err
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert _run_json(capsys, out, tiny["x"]) == ref
    assert [p.name for p in tmp_path.iterdir() if ".mcuc-tmp-" in p.name] == []


def test_exception_or_interrupt_inside_staging_keeps_out(tmp_path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / MARKER).write_text("")
    (out / "mcuc.json").write_text("old\n")
    for exc in (McucError("boom"), KeyboardInterrupt()):
        with pytest.raises(type(exc)), staging(out) as tmp:
            (tmp / "mcuc.json").write_text("new\n")
            raise exc
        assert (out / "mcuc.json").read_text() == "old\n"
        assert [p.name for p in tmp_path.iterdir() if "mcuc-tmp" in p.name] == []


def test_second_build_into_same_out_fails_while_first_runs(tmp_path) -> None:
    """The lock: a second build into one --out fails at once with one line (it does not wait),
    and a build into another directory is not held up."""
    out = tmp_path / "out"
    with staging(out) as tmp:
        with pytest.raises(McucError, match="another `mcuc build` is writing") as e, \
                staging(out):
            pass
        assert "\n" not in str(e.value)
        with staging(tmp_path / "other") as t2:
            write_meta(t2, {"board": "host"})
        write_meta(tmp, {"board": "host"})
    assert (out / "mcuc.json").is_file() and (tmp_path / "other" / "mcuc.json").is_file()


def _staged(parent: Path) -> list[str]:
    return [p.name for p in parent.iterdir() if ".mcuc-tmp-" in p.name]


def test_interrupted_rebuilds_leave_a_whole_build(tiny, tmp_path, capsys) -> None:
    """SIGINT and SIGKILL at seeded random moments while `mcuc build` writes (after its
    staging directory appeared) into an existing build, with other calibration data:
    afterwards `mcuc run` gives exactly the output of one of the two clean builds (old or
    new, never a mixture) or refuses in one line; a SIGINT leaves no temporary directory."""
    out_a, out_b = tmp_path / "a", tmp_path / "b"
    cmd = [sys.executable, "-m", "mcuc.cli", "build", "--model", str(tiny["onnx"]), "--out"]
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd + [str(out_a), "--calib", str(tiny["calib_a"])],
                            stdout=subprocess.DEVNULL)
    staged_at = _wait_staged(proc, tmp_path)
    assert proc.wait() == 0 and staged_at is not None
    writing = time.monotonic() - t0 - staged_at      # how long the staged part takes
    build(tiny["onnx"], "host", str(tiny["calib_b"]), out_b)
    refs = [_run_json(capsys, out_a, tiny["x"]), _run_json(capsys, out_b, tiny["x"])]
    assert refs[0] != refs[1]          # the two calibrations really differ
    work = tmp_path / "w"
    work.mkdir()
    out = _copy(out_a, work / "out")
    rng = random.Random(22)
    for i, sig in enumerate([signal.SIGINT, signal.SIGKILL] * 3):
        calib = tiny["calib_b"] if i % 2 == 0 else tiny["calib_a"]
        proc = subprocess.Popen(cmd + [str(out), "--calib", str(calib)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if _wait_staged(proc, work) is not None:
            time.sleep(rng.uniform(0.0, 1.1) * writing)
        proc.send_signal(sig)
        code = proc.wait(timeout=60)
        if sig == signal.SIGINT:      # handled: the staging directory is gone (a build
            # that had finished may still die of the signal while the interpreter exits)
            assert code in (0, 130, -signal.SIGINT), (i, code, proc.stderr.read())
            assert _staged(work) == [], i
        code = main(["run", str(out), "--input", str(tiny["x"]), "--json"])
        captured = capsys.readouterr()
        if code == 0:
            assert json.loads(captured.out) in refs, (i, sig)
        else:
            err = captured.err.strip()
            assert code == 2 and len(err.splitlines()) == 1, err
    # The next build cleans whatever temporary directories the kills left.
    build(tiny["onnx"], "host", str(tiny["calib_a"]), out)
    assert _run_json(capsys, out, tiny["x"]) == refs[0]
    assert _staged(work) == []


def _wait_staged(proc: subprocess.Popen, parent: Path) -> float | None:
    """Seconds until a build's new staging directory appears in parent (None: it ended
    first); those a killed build left before do not count."""
    t0 = time.monotonic()
    before = set(_staged(parent))
    while proc.poll() is None:
        if set(_staged(parent)) - before:
            return time.monotonic() - t0
        time.sleep(0.005)
    return None


# ---------------------------------------------------------------- what is read back


def test_board_names_are_never_paths(tiny, tmp_path, capsys) -> None:
    for name in ("../../x", "../host", "host/", "/etc", "HOST", "host\nx", ""):
        with pytest.raises(McucError, match="unknown board") as e:
            load_board(name)
        assert "\n" not in str(e.value)
    with pytest.raises(McucError, match="unknown board"):
        load_board(7)       # type: ignore[arg-type]
    err = cli_error_line(capsys, ["build", "--board", "../../..", "--out", str(tmp_path / "o")])
    assert "unknown board" in err and not (tmp_path / "o").exists()
    out = _copy(tiny["host"], tmp_path / "b")
    meta = json.loads((out / "mcuc.json").read_text())
    meta["board"] = "../../../tmp"
    (out / "mcuc.json").write_text(json.dumps(meta))
    assert "unknown board" in cli_error_line(capsys, ["run", str(out), "--input", str(tiny["x"])])


def _evil(tmp_path: Path) -> tuple[Path, Path]:
    """A script that creates CANARY when run, and the canary's path."""
    canary = tmp_path / "CANARY"
    script = tmp_path / "evil.sh"
    script.write_text(f"#!/bin/sh\ntouch {shlex.quote(str(canary))}\n"
                      "echo MCUC_OUTPUT 1 2 3\necho MCUC_STATUS 0\n")
    script.chmod(0o755)
    return script, canary


def _tamper(out: Path, case: str, evil: Path) -> str:
    """Apply one tampering to a host build; returns a phrase its error line must hold."""
    meta_path = out / "mcuc.json"
    meta = json.loads(meta_path.read_text())
    if case == "binary replaced":
        shutil.copy(evil, out / "model")
        return "was changed after it was built (model does not match mcuc.json)"
    if case == "binary is a link":
        (out / "model").unlink()
        (out / "model").symlink_to(evil)
        return "symbolic link"
    if case == "corrupt json":
        meta_path.write_text(meta_path.read_text()[:-30])
        return "is corrupt"
    if case == "not json object":
        meta_path.write_text("[1, 2]")
        return "not a JSON object"
    if case == "old format":
        del meta["format"]
    elif case == "exe /bin/sh":
        meta["exe"] = "/bin/sh"
        meta["files"]["/bin/sh"] = meta["files"]["model"]
    elif case == "exe absolute":
        meta["exe"] = str(evil)
    elif case == "exe ..":
        meta["exe"] = "../evil.sh"
    elif case == "exe not built":
        shutil.copy(evil, out / "evil.sh")
        meta["exe"] = "evil.sh"
    elif case == "elf absolute":
        meta["elf"] = "/bin/sh"
    elif case == "scale 0":
        meta["output"]["scale"] = 0
    elif case == "scale nan":
        meta["input"]["scale"] = float("nan")      # json.dumps writes it as NaN
    elif case == "zero point 500":
        meta["input"]["zero_point"] = 500
    elif case == "zero point float":
        meta["output"]["zero_point"] = 1.5
    elif case == "shape huge":
        meta["input_shape"] = [1, 100000, 100000]
    elif case == "shape zero":
        meta["output_shape"] = [1, 0]
    elif case == "digest forged":
        meta["files"]["model"] = "0" * 64
    elif case == "file digest list gone":
        del meta["files"]
    elif case == "name hostile":
        meta["name"] = "../x$(touch CANARY)"
    meta_path.write_text(json.dumps(meta))
    return {"old format": "format", "exe /bin/sh": "not a plain file name",
            "exe absolute": "not a plain file name", "exe ..": "not a plain file name",
            "exe not built": "was not built", "elf absolute": "names an elf",
            "scale 0": "scale", "scale nan": "scale", "zero point 500": "zero point",
            "zero point float": "zero point", "shape huge": "input_shape",
            "shape zero": "output_shape", "digest forged": "was changed after it was built",
            "file digest list gone": "digests", "name hostile": "invalid model name"}[case]


TAMPERINGS = ["binary replaced", "binary is a link", "corrupt json", "not json object",
              "old format", "exe /bin/sh", "exe absolute", "exe ..", "exe not built",
              "elf absolute", "scale 0", "scale nan", "zero point 500", "zero point float",
              "shape huge", "shape zero", "digest forged", "file digest list gone",
              "name hostile"]


def test_tampered_build_is_refused_and_nothing_runs(tiny, tmp_path, capsys) -> None:
    evil, canary = _evil(tmp_path)
    for case in TAMPERINGS:
        out = _copy(tiny["host"], tmp_path / case.replace(" ", "_").replace("/", "_"))
        phrase = _tamper(out, case, evil)
        err = cli_error_line(capsys, ["run", str(out), "--input", str(tiny["x"])])
        assert phrase in err, (case, err)
        assert not canary.exists(), case
    # The same script as an honestly described program runs: the canary works.
    good = tmp_path / "good"
    _fake_host_build(good, evil.read_text())
    run_built(good, np.zeros(4, np.float32))
    assert canary.exists()


def test_tampered_firmware_is_refused_by_flash_and_run(f746, tmp_path, capsys) -> None:
    out = _copy(f746, tmp_path / "fw")
    elf = out / "firmware.elf"
    blob = bytearray(elf.read_bytes())
    blob[-1] ^= 1
    elf.write_bytes(bytes(blob))
    np.save(tmp_path / "x.npy", np.zeros(SHAPE, np.float32))
    for argv in (["flash", str(out), "--dry-run"],
                 ["run", str(out), "--engine", "unicorn", "--input", str(tmp_path / "x.npy")]):
        err = cli_error_line(capsys, argv)
        assert "firmware.elf does not match mcuc.json" in err


# ---------------------------------------------------------------- flash


def test_flash_path_with_spaces_and_tcl_is_inert(f746, tmp_path, monkeypatch, capsys) -> None:
    """A build directory named with spaces and `[exec touch CANARY]`: the dry-run line is a
    safe shell line, openocd's argv holds no Tcl-active text, and flashing (through a
    stand-in openocd that records its argv and runs nothing) works and runs nothing."""
    parent = tmp_path / "my builds"
    parent.mkdir()
    out = _copy(f746, parent / "x[exec touch CANARY] $(touch CANARY) `touch CANARY` ;{}")
    cmd, cwd = flash_command(out)
    assert cwd == out
    assert cmd[:3] == ["openocd", "-f", "board/stm32f7discovery.cfg"]
    assert cmd[3] == "-c" and cmd[4] == "program firmware.elf verify reset exit"
    assert all(TCL_PLAIN.fullmatch(w) for a in cmd for w in a.split())
    line = flash(out, dry_run=True)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    record = tmp_path / "argv.json"
    fake = bindir / "openocd"
    fake.write_text(f"#!{sys.executable}\nimport json, os, sys\n"
                    f"json.dump([os.getcwd()] + sys.argv[1:], open({str(record)!r}, 'w'))\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    subprocess.run(["bash", "-c", line], check=True, cwd=tmp_path)   # the copy-pasted line
    assert json.loads(record.read_text()) == [str(out)] + cmd[1:]
    record.unlink()
    assert main(["flash", str(out)]) == 0
    assert "flashed:" in capsys.readouterr().out
    assert json.loads(record.read_text()) == [str(out)] + cmd[1:]
    assert not list(tmp_path.rglob("CANARY"))


# ---------------------------------------------------------------- misbehaving programs


def _fake_host_build(out: Path, script: str) -> Path:
    """A host build whose program is `script`, described honestly by mcuc.json."""
    out.mkdir()
    exe = out / "model"
    exe.write_text(script)
    exe.chmod(0o755)
    write_meta(out, {"board": "host", "name": "model", "input_shape": [1, 4], "input": QP,
                     "output_shape": [1, 3], "output": QP, "exe": "model"})
    return out


@pytest.mark.parametrize("script,phrase", [
    ("#!/bin/sh\nsleep 30 & sleep 30\n", "did not finish within 0.5 s"),
    ("#!/bin/sh\necho MCUC_OUTPUT 1 300 2\necho MCUC_STATUS 0\n", "outside int8"),
    ("#!/bin/sh\necho MCUC_OUTPUT 1 -129 2\necho MCUC_STATUS 0\n", "outside int8"),
    ("#!/bin/sh\necho MCUC_OUTPUT 1 x 2\necho MCUC_STATUS 0\n", "malformed"),
    ("#!/bin/sh\necho MCUC_OUTPUT 1 2 3\necho MCUC_STATUS\n", "malformed"),
    ("#!/bin/sh\necho MCUC_OUTPUT 1 2\necho MCUC_STATUS 0\n", "printed 2 output values"),
    ("#!/bin/sh\nprintf 'MCUC_OUTPUT 1\\033[2J\\nMCUC_STATUS 0\\n'\n", "malformed"),
])
def test_misbehaving_program_is_one_line(tmp_path, script, phrase) -> None:
    out = _fake_host_build(tmp_path / "b", script)
    t0 = time.monotonic()
    with pytest.raises(McucError) as e:
        run_built(out, np.zeros(4, np.float32), timeout=0.5)
    assert time.monotonic() - t0 < 10      # the whole process group was stopped
    msg = str(e.value)
    assert phrase in msg and "\n" not in msg and "\x1b" not in msg, msg


def test_hanging_make_and_program_are_one_line(tmp_path) -> None:
    d = tmp_path / "m"
    d.mkdir()
    (d / "Makefile").write_text("model:\n\tsleep 30\n")
    t0 = time.monotonic()
    with pytest.raises(McucError, match=r"host C build \(make\) did not finish within 0.5 s"):
        build_host(d, timeout=0.5)
    exe = tmp_path / "hang"
    exe.write_text("#!/bin/sh\nexec sleep 30\n")
    exe.chmod(0o755)
    with pytest.raises(McucError, match="did not finish within 0.5 s"):
        run_host(exe, np.zeros(4, np.int8), timeout=0.5)
    assert time.monotonic() - t0 < 10


def test_protocol_parsers_reject_out_of_range_and_garbage() -> None:
    for text in ("MCUC_OUTPUT 128\nMCUC_STATUS 0\nMCUC_DONE\n", "MCUC_OUTPUT 1 2\nMCUC_STACK x\n",
                 "MCUC_STATUS\n", "MCUC_OUTPUT -99999999999999999999\n"):
        with pytest.raises(McucError) as e:
            parse_protocol(text)
        assert "\n" not in str(e.value)
        with pytest.raises(McucError):
            parse_output(text.replace("MCUC_STACK", "MCUC_STATUS"))
    assert parse_output("MCUC_OUTPUT -128 127\nMCUC_STATUS 0\n")[0].tolist() == [-128, 127]


def test_unicorn_instruction_limit_is_one_line(f746) -> None:
    assert unicorn_available()
    with pytest.raises(McucError, match="did not finish within 1,000 instructions"):
        run_unicorn(f746 / "firmware.elf", np.zeros((1, 64), np.int8), max_instructions=1000)
