"""What the architecture-search bench measures of a trained model, and the limits a
search of it runs under (scripts/bench_search_stages.py caches both per model)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from mcuc.nas.space import SubnetConfig


@dataclass(frozen=True)
class Limits:
    """One search's limits: a board (its overheads and clock), SRAM and flash in bytes,
    and a time budget per inference in ms (None: none), as `mcuc search --latency` takes
    it; `name` is its folder under OUT."""
    board: str
    sram: int
    flash: int
    ms: float | None = None
    name: str = ""

    def instructions(self) -> int | None:
        """The time budget in instructions, as the search makes it (the board's clock at
        latency.ASSUMED_CPI)."""
        from mcuc.nas.search import SearchOptions, instructions_limit

        return instructions_limit(SearchOptions(board=self.board, latency_ms=self.ms))[0]

    def cost_model(self):
        from mcuc.nas.cost import CostModel

        return CostModel(self.board, self.sram, self.flash, instructions=self.instructions())


def measure(net, cfg: SubnetConfig, work: Path, calib: np.ndarray, x_test, y_test,
            fw_images: int, board: str = "stm32f746") -> dict:
    """Float, int8 and firmware test accuracy plus the board build's sizes and its
    instructions per inference (counted by the board's emulator, and the latency model's
    prediction from the build's own schedule). The firmware runs on qemu-m7, which has the
    F746's limits: a model for a larger board that does not link there is not run
    (fw_acc None, fw_note says why)."""
    from mcuc import McucError
    from mcuc.models.train import evaluate, export_onnx
    from mcuc.pipeline import build, compile_graph, load_graph
    from mcuc.schedule import execute
    from mcuc.sim.qemu import run_qemu

    onnx = export_onnx(net, cfg.input_shape, work / "model.onnx")
    np.save(work / "calib.npy", calib)
    rep = build(onnx, board, str(work / "calib.npy"), work / board.removeprefix("stm32"))
    c = compile_graph(load_graph(onnx), calib)
    outs = [execute.run(c.schedule, execute.quantize_input(c.schedule, xi), c.plan)
            for xi in tqdm(x_test, desc="int8 reference", leave=False)]
    pred = np.array([int(np.argmax(o)) for o in outs])
    row = {"config": cfg.to_dict(), "params": sum(p.numel() for p in net.parameters()),
           "float_acc": evaluate(net, x_test, y_test),
           "int8_acc": float((pred == y_test).mean()), "test_images": len(x_test),
           "arena": rep["arena_bytes"], "ram": rep["ram_bytes"], "flash": rep["flash_bytes"],
           "flash_estimate": rep["estimate"]["flash_bytes"], "macs": rep["macs"],
           "instructions": rep.get("instructions"),
           "predicted_instructions": rep.get("predicted_instructions")}
    try:
        build(onnx, "qemu-m7", str(work / "calib.npy"), work / "qemu", emulate=False)
    except McucError as e:
        if board == "stm32f746":   # the F746's model always links on qemu-m7
            raise
        return {**row, "fw_images": 0, "fw_bit_exact": 0, "fw_acc": None,
                "fw_note": str(e).splitlines()[0]}
    n = min(fw_images, len(x_test))
    xq = np.stack([execute.quantize_input(c.schedule, xi).reshape(-1) for xi in x_test[:n]])
    fw = run_qemu(work / "qemu" / "firmware.elf", xq, timeout=3600)
    same = sum(int(np.array_equal(f.reshape(-1), r.reshape(-1)))
               for f, r in zip(fw, outs[:n], strict=True))
    fw_pred = np.array([int(np.argmax(o)) for o in fw])
    return {**row, "fw_images": n, "fw_bit_exact": same,
            "fw_acc": float((fw_pred == y_test[:n]).mean())}
