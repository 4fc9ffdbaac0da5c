"""The memory techniques, as named passes over a Schedule, each one switchable.

A pass takes a Schedule and returns a Schedule that computes bit-identical results with
less memory. `mcuc build --disable NAME[,NAME]` drops passes by name, for ablations.
Lowering itself consults the same names for what it decides inline (writing elementwise
results in place is part of token overwriting; folding a scalar into its producer's
requantization is part of fusion).
"""

from __future__ import annotations

from collections.abc import Callable

from mcuc import McucError
from mcuc.schedule.attention import fuse_attention, split_heads
from mcuc.schedule.patch import decompose_patches
from mcuc.schedule.queries import overwrite_queries
from mcuc.schedule.schedule import Schedule
from mcuc.schedule.tokenwise import fuse_tokenwise, overwrite_tokens

TECHNIQUES = ("fusion", "token-overwrite", "patch-decomp", "head-split")

Pass = Callable[[Schedule], Schedule]

# (technique, pass) in the order they run. Passes register here as they are written.
PASSES: list[tuple[str, Pass]] = [
    ("fusion", fuse_attention),   # matmul -> softmax -> matmul becomes one attention step
    ("head-split", split_heads),  # attention reads q/k/v and writes its output in place
    ("fusion", fuse_tokenwise),   # [LN ->] linear [-> lut] [-> linear] [-> +res] in one step
    ("token-overwrite", overwrite_queries),  # attention output over its queries
    ("patch-decomp", decompose_patches),  # patch conv + transpose -> tokens over the image
    # Last: it plans the finished schedule to choose tile sizes.
    ("token-overwrite", overwrite_tokens),  # tokenwise outputs over dying inputs, tiles
]


def check_disabled(disabled: tuple[str, ...]) -> tuple[str, ...]:
    unknown = [d for d in disabled if d not in TECHNIQUES]
    if unknown:
        raise McucError(f"unknown technique(s) {', '.join(unknown)} in --disable "
                        f"(known: {', '.join(TECHNIQUES)})")
    return tuple(d for d in TECHNIQUES if d in disabled)


def apply_passes(schedule: Schedule, disabled: tuple[str, ...]) -> Schedule:
    for technique, fn in PASSES:
        if technique not in disabled:
            schedule = fn(schedule)
    return schedule
