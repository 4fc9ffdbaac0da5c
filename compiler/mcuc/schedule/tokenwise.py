"""Token-wise operator integration ("fusion") and token overwriting ("token-overwrite").

Why: between two attention layers a ViT only runs row-wise ops, and lowering gives each
one a full [tokens, width] buffer: the LayerNorm output before qkv and fc1, the MLP
hidden layer (the widest activation after attention), the projection before each
residual add. None of them has to exist for more than a few tokens at a time.

- `fuse_tokenwise` (technique "fusion") finds runs of consecutive steps
      [layernorm ->] linear [-> lut] [-> linear] [-> add(residual)]
  whose intermediates are read only by the next step of the run, and replaces each run
  by one `tokenwise` step over all tokens (tile = rows) writing the run's own output
  buffer. The intermediates become per-step scratch; the kernel composes the unfused
  kernels, so results are bit-identical.
- `overwrite_tokens` (technique "token-overwrite") then lets each tokenwise step write
  over an input that dies at that step (the residual rows, else the chain input when the
  output is no wider), and picks the tile size T. Both are safe because the kernel reads
  a tile's rows before writing its output rows, and output row i never lies beyond input
  row i (kernels/tokenwise.py).

Tile rule: T = 1 gives the least scratch, so the arena with every step at T = 1 is the
arena to keep; each step then gets the largest T in TILE_CANDIDATES whose scratch still
fits under that arena next to the bytes live at its step, and the schedule is re-planned
to check it (steps are put back to T = 1, biggest scratch first, until it holds). Larger
tiles reread the weights fewer times, so this is the fastest schedule at the smallest
arena. Planning takes milliseconds, so a few re-plans are cheap.
"""

from __future__ import annotations

from dataclasses import replace

from mcuc import memory
from mcuc.kernels import registry
from mcuc.kernels import tokenwise as k_tw
from mcuc.schedule import patch
from mcuc.schedule.access import arena, arena_of
from mcuc.schedule.edit import Edit
from mcuc.schedule.schedule import Operand, Schedule, Step
from mcuc.text import fresh

TILE_CANDIDATES = (1, 2, 4, 8, 16, 32)
ADD_SIDES = ("zp", "mult", "shift")


def alias_ok(w: Edit, y: str, x: str, r: str, k: int, n: int) -> bool | None:
    """None if y overlaps x or r in a way the kernel cannot take, else y_free."""
    y_free = True
    for src, ok in ((x, n <= k), (r, True)):
        if w.overlaps(y, src):
            if not ok or w.offset(y) != w.offset(src):
                return None
            y_free = False
    return y_free


# --------------------------------------------------------------------------- fusion

def fuse_tokenwise(schedule: Schedule) -> Schedule:
    """Replace every row-wise run (see module doc) by one tokenwise step, tile = rows."""
    w = Edit(schedule)
    keys, steps = list(w.steps), list(w.steps.values())  # in order, as of now
    i = 0
    while i < len(steps):
        stages = _stages(steps, i)
        if (len(stages) >= 2 or _before_add16(steps, stages)) \
                and (run := _match(w, keys, steps, i, stages, 1)) is not None:
            _fuse(w, keys, steps, i, *run)
            keys, steps = list(w.steps), list(w.steps.values())
        i += 1
    return w.result()


def _before_add16(steps: list[Step], stages: list[tuple[str, int]]) -> bool:
    """A lone linear whose output an A16 residual add (add16, not fusable) reads: as a
    one-stage tokenwise step, token-overwrite may write it over its dying input, so the
    int16 residual stream does not add a third [tokens, width] buffer at the projection."""
    if [s for s, _ in stages] != ["l1"] or stages[0][1] + 1 >= len(steps):
        return False
    nxt = steps[stages[0][1] + 1]
    return nxt.kernel == "add16" and steps[stages[0][1]].output in (
        op.name for op in nxt.inputs if op.kind == "buf")


def _feeds(steps: list[Step], a: int, b: int) -> bool:
    op = steps[b].inputs[0]
    return op.kind == "buf" and op.name == steps[a].output


def _stages(steps: list[Step], i: int) -> list[tuple[str, int]]:
    """The longest run of stages starting at step i, by kernel kinds and shapes only."""
    out = []
    j = i
    if steps[j].kernel in ("layernorm", "layernorm16"):
        out.append(("ln", j))
        j += 1
    if j >= len(steps) or steps[j].kernel != "linear" or (out and not _feeds(steps, j - 1, j)):
        return []
    if out and (steps[i].params["cols"], steps[i].params["rows"]) != \
            (steps[j].params["k"], steps[j].params["rows"]):
        return []
    l1 = steps[j].params
    rows, width = l1["rows"], l1["n"]
    out.append(("l1", j))
    j += 1
    if j < len(steps) and steps[j].kernel == "lut" and _feeds(steps, j - 1, j) \
            and steps[j].params["size"] == rows * width:
        out.append(("lut", j))
        j += 1
    if j < len(steps) and steps[j].kernel == "linear" and _feeds(steps, j - 1, j) \
            and (steps[j].params["rows"], steps[j].params["k"]) == (rows, width):
        out.append(("l2", j))
        width = steps[j].params["n"]
        j += 1
    if j < len(steps) and steps[j].kernel == "add":
        p, ins = steps[j].params, steps[j].inputs
        prev = steps[j - 1].output
        names = [op.name if op.kind == "buf" else None for op in ins]
        if p["size"] == p["b_size"] == rows * width and prev in names \
                and None not in names and names[0] != names[1]:
            out.append(("add", j))
    return out


def _match(w: Edit, keys: list[int], steps: list[Step], i: int, stages: list[tuple[str, int]],
           least: int = 2) -> tuple[list[tuple[str, int]], str] | None:
    """The longest valid prefix (>= 2 steps, or `least` for a lone linear before add16) of
    the run `stages` at i (`_stages(steps, i)`), and its residual buffer; `steps` are `w`'s
    in order, `keys` their keys."""
    least = least if _before_add16(steps, stages[:1]) else 2
    while len(stages) >= least:
        last = stages[-1][1]
        x_op = steps[i].inputs[0]
        r = x_op.name
        if stages[-1][0] == "add":
            prev = steps[last - 1].output
            r = next(op.name for op in steps[last].inputs if op.name != prev)
        if x_op.kind == "buf" and _valid(w, keys, steps, stages, x_op.name, r):
            return stages, r
        stages = stages[:-1]
    return None


def _valid(w: Edit, keys: list[int], steps: list[Step], stages: list[tuple[str, int]],
           x: str, r: str) -> bool:
    first, last = stages[0][1], stages[-1][1]
    chain = set(keys[first:last + 1])
    y = steps[last].output
    internal = {steps[j].output for _, j in stages[:-1]} - {y}
    for b in internal:
        if b in (x, r) or not w.plain(b) or not set(w.touches(b)) <= chain:
            return False
        writer = next(j for j in range(first, last + 1) if w.root(steps[j].output) == b)
        if w.touches(b)[0] != keys[writer] or b in (op.name for op in steps[writer].inputs):
            return False
        if w.overlaps(b, x) or w.overlaps(b, r):
            return False
    if y != x and y != r and y in {steps[j].output for _, j in stages[:-1]}:
        # The last step wrote in place over an intermediate: that buffer is new here.
        if not w.plain(y) or w.touches(y)[0] < keys[first]:
            return False
    p = tokenwise_params(steps, stages, r)
    return alias_ok(w, y, x, r, p["k"], p["n"]) is not None


def _add_params(st: Step, r: str) -> dict:
    """The residual add's params with the residual as `a` (exact: a + b is symmetric)."""
    p = st.params
    if st.inputs[0].name == r:
        return dict(p)
    out = dict(p)
    for f in ADD_SIDES:
        out[f"a_{f}"], out[f"b_{f}"] = p[f"b_{f}"], p[f"a_{f}"]
    return out


def tokenwise_params(steps: list[Step], stages: list[tuple[str, int]], r: str) -> dict:
    """The fused step's params from the unfused steps' (tile = rows): each stage's params
    as they are, the residual add's turned to take the residual as `a`."""
    got = {name: steps[j] for name, j in stages}
    l1 = got["l1"].params
    p: dict = {"rows": l1["rows"], "tile": l1["rows"], "k": l1["k"], "x_rs": l1["k"],
               "h": l1["n"], "n": got["l2"].params["n"] if "l2" in got else l1["n"],
               "y_free": 1, "x_free": 0, "has_ln": int("ln" in got), "has_lut": int("lut" in got),
               "has_l2": int("l2" in got), "has_res": int("add" in got),
               "x_wide": int("ln" in got and got["ln"].kernel == "layernorm16")}
    for name in k_tw.STAGES:
        p[name] = dict(got[name].params) if name in got else None
    if "add" in got:
        p["add"] = _add_params(got["add"], r)
    return p


def _fuse(w: Edit, keys: list[int], steps: list[Step], i: int, stages: list[tuple[str, int]],
          r: str) -> None:
    """Replace the run by one tokenwise step; its intermediates (`_valid`: read and written
    inside the run only) are dropped with it."""
    last = stages[-1][1]
    x, y = steps[i].inputs[0].name, steps[last].output
    p = tokenwise_params(steps, stages, r)
    p["y_free"] = int(bool(alias_ok(w, y, x, r, p["k"], p["n"])))
    kdef = registry.get("tokenwise")
    kdef.check_params(p)
    name = fresh(f"{steps[i].name}_tokenwise", w.step_names())
    step = Step(name, "tokenwise", p, [Operand("buf", x), Operand("buf", r)], y,
                "+".join(steps[j].op for _, j in stages), int(kdef.macs(p)),
                int(kdef.scratch(p)))
    internal = {steps[j].output for _, j in stages[:-1]} - {y, x, r}
    w.replace(keys[i], tuple(keys[i + 1:last + 1]), step, internal)


# --------------------------------------------------------------------------- overwrite

def overwrite_tokens(schedule: Schedule) -> Schedule:
    """Write each tokenwise step over an input that dies there, then choose tiles.

    Never returns a schedule with a larger planned arena than it was given."""
    w = Edit(schedule)
    for i, st in list(w.steps.items()):
        if st.kernel == "tokenwise" and st.params["y_free"]:
            _overwrite(w, i)
    s = w.result()
    best = choose_tiles(s)
    # A patch overlap (patch.py) costs `a` bytes above the image at the patch step; with
    # the smaller peaks this pass leaves, that can become the peak. Keep it if it pays.
    for i in patch.overlapped(s):
        alt = choose_tiles(patch.separate(s, i))
        if arena(alt) < arena(best):
            best = alt
    return mark_free_inputs(best) if arena(best) <= arena(schedule) else schedule


def _overwrite(w: Edit, i: int) -> None:
    """Make step i's output a child of a dying input (residual first)."""
    st = w.steps[i]
    p = st.params
    x, r, y = st.inputs[0].name, st.inputs[1].name, st.output
    if not w.plain(y) or w.touches(y)[0] != i or y == w.s.input_buffer:
        return
    size = w.buffers[y].size
    contiguous = p["x_rs"] == p["k"]
    # A lone linear (before add16, _before_add16) stages each tile in scratch before it
    # writes, so it may also write over rows that lie apart (x_rs >= n).
    lone = not (p["has_ln"] or p["has_lut"] or p["has_l2"] or p["has_res"])
    over_x = p["n"] <= p["k"] and (contiguous or (lone and p["n"] <= p["x_rs"]))
    options = ([r] if p["has_res"] else []) + ([x] if over_x else [])
    for src in options:
        if w.dies_at(src, i) and w.buffers[src].size >= size:
            w.reparent(y, replace(w.buffers[y], parent=src, offset=0))
            w.replace(i, (), _with_params(st, dict(p, y_free=0)))
            return


def _with_params(st: Step, p: dict) -> Step:
    return replace(st, params=p, scratch=int(k_tw.scratch_bytes(p)))


def choose_tiles(s: Schedule) -> Schedule:
    """Tile sizes by the rule in the module doc; returns a new Schedule. Callers mark
    x_free (mark_free_inputs) on the one they keep: it depends on the final buffers."""
    tw = [i for i, st in enumerate(s.steps) if st.kernel == "tokenwise"]
    if not tw:
        return s
    steps = list(s.steps)
    for i in tw:
        steps[i] = _with_params(steps[i], dict(steps[i].params, tile=1))
    base = replace(s, steps=steps)
    base_bufs = base.liveness()
    budget = arena_of(base_bufs)
    usage = memory.usage_timeline(base_bufs, base.n_times)
    chosen = list(steps)
    for i in tw:
        p = steps[i].params
        others = int(usage[i + 1]) - steps[i].scratch
        for t in sorted({min(c, p["rows"]) for c in (*TILE_CANDIDATES, p["rows"])},
                        reverse=True):
            cand = dict(p, tile=t)
            if t == 1 or others + k_tw.scratch_bytes(cand) <= budget:
                chosen[i] = _with_params(steps[i], cand)
                break
    out = replace(s, steps=chosen)
    grown = sorted(tw, key=lambda i: chosen[i].scratch - steps[i].scratch, reverse=True)
    for i in grown:
        if arena(out) <= budget:
            break
        chosen[i] = steps[i]
        out = replace(s, steps=list(chosen))
    return out


def mark_free_inputs(s: Schedule) -> Schedule:
    """Set each tokenwise step's x_free: its chain input's bytes are dead after the step
    (nothing touches their root later, and it is not the model's input or output) and
    overlap neither its output nor its residual, so the C kernel may stage rows over the
    ones it has read (kernels/tokenwise.py). Tiles and the arena do not change."""
    w = Edit(s)
    for i, st in list(w.steps.items()):
        if st.kernel != "tokenwise":
            continue
        x, r, y = st.inputs[0].name, st.inputs[1].name, st.output
        free = (w.dies_at(x, i) and not w.io(x) and not w.overlaps(x, y)
                and not w.overlaps(x, r))
        if int(free) != st.params.get("x_free", 0):
            w.replace(i, (), replace(st, params=dict(st.params, x_free=int(free))))
    return w.result()
