"""A firmware ELF in the Unicorn engine (mcuc.sim.unicorn_m7): the parsed console protocol
plus exact instruction counts, whole and per step."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mcuc import McucError
from mcuc.sim.protocol import parse_protocol
from mcuc.target.elf import ELF_NAME, patch_samples

# The Unicorn run stops here (a firmware that never prints MCUC_DONE); the default model
# takes about 25 million instructions per inference, 100 million with the portable kernels
# (README).
MAX_INSTRUCTIONS = 2_000_000_000


def unicorn_available() -> bool:
    try:
        from mcuc.sim import unicorn_m7
    except ImportError:
        return False
    return hasattr(unicorn_m7, "run_elf")


def run_unicorn(elf: Path, inputs: np.ndarray | dict[str, np.ndarray] | None = None,
                semihosted: bool = False,
                max_instructions: int = MAX_INSTRUCTIONS, chip: str = "stm32f746") -> dict:
    """Run the real ELF in the Unicorn engine on the model of ``chip`` (a board's ``chip``);
    returns the parsed protocol plus instruction counts and ``chip_state`` (the clocks and
    console baud rate the init set up). Inputs go over <name>_samples (flash boards; one
    array, or {name: array} for a firmware of several models, patch_samples) or into the
    semihosting file. res["by_model"] has each model's outputs.

    ``instructions`` / ``instructions_per_step``: the engine's exact count of the first
    inference (marker protocol). What the firmware's DWT printed (MCUC_CYCLES, and MCUC_STEP
    in a --profile build) comes back as ``dwt_instructions`` / ``dwt_instructions_per_step``
    (last inference): the engine's DWT counts retired instructions, not cycles."""
    import tempfile

    from mcuc.sim.unicorn_m7 import run_elf

    files = None
    with tempfile.TemporaryDirectory(prefix="mcuc-unicorn-") as tmp:
        path = elf
        if inputs is not None and semihosted:
            files = {"mcuc_inputs.bin": np.ascontiguousarray(inputs, np.int8).tobytes()}
        elif inputs is not None:
            path = patch_samples(elf, inputs, Path(tmp) / ELF_NAME)
        r = run_elf(str(path), semihost_files=files, profile=True,
                    max_instructions=max_instructions, chip=chip)
    if r.stopped_by == "max-instructions":
        raise McucError(f"firmware in Unicorn did not finish within {max_instructions:,} "
                        "instructions; stopped it")
    res = parse_protocol(r.stdout)
    if not res["done"] or res["status"] is None:
        tail = " | ".join(r.stdout.strip().splitlines()[-3:])
        raise McucError(f"firmware in Unicorn did not complete: {tail[:300]!r}")
    if res["status"] != 0:
        raise McucError(f"firmware in Unicorn reported MCUC_STATUS {res['status']}")
    res["instructions"] = int(r.instructions) if r.instructions else None
    res["dwt_instructions"] = res.pop("cycles")
    res["dwt_instructions_per_step"] = res.pop("cycles_per_step")
    res["chip_state"] = r.chip_state
    res["stdout"] = r.stdout
    res["instructions_per_step"] = {int(k): int(v) for k, v in
                                    (r.instructions_per_step or {}).items()}
    if r.stack_bytes is not None and res["stack_bytes"] is None:
        res["stack_bytes"] = int(r.stack_bytes)
    return res
