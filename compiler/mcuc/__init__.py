"""mcuc: a compiler that puts vision transformers on microcontrollers."""

__version__ = "0.1.0"


class McucError(Exception):
    """An error the user can act on: the CLI prints it as one line and exits with code 2."""
