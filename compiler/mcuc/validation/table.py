"""The table `mcuc validate` prints."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mcuc.text import cut, path_line

if TYPE_CHECKING:
    pass

from mcuc.validation.layers import PER_LAYER_IMAGES
from mcuc.validation.results import Validation


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.2f}%"


def _num(v: float | None, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def _launch(engine: str) -> str:
    return "run" if engine == "host" else "flash" if engine.startswith("serial:") else "launch"


def format_validation(v: Validation) -> str:
    """The table `mcuc validate` prints."""
    lines = [f"validate {path_line(v.build)} (board {v.board}, engine {v.engine}) on "
             f"{v.data}: {v.images} inputs{'' if v.labelled else ', no labels'}", ""]
    head = (f"{'':<22}{'accuracy':>9}{'agree':>9}  {'rmse':>9}{'cosine':>9}{'rel L2':>9}"
            f"  {'rmse':>9}{'cosine':>9}{'rel L2':>9}")
    lines += [f"{'':<22}{'':>9}{'w/ ref':>9}  {'--- vs float ---':^27}  {'--- vs ref ---':^27}",
              head]
    for r in (v.float_model, v.reference, v.target):
        if r.note:
            lines.append(f"{r.name:<22}{r.note}")
            continue
        vf, vr = r.vs_float, r.vs_reference
        lines.append(
            f"{r.name:<22}{_pct(r.accuracy):>9}{_pct(r.agreement):>9}  "
            f"{_num(vf and vf.rmse, '.5f'):>9}{_num(vf and vf.cosine, '.6f'):>9}"
            f"{_num(vf and vf.rel_l2, '.5f'):>9}  {_num(vr and vr.rmse, '.5f'):>9}"
            f"{_num(vr and vr.cosine, '.6f'):>9}{_num(vr and vr.rel_l2, '.5f'):>9}")
    lines.append("")
    if v.bit_exact:
        lines.append(f"target == reference bit for bit on all {v.images} inputs")
    else:
        lines.append(f"target != reference on {v.mismatches} of {v.images} inputs "
                     f"(first: input {v.first_mismatch})")
    s = v.seconds
    lines.append(f"time: target {s.get('target', 0):.2f} s "
                 f"({1000 * s.get('target_per_image', 0):.1f} ms/input, {v.per_launch} per "
                 f"{_launch(v.engine)}), reference "
                 f"{s.get('reference', 0):.2f} s, total {s.get('total', 0):.1f} s")
    for w in v.warnings:
        lines.append(f"warning: {w}")
    if v.per_layer is not None:
        lines += ["", f"per layer: int8 reference vs float interpreter on the first "
                      f"{min(v.images, PER_LAYER_IMAGES)} inputs (errors accumulate along "
                      "the graph)",
                  f"{'step':<44}{'op':<11}{'cosine':>10}{'max err':>10}{'in LSB':>8}"]
        for lr in v.per_layer:
            lines.append(f"{cut(lr.step, 43):<44}{cut(lr.op, 10):<11}"
                         f"{lr.cosine:>10.6f}{lr.max_abs:>10.4f}{lr.max_lsb:>8.1f}")
    return "\n".join(lines)
