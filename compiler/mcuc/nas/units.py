"""Byte sizes as users write them on the command line (64K, 256KB, 1M)."""

from __future__ import annotations

import argparse
import re

from mcuc import McucError

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KkMm]i?[Bb]?|[Bb])?\s*$")


def parse_bytes(text: str) -> int:
    """'64K', '256KB', '1M', '65536' -> bytes (K = 1024, as on every MCU datasheet)."""
    m = _SIZE.match(str(text))
    if not m:
        raise McucError(f"cannot read {text!r} as a size (examples: 64K, 256KB, 1M, 65536)")
    unit = (m.group(2) or "b")[0].lower()
    return int(float(m.group(1)) * {"b": 1, "k": 1024, "m": 1024 * 1024}[unit])


def as_arg(parse):
    """`parse` for argparse: its McucError becomes argparse's one-line usage error."""
    def wrapped(text: str):
        try:
            return parse(text)
        except McucError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    wrapped.__name__ = parse.__name__   # argparse names the type in its message
    return wrapped


size_arg = as_arg(parse_bytes)
