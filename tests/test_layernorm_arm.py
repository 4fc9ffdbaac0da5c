"""The ARMv7E-M LayerNorm (MCUC_ARM_DSP) as the Cortex-M7 runs it, against the numpy spec.

Why: test_layernorm_dsp.py runs the variant on the host through mcuc/simd.h's portable
twins, and the firmware tests only see the default model's data; the inline assembly of
layernorm.c and layernorm_row16.c (post-indexed LDR/LDRD/LDMIA of x, SMULTT) has no host
twin to test. Here a small firmware holds test_layernorm_dsp.py's edge cases (the
compiler's table, ln_row10's range, widths 1..224 and not multiples of 4, ties, value
limits) and their expected outputs, runs mcuc_layernorm_s8 in the Unicorn engine with x
at each byte alignment (the statistics' LDRD path and its unaligned fallback) and in
place, and exits with the number of mismatches.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mcuc.kernels import layernorm
from mcuc.sim.unicorn_m7 import run_elf
from test_kernels import Case
from test_layernorm_dsp import gen_edges, gen_fast, gen_ln10, gen_sqrt_edges
from test_unicorn import GCC, build

pytestmark = pytest.mark.skipif(GCC is None, reason="needs arm-none-eabi-gcc")

ROOT = Path(__file__).resolve().parents[1]
MAX_COLS = 256  # keeps every case within the firmware's 2 KB buffers


def cases(seed: int, n: int) -> list[Case]:
    """n cases from the host test's generators, in turn, widths up to MAX_COLS."""
    rng = np.random.default_rng(seed)
    gens = (gen_fast, gen_fast, gen_ln10, gen_edges, gen_sqrt_edges, gen_sqrt_edges)
    out: list[Case] = []
    while len(out) < n:
        c = gens[len(out) % len(gens)](rng)
        if c.params["cols"] <= MAX_COLS:
            out.append(c)
    return out


def c_array(name: str, ctype: str, values: np.ndarray) -> str:
    return f"static const {ctype} {name}[] = {{{','.join(str(int(v)) for v in values) or '0'}}};\n"


def firmware_source(cs: list[Case], wants: list[np.ndarray]) -> str:
    """main(): every case at x offsets 0..3 and in place against its wants[i]; exit code =
    the number of mismatching runs."""
    data, rows = [], []
    for i, (c, want) in enumerate(zip(cs, wants, strict=True)):
        p = c.params
        data += [c_array(f"x{i}", "int8_t", c.inputs[0]), c_array(f"w{i}", "int8_t", want),
                 c_array(f"g{i}", "int32_t", p["gamma_q"]),
                 c_array(f"b{i}", "int32_t", p["beta_q"])]
        fast = "0"
        if p.get("fast") is not None:
            data.append(c_array(f"f{i}", "int32_t", p["fast"]))
            fast = f"f{i}"
        rows.append(f"{{{{{p['rows']}, {p['cols']}, {p['y_zp']}, {p['eps_q']}LL, g{i}, b{i}, "
                    f"{fast}}}, x{i}, w{i}, {c.out_size}}}")
    return (
        '#include <string.h>\n#include "mcuc/kernels.h"\n' + "".join(data) +
        "typedef struct { mcuc_layernorm_params_t p; const int8_t *x, *w; int n; } C;\n"
        f"static const C cases[] = {{{','.join(rows)}}};\n"
        "static int8_t ybuf[2048] __attribute__((aligned(4)));\n"
        "static int8_t xbuf[2048 + 3] __attribute__((aligned(4)));\n"
        "int main(void) {\n  int bad = 0;\n"
        f"  for (int i = 0; i < {len(cs)}; ++i) {{\n    const C *c = &cases[i];\n"
        "    for (int off = 0; off < 4; ++off) {\n"
        "      memcpy(xbuf + off, c->x, (size_t)c->n);\n"
        "      memset(ybuf, 0x55, sizeof ybuf);\n"
        "      mcuc_layernorm_s8(&c->p, xbuf + off, ybuf);\n"
        "      bad += memcmp(ybuf, c->w, (size_t)c->n) != 0;\n    }\n"
        "    memcpy(ybuf, c->x, (size_t)c->n);\n"
        "    mcuc_layernorm_s8(&c->p, ybuf, ybuf);\n"
        "    bad += memcmp(ybuf, c->w, (size_t)c->n) != 0;\n  }\n"
        "  sh_exit(bad);\n  return 0;\n}\n")


def run_cases(tmp_path: Path, cs: list[Case], wants: list[np.ndarray]) -> int:
    extra = ["-nostartfiles", "-std=c99", "-Wextra", "-DMCUC_ARM_DSP",
             f"-I{ROOT / 'runtime_c/include'}", str(ROOT / "runtime_c/src/layernorm.c"),
             str(ROOT / "runtime_c/src/layernorm_row16.c")]
    elf = build(tmp_path, "ln", firmware_source(cs, wants), extra=extra)
    res = run_elf(elf, max_instructions=2_000_000_000)
    assert res.stopped_by == "exit", res.stopped_by
    return res.exit_code


def test_layernorm_arm_matches_reference(tmp_path: Path) -> None:
    cs = cases(23, 48)
    assert sum(c.params.get("fast") is not None for c in cs) > 10
    assert run_cases(tmp_path, cs, [layernorm.ref(c.params, *c.inputs) for c in cs]) == 0


def test_layernorm_arm_sqrt_edges(tmp_path: Path) -> None:
    """Variances at and next to perfect squares up to the 31-bit limit (gen_sqrt_edges):
    sigma by VSQRT and its fix-up, as the FPU computes it."""
    rng = np.random.default_rng(46340)
    cs = [gen_sqrt_edges(rng) for _ in range(100)]
    assert run_cases(tmp_path, cs, [layernorm.ref(c.params, *c.inputs) for c in cs]) == 0


def test_layernorm_arm_detects_a_wrong_output(tmp_path: Path) -> None:
    """The harness itself: a case whose expected output is one off in one element fails
    all five of its runs."""
    c = cases(5, 1)[0]
    want = layernorm.ref(c.params, *c.inputs).copy()
    want[0] = want[0] - 1 if want[0] > -128 else want[0] + 1
    assert run_cases(tmp_path, [c], [want]) == 5
