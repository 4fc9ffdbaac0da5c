"""Measure the bundled default model: float and int8 (integer reference) test accuracy.

Float accuracy comes from the float IR interpreter on the ONNX file; int8 from the
compiler's integer reference, which the generated C equals bit for bit, calibrated as
`mcuc build` calibrates by default (or as the --calib-* flags say, with the same
meaning). Results go into compiler/mcuc/models/default.json (keys int8_test_accuracy,
float_ir_test_accuracy, int8_agreement, calibration) and are printed for the README.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from mcuc.datasets import load_fashion_mnist
from mcuc.ir import interpreter
from mcuc.pipeline import DEFAULT_MODEL, calibration_samples, compile_graph, load_graph
from mcuc.quant.calibrate import (
    DEFAULT_IMAGES,
    DEFAULT_METHOD,
    DEFAULT_PERCENTILE,
    check_method,
    describe,
)
from mcuc.schedule import execute


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--limit", type=int, default=None, help="test images (default: all)")
    ap.add_argument("--write", action="store_true", help="update default.json")
    ap.add_argument("--calib-method", default=DEFAULT_METHOD)
    ap.add_argument("--calib-percentile", type=float, default=DEFAULT_PERCENTILE)
    ap.add_argument("--calib-images", type=int, default=DEFAULT_IMAGES)
    a = ap.parse_args()
    check_method(a.calib_method, a.calib_percentile)
    g = load_graph(None)
    c = compile_graph(g, calibration_samples(g, "fashion-mnist", a.calib_images),
                      calib_method=a.calib_method, calib_percentile=a.calib_percentile)
    x, y = load_fashion_mnist("test", limit=a.limit)
    fp, qp = [], []
    for xi in tqdm(x, desc="evaluating"):
        f = interpreter.run(g, {g.inputs[0]: xi[None]})[g.outputs[0]]
        fp.append(int(np.argmax(f)))
        q = execute.run(c.schedule, execute.quantize_input(c.schedule, xi), c.plan)
        qp.append(int(np.argmax(q)))
    fp_a, qp_a = np.array(fp), np.array(qp)
    res = {"float_ir_test_accuracy": float((fp_a == y).mean()),
           "int8_test_accuracy": float((qp_a == y).mean()),
           "int8_agreement": float((fp_a == qp_a).mean()), "test_images": int(len(y)),
           "calibration": describe(a.calib_method, a.calib_images, a.calib_percentile)}
    print(json.dumps(res, indent=2))
    if a.write:
        meta_path = Path(DEFAULT_MODEL).with_suffix(".json")
        meta = json.loads(meta_path.read_text())
        meta.update(res)
        meta_path.write_text(json.dumps(meta, indent=2) + "\n")


if __name__ == "__main__":
    main()
