"""The package's import graph, read from its source with `ast` (nothing is imported).

The rules (issue 24, item 1: the compiler depends on numpy, onnx and jinja2 and nothing
from training; no import cycles):

- An edge A -> B is an import in module A that names module B of the package, at the top
  of the file or inside a function (a lazy import still is a dependency). `from mcuc.x
  import y` names mcuc.x.y when that is a module, else mcuc.x. A module's import of one
  of its own ancestor packages (`from mcuc import McucError`, the kernel registry's
  `from mcuc import kernels`) is no edge: Python has imported every ancestor package
  before the module runs, so such an import loads nothing new.
- No cycles, lazy edges included.
- The search and training code is `mcuc.nas` and `mcuc.models` (the bundled default.onnx
  in models/ is data, not an import). The compiler core is every other module. The core
  never imports search or training modules, except `mcuc.cli` inside its functions: the
  `mcuc search` subcommand's options and dispatch.
- Training-only third-party packages (torch, onnxruntime, onnxscript) are imported by the
  core only inside functions of `mcuc.frontend.torch_import` (`from_torch`, for a caller
  who hands in a torch module, and so has torch), and onnxruntime inside functions of
  `mcuc.validation.runs` (the float model's row, which says so when onnxruntime is missing).
- Run, not only read: with the search and plot extras' packages made unimportable, the CLI
  starts, builds the bundled model for the host, and `mcuc search` stops with one line
  naming `mcuc[search]` (pyproject.toml's extras; mcuc/optional.py).
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "compiler" / "mcuc"

SEARCH = ("mcuc.nas", "mcuc.models")
SEARCH_DISPATCH = {"mcuc.cli"}
TRAINING_ONLY = {"torch", "onnxruntime", "onnxscript"}
TORCH_FRONTEND = {"mcuc.frontend.torch_import"}
OPTIONAL_FLOAT = {("mcuc.validation.runs", "onnxruntime")}
# not installed by a plain `pip install mcuc` (the search and plot extras)
EXTRAS_ONLY = TRAINING_ONLY | {"matplotlib", "PIL"}


@dataclass(frozen=True)
class Import:
    source: str   # the importing module
    target: str   # a module of the package, or a third-party top-level package
    lazy: bool    # inside a function (or class), not at the top of the file
    line: int


def module_files(package: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every .py under `package` (a package is its
    __init__.py)."""
    mods = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        mods[".".join(parts)] = path
    return mods


def _owner(name: str, mods: dict[str, Path]) -> str | None:
    """The deepest module of the package that `name` lies in (None: not the package's)."""
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def imports(mods: dict[str, Path]) -> list[Import]:
    """Every import of every module: package edges (ancestors dropped) and third-party
    top-level names (the standard library dropped)."""
    root = next(iter(mods)).split(".")[0]
    found = []
    for mod, path in mods.items():
        tree = ast.parse(path.read_text(), str(path))
        top = {id(node) for node in tree.body}
        here = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        ancestors = {".".join(mod.split(".")[:i]) for i in range(1, mod.count(".") + 1)}
        if path.name == "__init__.py":
            ancestors.add(mod)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    pkg = here.split(".")[:len(here.split(".")) - node.level + 1]
                    base = ".".join([*pkg, base] if base else pkg)
                names = [f"{base}.{a.name}" for a in node.names]
            else:
                continue
            lazy = id(node) not in top
            for name in names:
                first = name.split(".")[0]
                if first == root:
                    target = _owner(name, mods)
                    if target is None or target in ancestors or target == mod:
                        continue
                elif first in sys.stdlib_module_names or first == "__future__":
                    continue
                else:
                    target = first
                found.append(Import(mod, target, lazy, node.lineno))
    return found


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            part = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                part.append(w)
                if w == v:
                    break
            if len(part) > 1:
                found.append(sorted(part))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def _graph() -> tuple[dict[str, Path], list[Import]]:
    mods = module_files(PACKAGE)
    return mods, imports(mods)


def _is_search(mod: str) -> bool:
    return any(mod == s or mod.startswith(s + ".") for s in SEARCH)


def test_cycle_finder_finds_a_cycle() -> None:
    """The checker itself: a two-module loop and a longer one are found, a chain is not."""
    assert cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_import_reader_sees_lazy_and_relative_imports(tmp_path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from . import leaf\n")
    (pkg / "sub" / "leaf.py").write_text("import numpy\nfrom pkg import sub\n")
    (pkg / "top.py").write_text(
        "import os\nfrom pkg.sub.leaf import x\n\ndef f():\n    import torch\n"
        "    from .sub import leaf\n")
    got = {(i.source, i.target, i.lazy) for i in imports(module_files(pkg))}
    assert got == {("pkg.sub", "pkg.sub.leaf", False), ("pkg.sub.leaf", "numpy", False),
                   ("pkg.top", "pkg.sub.leaf", False), ("pkg.top", "torch", True),
                   ("pkg.top", "pkg.sub.leaf", True)}


def test_no_import_cycles() -> None:
    mods, found = _graph()
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for i in found:
        if i.target in mods:
            edges[i.source].add(i.target)
    assert cycles(edges) == []


def test_core_never_imports_search_or_training() -> None:
    mods, found = _graph()
    bad = []
    for i in found:
        if _is_search(i.source):
            continue
        if i.target in mods and _is_search(i.target):
            if not (i.lazy and i.source in SEARCH_DISPATCH):
                bad.append(i)
        elif i.target in TRAINING_ONLY and not (i.lazy and (
                i.source in TORCH_FRONTEND or (i.source, i.target) in OPTIONAL_FLOAT)):
            bad.append(i)
    assert bad == [], "\n".join(
        f"{mods[i.source].relative_to(ROOT)}:{i.line}: {i.source} imports {i.target}"
        f"{' (lazily)' if i.lazy else ''}" for i in bad)


def test_compiler_runs_without_the_extras(tmp_path) -> None:
    """The same rule, run: with the extras' packages (torch, onnxruntime, onnxscript,
    matplotlib, Pillow) made unimportable, `mcuc --help`, `mcuc search --help` and a host
    build of the bundled model work, `mcuc search` names the extra it needs, and `mcuc
    validate` runs with its float row saying onnxruntime is missing."""
    code = (
        "import sys\n"
        f"for name in {sorted(EXTRAS_ONLY)!r}:\n"
        "    sys.modules[name] = None  # import raises ImportError\n"
        "from mcuc.cli import main\n"
        "for argv in (['--help'], ['search', '--help']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit as e:\n"
        "        assert e.code == 0, (argv, e.code)\n"
        "assert main(['search', '--out', 's']) == 2\n"
        "assert main(['build', '--out', 'b']) == 0\n"
        "sys.exit(main(['validate', 'b', '--data', 'fashion-mnist:2']))\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT / "compiler"), *filter(None, [os.environ.get("PYTHONPATH")])]))
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "pip install 'mcuc[search]'" in proc.stderr
    assert (tmp_path / "b" / "report.json").is_file()
    assert "onnxruntime not installed" in proc.stdout
    assert "bit for bit on all 2 inputs" in proc.stdout
