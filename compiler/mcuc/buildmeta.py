"""mcuc.json: what a build is, written last by `mcuc build`, checked before anything runs.

A build directory is untrusted when it is read back (it may have been edited, copied from
someone else, or half-written by an older mcuc): `load_build` accepts only a file of the
current format whose board is a known one, whose shapes and quantization parameters make
sense, whose file names are plain relative names inside the directory (no links), and
whose files still have the sha256 digests recorded at build time. Any other case is one
error line, and `mcuc run` / `mcuc flash` execute nothing.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from mcuc import McucError, __version__
from mcuc.builddir import META
from mcuc.codegen.modelname import model_files, name_problem
from mcuc.quant.qparams import QParams
from mcuc.text import one_line, path_line

FORMAT = 3   # 3: the model's files are named after it (`name`, codegen/modelname.py)
MAX_META_BYTES = 1 << 20
MAX_RANK = 8
MAX_ELEMENTS = 1 << 26
_COMPONENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,127}")
_DIGEST = re.compile(r"[0-9a-f]{64}")
_REBUILD = "rebuild with `mcuc build`"


@dataclass(frozen=True)
class Build:
    """A checked build directory (absolute paths)."""
    path: Path
    board: str
    input_shape: tuple[int, ...]
    input_qp: QParams
    output_shape: tuple[int, ...]
    output_qp: QParams
    exe: Path | None      # host program
    elf: Path | None      # MCU firmware
    meta: dict
    name: str = "model"   # the model's name: its files <name>.c, <name>.h, ... and symbols

    @property
    def model_files(self) -> dict[str, Path]:
        """The model's own generated files (self-contained C: header, model, weights)."""
        return {k: self.path / v for k, v in model_files(self.name).items()}


def sources(name: str) -> list[str]:
    """Sources whose digests are recorded beside the binary's (when the build has them)."""
    return list(model_files(name).values()) + ["main.c"]


def sha256(path: Path) -> str:
    """Digest of a regular file, opened without following a link."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    h = hashlib.sha256()
    with os.fdopen(fd, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_meta(out: Path, meta: dict) -> None:
    """Write out/mcuc.json: meta plus format, version and the digests of the binary
    (meta's exe or elf) and the generated sources. Call it last in a build."""
    names = [meta[k] for k in ("exe", "elf") if meta.get(k)] + sources(meta.get("name", "model"))
    files = {n: sha256(out / n) for n in names if (out / n).is_file()}
    data = {"format": FORMAT, "mcuc": __version__, **meta, "files": files}
    (out / META).write_text(json.dumps(data, indent=2) + "\n")


def _bad(where: str, what: str) -> McucError:
    return McucError(f"{where} {what}; {_REBUILD}")


def _read(path: Path) -> dict:
    where = path_line(path / META)
    try:
        st = os.lstat(path / META)
    except FileNotFoundError:
        raise McucError(f"{path_line(path)} is not an mcuc build directory (no {META}); "
                        "run `mcuc build` first") from None
    except OSError as e:
        raise McucError(f"cannot read {where}: {e.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise _bad(where, "is not a regular file")
    if st.st_size > MAX_META_BYTES:
        raise _bad(where, f"is {st.st_size:,} bytes, too large to be mcuc's")
    try:
        with os.fdopen(os.open(path / META, os.O_RDONLY | os.O_NOFOLLOW), "rb") as f:
            meta = json.loads(f.read().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise _bad(where, f"is corrupt ({one_line(str(e).splitlines()[0], 80)})") from None
    except OSError as e:
        raise McucError(f"cannot read {where}: {e.strerror}") from None
    if not isinstance(meta, dict):
        raise _bad(where, "is not a JSON object")
    if meta.get('format') != FORMAT:
        raise _bad(where, f"has format {one_line(repr(meta.get('format')), 40)}, not {FORMAT} "
                          "(made by another mcuc version)")
    return meta


def _shape(meta: dict, key: str, where: str) -> tuple[int, ...]:
    v = meta.get(key)
    ok = (isinstance(v, list) and 1 <= len(v) <= MAX_RANK
          and all(isinstance(d, int) and not isinstance(d, bool) and 1 <= d <= MAX_ELEMENTS
                  for d in v) and math.prod(v) <= MAX_ELEMENTS)
    if not ok:
        raise _bad(where, f"has an invalid {key} ({one_line(repr(v), 60)})")
    return tuple(v)


def _qparams(meta: dict, key: str, where: str) -> QParams:
    v = meta.get(key)
    if not isinstance(v, dict) or set(v) != {"scale", "zero_point"}:
        raise _bad(where, f"has invalid {key} quantization ({one_line(repr(v), 60)})")
    s, zp = v["scale"], v["zero_point"]
    if (isinstance(s, bool) or not isinstance(s, int | float) or not math.isfinite(s)
            or not 1e-30 < s < 1e30):
        raise _bad(where, f"has an invalid {key} scale {one_line(repr(s), 40)} "
                          "(must be finite and positive)")
    if isinstance(zp, bool) or not isinstance(zp, int) or not -128 <= zp <= 127:
        raise _bad(where, f"has an invalid {key} zero point {one_line(repr(zp), 40)} "
                          "(must be an integer in [-128, 127])")
    return QParams(float(s), zp)


def _relative(value: object, key: str, where: str) -> str:
    """A plain relative file name inside the build: no '/', '..', '.' prefix or odd byte."""
    if (not isinstance(value, str) or len(value) > 255
            or not all(_COMPONENT.fullmatch(c) for c in value.split("/"))):
        raise _bad(where, f"names {key} {one_line(repr(value), 80)}, which is not a plain file "
                          "name inside the build directory")
    return value


def _check_file(root: Path, rel: str, digest: str) -> Path:
    """root/rel exists as a regular file reached through no link and has `digest`."""
    p = root
    for part in rel.split("/"):
        p = p / part
        try:
            mode = os.lstat(p).st_mode
        except FileNotFoundError:
            raise McucError(f"{path_line(p)} is missing; {_REBUILD}") from None
        except OSError as e:
            raise McucError(f"cannot read {path_line(p)}: {e.strerror}") from None
        if stat.S_ISLNK(mode):
            raise McucError(f"{path_line(p)} is a symbolic link, which mcuc never builds; "
                            f"{_REBUILD}")
    if not stat.S_ISREG(mode):
        raise McucError(f"{path_line(p)} is not a regular file; {_REBUILD}")
    try:
        ok = sha256(p) == digest
    except OSError as e:
        raise McucError(f"cannot read {path_line(p)}: {e.strerror}") from None
    if not ok:
        raise McucError(f"{path_line(root)} was changed after it was built "
                        f"({path_line(rel)} does not match {META}); {_REBUILD}")
    return p


def load_build(out_dir: Path | str) -> Build:
    """The checked build in out_dir; one McucError line for anything wrong with it."""
    from mcuc.boards import load_board

    root = Path(os.path.abspath(out_dir))
    meta = _read(root)
    where = path_line(root / META)
    board = meta.get("board")
    try:
        b = load_board(board)
    except McucError as e:
        raise McucError(f"{where}: {e}") from None
    name = meta.get("name")
    if not isinstance(name, str) or name_problem(name) is not None:
        raise _bad(where, f"has an invalid model name {one_line(repr(name), 60)}")
    in_shape, out_shape = _shape(meta, "input_shape", where), _shape(meta, "output_shape", where)
    in_qp, out_qp = _qparams(meta, "input", where), _qparams(meta, "output", where)
    kind, other = ("elf", "exe") if b.is_mcu else ("exe", "elf")
    binary = _relative(meta.get(kind), kind, where)
    if meta.get(other) is not None:
        raise _bad(where, f"names an {other} for board {b.name}")
    if meta.get("renode") is not None:
        _relative(meta["renode"], "renode", where)
    files = meta.get("files")
    if not isinstance(files, dict) or not all(
            isinstance(d, str) and _DIGEST.fullmatch(d) for d in files.values()):
        raise _bad(where, "has no valid file digests")
    if binary not in files:
        raise McucError(f"{path_line(root / binary)} was not built (no digest in {META}); "
                        f"{_REBUILD}")
    checked = {rel: _check_file(root, _relative(rel, "file", where), d)
               for rel, d in files.items()}
    exe = checked[binary] if kind == "exe" else None
    elf = checked[binary] if kind == "elf" else None
    return Build(root, b.name, in_shape, in_qp, out_shape, out_qp, exe, elf, meta, name)
