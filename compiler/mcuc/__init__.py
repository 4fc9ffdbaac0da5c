"""mcuc: a compiler that puts vision transformers on microcontrollers."""

import os

# numpy's OpenBLAS runs every matrix product on a thread per core. The compiler's products
# are small (one ViT layer on one image, in calibration and the references), where those
# threads only spin against each other and against whatever else the machine runs: on a
# loaded 2-core machine a (50 x 64) @ (64 x 192) product took 7.4 ms with them and 0.07 ms
# on one thread, and a default-model build 9.4 s of CPU instead of 4.4 s. So one thread,
# unless the user chose otherwise. It takes effect when mcuc is imported before numpy (the
# `mcuc` command, `python -m mcuc.cli`; tests/conftest.py does it for the tests).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

__version__ = "0.1.0"

# The Python API (mcuc/api.py), loaded on first use so that `import mcuc` stays light.
API = ("build", "run", "validate", "export")


def __getattr__(name: str):
    if name in API:
        from mcuc import api

        return getattr(api, name)
    raise AttributeError(f"module 'mcuc' has no attribute {name!r}")


class McucError(Exception):
    """An error the user can act on: the CLI prints it as one line and exits with code 2."""
