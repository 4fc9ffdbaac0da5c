"""Human-readable views of a build report (the JSON is the source of truth)."""

from __future__ import annotations


def _kb(n: int) -> str:
    return f"{n / 1024:.1f} KiB"


def format_report(r: dict) -> str:
    layers = r["layers"]
    peak = max((row["bytes_live"] for row in layers), default=0)
    w = max([len(row["name"]) for row in layers] + [4])
    lines = [f"{'#':>3}  {'step':<{w}}  {'kernel':<9} {'MACs':>10} {'live bytes':>11}"]
    for i, row in enumerate(layers):
        mark = "  <- peak" if row["bytes_live"] == peak else ""
        lines.append(f"{i:>3}  {row['name']:<{w}}  {row['kernel']:<9} {row['macs']:>10,} "
                     f"{row['bytes_live']:>11,}{mark}")
    ratio = r["arena_bytes"] / max(1, r["arena_lower_bound_bytes"])
    lines += [
        "",
        f"board              {r['board']}",
        f"arena (SRAM)       {r['arena_bytes']:,} B ({_kb(r['arena_bytes'])}), "
        f"lower bound {r['arena_lower_bound_bytes']:,} B (x{ratio:.3f}, {r['planner']})",
        f"weights (flash)    {r['weights_bytes']:,} B ({_kb(r['weights_bytes'])})",
        f"MACs               {r['macs']:,}",
        f"compile time       {r['timings'].get('total_s', 0.0):.2f} s",
    ]
    return "\n".join(lines)
