"""Test session set-up: one OpenBLAS thread (see compiler/mcuc/__init__.py), set before any
test module imports numpy."""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
