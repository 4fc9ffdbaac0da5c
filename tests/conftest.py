"""Test session set-up: one OpenBLAS thread (see compiler/mcuc/__init__.py), set before any
test module imports numpy."""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import pytest  # noqa: E402  (after the environment above)

from ckernels import DSP, CKernels  # noqa: E402


@pytest.fixture(scope="session")
def ck(tmp_path_factory: pytest.TempPathFactory) -> CKernels:
    """The runtime's portable kernels as a host library, built once per session."""
    return CKernels(tmp_path_factory.mktemp("ck"))


@pytest.fixture(scope="session")
def ck_dsp(tmp_path_factory: pytest.TempPathFactory) -> CKernels:
    """The same with the ARMv7E-M variants (-DMCUC_ARM_DSP: simd.h's portable C
    definitions of the instructions), built once per session."""
    return CKernels(tmp_path_factory.mktemp("ck_dsp"), DSP)
