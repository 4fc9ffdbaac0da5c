"""The build directory: where `mcuc build` may write, and how it replaces a build atomically.

A build is written into a fresh temporary directory beside `--out` and renamed into place
only once everything (C, program or firmware, report.json, mcuc.json) succeeded, so an
interrupted or failed build leaves the previous build intact, files of an earlier board
cannot survive, and links planted in an old `--out` are never written through. A lock file
beside `--out` stops two builds into one directory from interleaving; the second fails at
once with one line. What `mcuc run` and `mcuc flash` read back is checked by
mcuc.buildmeta.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from mcuc import McucError
from mcuc.text import path_line

MARKER = ".mcuc-build"
META = "mcuc.json"
# Longest --out name: the temporary sibling adds `.`, `.mcuc-tmp-` and 8 characters and must
# stay within NAME_MAX (255 bytes); the whole path stays well within PATH_MAX (4096).
MAX_NAME_BYTES = 200
MAX_PATH_BYTES = 3800
_RENAME_EXCHANGE = 2


def _is_build(path: Path) -> bool:
    """A directory `mcuc build` made: it holds the marker (or, from before the marker, an
    mcuc.json), as a plain file."""
    for name in (MARKER, META):
        try:
            if stat.S_ISREG(os.lstat(path / name).st_mode):
                return True
        except OSError:
            pass
    return False


def check_out(out_dir: Path | str) -> Path:
    """The absolute --out path, or one line saying why mcuc must not build there."""
    if not isinstance(out_dir, str | os.PathLike) or not os.fspath(out_dir).strip():
        raise McucError("the output directory is empty; name one with --out, e.g. build/model")
    raw = os.fspath(out_dir)
    out = Path(os.path.abspath(raw))
    encoded = os.fsencode(out)
    if len(encoded) > MAX_PATH_BYTES:
        raise McucError(f"output directory path is too long ({len(encoded)} bytes; at most "
                        f"{MAX_PATH_BYTES}): {path_line(raw)}")
    if any(len(os.fsencode(p)) > 255 for p in out.parts):
        raise McucError(f"output directory has a path component longer than 255 bytes: "
                        f"{path_line(raw)}")
    if out == Path(out.anchor):
        raise McucError(f"refusing to build into the root directory {path_line(out)}; "
                        "name a directory with --out")
    if len(os.fsencode(out.name)) > MAX_NAME_BYTES:
        raise McucError(f"output directory name is too long ({len(os.fsencode(out.name))} "
                        f"bytes; at most {MAX_NAME_BYTES}): {path_line(raw)}")
    with contextlib.suppress(RuntimeError, KeyError):
        if out == Path(os.path.abspath(Path.home())):
            raise McucError(f"refusing to build into the home directory {path_line(out)}; "
                            "name a directory with --out")
    try:
        st = os.lstat(out)
    except FileNotFoundError:
        return out
    except OSError as e:
        raise McucError(f"cannot use output directory {path_line(out)}: {e.strerror}") from None
    if stat.S_ISLNK(st.st_mode):
        raise McucError(f"output directory {path_line(out)} is a symbolic link; name the real "
                        "directory with --out")
    if not stat.S_ISDIR(st.st_mode):
        raise McucError(f"output directory {path_line(out)} exists and is not a directory")
    build = _is_build(out)
    cwd = Path(os.getcwd())
    if out == cwd and not build:
        raise McucError(f"refusing to build into the current directory {path_line(out)}; "
                        "name a new directory with --out")
    if out in cwd.parents:
        raise McucError(f"refusing to build into {path_line(out)}: it contains the current "
                        "directory")
    if not build and _non_empty(out):
        raise McucError(f"output directory {path_line(out)} is not empty and is not an mcuc build "
                        f"(no {MARKER}); name a new or empty directory with --out")
    return out


def _non_empty(path: Path) -> bool:
    try:
        with os.scandir(path) as it:
            return any(True for _ in it)
    except OSError as e:
        raise McucError(f"cannot read output directory {path_line(path)}: {e.strerror}") from None


def _stale(out: Path) -> re.Pattern[str]:
    """Names of temporary siblings an interrupted build of `out` may have left."""
    return re.compile(rf"\.{re.escape(out.name)}\.mcuc-(tmp|old)-[A-Za-z0-9_]{{8}}")


def _remove(path: Path) -> None:
    """Delete a directory tree without following links (a link itself is unlinked)."""
    try:
        if stat.S_ISDIR(os.lstat(path).st_mode):
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.unlink(path)
    except OSError:
        pass


@contextlib.contextmanager
def _lock(out: Path) -> Iterator[None]:
    """Hold `.{name}.mcuc-lock` beside out; a second build into out fails at once."""
    path = out.parent / f".{out.name}.mcuc-lock"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError as e:
        raise McucError(f"cannot create the lock file {path_line(path)}: {e.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise McucError(f"another `mcuc build` is writing {path_line(out)} right now; wait for "
                            "it to finish") from None
        yield
    finally:
        os.close(fd)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd = -100
    rc = fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _publish(tmp: Path, out: Path) -> None:
    """Put the finished build tmp at out; the old build (if any) ends up at tmp or aside."""
    if not os.path.lexists(out):
        os.rename(tmp, out)
        return
    if _exchange(tmp, out):
        return
    aside = Path(tempfile.mkdtemp(prefix=f".{out.name}.mcuc-old-", dir=out.parent))
    os.rename(out, aside)
    try:
        os.rename(tmp, out)
    except BaseException:
        os.rename(aside, out)
        raise
    _remove(aside)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def staging(out_dir: Path | str, last: str = META,
            made_by: str = "mcuc build") -> Iterator[Path]:
    """Yield a fresh temporary directory beside out_dir to build into; when the block ends
    without an exception it replaces out_dir, otherwise it is deleted and out_dir is left
    as it was. The block must write `last` (a build: mcuc.json, see buildmeta.write_meta)
    last; `made_by` names the command in the marker file."""
    out = check_out(out_dir)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise McucError(f"cannot create {path_line(out.parent)}: {e.strerror}") from None
    with _lock(out):
        check_out(out)     # again, now that no other build can change it
        pattern = _stale(out)
        for entry in os.listdir(out.parent):
            if pattern.fullmatch(entry):
                _remove(out.parent / entry)
        try:
            tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.mcuc-tmp-", dir=out.parent))
        except OSError as e:
            raise McucError(f"cannot write to {path_line(out.parent)}: {e.strerror}") from None
        try:
            os.chmod(tmp, 0o777 & ~_umask())
            (tmp / MARKER).write_text(f"made by `{made_by}`, which replaces this directory "
                                      "as a whole each time\n")
            yield tmp
            if not stat.S_ISREG(os.lstat(tmp / last).st_mode):
                raise McucError(f"internal error: `{made_by}` wrote no {last}")
            _publish(tmp, out)
        except OSError as e:
            raise McucError(f"cannot write the build {path_line(out)}: "
                            f"{e.strerror or e}") from None
        finally:
            _remove(tmp)
