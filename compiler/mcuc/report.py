"""Human-readable views of a build report (the JSON is the source of truth)."""

from __future__ import annotations

from mcuc.text import one_line


def _kb(n: int) -> str:
    return f"{n / 1024:.1f} KiB"


def format_report(r: dict) -> str:
    layers = r["layers"]
    peak = max((row["bytes_live"] for row in layers), default=0)
    w = max([len(row["name"]) for row in layers] + [4])
    instr = any(row.get("instructions") is not None for row in layers)
    lines = [f"{'#':>3}  {'step':<{w}}  {'kernel':<11} {'MACs':>10} {'live bytes':>11}"
             + (f" {'instructions':>13}" if instr else "")]
    for i, row in enumerate(layers):
        mark = "  <- peak" if row["bytes_live"] == peak else ""
        ins = f" {row.get('instructions') or 0:>13,}" if instr else ""
        lines.append(f"{i:>3}  {row['name']:<{w}}  {row['kernel']:<11} {row['macs']:>10,} "
                     f"{row['bytes_live']:>11,}{ins}{mark}")
    ratio = r["arena_bytes"] / max(1, r["arena_lower_bound_bytes"])
    lines += [
        "",
        f"board              {r['board']}",
        f"arena (SRAM)       {r['arena_bytes']:,} B ({_kb(r['arena_bytes'])}), "
        f"lower bound {r['arena_lower_bound_bytes']:,} B (x{ratio:.3f}, {r['planner']})",
        f"weights (flash)    {r['weights_bytes']:,} B ({_kb(r['weights_bytes'])})",
        f"MACs               {r['macs']:,}",
    ]
    if w16 := (r.get("quant") or {}).get("int16"):
        names = ", ".join(one_line(str(n), 40) for n in w16["tensors"]) or "none"
        how = (f" (auto: output error {w16['error']:.3g} vs {w16['int8_error']:.3g} all-int8, "
               f"on {w16['images']} calibration images)") if w16["mode"] == "auto" else ""
        lines.append(f"int16 tensors      {names}{how}")
    if "naive_arena_bytes" in r:
        saved = ", ".join(f"{k} {v:,}" for k, v in r["technique_savings_bytes"].items())
        lines.append(f"naive arena        {r['naive_arena_bytes']:,} B (no techniques); "
                     f"saved by each: {saved} B")
    for key, label in (("flash_bytes", "flash (ELF)"), ("ram_bytes", "RAM (ELF+stack)"),
                       ("stack_bytes", "stack used"), ("instructions", "instructions")):
        if r.get(key) is not None:
            lines.append(f"{label:<18} {r[key]:,}")
    if r.get("instructions") and r.get("macs"):
        lines.append(f"instructions/MAC   {r['instructions'] / r['macs']:.2f}")
    lines.append(f"compile time       {r['timings'].get('total_s', 0.0):.2f} s")
    return "\n".join(lines)
