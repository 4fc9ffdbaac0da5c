"""Untrusted text (model names, paths, messages) as one printable line; and `fresh`, the one
rule for making a name new.

Error messages and logs quote text from outside: an ONNX name, a path, an exception. It may
hold newlines, terminal escapes, bidi controls or invalid UTF-8, any of which could forge
output lines or repaint a terminal. This is the one rule for showing such text: printable
ASCII stays, every other character becomes a backslash escape, and the length is capped.
"""

from __future__ import annotations

import os
from collections.abc import Container

MAX_ERROR_CHARS = 1000  # an error line stays readable in a terminal and a CI log


def as_text(value: object) -> str:
    """Model strings may arrive as bytes (protobuf hands out a proto2 string field that is
    not UTF-8 as bytes), paths or other objects; undecodable bytes become escapes."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="backslashreplace")
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
        if isinstance(value, bytes):
            return value.decode("utf-8", errors="backslashreplace")
    return str(value)


def _escape(ch: str) -> str:
    if " " <= ch <= "~":
        return ch
    o = ord(ch)
    return f"\\x{o:02x}" if o < 0x100 else (f"\\u{o:04x}" if o < 0x10000 else f"\\U{o:08x}")


def one_line(text: object, limit: int = 80, *, middle: bool = False) -> str:
    """`text` as printable ASCII on one line, at most about `limit` source characters:
    cut at the end (with how much was left out), or in the middle for paths (`middle`),
    whose two ends say the most. Idempotent: its output passes through unchanged."""
    s = as_text(text)
    if len(s) > limit and middle:
        half = max(limit // 2, 1)
        return "".join(map(_escape, s[:half])) + "..." + "".join(map(_escape, s[-half:]))
    out = "".join(map(_escape, s[:limit]))
    return out + (f"... ({len(s) - limit:,} more characters)" if len(s) > limit else "")


def path_line(path: object) -> str:
    """A path for a message: one_line, cut in the middle so both ends stay."""
    return one_line(path, 120, middle=True)


def cut(text: object, n: int) -> str:
    """one_line for a table column: at most `n` characters, a cut marked with `~`."""
    text = one_line(text, 1000)
    return text if len(text) <= n else text[: n - 1] + "~"


def fresh(base: str, taken: Container[str]) -> str:
    """`base`, else the first of `base_1`, `base_2`, ... not in `taken`: the one rule by
    which the frontend, the graph, lowering, the schedule passes and the C tables make a
    name new."""
    name, k = base, 0
    while name in taken:
        k += 1
        name = f"{base}_{k}"
    return name
