"""memory.png: the arena over time, one rectangle per buffer.

A picture answers the questions a number cannot: where the peak is, which buffers make it,
and where the planner left holes (white space under the dashed arena line and above the
live-bytes profile is waste the planner could not avoid -- or an exact search could).
matplotlib is imported lazily with the Agg backend, so importing mcuc.memory stays cheap
and plotting works on headless build machines.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mcuc.memory.buffers import Buffer, Plan, usage_timeline

SCRATCH_PREFIX = "scratch_"
MAX_LABELS = 12
"""Only the largest buffers get a text label; with 300 buffers, labelling all is noise."""
AXES_WIDTH_PX, AXES_HEIGHT_PX, CHAR_PX = 950, 480, 4.6  # 12x6 in at 100 dpi, 7 pt text


def _short(name: str, limit: int) -> str:
    """Drop the noise of ONNX-derived names ("buf_", "_output_0", doubled module paths)
    and keep the tail -- the op type -- when the box is too narrow for the rest."""
    if name.startswith("buf_"):
        name = name[4:]
    for suffix in ("_output_0", "_slice_out"):
        name = name.removesuffix(suffix)
    name = name.replace("blocks_blocks_", "blk").strip("_")
    return name if len(name) <= limit else "…" + name[-(limit - 1):]


def plot_plan(
    buffers: Sequence[Buffer],
    plan: Plan,
    path: str | Path,
    title: str = "",
    names: dict[str, str] | None = None,
) -> Path:
    """Draw `plan` for `buffers` into the PNG at `path` and return the path.

    x: schedule step (a buffer spans first..last+1), y: arena byte offset. Activations are
    blue, per-step scratch orange and hatched. Dashed lines mark the arena size and the
    lower bound; the black step line is the bytes live at each step (the bound's profile),
    so the gap between it and the top of the stack is fragmentation. `names` maps buffer
    names to display labels (e.g. the op that produces them).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import PatchCollection
    from matplotlib.patches import Patch, Rectangle

    names = names or {}
    buffers = [b for b in buffers if b.size > 0]
    path = Path(path)
    n_steps = max((b.last for b in buffers), default=0) + 1
    timeline = usage_timeline(buffers, n_steps) if buffers else [0]

    fig, ax = plt.subplots(figsize=(12, 6), dpi=100)
    acts: list[Rectangle] = []
    scratch: list[Rectangle] = []
    for b in buffers:
        rect = Rectangle((b.first, plan.offsets[b.name]), b.last + 1 - b.first, b.size)
        (scratch if b.name.startswith(SCRATCH_PREFIX) else acts).append(rect)
    # Thin edges separate neighbours without drowning small buffers when there are hundreds.
    lw = 0.6 if len(buffers) <= 80 else 0.3
    ax.add_collection(PatchCollection(acts, facecolor="#7fa7d9", edgecolor="#1f3b63",
                                      linewidth=lw, alpha=0.9))
    ax.add_collection(PatchCollection(scratch, facecolor="#f4b183", edgecolor="#a0522d",
                                      linewidth=lw, hatch="///", alpha=0.9))

    # Profile of live bytes: the lower bound is its maximum.
    xs = list(range(n_steps + 1))
    ax.stairs(timeline, xs, color="black", linewidth=1.2, label="bytes live (profile)")
    ax.axhline(plan.arena_bytes, color="#c00000", linestyle="--", linewidth=1.2,
               label=f"arena {plan.arena_bytes:,} B")
    ax.axhline(plan.lower_bound_bytes, color="#2e7d32", linestyle=(0, (2, 4)), linewidth=1.6,
               label=f"lower bound {plan.lower_bound_bytes:,} B")

    # Label the largest buffers by area (bytes x steps), trimmed to what fits in the box.
    by_area = sorted(buffers, key=lambda b: -b.size * (b.last + 1 - b.first))
    top = max(plan.arena_bytes, 1)
    for b in by_area[:MAX_LABELS]:
        width = b.last + 1 - b.first
        chars = int(width / max(n_steps, 1) * AXES_WIDTH_PX / CHAR_PX)
        if b.size / top * AXES_HEIGHT_PX < 10 or chars < 4:
            continue
        label = _short(names.get(b.name, b.name), chars)
        ax.text(b.first + width / 2, plan.offsets[b.name] + b.size / 2, label,
                ha="center", va="center", fontsize=7, clip_on=True)

    ax.set_xlim(0, max(n_steps, 1))
    ax.set_ylim(0, max(plan.arena_bytes, max(timeline)) * 1.06 or 1)
    ax.set_xlabel("schedule step")
    ax.set_ylabel("arena offset (bytes)")
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:,.0f}"))
    status = "optimal" if plan.optimal else f"+{plan.overhead:.1%} over bound"
    head = f"{title} — " if title else ""
    ax.set_title(f"{head}{len(buffers)} buffers, planner {plan.planner}, {status}")
    handles, _ = ax.get_legend_handles_labels()
    handles = [Patch(facecolor="#7fa7d9", edgecolor="#1f3b63", label="activation"),
               Patch(facecolor="#f4b183", edgecolor="#a0522d", hatch="///", label="scratch"),
               *handles]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8,
              frameon=False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
