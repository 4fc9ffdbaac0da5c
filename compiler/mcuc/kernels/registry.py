"""The kernel registry: one Python definition per C kernel.

A KernelDef says what codegen needs (C function and parameter struct, field by field)
and what the integer reference needs (a numpy function that is the specification the
C code must match bit for bit). Codegen, the reference executor and the memory planner
read kernels from here, so they need no change for a new kernel: what they must know
of one kernel is a hook here (`writes_through`, `bands`). What does change, by hand: the
module in this package and its import in kernels/__init__.py, the struct and prototype in
runtime_c/include/mcuc/kernels.h (a test checks its layout against the fields), the C
file runtime_c/src/<name>.c (a long variant may take files <name>_<part>.c of its own:
mcuc.library.kernel_parts), the lowering rule or schedule pass that emits it, and its
generator in tests/test_kernels.py. docs/add-a-kernel.md lists every step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

# C types a parameter field may have. Array types ("int8[]" ...) become const arrays in
# <name>_weights.c referenced by pointer; "int32[6]" is an inline fixed array in the struct;
# "struct" is the whole parameter struct of another kernel (`Field.kernel`), so a fused
# kernel holds its parts' structs as they are (params: that kernel's params dict).
FIELD_TYPES = ("int32", "int64", "int8[]", "int16[]", "int32[]", "uint32[]", "int32[6]",
               "struct")


# layout(params, array) -> the array in the order the C kernel reads it (same size).
Layout = Callable[[dict, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Field:
    name: str
    ctype: str
    nullable: bool = False  # array pointers only: None renders as NULL
    # Arrays only: how the compiler lays the constant out for the C loop (e.g. weights
    # interleaved for SIMD). Params and the numpy reference keep the plain order.
    layout: Layout | None = None
    kernel: str = ""  # "struct" only: the registry name of the kernel whose struct it is

    def __post_init__(self) -> None:
        if self.ctype not in FIELD_TYPES:
            raise ValueError(f"unknown field type {self.ctype!r}")
        if self.layout is not None and not self.ctype.endswith("[]"):
            raise ValueError(f"field {self.name}: only arrays have a layout")
        if (self.ctype == "struct") != bool(self.kernel):
            raise ValueError(f"field {self.name}: a struct field, and only one, names a kernel")

    def c_array(self, params: dict) -> np.ndarray | None:
        """The field's value as the C side stores it (flat), or None for a NULL pointer."""
        v = params.get(self.name)
        if v is None:
            return None
        arr = np.asarray(v).reshape(-1)
        if self.layout is not None:
            out = np.asarray(self.layout(params, arr)).reshape(-1)
            if out.size != arr.size:
                raise ValueError(f"field {self.name}: layout changed the size")
            arr = out
        return arr


# The constant-data fields of every kernel with per-output-channel weights, in struct
# order: int8 weights, optional int32 bias, per-channel requantization multiplier/shift.
WEIGHTED_FIELDS = (
    Field("weights", "int8[]"),
    Field("bias", "int32[]", nullable=True),
    Field("mult", "int32[]"),
    Field("shift", "int32[]"),
)


# ref(params, *inputs) -> output; inputs and output are flat int8 numpy arrays.
RefFn = Callable[..., np.ndarray]


@dataclass(frozen=True)
class Bands:
    """How a step over a streamed input runs (schedule/stream.py): `count` calls, call r
    reading image rows [r * rows, (r + 1) * rows) of every channel from its input buffer
    and writing `out_bytes` bytes at r * out_bytes of its output."""

    count: int
    rows: int
    out_bytes: int


@dataclass(frozen=True)
class KernelDef:
    name: str                 # registry key, e.g. "linear"
    c_func: str               # e.g. "mcuc_linear_s8"
    c_params_type: str        # e.g. "mcuc_linear_params_t"
    fields: tuple[Field, ...]
    n_inputs: int             # activation (or constant int8) pointers before the output
    ref: RefFn
    inplace_ok: bool = False  # output may share the first input's memory
    # ref writes only part of its output (a concat part, attention over its queries): it
    # takes the output's current contents as `out=` and returns them updated.
    writes_through: bool = False
    macs: Callable[[dict], int] = field(default=lambda p: 0)
    # Bytes of per-call scratch the C function takes after the output pointer (a fused
    # kernel's row buffer); 0 = the function takes no scratch argument.
    scratch: Callable[[dict], int] = field(default=lambda p: 0)
    # C macros that select an optimized variant of this kernel's code (a board's
    # defines(), e.g. "MCUC_ARM_DSP"); every variant must equal `ref` bit for bit.
    variants: tuple[str, ...] = ()
    # The band loop of a step with these params, or None when it runs once: codegen and
    # the reference executor ask this instead of reading the kernel's own params.
    bands: Callable[[dict], Bands | None] = field(default=lambda p: None)
    # Fields the compiler computes from the params for the C struct (a fused kernel's
    # scratch layout): computed here once, never again in C, and never stored in params.
    derived: Callable[[dict], dict] = field(default=lambda p: {})
    # Params the numpy reference reads that reach C only through derived fields (linear's
    # bias, mult and shift, which C reads interleaved as `rq`); (name, nullable) pairs.
    spec_only: tuple[tuple[str, bool], ...] = ()

    def check_params(self, params: dict) -> None:
        made = self.derived(params)   # raises ValueError on params it cannot lay out
        missing = [f.name for f in self.fields
                   if f.name not in params and f.name not in made and not f.nullable]
        missing += [n for n, nullable in self.spec_only if n not in params and not nullable]
        known = {f.name for f in self.fields} | {n for n, _ in self.spec_only}
        extra = sorted(set(params) - known | set(params) & set(made))
        if missing or extra:
            raise ValueError(f"{self.name}: missing params {missing}, unknown {extra}")
        for f in self.fields:
            if f.ctype == "struct" and params.get(f.name) is not None:
                get(f.kernel).check_params(params[f.name])


@dataclass(frozen=True)
class Leaf:
    """One scalar or array member of a (possibly nested) parameter struct."""

    path: str       # C member designator: "k", or "l1.weights" inside a nested struct
    field: Field
    value: object   # the param's value (None: NULL pointer, or absent)
    owner: dict     # the params dict the field belongs to (what Field.c_array reads)


def leaves(kdef: KernelDef, params: dict, prefix: str = "") -> list[Leaf]:
    """Every scalar and array member of kdef's C struct for `params` (derived fields
    included), nested structs flattened in order. A nested struct whose params are None
    is left out: its members are zero (a C initializer that omits them, or a zeroed
    struct), as a disabled stage needs."""
    values = {**params, **kdef.derived(params)}
    out: list[Leaf] = []
    for f in kdef.fields:
        v = values.get(f.name)
        if f.ctype == "struct":
            if v is not None:
                out += leaves(get(f.kernel), v, f"{prefix}{f.name}.")
        else:
            out.append(Leaf(prefix + f.name, f, v, values))
    return out


REGISTRY: dict[str, KernelDef] = {}


def register(kdef: KernelDef) -> KernelDef:
    if kdef.name in REGISTRY:
        raise ValueError(f"kernel {kdef.name} registered twice")
    REGISTRY[kdef.name] = kdef
    return kdef


def get(name: str) -> KernelDef:
    _load_all()
    return REGISTRY[name]


def _load_all() -> None:
    # Importing the package registers every kernel module it lists.
    from mcuc import kernels  # noqa: F401
