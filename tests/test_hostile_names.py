"""Hostile text in every string field of a model never runs, never leaks, never breaks C.

Each case writes one hostile string into the graph name, every node name, every tensor
name (input, output, initializers, intermediates), every doc_string, the producer fields,
the model domain and the metadata; then builds it with the CLI in a scratch working
directory. The build must either work and give exactly the output of the same model with
its original names, or fail with one `mcuc: error:` line. Either way no canary file may
appear and no generated text file may hold the raw payload or a control character.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from mcuc.cli import main
from mcuc.codegen.names import CNames, c_comment, c_string, sanitize
from mcuc.models.vit import ViTConfig
from mcuc.text import one_line

from helpers import random_model

CANARY = "CANARY"
SHAPE = (1, 1, 8, 8)

# (id, hostile string, substrings that must appear in no generated file)
CORPUS: list[tuple[str, str, list[str]]] = [
    ("make-rule", f"vit\nmodel: pwn\npwn:\n\ttouch {CANARY}\n#", ["\n\ttouch", "pwn:\n"]),
    ("c-comment", "x */\nint injected = 1; /* y", ["*/\nint", "injected = 1;"]),
    ("dquote", 'q"; int injected; const char *z = "', ['"; int', "injected;"]),
    ("squote", "it's 'quoted'", ["'quoted'"]),
    ("backslash-newline", "name\\\nint injected;", ["\\\nint"]),
    ("tcl", f"x[exec touch {CANARY}]", ["[exec"]),
    ("make-shell", f"$(shell touch {CANARY})", ["$(shell"]),
    ("backticks", f"`touch {CANARY}`", ["`touch"]),
    ("shell-meta", f"a; touch {CANARY} | cat & echo", ["; touch", "| cat", "& echo"]),
    ("trigraph", "x??/\n??=define y", ["??/", "??="]),
    ("ansi", "\x1b[31mred\x1b[0m", ["\x1b"]),
    ("unicode", "ünïcödé\u202e\u200bname", ["\u202e"]),
    ("kw-int", "int", []),
    ("kw-return", "return", []),
    ("libc-memcpy", "memcpy", []),
    ("runtime-mcuc_run", "mcuc_run", []),
    ("arena-a", "a", []),
    ("macro-arena-size", "MCUC_ARENA_SIZE", []),
    ("reserved", "__STDC__", []),
    ("long-300", "n" * 150 + "/" + "m" * 149, []),
    ("empty", "", []),
]
F746_CASES = ["make-rule", "long-300"]


def _tiny_onnx(path: Path) -> None:
    cfg = ViTConfig(img_size=8, in_chans=1, patch=4, dim=8, depth=1, heads=2, mlp_ratio=1.0,
                    num_classes=3, pool="cls", encoder="mcuc")
    torch.onnx.export(random_model(cfg, 0), (torch.zeros(SHAPE),), str(path), dynamo=False,
                      opset_version=17)


def poison(model: onnx.ModelProto, h: str, node_names: list[str] | None = None
           ) -> onnx.ModelProto:
    """A copy of `model` with `h` in every string field that holds no semantics.

    Tensors are renamed h0, h1, ... (consistently, so the graph is the same graph);
    nodes are all named h unless `node_names` gives a name per node.
    """
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    rename: dict[str, str] = {}

    def new(name: str) -> str:
        if name == "":
            return name  # an omitted optional input
        if name not in rename:
            rename[name] = f"{h}{len(rename)}"
        return rename[name]

    for vi in list(g.input) + list(g.output) + list(g.value_info):
        vi.name = new(vi.name)
        vi.doc_string = h
    for t in g.initializer:
        t.name = new(t.name)
        t.doc_string = h
    for k, n in enumerate(g.node):
        n.input[:] = [new(x) for x in n.input]
        n.output[:] = [new(x) for x in n.output]
        n.name = h if node_names is None else node_names[k]
        n.doc_string = h
        for a in n.attribute:
            a.doc_string = h
    g.name = h
    g.doc_string = h
    m.doc_string = h
    m.producer_name = h
    m.producer_version = h
    m.domain = h
    del m.metadata_props[:]
    m.metadata_props.add(key=h, value=h)
    return m


@pytest.fixture(scope="module")
def zoo(tmp_path_factory) -> dict:
    """The tiny model, its calibration and test inputs, and its reference output."""
    d = tmp_path_factory.mktemp("hostile")
    onnx_path = d / "ref.onnx"
    _tiny_onnx(onnx_path)
    rng = np.random.default_rng(0)
    np.save(d / "calib.npy", rng.random((4,) + SHAPE[1:], dtype=np.float32))
    np.save(d / "x.npy", rng.random(SHAPE, dtype=np.float32))
    ref = {}
    for board in ("host", "stm32f746"):
        out = d / f"ref-{board}"
        assert main(["build", "--model", str(onnx_path), "--board", board, "--calib",
                     str(d / "calib.npy"), "--out", str(out), "--samples", "1"]) == 0
        ref[board] = _run(out, d / "x.npy")
    assert ref["host"] == ref["stm32f746"]
    return {"dir": d, "model": onnx.load(str(onnx_path)), "ref": ref}


def _run(out: Path, x: Path) -> list[int]:
    from contextlib import redirect_stdout
    from io import StringIO

    buf = StringIO()
    with redirect_stdout(buf):
        assert main(["run", str(out), "--input", str(x), "--json"]) == 0
    return json.loads(buf.getvalue())["output"]


COPIED = {"runtime", "board"}  # copied verbatim from the source tree, not generated
TEXT_SUFFIXES = {".c", ".h", ".ld", ".json", ".resc", ".robot", ".j2", ".mk", ".map"}


def _generated_text(root: Path) -> dict[Path, bytes]:
    files = {}
    for p in root.rglob("*"):
        if p.relative_to(root).parts[0] in COPIED:
            continue
        if p.is_file() and (p.suffix in TEXT_SUFFIXES or p.name == "Makefile"):
            files[p] = p.read_bytes()
    return files


def _check_clean(work: Path, out: Path, h: str, payloads: list[str]) -> None:
    canaries = [p for p in work.rglob("*") if CANARY in p.name]
    assert not canaries, f"a canary command ran: {canaries}"
    needles = [s.encode("utf-8") for s in payloads]
    if any(not (ch.isalnum() or ch == "_") for ch in h):
        needles.append(h.encode("utf-8"))
    files = _generated_text(out)
    assert any(p.name == "m.c" for p in files)   # named after the file m.onnx
    for p, data in files.items():
        for needle in needles:
            assert needle not in data, f"{p.name} holds the raw payload {needle!r}"
        bad = {b for b in data if not (32 <= b < 127 or b in (9, 10))}
        assert not bad, f"{p.name} holds control or non-ASCII bytes {sorted(bad)[:8]}"


def _build(zoo: dict, model: onnx.ModelProto | bytes, board: str, tmp_path: Path,
           monkeypatch, capsys) -> tuple[int, str, Path]:
    """Build in a scratch cwd; returns (exit code, stderr, out dir)."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    path = work / "m.onnx"
    path.write_bytes(model if isinstance(model, bytes) else model.SerializeToString())
    out = work / "out"
    capsys.readouterr()
    code = main(["build", "--model", str(path), "--board", board, "--calib",
                 str(zoo["dir"] / "calib.npy"), "--out", str(out), "--samples", "1"])
    return code, capsys.readouterr().err, out


def _case(zoo, h, payloads, board, tmp_path, monkeypatch, capsys, node_names=None) -> None:
    code, err, out = _build(zoo, poison(zoo["model"], h, node_names), board, tmp_path,
                            monkeypatch, capsys)
    assert code == 0, err
    _check_clean(tmp_path / "work", out, h, payloads)
    assert _run(out, zoo["dir"] / "x.npy") == zoo["ref"][board]
    _check_clean(tmp_path / "work", out, h, payloads)


@pytest.mark.parametrize("case", CORPUS, ids=[c[0] for c in CORPUS])
def test_hostile_host(zoo, case, tmp_path, monkeypatch, capsys) -> None:
    _, h, payloads = case
    _case(zoo, h, payloads, "host", tmp_path, monkeypatch, capsys)


@pytest.mark.parametrize("case", [c for c in CORPUS if c[0] in F746_CASES], ids=F746_CASES)
def test_hostile_stm32f746(zoo, case, tmp_path, monkeypatch, capsys) -> None:
    _, h, payloads = case
    _case(zoo, h, payloads, "stm32f746", tmp_path, monkeypatch, capsys)
    assert sorted(p.name for p in (tmp_path / "work" / "out" / "renode").iterdir()) == [
        "model.resc", "model.robot"]


# The tiny model's nodes that lower to steps named after themselves (the others are fused
# into steps with derived names): (/Add, /norm/LayerNormalization, /head/Gemm).
PLAIN_STEPS = ("/Add", "/norm/LayerNormalization", "/head/Gemm")
COLLISIONS = [
    # a step named like the weight array generated for another step, and the arena pointer
    ("head_weights", "a", "head"),
    ("int", "memcpy", "mcuc_run"),
    ("step_names", "MCUC_ARENA_SIZE", "return"),
    ("x_weights_1", "x_weights", "x"),
    ("mcuc_step_name", "__STDC__", "m_x"),
]


def _renamed(model: onnx.ModelProto, names: tuple[str, ...]) -> list[str]:
    assert all(any(n.name == p for n in model.graph.node) for p in PLAIN_STEPS)
    new = dict(zip(PLAIN_STEPS, names, strict=True))
    return [new.get(n.name, n.name) for n in model.graph.node]


@pytest.mark.parametrize("board,names", [("host", c) for c in COLLISIONS]
                         + [("stm32f746", COLLISIONS[1])])
def test_generated_name_collisions(zoo, board, names, tmp_path, monkeypatch, capsys) -> None:
    """Node names equal to names the code generator makes itself, to C keywords and to
    libc and runtime symbols: every one gets a distinct, legal C identifier."""
    _case(zoo, "t", [], board, tmp_path, monkeypatch, capsys, _renamed(zoo["model"], names))
    layers = json.loads((tmp_path / "work" / "out" / "report.json").read_text())["layers"]
    assert set(names) - {"__STDC__"} <= {row["name"] for row in layers}


def test_non_utf8_names(zoo, tmp_path, monkeypatch, capsys) -> None:
    """Bytes that are not UTF-8 in the name fields: a working build or one error line."""
    marker = "QZQZQZQZ"
    raw = poison(zoo["model"], marker).SerializeToString()
    assert raw.count(marker.encode()) > 10
    raw = raw.replace(marker.encode(), b"\xff\xfe\x80\n\x1b[1m")
    code, err, out = _build(zoo, raw, "host", tmp_path, monkeypatch, capsys)
    if code == 0:
        _check_clean(tmp_path / "work", out, "", ["\x1b", "\xff"])
        assert _run(out, zoo["dir"] / "x.npy") == zoo["ref"]["host"]
    else:
        assert code == 2 and err.count("\n") == 1 and err.startswith("mcuc: error: "), err
        assert not any(ord(c) < 32 or ord(c) == 127 for c in err.rstrip("\n")), err
    assert not [p for p in (tmp_path / "work").rglob("*") if CANARY in p.name]


# -- the module itself ---------------------------------------------------------------------


def test_identifiers_are_prefixed_unique_and_bounded() -> None:
    ids = CNames()
    got = [ids.ident(n) for n in ["int", "a", "a", "a_1", "x" * 300, "x" * 300 + "y", "",
                                  "9lives", "__STDC__", "head_Gemm_weights"]]
    assert len(set(got)) == len(got)
    assert all(g.startswith("m_") and g.isascii() and len(g) <= 48 + 3 for g in got)
    assert all(c.isalnum() or c == "_" for g in got for c in g)
    assert got[:4] == ["m_int", "m_a", "m_a_1", "m_a_1_1"]
    again = CNames()
    assert [again.ident(n) for n in ["int", "a", "a", "a_1"]] == got[:4]  # deterministic
    assert ids.of(("k", 1), "z") == ids.of(("k", 1), "other") != ids.of(("k", 2), "z")
    assert sanitize("/blocks.0/attn/MatMul") == "blocks_0_attn_MatMul"


def test_comments_and_strings_escape_everything_unsafe() -> None:
    for text in [h for _, h, _ in CORPUS] + ["*/", "/*", "a*/b", "??/", "\\", '"', "%"]:
        for enc in (c_comment(text), c_string(text)):
            assert enc.isascii() and enc.isprintable()
            assert "*/" not in enc and "/*" not in enc and "??" not in enc and '"' not in enc
        assert "\\" not in c_comment(text)
    assert c_comment("a/b.c-1") == "a/b.c-1"
    assert c_comment("x\n*/") == "x%0A%2A/"
    assert c_string('x"\n') == "x\\042\\012"
    assert len(c_comment("z" * 1000)) == 123
    assert one_line("a\nb\x1b[0m") == "a\\x0ab\\x1b[0m"
    assert len(one_line("é" * 500)) < 400


def test_identifiers_compile_with_gcc(tmp_path) -> None:
    """Every identifier of the corpus declared at file scope next to libc and the runtime's
    own names: gcc accepts the lot."""
    import subprocess

    ids = CNames()
    names = [h for _, h, _ in CORPUS] * 2 + ["memcpy", "a", "mcuc_run", "MCUC_ARENA_SIZE"]
    decls = "\n".join(f"const int {ids.ident(n)} = {i};  /* {c_comment(n)} */"
                      f"\nconst char *{ids.ident(n)} = \"{c_string(n)}\";"
                      for i, n in enumerate(names))
    src = tmp_path / "t.c"
    src.write_text("#include <string.h>\n#include <stdio.h>\n#include <stdint.h>\n"
                   "#define MCUC_ARENA_SIZE 16\nint mcuc_run(void);\n" + decls +
                   "\nint main(void) { int8_t *const a = 0; (void)a; return 0; }\n")
    proc = subprocess.run(["gcc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-trigraphs",
                           "-c", str(src), "-o", os.devnull], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
