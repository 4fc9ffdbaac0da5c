"""The architecture search space: which ViTs the memory-aware search may pick from.

The space is data (a small TOML file) so a board or dataset gets its own space without
code. Validation is strict on purpose: every dim is a multiple of every heads choice,
and every resolution has a patch that divides it (and every patch a resolution), so the
operators below only ever draw valid ViTs without rejection loops: the patch is drawn
among those that divide the resolution (a "token family", (resolution, patch)).
"""

from __future__ import annotations

import random
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mcuc import McucError

DEFAULT_SPACE = Path(__file__).resolve().parent / "default_space.toml"

SAMPLING = ("macs", "uniform")  # how the supernet draws subnets: by MACs, or uniformly


def check_sampling(name: str) -> str:
    """The draw's name, or a one-line error naming the ones there are."""
    if name not in SAMPLING:
        raise McucError(f"sampling must be one of {', '.join(SAMPLING)}, not {name!r}")
    return name


_LISTS = ("resolution", "patch", "dim", "depth", "heads", "mlp_ratio", "lowrank_ratio")
_SCALARS = ("in_chans", "num_classes", "lowrank_per_layer")
_INT_LISTS = ("resolution", "patch", "dim", "depth", "heads")


def lowrank_rank(ratio: float, dim: int) -> int:
    """Rank r of a decomposed linear: ratio x embedding width (MCUFormer), at least 1."""
    return max(1, int(round(ratio * dim)))


@dataclass(frozen=True)
class SubnetConfig:
    """One candidate ViT. Per-layer tuples have `depth` entries; `lowrank` holds the
    low-rank ratio of each block's linears (all equal when the space is global)."""

    resolution: int
    patch: int
    dim: int
    depth: int
    heads: tuple[int, ...]
    mlp_ratio: tuple[float, ...]
    lowrank: tuple[float, ...]
    in_chans: int = 1
    num_classes: int = 10

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return (1, self.in_chans, self.resolution, self.resolution)

    @property
    def num_patches(self) -> int:
        return (self.resolution // self.patch) ** 2

    def hidden(self, layer: int) -> int:
        """MLP width of a block, rounded as models/vit.py rounds it."""
        return int(round(self.dim * self.mlp_ratio[layer]))

    def rank(self, layer: int) -> int | None:
        """Rank of the block's decomposed linears, or None for full rank."""
        ratio = self.lowrank[layer]
        return None if ratio >= 1.0 else lowrank_rank(ratio, self.dim)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("heads", "mlp_ratio", "lowrank"):
            d[k] = list(d[k])
        return d

    @staticmethod
    def from_dict(d: dict[str, Any]) -> SubnetConfig:
        try:
            return SubnetConfig(
                resolution=int(d["resolution"]), patch=int(d["patch"]), dim=int(d["dim"]),
                depth=int(d["depth"]), heads=tuple(int(h) for h in d["heads"]),
                mlp_ratio=tuple(float(m) for m in d["mlp_ratio"]),
                lowrank=tuple(float(r) for r in d["lowrank"]),
                in_chans=int(d.get("in_chans", 1)), num_classes=int(d.get("num_classes", 10)))
        except (KeyError, TypeError, ValueError) as e:
            raise McucError(f"bad subnet config {d!r}: {type(e).__name__}: {e}") from None


@dataclass(frozen=True)
class SearchSpace:
    resolution: tuple[int, ...]
    patch: tuple[int, ...]
    dim: tuple[int, ...]
    depth: tuple[int, ...]
    heads: tuple[int, ...]
    mlp_ratio: tuple[float, ...]
    lowrank_ratio: tuple[float, ...]
    lowrank_per_layer: bool = True
    in_chans: int = 1
    num_classes: int = 10

    # -- token families --------------------------------------------------------------
    def patches(self, resolution: int) -> tuple[int, ...]:
        """The patch sizes that tile `resolution` (in the space's order)."""
        return tuple(p for p in self.patch if resolution % p == 0)

    @property
    def families(self) -> tuple[tuple[int, int], ...]:
        """Every valid (resolution, patch) pair: each has its own positional embedding."""
        return tuple((r, p) for r in self.resolution for p in self.patches(r))

    # -- membership ------------------------------------------------------------------
    def check(self, cfg: SubnetConfig) -> None:
        """Raise a one-line McucError unless `cfg` is a member of this space."""
        def bad(msg: str) -> McucError:
            return McucError(f"subnet config not in the search space: {msg}")

        for key in ("resolution", "patch", "dim", "depth"):
            if getattr(cfg, key) not in getattr(self, key):
                raise bad(f"{key} {getattr(cfg, key)} not in {list(getattr(self, key))}")
        if cfg.resolution % cfg.patch:
            raise bad(f"patch {cfg.patch} does not divide resolution {cfg.resolution}")
        for key, choices in (("heads", self.heads), ("mlp_ratio", self.mlp_ratio),
                             ("lowrank", self.lowrank_ratio)):
            vals = getattr(cfg, key)
            if len(vals) != cfg.depth:
                raise bad(f"{key} has {len(vals)} entries for depth {cfg.depth}")
            if any(v not in choices for v in vals):
                raise bad(f"{key} {list(vals)} has values outside {list(choices)}")
        if not self.lowrank_per_layer and len(set(cfg.lowrank)) > 1:
            raise bad(f"lowrank {list(cfg.lowrank)} varies per layer in a global space")
        if (cfg.in_chans, cfg.num_classes) != (self.in_chans, self.num_classes):
            raise bad(f"in_chans/num_classes {cfg.in_chans}/{cfg.num_classes} != "
                      f"{self.in_chans}/{self.num_classes}")

    def contains(self, cfg: SubnetConfig) -> bool:
        try:
            self.check(cfg)
        except McucError:
            return False
        return True

    # -- evolution operators ---------------------------------------------------------
    def _layer(self, rng: random.Random) -> tuple[int, float]:
        return rng.choice(self.heads), rng.choice(self.mlp_ratio)

    def _lowrank(self, depth: int, rng: random.Random, base: tuple[float, ...] = ()
                 ) -> tuple[float, ...]:
        """Low-rank tuple of length `depth`, keeping `base` where it reaches."""
        if not self.lowrank_per_layer:
            return (base[0] if base else rng.choice(self.lowrank_ratio),) * depth
        return tuple(base[i] if i < len(base) else rng.choice(self.lowrank_ratio)
                     for i in range(depth))

    def sample(self, rng: random.Random) -> SubnetConfig:
        depth = rng.choice(self.depth)
        layers = [self._layer(rng) for _ in range(depth)]
        res = rng.choice(self.resolution)
        return SubnetConfig(
            resolution=res, patch=rng.choice(self.patches(res)),
            dim=rng.choice(self.dim), depth=depth, heads=tuple(h for h, _ in layers),
            mlp_ratio=tuple(m for _, m in layers), lowrank=self._lowrank(depth, rng),
            in_chans=self.in_chans, num_classes=self.num_classes)

    def mutate(self, cfg: SubnetConfig, rng: random.Random, prob: float = 0.3) -> SubnetConfig:
        """Resample each gene with probability `prob`; a new depth truncates the
        per-layer genes or extends them with fresh draws."""
        def pick(cur, choices):
            return rng.choice(choices) if rng.random() < prob else cur

        depth = pick(cfg.depth, self.depth)
        heads = [pick(h, self.heads) for h in cfg.heads[:depth]]
        mlp = [pick(m, self.mlp_ratio) for m in cfg.mlp_ratio[:depth]]
        for _ in range(depth - len(heads)):
            h, m = self._layer(rng)
            heads.append(h)
            mlp.append(m)
        if self.lowrank_per_layer:
            low = self._lowrank(depth, rng, tuple(pick(r, self.lowrank_ratio)
                                                  for r in cfg.lowrank[:depth]))
        else:
            low = self._lowrank(depth, rng, (pick(cfg.lowrank[0], self.lowrank_ratio),))
        res = pick(cfg.resolution, self.resolution)
        patch = pick(cfg.patch, self.patches(res))
        if res % patch:   # the kept patch does not tile the new resolution
            patch = rng.choice(self.patches(res))
        return SubnetConfig(
            resolution=res, patch=patch, dim=pick(cfg.dim, self.dim), depth=depth,
            heads=tuple(heads), mlp_ratio=tuple(mlp), lowrank=low, in_chans=self.in_chans,
            num_classes=self.num_classes)

    def crossover(self, a: SubnetConfig, b: SubnetConfig, rng: random.Random) -> SubnetConfig:
        """Uniform crossover: each global gene from either parent, each layer from the
        parent that has it (both, when both do)."""
        depth = rng.choice((a.depth, b.depth))
        heads, mlp, low = [], [], []
        for i in range(depth):
            src = [p for p in (a, b) if i < p.depth]
            p = rng.choice(src)
            heads.append(p.heads[i])
            mlp.append(rng.choice(src).mlp_ratio[i])
            low.append(rng.choice(src).lowrank[i])
        lowrank = (tuple(low) if self.lowrank_per_layer
                   else (rng.choice((a.lowrank[0], b.lowrank[0])),) * depth)
        res = rng.choice((a.resolution, b.resolution))
        patch = rng.choice((a.patch, b.patch))
        if res % patch:   # the other parent's patch tiles it (its own resolution's does)
            patch = a.patch if res == a.resolution else b.patch
        return SubnetConfig(
            resolution=res, patch=patch, dim=rng.choice((a.dim, b.dim)),
            depth=depth, heads=tuple(heads), mlp_ratio=tuple(mlp), lowrank=lowrank,
            in_chans=self.in_chans, num_classes=self.num_classes)

    def size(self) -> int:
        """Number of distinct configs (per-layer genes counted per depth)."""
        per_layer = len(self.heads) * len(self.mlp_ratio) * \
            (len(self.lowrank_ratio) if self.lowrank_per_layer else 1)
        glob = len(self.families) * len(self.dim) * \
            (1 if self.lowrank_per_layer else len(self.lowrank_ratio))
        return glob * sum(per_layer ** d for d in self.depth)


def _err(path: Path | str, msg: str) -> McucError:
    return McucError(f"search space {path}: {msg}")


def parse_space(data: dict[str, Any], where: Path | str = "<dict>") -> SearchSpace:
    """Validate a decoded TOML table into a SearchSpace (one-line errors)."""
    unknown = sorted(set(data) - set(_LISTS) - set(_SCALARS))
    if unknown:
        raise _err(where, f"unknown key(s) {', '.join(unknown)} "
                          f"(known: {', '.join(_LISTS + _SCALARS)})")
    missing = [k for k in _LISTS if k not in data]
    if missing:
        raise _err(where, f"missing key(s) {', '.join(missing)}")
    vals: dict[str, Any] = {}
    for k in _LISTS:
        v = data[k]
        if not isinstance(v, list):
            raise _err(where, f"{k} must be a list of choices, not {v!r}")
        if not v:
            raise _err(where, f"{k} has an empty choice list")
        num = (int,) if k in _INT_LISTS else (int, float)
        if any(isinstance(x, bool) or not isinstance(x, num) for x in v):
            raise _err(where, f"{k} choices must be {'integers' if k in _INT_LISTS else 'numbers'}:"
                              f" {v!r}")
        if any(x <= 0 for x in v):
            raise _err(where, f"{k} choices must be positive: {v!r}")
        if len(set(v)) != len(v):
            raise _err(where, f"{k} has duplicate choices: {v!r}")
        vals[k] = tuple(v if k in _INT_LISTS else (float(x) for x in v))
    if any(r > 1.0 for r in vals["lowrank_ratio"]):
        raise _err(where, f"lowrank_ratio choices must be in (0, 1]: {list(vals['lowrank_ratio'])}")
    for r in vals["resolution"]:
        if all(r % p for p in vals["patch"]):
            raise _err(where, f"no patch in {list(vals['patch'])} divides resolution {r}")
    for p in vals["patch"]:
        if all(r % p for r in vals["resolution"]):
            raise _err(where, f"patch {p} divides no resolution in {list(vals['resolution'])}")
    for d in vals["dim"]:
        for h in vals["heads"]:
            if d % h:
                raise _err(where, f"dim {d} is not divisible by heads {h}")
    for k in ("in_chans", "num_classes"):
        v = data.get(k, 1 if k == "in_chans" else 10)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise _err(where, f"{k} must be a positive integer, not {v!r}")
        vals[k] = v
    per_layer = data.get("lowrank_per_layer", True)
    if not isinstance(per_layer, bool):
        raise _err(where, f"lowrank_per_layer must be true or false, not {per_layer!r}")
    vals["lowrank_per_layer"] = per_layer
    return SearchSpace(**vals)


def load_space(path: Path | str | None = None) -> SearchSpace:
    """Read a search-space TOML (None: the bundled Fashion-MNIST default)."""
    p = Path(path) if path is not None else DEFAULT_SPACE
    if not p.is_file():
        raise McucError(f"search space file not found: {p}")
    try:
        data = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as e:
        raise _err(p, f"invalid TOML: {' '.join(str(e).split())}") from None
    return parse_space(data, p)
