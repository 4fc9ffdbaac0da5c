"""The ARMv7E-M fused attention (MCUC_ARM_DSP) against the numpy reference, on the host.

The variant runs for unit column strides without tables (the layout of a ViT's heads):
QK^T as SMLADs on SXTB16 pairs against an unpacked q row, the reference's softmax, and
P.V four channels by four rows at a time, in int32 with the k and v zero points folded
out. Its instructions have portable C twins (mcuc/simd.h), so the same code is compared
here byte for byte with the reference on random shapes (d and kv_len odd, 1, every
tail of 4), extreme zero points and operands, the model's interleaved q/k/v rows,
arbitrary row strides, outputs through any view and over q, and on the cases that must
take the reference loop (strided columns, tables, d above the q buffer, kv_len above
the int32 bound, shifts outside the fast epilogue's range, which rand_requant draws), and
on the edges of the two-row path (kv_len and V^T at and past its stack buffers, shifts
at and past [-22, -1], odd q_len); then again under ASan/UBSan (UBSan reports an int32
overflow, ASan a write past a stack buffer). The firmware tests run the real
instructions in the emulator.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest

from mcuc.kernels import REGISTRY, attention, softmax
from test_kernels import Case, expected, rand_requant, rand_s8, zp

from ckernels import ROOT, CKernels, run_sanitized

DSP = ("-DMCUC_ARM_DSP",)
# the ARMv7E-M variant's bounds (its code: attention_dsp.c, attention_pair.c)
SRC = ROOT / "runtime_c" / "src" / "attention_internal.h"


def _unit_view(rng: np.random.Generator, bt: int, rows: int, cols: int) -> tuple:
    """(off, bs, rs, cs=1, buffer): rows of `cols` contiguous bytes, rows and batches
    laid out any way (packed, interleaved like q/k/v in one tensor, overlapping, reversed)."""
    mode = int(rng.integers(4))
    if mode == 0:  # packed
        rs, bs = cols, rows * cols
    elif mode == 1:  # the model's layout: heads side by side, q/k/v interleaved
        rs = cols * int(rng.integers(2, 7))
        bs = cols
    elif mode == 2:  # batch-major rows with gaps
        rs = cols + int(rng.integers(0, 5))
        bs = rows * rs + int(rng.integers(0, 4))
    else:  # anything, reads may overlap or run backwards
        rs, bs = int(rng.integers(-9, 10)), int(rng.integers(-9, 10))
    lo = min(0, bs * (bt - 1)) + min(0, rs * (rows - 1))
    hi = max(0, bs * (bt - 1)) + max(0, rs * (rows - 1)) + cols - 1
    off = -lo + int(rng.integers(0, 4))
    buf = rand_s8(rng, off + hi + 1 + int(rng.integers(0, 4)))
    return off, bs, rs, 1, buf


def _extreme(rng: np.random.Generator, buf: np.ndarray) -> np.ndarray:
    """Sometimes all -128 or all 127: the largest products of the int32 proof."""
    r = rng.random()
    if r < 0.1:
        return np.full_like(buf, -128)
    if r < 0.2:
        return np.full_like(buf, 127)
    return buf


def gen_attention_dsp(rng: np.random.Generator, *, fallback: bool = False,
                      shape: tuple[int, int, int, int] | None = None) -> Case:
    """A case for the fast path (unit column strides, no tables), or with `fallback` one
    that breaks exactly one of its preconditions; `shape` = (q_len, kv_len, d, dv)."""
    bt, m = int(rng.integers(1, 4)), int(rng.integers(1, 5))
    d = int(rng.choice([1, 2, 3, 4, 5, 7, 8, 9, 31, 32, 33, 64, int(rng.integers(1, 129))]))
    n = int(rng.choice([1, 2, 3, 4, 5, 6, 7, 8, 50, int(rng.integers(1, 80))]))
    dv = int(rng.choice([1, 2, 3, 4, 5, 7, 8, 9, 32, int(rng.integers(1, 40))]))
    if shape is not None:
        m, n, d, dv = shape
    p: dict = dict(batch=bt, q_len=m, kv_len=n, d=d, dv=dv)
    ins = []
    for x, rows, cols in (("q", m, d), ("k", n, d), ("v", n, dv)):
        off, bs, rs, cs, buf = _unit_view(rng, bt, rows, cols)
        p.update({f"{x}_off": off, f"{x}_bs": bs, f"{x}_rs": rs, f"{x}_cs": cs,
                  f"{x}_table": None})
        ins.append(_extreme(rng, buf))
    if fallback:
        which = rng.choice(["table", "cs", "d"])
        x = str(rng.choice(["q", "k", "v"]))
        if which == "table":
            p[f"{x}_table"] = rng.integers(-128, 128, 256).astype(np.int8)
        elif which == "cs":  # the same bytes read with column stride 2
            p[f"{x}_cs"] = 2
            ins[["q", "k", "v"].index(x)] = np.concatenate(
                [ins[["q", "k", "v"].index(x)]] * 2)
            p[f"{x}_off"] *= 2
            p[f"{x}_bs"] *= 2
            p[f"{x}_rs"] *= 2
        else:  # d past the q-row buffer
            d = attention.ATT_DSP_MAX_D + int(rng.integers(1, 9))
            p["d"] = d
            for i, x2 in ((0, "q"), (1, "k")):
                rows = m if x2 == "q" else n
                off, bs, rs, cs, buf = _unit_view(rng, bt, rows, d)
                p.update({f"{x2}_off": off, f"{x2}_bs": bs, f"{x2}_rs": rs, f"{x2}_cs": cs})
                ins[i] = buf
    # Output: a box in a bigger tensor, random axis order (o_cs 1 or not).
    full = [e + int(rng.integers(0, 3)) for e in (bt, m, dv)]
    order = rng.permutation(3)
    st = np.cumprod([1] + [full[a] for a in order[::-1]][:-1])[::-1]
    ost = [0, 0, 0]
    for pos, a in enumerate(order):
        ost[a] = int(st[pos])
    o_off = sum(int(rng.integers(0, f - e + 1)) * s
                for f, e, s in zip(full, (bt, m, dv), ost, strict=True))
    p.update(o_off=o_off, o_bs=ost[0], o_rs=ost[1], o_cs=ost[2])
    _quant(rng, p)
    out_size = int(np.prod(full))
    return Case(p, ins, out_size, rng.integers(-128, 128, out_size).astype(np.int8))


def _quant(rng: np.random.Generator, p: dict) -> None:
    s_mult, s_shift = rand_requant(rng, fit=70 * 70 * math.sqrt(p["d"]))
    o_mult, o_shift = rand_requant(rng, fit=256 * 70.0)
    if rng.random() < 0.7:
        table = softmax.make_exp_table(10.0 ** rng.uniform(-3, 0.5))
    else:
        top = int(rng.choice([2**20, 1000, 10]))
        table = rng.integers(0, top, 256, endpoint=True).astype(np.uint32)
        table[0] = rng.integers(1, top, endpoint=True)
    p.update(q_zp=zp(rng), k_zp=zp(rng), s_zp=zp(rng), s_mult=s_mult, s_shift=s_shift,
             v_zp=zp(rng), o_zp=zp(rng), o_mult=o_mult, o_shift=o_shift, exp_table=table)


def gen_over_q(rng: np.random.Generator) -> tuple[Case, np.ndarray]:
    """y written over q (same rows, o = q's view, dv <= d), as the planner may place it."""
    bt, m, n = int(rng.integers(1, 4)), int(rng.integers(1, 6)), int(rng.integers(1, 60))
    d = int(rng.choice([1, 3, 4, 8, 32, int(rng.integers(1, 70))]))
    dv = int(rng.integers(1, d + 1))
    rs = d + int(rng.integers(0, 3))
    p: dict = dict(batch=bt, q_len=m, kv_len=n, d=d, dv=dv, q_off=1, q_bs=m * rs, q_rs=rs,
                   q_cs=1, o_off=1, o_bs=m * rs, o_rs=rs, o_cs=1,
                   q_table=None, k_table=None, v_table=None)
    q = rand_s8(rng, 1 + bt * m * rs + 2)
    ins = [q]
    for x, cols in (("k", d), ("v", dv)):
        off, bs, rs_x, cs, buf = _unit_view(rng, bt, n, cols)
        p.update({f"{x}_off": off, f"{x}_bs": bs, f"{x}_rs": rs_x, f"{x}_cs": cs})
        ins.append(buf)
    _quant(rng, p)
    want = REGISTRY["attention"].ref(p, *ins, out=q.copy())
    return Case(p, ins, q.size), want


def _worst(d: int, n: int, sign: int) -> Case:
    """|q - q_zp| = |k - k_zp| = |v - v_zp| = 255 and p = 255 in every term: the sums
    reach 255 * 255 * n, the bound of the proof (with a flat exp table every p is 255
    only for n = 1; n > 1 still gives the largest q.k sums)."""
    hi, lo = (127, -128) if sign > 0 else (-128, 127)
    p: dict = dict(batch=1, q_len=2, kv_len=n, d=d, dv=5,
                   q_off=0, q_bs=0, q_rs=d, q_cs=1, k_off=0, k_bs=0, k_rs=d, k_cs=1,
                   v_off=0, v_bs=0, v_rs=5, v_cs=1, o_off=0, o_bs=0, o_rs=5, o_cs=1,
                   q_zp=-128, k_zp=lo, s_zp=0, s_mult=1 << 30, s_shift=-20,
                   v_zp=-128, o_zp=0, o_mult=1 << 30, o_shift=-10,
                   exp_table=np.ones(256, np.uint32), q_table=None, k_table=None,
                   v_table=None)
    ins = [np.full(2 * d, 127, np.int8), np.full(n * d, hi, np.int8),
           np.full(n * 5, 127, np.int8)]
    return Case(p, ins, 10)


def test_variant_is_declared() -> None:
    assert "MCUC_ARM_DSP" in REGISTRY["attention"].variants
    for name in ("attention.c", "attention_dsp.c", "attention_pair.c"):
        assert "#ifdef MCUC_ARM_DSP" in (ROOT / "runtime_c" / "src" / name).read_text()


def test_int32_bound_constants_match_c() -> None:
    src = SRC.read_text()
    c_len = int(re.search(r"#define MCUC_ATT_DSP_MAX_LEN (\d+)", src).group(1))
    c_d = int(re.search(r"#define MCUC_ATT_DSP_MAX_D (\d+)", src).group(1))
    assert c_len == attention.ATT_DSP_MAX_LEN == 16512 and c_d == attention.ATT_DSP_MAX_D
    assert 255 * 255 * c_len < 2**30 <= 255 * 255 * (c_len + 1) and c_d <= c_len


def _c_define(name: str) -> int:
    return int(re.search(rf"#define {name} (\d+)", SRC.read_text()).group(1))


def test_pair_path_bounds() -> None:
    # The pair path's int32 proof (attention_pair.c): q and p unpacked doubled (|2 x| <= 510 in
    # an int16 lane), partial sums at most 4 * 255 * 128 * len, the last 2 acc with
    # |acc| <= 255 * 255 * len < 2^30 - 2^15; and att_out2's one add for 1 <= e <= 22.
    pair_len, vt = _c_define("MCUC_ATT_DSP_PAIR_LEN"), _c_define("MCUC_ATT_DSP_VT_BYTES")
    longest = max(pair_len, attention.ATT_DSP_MAX_D)
    assert 4 * 255 * 128 * longest < 2**31 and 2 * 255 < 2**15
    assert 255 * 255 * longest < 2**30 - 2**15
    assert 2**30 + 1 + 2**21 + 128 * 2**22 < 2**31 and vt >= 4
    # softmax_pairs: sum 2 p in 16-bit lanes, each at most 2 * 510 per 4 of n4 <= PAIR_LEN / 2;
    # and the exp values fit beside the two p rows in the q/p buffer (PAIR_LEN words)
    assert 2 * 510 * (pair_len // 2) // 4 < 2**16 and 2 * (pair_len // 2) <= pair_len
    # mcuc_att_pv_dsp2 (both rows of a pair from V, kv_len <= PAIR_LEN): 2 p v partial sums, then
    # 2 acc for att_out2; its lanes (pack_p2) fill at most PAIR_LEN words of the q/p buffer
    assert 510 * 128 * pair_len < 2**31 and 255 * 255 * pair_len < 2**30 - 2**15


def test_attention_dsp_pair_path_edges(ck_dsp: CKernels) -> None:
    """Both rows of a pair, an odd last row, kv_len and dv * kv_len (rounded up to 4)
    at and past the pair path's stack buffers (and the pair P.V's n4 <= PAIR_LEN / 2),
    the shifts at the ends of its epilogue (-1, -22) and just past them (0, -23: s_shift
    takes the reference loop, o_shift the row-by-row P.V)."""
    pair_len, vt = _c_define("MCUC_ATT_DSP_PAIR_LEN"), _c_define("MCUC_ATT_DSP_VT_BYTES")
    shapes = [(2, pair_len, 4, vt // pair_len), (3, pair_len, 5, vt // pair_len + 1),
              (2, pair_len + 1, 3, 1), (4, pair_len - 3, 8, vt // pair_len),
              (2, vt // 8 - 1, 2, 8), (2, vt // 8 + 1, 2, 8), (5, 1, 1, 1), (2, 2, 3, 2),
              (3, 5, 12, 3), (2, 50, 32, 32), (4, 7, 128, 7), (2, 6, 9, 1), (3, 3, 4, 5),
              # the pair P.V's row bound n4 <= PAIR_LEN / 2 (exp values beside p), at and past
              (2, pair_len // 2, 4, vt // (pair_len // 2)), (3, pair_len // 2 - 3, 32, 16),
              (2, pair_len // 2 + 1, 5, 15), (2, 64, 64, 31), (3, 33, 16, 33),
              # both rows per pass over V (mcuc_att_pv_dsp2: V^T past its buffer or n4 past
              # PAIR_LEN / 2), n % 4 and dv % 4 tails, the longest rows of a pair
              (2, 65, 64, 64), (3, 145, 64, 66), (2, pair_len, 63, 7), (4, 130, 65, 5),
              # V^T of some channels (an odd count too) and mcuc_att_pv_rows2 for the rest, from
              # softmax_pairs' lanes: n % 4 of 0 to 3
              (3, 65, 16, 35), (2, 128, 8, 17), (2, 125, 8, 18), (3, 66, 5, 40),
              (2, 67, 3, 40)]
    rng = np.random.default_rng(2326)
    i = 0
    for shape in shapes:
        for s_shift, o_shift in ((-1, -22), (-22, -1), (0, -5), (-5, 0), (-23, -9),
                                 (-9, -23), (-7, -13)):
            case = gen_attention_dsp(rng, shape=shape)
            case.params.update(s_shift=s_shift, o_shift=o_shift)
            want = expected("attention", case)
            got = ck_dsp.run("attention", case.params, case.inputs, case.out_size,
                             case.out_init)
            assert np.array_equal(got, want), f"case {i}: {case.params}"
            i += 1


def test_attention_dsp_multiplier_signs(ck_dsp: CKernels) -> None:
    """The pair path's epilogue takes the sign of the sum for the sign of its product,
    which holds for mult >= 0 only: a negative s_mult takes the reference loop, a negative
    o_mult the row-by-row P.V; zero and the extremes of either sign, each shift range."""
    rng = np.random.default_rng(2327)
    mults = (0, 1, 1 << 30, 2**31 - 1, -1, -(1 << 30), -(2**31))
    i = 0
    for shape in ((2, 50, 32, 32), (3, 7, 9, 5), (2, 1, 4, 2), (2, 69, 64, 33)):
        for s_mult in mults:
            for o_mult in mults:
                case = gen_attention_dsp(rng, shape=shape)
                case.params.update(s_mult=s_mult, o_mult=o_mult,
                                   s_shift=int(rng.integers(-22, 0)),
                                   o_shift=int(rng.integers(-22, 0)))
                want = expected("attention", case)
                got = ck_dsp.run("attention", case.params, case.inputs, case.out_size,
                                 case.out_init)
                assert np.array_equal(got, want), f"case {i}: {case.params}"
                i += 1


def test_attention_dsp_matches_reference(ck_dsp: CKernels) -> None:
    rng = np.random.default_rng(2323)
    for i in range(500):
        case = gen_attention_dsp(rng)
        want = expected("attention", case)
        got = ck_dsp.run("attention", case.params, case.inputs, case.out_size, case.out_init)
        assert np.array_equal(got, want), f"case {i}: {case.params}"


def test_attention_dsp_fallbacks_match_reference(ck_dsp: CKernels) -> None:
    rng = np.random.default_rng(2324)
    for i in range(150):
        case = gen_attention_dsp(rng, fallback=True)
        want = expected("attention", case)
        got = ck_dsp.run("attention", case.params, case.inputs, case.out_size, case.out_init)
        assert np.array_equal(got, want), f"case {i}: {case.params}"


def test_attention_dsp_writes_over_q(ck_dsp: CKernels) -> None:
    rng = np.random.default_rng(2325)
    for i in range(100):
        case, want = gen_over_q(rng)
        got = ck_dsp.run("attention", case.params, case.inputs, case.out_size, inplace=True)
        assert np.array_equal(got, want), f"case {i}: {case.params}"


@pytest.mark.parametrize("d", [1, 31, attention.ATT_DSP_MAX_D])
def test_attention_dsp_worst_case(ck_dsp: CKernels, d: int) -> None:
    # q_len = 2: the pair path up to its longest rows (256, dv * 256 <= its V^T buffer)
    for sign in (1, -1):
        for n in (1, 7, 64, 256):
            case = _worst(d, n, sign)
            want = REGISTRY["attention"].ref(case.params, *case.inputs)
            got = ck_dsp.run("attention", case.params, case.inputs, case.out_size)
            assert np.array_equal(got, want[:case.out_size]), (d, n, sign)
    # The q.k sum is as extreme as claimed: 255 * 255 * d in magnitude.
    c = _worst(d, 1, 1)
    qs = c.inputs[0][:d].astype(np.int64) - c.params["q_zp"]
    ks = c.inputs[1][:d].astype(np.int64) - c.params["k_zp"]
    assert int(qs @ ks) == 255 * 255 * d


@pytest.mark.parametrize("n", [attention.ATT_DSP_MAX_LEN, attention.ATT_DSP_MAX_LEN + 1])
def test_attention_dsp_at_the_length_bound(ck_dsp: CKernels, n: int) -> None:
    # The longest key/value rows the int32 proof covers, and one more (the reference loop).
    for sign in (1, -1):
        case = _worst(3, n, sign)
        want = REGISTRY["attention"].ref(case.params, *case.inputs)
        got = ck_dsp.run("attention", case.params, case.inputs, case.out_size)
        assert np.array_equal(got, want[:case.out_size]), (n, sign)


def test_sanitizers_attention_dsp(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    cases = []
    for i in range(70):
        c = gen_attention_dsp(rng, fallback=i % 5 == 4)
        cases.append(("attention", c.params, c.inputs, expected("attention", c), c.out_init))
    for sign in (1, -1):
        c = _worst(attention.ATT_DSP_MAX_D, 64, sign)
        want = REGISTRY["attention"].ref(c.params, *c.inputs)[:c.out_size]
        cases.append(("attention", c.params, c.inputs, want))
    run_sanitized(cases, tmp_path, DSP)
