"""Boards are data: boards/<name>/board.toml describes one target."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from mcuc import McucError
from mcuc.paths import boards_dir


@dataclass(frozen=True)
class Board:
    name: str
    description: str
    core: str
    cc: str
    sram_bytes: int
    flash_bytes: int
    clock_hz: int
    emulators: tuple[str, ...]
    path: Path
    extra: dict = field(default_factory=dict, compare=False)


def list_boards() -> list[str]:
    return sorted(p.parent.name for p in boards_dir().glob("*/board.toml"))


def load_board(name: str) -> Board:
    path = boards_dir() / name / "board.toml"
    if not path.is_file():
        raise McucError(f"unknown board '{name}' (known: {', '.join(list_boards())})")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise McucError(f"{path}: invalid TOML: {e}") from None
    known = {"name", "description", "core", "cc", "sram_bytes", "flash_bytes", "clock_hz",
             "emulators"}
    try:
        return Board(
            name=data["name"], description=data.get("description", ""), core=data["core"],
            cc=data.get("cc", "gcc"), sram_bytes=int(data.get("sram_bytes", 0)),
            flash_bytes=int(data.get("flash_bytes", 0)), clock_hz=int(data.get("clock_hz", 0)),
            emulators=tuple(data.get("emulators", ())), path=path.parent,
            extra={k: v for k, v in data.items() if k not in known},
        )
    except KeyError as e:
        raise McucError(f"{path}: missing key {e}") from None
