"""The loop trip counts of each step the C runtime would run, as named features.

Why trip counts: an instruction count of straight-line loop bodies is exactly a sum of
(trip count x instructions per trip), so a linear model over these counts, its
coefficients fitted from emulator counts (scripts/calibrate_latency.py), predicts a
step's instructions. Each function below follows the control flow of its C kernel in
runtime_c/src/ (keep them in step): which loop variant runs (the DSP row pairs, the
widened rows of --optimize speed, or the portable reference), how k, n and the rows split
into blocks of 8 / 4 and remainders, and how tokenwise.c splits its rows into tiles and
calls the unfused kernels. What data alone decides (the short epilogue of linear.c,
attention_dsp.c's fast path, the LayerNorm and Add paths) is taken from the parameters where
they are the real ones (`exact`), else assumed as quantization usually has it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace

import numpy as np

from mcuc.kernels import add as k_add
from mcuc.kernels import linear as k_linear
from mcuc.kernels import patch_embed as k_patch
from mcuc.kernels import tokenwise as k_tw

Features = dict[str, float]

DSP_MAX_K = 65793          # linear_internal.h MCUC_DSP_MAX_K
PRE_MAX_K = 512            # linear_internal.h MCUC_PRE_MAX_K
ATT_MAX_D = 128            # attention_internal.h MCUC_ATT_DSP_MAX_D
ATT_MAX_LEN = 16512        # attention_internal.h MCUC_ATT_DSP_MAX_LEN
ATT_PAIR_LEN = 256         # attention_internal.h MCUC_ATT_DSP_PAIR_LEN
ATT_VT_BYTES = 2048        # attention_internal.h MCUC_ATT_DSP_VT_BYTES


@dataclass(frozen=True)
class Variant:
    """Which C the features describe: the DSP loops or the portable reference, int8 or
    widened (int16) linear weights, and whether params hold real quantization."""
    dsp: bool
    wide: bool
    exact: bool = True


def _arr(v) -> np.ndarray | None:
    return None if v is None else np.asarray(v)


def short_epilogue(bias, mult, shift, k: int) -> bool:
    """linear.c's short_ok (linear.py short_epilogue_ok): every multiplier in [2^30, 2^31),
    every shift in [-31, -1] and the sums below 2^30; False without real multipliers."""
    m, s = _arr(mult), _arr(shift)
    if m is None or s is None or s.size == 0:
        return False
    return k_linear.short_epilogue_ok(bias, m, s, k)


def linear_plan(x_zp: int, bias, mult, shift, k: int, v: Variant) -> str:
    """linear.c mcuc_linear_plan: "ref", "s" (folded zero point, short epilogue) or "z"
    (general epilogue). Without real quantization (the search's dummy params), a layer
    with a bias is taken to fold its zero point and one without to keep it (linear.py
    fold_zero_point needs a bias)."""
    if not v.dsp or k > DSP_MAX_K:
        return "ref"
    if not v.exact:
        return "s" if bias is not None else "z"
    return "s" if x_zp == 0 and short_epilogue(bias, mult, shift, k) else "z"


def add_plan_check(f: Features, n: int, plan: str) -> None:
    """mcuc_linear_plan: a few tests of the params (short_ok is the compiler's, so no pass
    over the n channels any more: lin_check stays 0 and its fitted coefficient unused)."""
    del n, plan
    f["lin_plan"] += 1


def add_linear(f: Features, rows: int, k: int, n: int, plan: str, v: Variant,
               times: int = 1) -> None:
    """`times` mcuc_linear_planned_s8 calls of rows x k times k x n."""
    nb, nt = n // 4, n % 4
    k8, s4, kt, k4 = k // 8, (k % 8) // 4, k % 4, k // 4
    if plan == "ref":
        g = {"call": 1, "row": rows, "ch": rows * n, "ch_k4": rows * n * k4,
             "ch_kt": rows * n * kt}
        _add(f, "lr_", g, times)
        return
    if plan == "s" and k % 16 == 0 and k <= PRE_MAX_K:
        # unpacked_rows: each row pair unpacked once, two channel pairs per block, sixteen
        # inputs per step; then an odd row, unpacked too, one block of four at a time
        pairs, odd = rows // 2, rows % 2
        p2 = pairs * nb * 2
        g = {"call": 1, "pair": pairs, "pair_k4": pairs * k4, "p2": p2,
             "p2_k16": p2 * (k // 16), "odd": odd}
        blocks, d1 = odd * nb, (2 * pairs + odd) * nt
        g.update({"b4": blocks, "b4_k8": blocks * k8, "d1": d1, "d1_k4": d1 * k4})
        _add(f, "lwp_" if v.wide else "lp_", g, times)
        return
    if v.wide:   # wide_rows: one row at a time
        blocks, d1 = rows * nb, rows * nt
        g = {"call": 1, "row": rows}
    else:        # row_pairs: row pairs (dot2x2, two per block), then an odd row (dot4)
        pairs, odd = rows // 2, rows % 2
        b2 = pairs * nb * 2
        g = {"call": 1, "pair": pairs, "b2": b2, "b2_k8": b2 * k8, "b2_s4": b2 * s4,
             "b2_kt": b2 * kt, "odd": odd}
        blocks, d1 = odd * nb, (2 * pairs + odd) * nt
    g.update({"b4": blocks, "b4_k8": blocks * k8, "b4_s4": blocks * s4,
              "b4_kt": blocks * kt, "d1": d1, "d1_k4": d1 * k4, "d1_kt": d1 * kt})
    _add(f, f"lw{plan}_" if v.wide else f"l{plan}_", g, times)


def _add(f: Features, prefix: str, g: dict[str, int], times: int) -> None:
    for name, val in g.items():
        if val:
            f[prefix + name] += val * times


def add_layernorm(f: Features, rows: int, cols: int, v: Variant, times: int = 1) -> None:
    """`times` mcuc_layernorm_s8 calls of rows x cols."""
    g = {"call": 1, "row": rows, "el": rows * cols}
    if v.dsp:   # statistics: 16 per step, then 4, then bytes; ln_fast16's loop: 16
        # per step, then 8, then ln_rest16 for the last cols mod 8
        g.update({"c16": rows * (cols // 16), "c4": rows * ((cols % 16) // 4),
                  "ct": rows * (cols % 4), "n8": rows * ((cols % 16) // 8),
                  "nrest": rows * int(cols % 8 != 0), "nr4": rows * ((cols % 8) // 4)})
    _add(f, "ln_" if v.dsp else "lnr_", g, times)


def add_linear_lut(f: Features, plan: str, k: int, size: int, v: Variant,
                   times: int = 1) -> None:
    """The table after a linear stage (mcuc_linear_lut_planned_s8): in the epilogue of the
    unpacked short plans (mcuc_lin_short16, mcuc_lin_wide_short16: one load per output, `lp_lut`),
    else mcuc_lut_s8's pass over its size bytes."""
    if v.dsp and plan == "s" and k % 16 == 0 and k <= PRE_MAX_K:
        f["lp_lut"] += size * times
    else:
        add_lut(f, size, times)


def add_lut(f: Features, size: int, times: int = 1) -> None:
    """`times` mcuc_lut_s8 calls over size bytes (four per step, then the tail)."""
    _add(f, "lut_", {"call": 1, "4": size // 4, "t": size % 4}, times)


def add_add(f: Features, p: dict, v: Variant, times: int = 1) -> None:
    """`times` mcuc_add_s8 calls with params p. Every call counts add_call and add_el;
    on the DSP build, a call that add.c sends to another loop than add_exact's with the
    output shift inlined (k_add.dsp_path) also counts its extra: add_tab1_* (add_tab with
    one table: fewer instructions per element), add_tab_* (two tables, the output shift
    variable), add_fast_* or add_ref_* (add_fast, add_ref: ~29 instructions more per
    element), or add_ev_el (add_exact's or add_tab's one-table loop for an output shift
    outside EXACT_SHIFTS, taken as a variable). Without real quantization (the search's
    dummy params: equal scales) the add is taken to take add_tab with one table, as the
    DSP build's adds with an input at multiplier 1/2 do (schedule/widen.py add_tables)."""
    size = p["size"]
    _add(f, "add_", {"call": 1, "el": size}, times)
    if not v.dsp:
        return
    path = k_add.dsp_path(p) if v.exact else "tab1"
    if path in ("exact", "tab1") and v.exact and -p["y_shift"] not in k_add.EXACT_SHIFTS:
        _add(f, "add_ev_", {"el": size}, times)   # both loops inline the same shifts
    if path != "exact":
        _add(f, f"add_{path}_", {"call": 1, "el": size}, times)


def add_row1(f: Features, k: int, n: int) -> None:
    """linear_row1.c mcuc_lin_row1: the first block of four channels (it unpacks x), the
    other blocks, then the channel pairs past them (a last odd channel as a pair), each
    k / 16 loop steps."""
    quads, pairs, k16 = n // 4 - 1, (n % 4 + 1) // 2, k // 16
    _add(f, "r1_", {"call": 1, "first_k16": k16, "quad": quads, "quad_k16": quads * k16,
                    "pair": pairs, "pair_k16": pairs * k16}, 1)


def linear_step(f: Features, p: dict, v: Variant) -> None:
    """mcuc_linear_s8: linear_row1.c's loop for one row (linear_internal.h lin_row1_ok),
    else the plan, then the call. A step's own int16 weights (schedule/widen.py
    widen_heads, in every DSP build) make it take the widened plans whatever the build."""
    if p.get("weights16") is not None:
        v = replace(v, wide=True)
    k, n = p["k"], p["n"]
    plan = linear_plan(p["x_zp"], p.get("bias"), p.get("mult"), p.get("shift"), k, v)
    if v.dsp and v.wide and plan == "s" and p["rows"] == 1 and n >= 4 and k % 16 == 0 \
            and 16 <= k <= PRE_MAX_K:
        add_row1(f, k, n)
        return
    add_plan_check(f, n, plan)
    add_linear(f, p["rows"], k, n, plan, v)


def tokenwise_step(f: Features, p: dict, v: Variant) -> None:
    """tokenwise.c: the stages' plans, ln_pairs_in_y or res_pairs_over_x, then the tiles."""
    rows, k, h, n, tile = p["rows"], p["k"], p["h"], p["n"], p["tile"]
    has_ln, has_lut, has_l2, has_res = p["has_ln"], p["has_lut"], p["has_l2"], p["has_res"]
    y_free, x_rs = p["y_free"], p["x_rs"]
    f["tw_call"] += 1
    l1, l2 = p["l1"], p.get("l2")   # the stages' own params (kernels/tokenwise.py)
    plan1 = linear_plan(l1["x_zp"], l1.get("bias"), l1.get("mult"), l1.get("shift"), k, v)
    add_plan_check(f, h, plan1)
    plan2 = ""
    if has_l2:
        plan2 = linear_plan(l2["x_zp"], l2.get("bias"), l2.get("mult"), l2.get("shift"), h, v)
        add_plan_check(f, n, plan2)
    r0 = 0
    if (has_ln and not has_l2 and not has_res and y_free and tile <= 1 and x_rs == k
            and n >= 2 * k):   # ln_pairs_in_y
        pairs = (rows - 1) // 2 if rows > 2 else 0
        f["tw_pair"] += pairs
        add_layernorm(f, 2, k, v, pairs)
        add_linear(f, 2, k, h, plan1, v, pairs)
        if has_lut:
            add_linear_lut(f, plan1, k, 2 * n, v, pairs)
        r0 = 2 * pairs
    if (r0 == 0 and p.get("x_free") and tile <= 1 and not has_ln and not has_l2 and has_res
            and not p["x_wide"] and rows >= 4 and (k if x_rs > k else 0) + n <= x_rs):
        pairs = (rows - 2) // 2   # res_pairs_over_x: rows 0 and 1 take the tile loop
        f["tw_xpair"] += pairs
        if x_rs > k:
            _add(f, "memcpy_", {"call": 1, "b": k}, 2 * pairs)
        add_linear(f, 2, k, h, plan1, v, pairs)
        if has_lut:
            add_linear_lut(f, plan1, k, 2 * h, v, pairs)
        add_add(f, dict(p["add"], size=2 * n, b_size=2 * n), v, pairs)
        r0 = 2 * pairs          # the tile loop's rows below: the same count
    f_is_y = k_tw.layout(p)["final"] == "Y"
    left = rows - r0
    for t, count in ((tile, left // tile), (left % tile, 1)):
        if t == 0 or count == 0:
            continue
        f["tw_tile"] += count
        contiguous = x_rs == k
        if has_ln:
            add_layernorm(f, t if contiguous else 1, k, v, count * (1 if contiguous else t))
        if has_ln or contiguous:
            add_linear(f, t, k, h, plan1, v, count)
        else:
            add_linear(f, 1, k, h, plan1, v, count * t)
        if has_lut:
            add_linear_lut(f, plan1, k, t * h, v, count)
        if has_l2:
            add_linear(f, t, h, n, plan2, v, count)
        if has_res:   # tokenwise.c: size = b_size = t * n (its operand swap keeps the path)
            add_add(f, dict(p["add"], size=t * n, b_size=t * n), v, count)
        elif not f_is_y:
            _add(f, "memcpy_", {"call": 1, "b": t * n}, count)


def attention_step(f: Features, p: dict, v: Variant) -> None:
    """attention_dsp.c: the DSP pair path (P.V by the pair block over V^T, its operand
    written by softmax_pairs, for the channels whose V^T fits its buffer, mcuc_att_pv_rows2
    for the rest; or after mcuc_att_softmax_dsp by mcuc_att_pv_dsp2, both rows of a pair at
    once, and pv_dsp for the others), else the reference loop."""
    b, q_len, n, d, dv = p["batch"], p["q_len"], p["kv_len"], p["d"], p["dv"]
    # att_rq2_ok: the pair epilogue needs mult >= 0 and -22 <= shift <= -1
    s_ok = p["s_mult"] >= 0 and -22 <= p["s_shift"] <= -1 if v.exact else True
    o_ok2 = p["o_mult"] >= 0 and -22 <= p["o_shift"] <= -1 if v.exact else True
    o_ok = -31 <= p["o_shift"] <= 0 if v.exact else True
    tables = any(p.get(t) is not None for t in ("q_table", "k_table", "v_table"))
    unit = p["q_cs"] == 1 and p["k_cs"] == 1 and p["v_cs"] == 1
    if (not v.dsp or not unit or tables or d > ATT_MAX_D or n > ATT_MAX_LEN or not s_ok
            or not o_ok):
        rows = b * q_len
        f["ar_call"] += 1
        f["ar_row"] += rows
        f["ar_s"] += rows * n
        f["ar_qk"] += rows * n * d
        f["ar_o"] += rows * dv
        f["ar_pv"] += rows * dv * n
        return
    n4 = (n + 3) & ~3
    two = n <= ATT_PAIR_LEN
    pv_pair = two and n >= 1 and n4 <= ATT_PAIR_LEN // 2 and o_ok2
    f["at_call"] += 1
    f["at_batch"] += b
    pairs = q_len // 2 if two else 0
    iters = b * (pairs + (q_len - 2 * pairs))
    soft = iters + b * pairs
    f["at_iter"] += iters
    f["at_up_d4"] += iters * (d // 4)
    f["at_up_dt"] += iters * (d % 4)
    _dot_pair(f, iters, d, n, "dpq32_" if d in (32, 64) else "dp_")
    if pv_pair:   # softmax_pairs per row; a row taken twice copied to b's words
        fit = ATT_VT_BYTES // n4   # mcuc_attention_s8's cvt
        cvt = dv if dv <= fit else fit - ((fit - dv) & 3)
        f["at_tv"] += b * cvt
        f["at_tv_n"] += b * cvt * n4
        f["at_sp"] += soft
        f["at_sp_4"] += soft * (n // 4)
        f["at_sp_t"] += soft * (n % 4)
        single = iters - b * pairs
        f["at_one"] += single
        f["at_one_4"] += single * (n4 // 4)
        _dot_pair(f, iters, n4, cvt, "dpv_")
        if cvt < dv:
            _pv_rows2(f, iters, n, dv - cvt)
    else:
        f["at_sm"] += soft
        f["at_sm_4"] += soft * (n // 4)
        f["at_sm_t"] += soft * (n % 4)
        # mcuc_att_pv_dsp2 takes both rows of a pair (o_shift within att_out2's range),
        # pv_dsp the rest
        two_rows = b * pairs if o_ok2 else 0
        rows = soft - 2 * two_rows
        f["pv2_pk"] += two_rows * n4 // 4
        _pv_rows2(f, two_rows, n, dv)
        _pv_channels(f, "pv_", rows, n, dv)


def _pv_rows2(f: Features, calls: int, n: int, channels: int) -> None:
    """`calls` mcuc_att_pv_rows2 calls over `channels` channels of n rows of V."""
    _pv_channels(f, "pv2_", calls, n, channels)


def _pv_channels(f: Features, tag: str, calls: int, n: int, channels: int) -> None:
    """A P.V loop's counts (pv_dsp: tag pv_, mcuc_att_pv_rows2: pv2_): per call, groups of
    four channels by steps of four rows and the n % 4 tail, then the channels left one by
    one."""
    c4, ct = channels // 4, channels % 4
    f[tag + "call"] += calls
    f[tag + "c4"] += calls * c4
    f[tag + "c4_n4"] += calls * c4 * (n // 4)
    f[tag + "c4_nt"] += calls * c4 * (n % 4)
    f[tag + "ct"] += calls * ct
    f[tag + "ct_n"] += calls * ct * n


def _dot_pair(f: Features, calls: int, length: int, rows: int, tag: str) -> None:
    """`calls` mcuc_att_dot_pair calls over `rows` rows of `length` values, by dot_pair_rows' copy
    (`tag`: dpq32_ scores with length 32 or 64, written out; dp_ other scores, Duff's device
    over eight steps then the length % 4 tail; dpv_ P.V over V^T, no tail): row pairs,
    their steps of four values (16 instructions each) and passes, then dot_pair_last."""
    d4, dt = length // 4, length % 4
    j2, jo = rows // 2, rows % 2
    f[tag + "call"] += calls
    f[tag + "j2"] += calls * j2
    f["dp_step"] += calls * j2 * d4
    if tag != "dpq32_":
        f[tag + "j2_pass"] += calls * j2 * ((d4 + 7) // 8)
        f[tag + "j2_t"] += calls * j2 * dt
    f["dp_jo"] += calls * jo
    f["dp_jo_d4"] += calls * jo * d4
    f["dp_jo_t"] += calls * jo * dt


def patch_embed_step(f: Features, p: dict, v: Variant) -> None:
    """patch_embed.c, patch_embed_dsp.c: per patch and output channel, the taps by image
    row (words of four, then bytes); widened 16-tap weights (patch_embed.widen) have their
    own loops."""
    c_in, ph, pw, d = p["c_in"], p["ph"], p["pw"], p["d"]
    patches = p["hp"] * p["wp"]
    taps = c_in * ph * pw
    # Without real quantization the search's steps are taken to widen as the build does
    # (a 16-tap patch with an even d; the fast epilogue is the usual case).
    wide = v.dsp and taps == 16 and d % 2 == 0 and (
        p.get("weights16") is not None and k_patch.fast_epilogue(p) if v.exact else True)
    if wide:  # mcuc_pe_wide16: per token fill_patch; per token pair, then per channel pair
        f["pew_call"] += 1
        f["pew_d"] += d  # all_fast
        f["pew_token"] += patches
        f["pew_pair"] += (patches + 1) // 2
        f["pew_cp2"] += patches // 2 * (d // 2)
        f["pew_cp1"] += patches % 2 * (d // 2)
        return
    tag = "pe_" if v.dsp else "per_"
    f[tag + "call"] += 1
    f[tag + "band"] += p["hp"]
    f[tag + "patch"] += patches
    f[tag + "pd"] += patches * d
    f[tag + "pd_w4"] += patches * d * c_in * ph * (pw // 4)
    f[tag + "pd_wt"] += patches * d * c_in * ph * (pw % 4)


def copy_step(f: Features, p: dict) -> None:
    """copy.c: one innermost run per outer index, requantizing or not."""
    nd = int(p["ndim"])
    shape = [int(s) for s in np.asarray(p["shape"]).reshape(-1)[:nd]] if nd else [1]
    total = int(np.prod(shape)) if shape else 1
    runs = total // max(1, shape[-1]) if shape else 1
    tag = "cpr_" if p.get("requant") else "cp_"
    f[tag + "call"] += 1
    f[tag + "dim"] += nd
    f[tag + "run"] += runs
    f[tag + "el"] += total


def step_features(kernel: str, p: dict, macs: int, out_size: int, v: Variant) -> Features:
    """The features of one schedule step."""
    f: Features = defaultdict(float)
    if kernel == "linear":
        linear_step(f, p, v)
    elif kernel == "tokenwise":
        tokenwise_step(f, p, v)
    elif kernel == "attention":
        attention_step(f, p, v)
    elif kernel == "patch_embed":
        patch_embed_step(f, p, v)
    elif kernel == "layernorm":
        add_layernorm(f, p["rows"], p["cols"], v)
    elif kernel == "add":
        add_add(f, p, v)
    elif kernel == "lut":
        add_lut(f, p["size"])
    elif kernel == "copy":
        copy_step(f, p)
    else:   # kernels no ViT of the search space uses: calls, MACs and outputs
        f[kernel + "_call"] += 1
        f[kernel + "_mac"] += macs
        f[kernel + "_out"] += out_size
    return f
