"""The model's name: the prefix of every symbol, macro, section and file of its generated C.

Two models live in one application only if nothing they export can meet, so every exported
name carries the model's name: `kws_run()`, `KWS_ARENA_SIZE`, `kws_status_t`, the weight
arrays `kws_m_...`, the sections `.kws_weights` / `.kws_arena`, the files `kws.h`, `kws.c`,
`kws_weights.c`. The name is user input (`--name`) or derived from the model file's stem,
and both are untrusted: `check_name` accepts only a lower-case C identifier that no C
keyword, reserved name or library prefix can clash with (in either case, since the macros
use it upper-cased); `default_name` turns any file stem into such a name and never fails.
"""

from __future__ import annotations

import re
from pathlib import Path

from mcuc import McucError
from mcuc.text import as_text, one_line

MAX_NAME = 24           # leaves room for `_m_<tensor>` weight identifiers within 63 characters
BUNDLED_NAME = "vit"    # the bundled default model (its file, default.onnx, names a keyword)
FALLBACK = "model"      # a model given as an object, or a stem with nothing usable in it
_NAME = re.compile(r"[a-z][a-z0-9_]*")

# C99/C11/C23 and C++ keywords (the header is usable from C++), plus names of the standard
# headers' macros and functions the generated files use, and `board` (board/board.h).
KEYWORDS = frozenset("""
auto break case char const continue default do double else enum extern float for goto if
inline int long register restrict return short signed sizeof static struct switch typedef
union unsigned void volatile while alignas alignof bool constexpr false nullptr
static_assert thread_local true typeof typeof_unqual and and_eq asm bitand bitor catch class
compl concept consteval constinit co_await co_return co_yield decltype delete explicit
export friend mutable namespace new noexcept not not_eq operator or or_eq private protected
public reinterpret_cast requires static_cast const_cast dynamic_cast template this throw try
typeid typename using virtual wchar_t char8_t char16_t char32_t xor xor_eq main memcpy
null offsetof assert defined board
""".split())
# Prefixes the C standard reserves for the library (C11 7.31 future directions, C23 7.33
# potentially reserved), checked against the lower-case name: errno's E[0-9A-Z], ctype's
# is/to, string's str/mem/wcs, signal's SIG, locale's LC_, inttypes' PRI/SCN, stdint's int/
# uint (`<name>_status_t` would be int..._t), float.h, fenv, threads, atomics, time.h; and
# mcuc's own runtime (`mcuc_*`, `MCUC_*`).
RESERVED_PREFIXES = ("mcuc", "is", "to", "str", "mem", "wcs", "sig", "lc_", "pri", "scn",
                     "int", "uint", "flt_", "dbl_", "ldbl_", "fe_", "cnd_", "mtx_", "thrd_",
                     "tss_", "atomic_", "time_")
# File names the model's files use besides `<name>.c`/`<name>.h`: a name ending so would
# write the same file as another model's.
RESERVED_SUFFIXES = ("_weights", "_samples")


def name_problem(name: str) -> str | None:
    """Why `name` cannot name a model, or None when it can."""
    if not _NAME.fullmatch(name):
        return ("must be a lower-case C identifier: a letter, then letters, digits and "
                "underscores")
    if len(name) > MAX_NAME:
        return f"is longer than {MAX_NAME} characters"
    if "__" in name or name.endswith("_"):
        return "must not hold '__' or end with '_' (reserved or ambiguous in C)"
    if name in KEYWORDS:
        return "is a C or C++ keyword or standard name"
    if re.match(r"e[a-z0-9]", name):
        return "starts like errno's macros (E followed by a letter or digit), reserved in C"
    for p in RESERVED_PREFIXES:
        if name.startswith(p):
            return f"starts with '{p}', reserved by the C library or mcuc's runtime"
    for s in RESERVED_SUFFIXES:
        if name.endswith(s):
            return f"ends with '{s}', which another model's files use"
    return None


def check_name(name: object) -> str:
    """`name` if it can name a model's C symbols; else one McucError line."""
    text = as_text(name)
    problem = name_problem(text)
    if problem:
        raise McucError(f"--name {one_line(repr(text), 80)} {problem}")
    return text


def default_name(model: object) -> str:
    """The name for a model given as a path (its file stem, sanitized), the bundled default
    (None: BUNDLED_NAME) or an object (FALLBACK). A stem that is not a valid name by itself
    is tried as `model_<stem>`, then falls back to FALLBACK."""
    if model is None:
        return BUNDLED_NAME
    if not isinstance(model, str | Path):
        return FALLBACK
    stem = re.sub(r"[^a-z0-9]+", "_", as_text(Path(model).stem).lower()).strip("_")
    for cand in (stem[:MAX_NAME].rstrip("_"), f"{FALLBACK}_{stem}"[:MAX_NAME].rstrip("_")):
        if cand and name_problem(cand) is None:
            return cand
    return FALLBACK


def model_files(name: str) -> dict[str, str]:
    """The generated model's files by role: header, model C, weights header, weights C."""
    return {"header": f"{name}.h", "source": f"{name}.c",
            "weights_header": f"{name}_weights.h", "weights": f"{name}_weights.c"}
