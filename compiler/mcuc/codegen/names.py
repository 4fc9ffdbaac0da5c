"""The one trust boundary for model-derived text in generated files.

A model file is untrusted: its graph, node, tensor and initializer names may hold newlines,
`*/`, quotes, shell or Tcl syntax, C keywords, names of libc or runtime symbols, or
thousands of characters. Everything the templates write that came from a model goes
through this module, and nowhere else:

- `CNames.ident` turns a name into a C identifier. Every such identifier starts with
  `<model name>_` + `PREFIX` (the model's checked name, codegen/modelname.py; `PREFIX`
  alone outside a model), which no C keyword, libc/newlib symbol, reserved name (`__x`,
  `_X`), runtime name (`mcuc_*`, `MCUC_*`) or template-generated name (`a`, `arena`,
  `step_names`, ...) has, is made of [A-Za-z0-9_] only, is at most `MAX_IDENT` characters
  (a hash of the full text keeps truncated names distinct), and is unique within the
  table: one table per generated model, so derived names (a step's field arrays) cannot
  meet another name.
- `c_comment` and `c_string` make text safe inside `/* ... */` and `"..."`.
Error messages quote model text through `mcuc.text.one_line`.

Makefiles, linker scripts, Renode scripts and openocd commands get no model text at all;
the model's name, which they do use, is a checked identifier (codegen/modelname.py).
"""

from __future__ import annotations

import hashlib
import re

from mcuc.text import as_text, fresh

PREFIX = "m_"
MAX_IDENT = 48          # C99 promises 63 significant characters for internal names
MAX_COMMENT = 120       # characters of model text in one comment or string
_HASH = 8               # hex digits of the hash that keeps truncated names distinct

# Characters copied as they are into comments and strings: none of them can end a comment
# or string, start a trigraph (`?`), escape (`\`), splice lines, or mean anything to make,
# a shell or Tcl. Everything else is encoded.
_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 _.,:+=@#-/")
_NOT_IDENT = re.compile(r"[^0-9A-Za-z_]")


def _digest(text: str) -> str:
    raw = text.encode("utf-8", errors="surrogatepass")
    return hashlib.sha256(raw).hexdigest()[:_HASH]


def sanitize(name: object, limit: int = MAX_IDENT) -> str:
    """[A-Za-z0-9_] only, not starting with a digit, at most `limit` characters.

    Names that had to be cut keep a hash of the whole text, so two long names that share a
    beginning stay apart. Not unique and not prefixed by itself: see `CNames`.
    """
    text = as_text(name)
    s = _NOT_IDENT.sub("_", text).strip("_") or "t"
    if s[0].isdigit():
        s = "t_" + s
    if len(s) > limit:
        s = s[: limit - _HASH - 1].rstrip("_") + "_" + _digest(text)
    return s


class CNames:
    """A uniqueness table: model text in, C identifiers out, none ever handed out twice.

    `prefix` is prepended to every identifier ("" gives plain sanitized names, for the
    schedule's internal names that are not themselves written as C identifiers).
    Deterministic: the same calls in the same order give the same names.
    """

    def __init__(self, prefix: str = PREFIX, limit: int = MAX_IDENT) -> None:
        if prefix and not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*_", prefix):
            raise ValueError(f"bad identifier prefix {prefix!r}")
        self.prefix = prefix
        self.limit = limit
        self._taken: set[str] = set()
        self._memo: dict[object, str] = {}

    def __contains__(self, ident: str) -> bool:
        return ident in self._taken

    def ident(self, name: object) -> str:
        """A new identifier for `name`, distinct from every one handed out before."""
        ident = fresh(self.prefix + sanitize(name, self.limit - len(self.prefix)), self._taken)
        self._taken.add(ident)
        return ident

    def of(self, key: object, name: object | None = None) -> str:
        """The identifier for `key`, made from `name` (default: the key) on first use."""
        got = self._memo.get(key)
        if got is None:
            got = self._memo[key] = self.ident(key if name is None else name)
        return got


def _encode(text: str, limit: int, escape) -> str:
    """Safe characters as they are, others through `escape(byte)`, cut at `limit`."""
    out: list[str] = []
    for ch in text[:limit]:
        if ch in _SAFE:
            out.append(ch)
        else:
            out.extend(escape(b) for b in ch.encode("utf-8", errors="surrogatepass"))
    return "".join(out) + ("..." if len(text) > limit else "")


def c_comment(text: object, limit: int = MAX_COMMENT) -> str:
    """Text for inside a /* */ comment: one line, no `*/`, `/*`, `??`, `\\` or controls.

    Unsafe bytes become %XX (as in URLs), which has no meaning to C, make or a shell.
    """
    return _encode(as_text(text), limit, lambda b: f"%{b:02X}")


def c_string(text: object, limit: int = MAX_COMMENT) -> str:
    """Text for inside a C string literal "...": unsafe bytes as 3-digit octal escapes
    (hex escapes would swallow the digits after them)."""
    return _encode(as_text(text), limit, lambda b: f"\\{b:03o}")


