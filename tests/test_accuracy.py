"""Verification ladder step 2: int8 against float on real data (Fashion-MNIST).

A small ViT is trained here on a subset of the training split; after int8 compilation
(calibrated on training images) the integer reference must lose at most one point of
test accuracy and agree with the float model on at least 97% of the test images. The
host C program is checked against the reference on a slice of the same images.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mcuc.codegen.render import render
from mcuc.datasets import load_fashion_mnist
from mcuc.frontend import load_model
from mcuc.models.train import predict, train
from mcuc.models.vit import ViTConfig, build_vit
from mcuc.pipeline import compile_graph
from mcuc.schedule import execute
from mcuc.sim.host import build_host, run_host

N_TRAIN, N_TEST, EPOCHS = 10000, 1000, 6


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    x, y = load_fashion_mnist("train", limit=N_TRAIN)
    cfg = ViTConfig(img_size=28, patch=7, dim=32, depth=2, heads=2, mlp_ratio=2.0)
    model = train(build_vit(cfg), x, y, epochs=EPOCHS, progress=False, seed=0, lr=3e-3)
    graph = load_model(model.eval(), (1, 1, 28, 28))
    c = compile_graph(graph, x[:64])
    xt, yt = load_fashion_mnist("test", limit=N_TEST)
    return model, c, xt, yt


def test_int8_accuracy_close_to_float(trained) -> None:
    model, c, xt, yt = trained
    float_pred = predict(model, xt).argmax(axis=1)
    int8_pred = np.array([
        int(np.argmax(execute.run(c.schedule, execute.quantize_input(c.schedule, x), c.plan)))
        for x in xt
    ])
    acc_f = float((float_pred == yt).mean())
    acc_q = float((int8_pred == yt).mean())
    agree = float((float_pred == int8_pred).mean())
    print(f"float {acc_f:.4f} int8 {acc_q:.4f} agreement {agree:.4f}")
    assert acc_f > 0.75, "the test model did not learn; the comparison would be meaningless"
    assert acc_q >= acc_f - 0.01
    assert agree >= 0.97


def test_host_c_equals_reference_on_real_images(trained, tmp_path) -> None:
    _, c, xt, _ = trained
    render(c.schedule, c.plan, tmp_path, model_name="fmnist_small")
    exe = build_host(tmp_path)
    for x in xt[:25]:
        x_q = execute.quantize_input(c.schedule, x)
        np.testing.assert_array_equal(run_host(exe, x_q), execute.run(c.schedule, x_q, c.plan))
