"""The ARMv7E-M patch embedding (MCUC_ARM_DSP: patch_embed_dsp.c) against the numpy spec.

Why a file of its own: the variant has paths the random models rarely reach (the
reference fallback for patches of more taps than it takes, the general epilogue for
positive shifts, non-positive multipliers and biases near the int32 limits, the per-pair
zero point, pw % 4 tails, channels past the last block of four), so they are driven here
on purpose, byte for byte against the numpy reference and the portable C, out of place
and written over their own image as the planner places them, then under ASan/UBSan
(UBSan reports any int32 overflow of the sums). The firmware tests run the real
instructions in the emulator.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from mcuc.kernels import patch_embed
from mcuc.kernels.fixedpoint import INT32_MAX, INT32_MIN
from mcuc.schedule import patch
from test_kernels import Case, rand_bias, rand_requant, rand_s8, zp
from test_tokenwise import call_in_arena

from ckernels import DSP, ROOT, CKernels, run_sanitized


def taps(p: dict) -> int:
    return p["c_in"] * p["ph"] * p["pw"]


def fast_epilogue(p: dict) -> bool:
    """p qualifies for the SMMLAR epilogue (patch_embed.c's conditions, every channel)."""
    lim = 2**30 - 1 - 255 * 128 * taps(p)
    bias = p["bias"] if p.get("bias") is not None else np.zeros(p["d"], np.int64)
    ok = ((p["shift"] <= -1) & (p["shift"] >= -20) & (p["mult"] > 0)
          & (np.abs(bias.astype(np.int64)) <= lim))
    return bool(ok.all())


def wide16(p: dict) -> bool:
    """p takes the variant's widened 16-tap loop (two patches' pairs in a 64-byte buffer
    against int16 weights; patch_embed.widen made it)."""
    return (p.get("weights16") is not None and p.get("epi") is not None and taps(p) == 16
            and p["d"] % 2 == 0 and fast_epilogue(p))


def force_wide(p: dict, rng: np.random.Generator) -> dict:
    """p with int16 weights whatever its shape (the compiler widens only what the widened
    loop takes): the variant then takes the reference loop, which reads weights16 through
    wide_pos; with the epilogue's words where d is even, half the time."""
    q = {**p, "weights": None, "weights16": np.asarray(p["weights"]).astype(np.int16)}
    if p["d"] % 2 == 0 and rng.random() < 0.5 and fast_epilogue(p):
        q["epi"] = patch_embed.epilogue_words(p)
    return q


def gen_patch_dsp(rng: np.random.Generator) -> Case:
    """Shapes over every path of the variant, values at the edges."""
    c = int(rng.choice([1, 1, 3, 2]))
    ph = int(rng.choice([1, 2, 3, 4, 4, 5, 7, 8]))
    pw = int(rng.choice([1, 2, 3, 4, 4, 5, 6, 7, 8, 9, 12]))
    small = rng.random() < 0.4
    if small:  # 16 taps: the small path, words or gathered (pw % 4 != 0)
        c, ph, pw = [(1, 4, 4), (1, 4, 4), (2, 2, 4), (4, 1, 4), (1, 2, 8), (1, 8, 2),
                     (4, 2, 2), (2, 4, 2), (16, 1, 1)][int(rng.integers(0, 9))]
    hp, wp, d = int(rng.integers(1, 5)), int(rng.integers(1, 6)), int(rng.integers(1, 23))
    if small and rng.random() < 0.45:  # an odd token count over odd bands: token pairs that
        hp, wp = int(rng.choice([3, 5, 7])), int(rng.choice([1, 3, 7]))  # span two bands
    if small and rng.random() < 0.8:
        d += d % 2  # the small path takes an even d
    if rng.random() < 0.1:  # many channel pairs
        d = int(rng.integers(60, 90))
    if rng.random() < 0.08:  # more taps than the variant takes: the reference loop
        c, ph, pw = 3, 32, 44
        hp, wp, d = 1, int(rng.integers(1, 3)), int(rng.integers(1, 6))
    t = c * ph * pw
    mult, shift = rand_requant(rng, d, fit=70 * 70 * math.sqrt(t))
    w = rand_s8(rng, d * t)
    p = dict(c_in=c, h_in=hp * ph + int(rng.integers(0, 3)),
             w_in=wp * pw + int(rng.integers(0, 4)), d=d, ph=ph, pw=pw, hp=hp, wp=wp,
             x_zp=zp(rng), y_zp=zp(rng), weights=w, bias=rand_bias(rng, d),
             mult=mult, shift=shift)
    if small and rng.random() < 0.8:  # every channel in the fast epilogue's range
        p["shift"] = np.clip(p["shift"], -20, -1).astype(np.int32)
        p["mult"] = np.where(p["mult"] > 0, p["mult"], 1 << 30).astype(np.int32)
    if rng.random() < 0.35:  # the loop without the subtraction (a folded zero point)
        p["x_zp"] = 0
    u = rng.random()
    if u < 0.6:  # as the compiler stores it for a board with the variant
        p = patch_embed.widen(p)
    elif u < 0.72:
        p = force_wide(p, rng)
    x = rand_s8(rng, c * p["h_in"] * p["w_in"])
    return Case(p, [x], hp * wp * d)


def worst_case(c: int, ph: int, pw: int, d: int, bias: int, sign: int, shift: int,
               y_zp: int = -5) -> Case:
    """|x - x_zp| = 255 and w = -128 on every tap: the sum is +-255 * 128 * taps."""
    x_val, x_zp = (127, -128) if sign > 0 else (-128, 127)
    t = c * ph * pw
    p = dict(c_in=c, h_in=2 * ph, w_in=3 * pw, d=d, ph=ph, pw=pw, hp=2, wp=3, x_zp=x_zp,
             y_zp=y_zp, weights=np.full(d * t, -128, np.int8),
             bias=np.full(d, bias, np.int32), mult=np.full(d, (1 << 30) + 12345, np.int32),
             shift=np.full(d, shift, np.int32))
    return Case(p, [np.full(c * 2 * ph * 3 * pw, x_val, np.int8)], 6 * d)


def edge_cases() -> list[Case]:
    """The fast epilogue's bias bound from both sides, every shift regime, both signs."""
    out = []
    for c, ph, pw in [(1, 4, 4), (3, 4, 4), (1, 3, 5), (3, 8, 8)]:
        lim = 2**30 - 1 - 255 * 128 * c * ph * pw
        for sign in (1, -1):
            for bias in (0, lim, -lim, lim + 1, -lim - 1, INT32_MAX, INT32_MIN):
                for shift in (-1, -7, -20, -21, -31, 0, 2):
                    for y_zp in (-5, -128, 127):  # y_zp * 2^e at its largest: e = 20
                        out.append(worst_case(c, ph, pw, 5, bias, sign, shift, y_zp))
    return out


@pytest.fixture(scope="module")
def ck_port(tmp_path_factory: pytest.TempPathFactory) -> CKernels:
    return CKernels(tmp_path_factory.mktemp("ck_pe_port"))


def test_taps_bound_constant_matches_c() -> None:
    src = (ROOT / "runtime_c" / "src" / "patch_embed_internal.h").read_text()
    assert int(re.search(r"#define MCUC_PE_MAX_TAPS (\d+)", src).group(1)) == \
        patch_embed.DSP_MAX_TAPS
    # The sums (|w| <= 128, |x - x_zp| <= 255) fit int32 at the largest taps, and the fast
    # epilogue's bias bound is positive there.
    assert 255 * 128 * patch_embed.DSP_MAX_TAPS <= INT32_MAX
    assert 2**30 - 1 - 255 * 128 * patch_embed.DSP_MAX_TAPS > 0


def test_patch_embed_dsp_matches_reference(ck_dsp: CKernels, ck_port: CKernels) -> None:
    rng = np.random.default_rng(2323)
    seen = {"fast": 0, "general": 0, "ref": 0, "tail": 0, "zp": 0, "wide16": 0,
            "wide16_gather": 0, "wide16_zp": 0, "wide16_odd_tokens": 0, "wide16_no_bias": 0,
            "int8_16": 0, "wide_ref": 0}
    for i in range(700):
        case = gen_patch_dsp(rng)
        p = case.params
        want = patch_embed.ref(p, *case.inputs)
        got = ck_dsp.run("patch_embed", p, case.inputs, case.out_size)
        assert np.array_equal(got, want), f"case {i}: {p}"
        assert np.array_equal(ck_port.run("patch_embed", p, case.inputs, case.out_size), want)
        big = taps(p) > patch_embed.DSP_MAX_TAPS
        seen["ref"] += big
        seen["fast" if fast_epilogue(p) and not big else "general"] += 1
        seen["tail"] += p["pw"] % 4 != 0 and not big
        seen["zp"] += p["x_zp"] != 0 and not big
        w16 = wide16(p)
        seen["wide16"] += w16
        seen["wide16_gather"] += w16 and p["pw"] % 4 != 0
        seen["wide16_zp"] += w16 and p["x_zp"] != 0
        seen["wide16_odd_tokens"] += w16 and p["hp"] * p["wp"] % 2 == 1 and p["hp"] > 1
        seen["wide16_no_bias"] += w16 and p.get("bias") is None
        seen["int8_16"] += taps(p) == 16 and p.get("weights") is not None
        seen["wide_ref"] += p.get("weights16") is not None and not w16
    assert min(seen.values()) >= 20, str(seen)  # every path was taken many times


def test_patch_embed_dsp_edges(ck_dsp: CKernels) -> None:
    for case in edge_cases():
        want = patch_embed.ref(case.params, *case.inputs)
        got = ck_dsp.run("patch_embed", case.params, case.inputs, case.out_size)
        assert np.array_equal(got, want), case.params
    # The case is as extreme as claimed: |sum| = 255 * 128 * taps.
    c = worst_case(3, 4, 4, 1, 0, 1, -1)
    xs = c.inputs[0][:4].astype(np.int64) - c.params["x_zp"]
    assert int(xs[0] * c.params["weights"][0]) == -255 * 128


def test_patch_embed_dsp_over_its_image(ck_dsp: CKernels) -> None:
    """Tokens at offset 0 over the image at patch.image_offset(), as the planner places
    them: band j may only read image band j and write token band j."""
    rng = np.random.default_rng(2324)
    for i in range(200):
        case = gen_patch_dsp(rng)
        p, x = case.params, case.inputs[0]
        a = patch.image_offset(p)
        arena = np.zeros(max(case.out_size, a + x.size) + 8, np.int8)
        arena[a: a + x.size] = x
        call_in_arena(ck_dsp, "patch_embed", p, arena, [a], 0)
        assert np.array_equal(arena[: case.out_size], patch_embed.ref(p, x)), f"case {i}"


def test_zero_point_fold_is_exact() -> None:
    """fold_zero_point gives the same bytes, and keeps p when the bias would leave int32
    or there is no bias."""
    rng = np.random.default_rng(2325)
    folded = 0
    for _ in range(200):
        c = gen_patch_dsp(rng)
        q = patch_embed.fold_zero_point(c.params)
        if q is not c.params:
            folded += 1
            assert q["x_zp"] == 0 and q["weights"] is c.params["weights"]
        assert np.array_equal(patch_embed.ref(q, *c.inputs), patch_embed.ref(c.params, *c.inputs))
    assert folded > 40
    c = worst_case(1, 4, 4, 2, INT32_MIN, 1, -1)  # x_zp = -128, w = -128: bias - 2^18
    assert patch_embed.fold_zero_point(c.params) is c.params
    c = worst_case(1, 4, 4, 2, 0, 1, -1)
    assert patch_embed.fold_zero_point({**c.params, "bias": None})["x_zp"] == -128


def test_sanitizers_patch_embed_dsp(tmp_path: Path) -> None:
    rng = np.random.default_rng(2326)
    cases = [gen_patch_dsp(rng) for _ in range(80)] + edge_cases()[::3]
    rows = [("patch_embed", c.params, c.inputs, patch_embed.ref(c.params, *c.inputs))
            for c in cases]
    run_sanitized(rows, tmp_path, DSP)


def test_dsp_variant_keeps_no_buffers_on_the_stack(tmp_path: Path) -> None:
    """Issue 23 (extra scratch is planned, never hidden on the stack): the variant's
    frames, as gcc lays them out for Cortex-M7 at -O2 (-fstack-usage), stay small. The
    buffers it had (4,416 B in one frame) would fail both bounds; the sum bounds any call
    chain through the files (patch_embed.c, patch_embed_dsp.c)."""
    if shutil.which("arm-none-eabi-gcc") is None:
        pytest.skip("arm-none-eabi-gcc is not installed")
    frames: dict[str, int] = {}
    for name in ("patch_embed", "patch_embed_dsp"):
        obj = tmp_path / f"{name}.o"
        subprocess.run(["arm-none-eabi-gcc", "-std=c99", f"-I{ROOT / 'runtime_c' / 'include'}",
                        "-mcpu=cortex-m7", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv5-d16",
                        "-O2", "-DMCUC_ARM_DSP", "-fstack-usage", "-c",
                        str(ROOT / "runtime_c" / "src" / f"{name}.c"), "-o", str(obj)],
                       check=True)
        frames |= {line.split("\t")[0].rsplit(":", 1)[-1]: int(line.split("\t")[1])
                   for line in obj.with_suffix(".su").read_text().splitlines()}
    assert "mcuc_pe_wide16" in frames and "mcuc_patch_embed_s8" in frames, frames
    assert max(frames.values()) <= 320, frames
    assert sum(frames.values()) <= 1200, frames


def test_widen_takes_only_what_the_widened_loop_takes() -> None:
    """patch_embed.widen: int16 weights and epilogue words exactly for 16 taps and an even d
    (else p itself: the shape alone decides, so flash does not depend on the scales); the
    layout is a permutation of the weights; the words are the C's (2 b, m, (2 y_zp + 1) <<
    (e - 1), e = -shift) with the fast epilogue, zeros without (the C then takes the
    reference, test_patch_embed_dsp_matches_reference's widened cases)."""
    rng = np.random.default_rng(2327)
    widened = kept = zeros = 0
    for _ in range(300):
        p = gen_patch_dsp(rng).params
        if p.get("weights") is None:  # the generator's widened cases, plain again
            p = {**p, "weights": p["weights16"].astype(np.int8), "weights16": None,
                 "epi": None}
        q = patch_embed.widen(p)
        want = taps(p) == 16 and p["d"] % 2 == 0
        assert (q is not p) == want
        if q is p:
            kept += 1
            continue
        widened += 1
        pos = patch_embed.wide_positions(16, p["d"]).reshape(-1)
        assert np.array_equal(np.sort(pos), np.arange(16 * p["d"]))
        lay = patch_embed.wide_layout(q, q["weights16"])
        assert np.array_equal(lay[pos], np.asarray(p["weights"]).astype(np.int16))
        assert q["epi"].shape == (4 * p["d"],)
        if not fast_epilogue(p):
            assert not q["epi"].any()
            zeros += 1
            continue
        words = q["epi"].reshape(-1, 4, 2).astype(np.int64)  # [pair][2b, m, k, e][c]
        bias = p["bias"] if p.get("bias") is not None else np.zeros(p["d"], np.int64)
        e = -p["shift"].astype(np.int64)
        assert np.array_equal(words[:, 0].reshape(-1), 2 * bias.astype(np.int64))
        assert np.array_equal(words[:, 1].reshape(-1), p["mult"])
        assert np.array_equal(words[:, 2].reshape(-1), (2 * p["y_zp"] + 1) * 2 ** (e - 1))
        assert np.array_equal(words[:, 3].reshape(-1), e)
    assert widened >= 20 and kept >= 20 and zeros >= 5, (widened, kept, zeros)


def test_latency_features_follow_the_widened_loop() -> None:
    """latency/features.py counts mcuc_pe_wide16's loops for widened params: tokens, token
    pairs, and channel pairs against two tokens or the last odd one."""
    from mcuc.latency.features import Variant, step_features

    rng = np.random.default_rng(2328)
    case = worst_case(1, 4, 4, 64, 0, 1, -5)
    p = {**case.params, "hp": 7, "wp": 7, "h_in": 28, "w_in": 28,
         "weights": rand_s8(rng, 64 * 16)}
    q = patch_embed.widen(p)
    assert q is not p
    f = step_features("patch_embed", q, patch_embed.macs(q), 49 * 64, Variant(True, False))
    assert (f["pew_token"], f["pew_pair"], f["pew_cp2"], f["pew_cp1"]) == (49, 25, 24 * 32, 32)
    assert not any(k.startswith("pe_") for k in f)
    f = step_features("patch_embed", p, patch_embed.macs(p), 49 * 64, Variant(True, False))
    assert f["pe_call"] == 1 and not any(k.startswith("pew_") for k in f)
