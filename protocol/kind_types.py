"""The type system of job contracts (:mod:`protocol.kinds`): param types that check and convert
one JSON/array value and describe themselves, payload structs, result declarations.

Every check raises :class:`ParamError` naming the field (``params.size[0]``) and never echoes more
than a short rendering of the refused value. Pure Python + numpy.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, make_dataclass
from typing import Any

import numpy as np

MAX_ARRAY_ELEMENTS = 50_000_000  # one array param; the message limit bounds the total anyway
MAX_FRAMES = 100_000


class ParamError(ValueError):
    """A param does not match its contract. ``field`` is its dotted path, e.g. ``params.size[0]``."""

    def __init__(self, field_path: str, message: str) -> None:
        self.field = field_path
        self.message = message
        super().__init__(f"{field_path}: {message}")


def _show(value: Any) -> str:
    """A short, safe rendering of a refused value for an error message."""
    if isinstance(value, np.ndarray):
        return f"an array {value.dtype}{list(value.shape)}"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple) and len(value) > 8:
        return f"a list of {len(value)} items"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


class _Unset:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Unset()


@dataclass
class ParseContext:
    """State of one parse: the path hook and the symbols (``F``, ``B``...) bound by array shapes."""

    resolve_path: Callable[[str, str, PathParam], Any] | None = None
    symbols: dict[str, int] = field(default_factory=dict)


# ----------------------------------------------------------------------------------- types


class Type:
    """A param type: ``parse`` checks and converts one JSON/array value; ``doc`` says what it takes."""

    def parse(self, value: Any, where: str, ctx: ParseContext) -> Any:
        raise NotImplementedError

    def doc(self) -> str:
        raise NotImplementedError

    def accepts_shape(self, value: Any) -> bool:
        """Cheap check used by :class:`OneOf` to pick the option a value is meant for."""
        return True


@dataclass(frozen=True)
class Int(Type):
    lo: int
    hi: int

    def parse(self, value: Any, where: str, ctx: ParseContext) -> int:
        if isinstance(value, np.integer):
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not self.lo <= value <= self.hi:
            raise ParamError(where, f"must be an int in [{self.lo}, {self.hi}], got {_show(value)}")
        return value

    def doc(self) -> str:
        return f"int in [{self.lo}, {self.hi}]"

    def accepts_shape(self, value: Any) -> bool:
        return isinstance(value, int | np.integer) and not isinstance(value, bool)


@dataclass(frozen=True)
class Float(Type):
    lo: float
    hi: float
    lo_open: bool = False  # (lo, hi] instead of [lo, hi]

    def parse(self, value: Any, where: str, ctx: ParseContext) -> float:
        ok = isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)
        number = float(value) if ok else math.nan
        ok = ok and math.isfinite(number) and number <= self.hi
        ok = ok and (number > self.lo if self.lo_open else number >= self.lo)
        if not ok:
            raise ParamError(where, f"must be a number in {self._range()}, got {_show(value)}")
        return number

    def _range(self) -> str:
        return f"{'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}]"

    def doc(self) -> str:
        return f"number in {self._range()}"

    def accepts_shape(self, value: Any) -> bool:
        return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)


@dataclass(frozen=True)
class Bool(Type):
    def parse(self, value: Any, where: str, ctx: ParseContext) -> bool:
        if not isinstance(value, bool | np.bool_):
            raise ParamError(where, f"must be true or false, got {_show(value)}")
        return bool(value)

    def doc(self) -> str:
        return "bool"

    def accepts_shape(self, value: Any) -> bool:
        return isinstance(value, bool)


@dataclass(frozen=True)
class Str(Type):
    max_len: int = 256
    pattern: str | None = None  # a full-match regex
    hint: str = ""  # what the pattern means, for the error message and the spec

    def parse(self, value: Any, where: str, ctx: ParseContext) -> str:
        if not isinstance(value, str) or len(value) > self.max_len:
            raise ParamError(where, f"must be {self.doc()}, got {_show(value)}")
        if self.pattern is not None and re.fullmatch(self.pattern, value) is None:
            raise ParamError(where, f"must be {self.doc()}, got {_show(value)}")
        return value

    def doc(self) -> str:
        return self.hint or f"string of at most {self.max_len} characters"

    def accepts_shape(self, value: Any) -> bool:
        return isinstance(value, str) and (
            self.pattern is None or re.fullmatch(self.pattern, value) is not None
        )


@dataclass(frozen=True)
class Enum(Type):
    values: tuple[str, ...]

    def parse(self, value: Any, where: str, ctx: ParseContext) -> str:
        if not isinstance(value, str) or value not in self.values:
            raise ParamError(where, f"must be one of {', '.join(self.values)}; got {_show(value)}")
        return value

    def doc(self) -> str:
        return " | ".join(f'"{v}"' for v in self.values)

    def accepts_shape(self, value: Any) -> bool:
        return isinstance(value, str) and value in self.values


@dataclass(frozen=True)
class PathParam(Type):
    """A path on the backend machine. The server reads only inside its data dir and the input
    roots it was started with (``serve --input-root DIR``); the ``resolve_path`` hook of the parse
    enforces that and returns what the job opens. Without a hook the string is kept."""

    kind: str = "file"  # "file" | "dir"
    suffixes: tuple[str, ...] = ()  # lower-case, e.g. (".npz", ".bvh"); empty: any

    def parse(self, value: Any, where: str, ctx: ParseContext) -> Any:
        if not isinstance(value, str) or not 0 < len(value) <= 4096 or "\x00" in value:
            raise ParamError(where, f"must be {self.doc()}, got {_show(value)}")
        if self.suffixes and not value.lower().endswith(self.suffixes):
            raise ParamError(where, f"must be {self.doc()}, got {_show(value)}")
        return value if ctx.resolve_path is None else ctx.resolve_path(value, where, self)

    def doc(self) -> str:
        what = "folder" if self.kind == "dir" else "file"
        ends = f" ending in {' or '.join(self.suffixes)}" if self.suffixes else ""
        return f"path of a {what}{ends} on the backend (inside its input roots)"

    def accepts_shape(self, value: Any) -> bool:
        return isinstance(value, str) and (not self.suffixes or value.lower().endswith(self.suffixes))


@dataclass(frozen=True)
class List(Type):
    item: Type
    min_len: int = 0
    max_len: int = 1024

    def parse(self, value: Any, where: str, ctx: ParseContext) -> list[Any]:
        if isinstance(value, np.ndarray) and value.ndim == 1:
            value = value.tolist()
        if not isinstance(value, list | tuple) or not self.min_len <= len(value) <= self.max_len:
            raise ParamError(where, f"must be {self.doc()}, got {_show(value)}")
        return [self.item.parse(v, f"{where}[{i}]", ctx) for i, v in enumerate(value)]

    def doc(self) -> str:
        n = f"{self.min_len}" if self.min_len == self.max_len else f"{self.min_len}-{self.max_len}"
        return f"list of {n} × ({self.item.doc()})"

    def accepts_shape(self, value: Any) -> bool:
        return isinstance(value, list | tuple) or (isinstance(value, np.ndarray) and value.ndim == 1)


@dataclass(frozen=True)
class Array(Type):
    """A numeric array: a buffer frame (numpy) or nested JSON lists. ``shape`` holds ints (exact),
    symbols (``"F"``: equal wherever the symbol appears in one submit) or ``None`` (any).
    ``max_dims`` caps symbols, e.g. ``{"B": 300}``. Converted to ``dtype``."""

    dtype: str  # "float32" | "float64" | "int32" | "uint8"
    shape: tuple[int | str | None, ...]
    max_dims: tuple[tuple[str, int], ...] = ()

    def parse(self, value: Any, where: str, ctx: ParseContext) -> np.ndarray:
        try:
            array = value if isinstance(value, np.ndarray) else np.asarray(value)
        except (ValueError, TypeError):  # ragged nested lists
            raise ParamError(where, f"must be {self.doc()}, got {_show(value)}") from None
        if array.dtype.kind not in ("iuf" if self.dtype.startswith("float") else "iu"):
            raise ParamError(where, f"must be {self.doc()}, got {_show(value)}")
        if array.size > MAX_ARRAY_ELEMENTS or array.ndim != len(self.shape):
            raise ParamError(where, f"must be {self.doc()}, got shape {list(array.shape)}")
        limits = dict(self.max_dims)
        bound = dict(ctx.symbols)
        for axis, (rule, size) in enumerate(zip(self.shape, array.shape, strict=True)):
            if isinstance(rule, int) and size != rule:
                raise ParamError(where, f"must be {self.doc()}, got shape {list(array.shape)} (axis {axis})")
            if isinstance(rule, str):
                top = limits.get(rule, MAX_FRAMES)
                if not 1 <= size <= top:
                    raise ParamError(where, f"axis {axis} ({rule}) must be in [1, {top}], got {size}")
                if bound.setdefault(rule, size) != size:
                    raise ParamError(where, f"{rule} = {size} here but {bound[rule]} in another field")
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise ParamError(where, "must hold finite numbers only")
        ctx.symbols.update(bound)
        return np.ascontiguousarray(array, dtype=self.dtype)

    def doc(self) -> str:
        dims = ", ".join("*" if d is None else str(d) for d in self.shape)
        return f"array ({dims}{',' if len(self.shape) == 1 else ''}) {self.dtype}"

    def accepts_shape(self, value: Any) -> bool:
        return isinstance(value, np.ndarray | list | tuple)


@dataclass(frozen=True)
class Size(Type):
    """An image size: ``[W, H]`` or ``"WxH"``, each in [1, ``max_side``]; parsed to ``(W, H)``."""

    max_side: int = 4096

    def parse(self, value: Any, where: str, ctx: ParseContext) -> tuple[int, int]:
        if isinstance(value, str):
            match = re.fullmatch(r"([0-9]{1,5})x([0-9]{1,5})", value.strip().lower())
            if match is None:
                raise ParamError(where, f"must be {self.doc()}, got {_show(value)}")
            value = [int(match.group(1)), int(match.group(2))]
        w, h = List(Int(1, self.max_side), 2, 2).parse(value, where, ctx)
        return w, h

    def doc(self) -> str:
        return f'[W, H] or "WxH", each an int in [1, {self.max_side}]'

    def accepts_shape(self, value: Any) -> bool:
        return isinstance(value, str | list | tuple)


@dataclass(frozen=True)
class Param:
    """One named param (or one field of a payload)."""

    name: str
    type: Type
    default: Any = None  # REQUIRED: must be given; None: optional, absent means "not given"
    help: str = ""

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


def parse_fields(
    fields_: Sequence[Param], value: Mapping[str, Any], where: str, ctx: ParseContext
) -> dict[str, Any]:
    known = {p.name for p in fields_}
    unknown = [k for k in value if k not in known]
    if unknown:
        name = unknown[0] if isinstance(unknown[0], str) else repr(unknown[0])
        raise ParamError(f"{where}.{name}"[:200], f"unknown field; known: {', '.join(sorted(known))}")
    out: dict[str, Any] = {}
    for p in fields_:
        if p.name in value and value[p.name] is not None:
            out[p.name] = p.type.parse(value[p.name], f"{where}.{p.name}", ctx)
        elif p.required:
            raise ParamError(f"{where}.{p.name}", f"required ({p.type.doc()})")
        else:
            out[p.name] = copy.deepcopy(p.default)  # a job may not change the contract's defaults
    return out


@dataclass(frozen=True)
class Struct(Type):
    """A nested payload (an object with declared fields); parsed into a plain dict."""

    name: str
    fields: tuple[Param, ...]
    required_any: tuple[str, ...] = ()  # the object must hold at least one of these (a discriminator)

    def parse(self, value: Any, where: str, ctx: ParseContext) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            raise ParamError(where, f"must be a {self.name} object, got {_show(value)}")
        if self.required_any and not any(k in value for k in self.required_any):
            raise ParamError(where, f"a {self.name} needs {' or '.join(self.required_any)}")
        symbols = ctx.symbols
        ctx.symbols = {}  # shape symbols are per payload
        try:
            parsed = parse_fields(self.fields, value, where, ctx)
        finally:
            ctx.symbols = symbols
        return {k: v for k, v in parsed.items() if v is not None}

    def doc(self) -> str:
        return f"{self.name} object"

    def accepts_shape(self, value: Any) -> bool:
        return isinstance(value, Mapping) and (
            not self.required_any or any(k in value for k in self.required_any)
        )


@dataclass(frozen=True)
class OneOf(Type):
    """One of several types: the first option whose :meth:`Type.accepts_shape` fits parses it."""

    options: tuple[Type, ...]

    def parse(self, value: Any, where: str, ctx: ParseContext) -> Any:
        for option in self.options:
            if option.accepts_shape(value):
                return option.parse(value, where, ctx)
        raise ParamError(where, f"must be {self.doc()}; got {_show(value)}")

    def doc(self) -> str:
        return " or ".join(o.doc() for o in self.options)

    def accepts_shape(self, value: Any) -> bool:
        return any(o.accepts_shape(value) for o in self.options)


# ----------------------------------------------------------------------------------- results


@dataclass(frozen=True)
class ResultArray:
    name: str
    dtype: str
    shape: tuple[int | str, ...]
    help: str = ""
    optional: bool = False


@dataclass(frozen=True)
class Result:
    data: tuple[tuple[str, str], ...] = ()  # (key, meaning) of the inline summary
    arrays: tuple[ResultArray, ...] = ()
    files: tuple[tuple[str, str], ...] = ()  # (name pattern, meaning)


@dataclass(frozen=True)
class JobContract:
    kind: str
    summary: str
    params: tuple[Param, ...]
    result: Result
    exclusive: tuple[tuple[str, ...], ...] = ()  # groups of params of which at most one is given
    one_required: tuple[tuple[str, ...], ...] = ()  # groups of which exactly one must be given
    # What a job function receives: a frozen dataclass with one attribute per param.
    params_class: type = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        name = "".join(part.capitalize() for part in re.split(r"[._]", self.kind)) + "Params"
        cls = make_dataclass(name, [(p.name, Any) for p in self.params], frozen=True)
        object.__setattr__(self, "params_class", cls)

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(f"{self.kind} has no param {name!r}")

    def check_result(self, data: Mapping[str, Any], arrays: Mapping[str, Any]) -> list[str]:
        """What in a job's result breaks the contract (empty: it keeps it): missing or extra data keys
        are not checked (data is a free summary); every declared, non-optional array must be present
        with its dtype and shape rule (letters agree across the arrays), and no undeclared array."""
        problems: list[str] = []
        symbols: dict[str, int] = {}
        declared = {a.name: a for a in self.result.arrays}
        for name in arrays:
            if name not in declared:
                problems.append(f"array {name!r} is not in the contract")
        for spec in declared.values():
            if spec.name not in arrays:
                if not spec.optional:
                    problems.append(f"array {spec.name!r} is missing")
                continue
            value = arrays[spec.name]
            if str(value.dtype) != spec.dtype:
                problems.append(f"array {spec.name!r} is {value.dtype}, the contract says {spec.dtype}")
            wrong_shape = f"array {spec.name!r} has shape {value.shape}, the contract says {spec.shape}"
            if value.ndim != len(spec.shape):
                problems.append(wrong_shape)
                continue
            for rule, size in zip(spec.shape, value.shape, strict=True):
                if isinstance(rule, int) and rule != size:
                    problems.append(wrong_shape)
                elif isinstance(rule, str) and symbols.setdefault(rule, size) != size:
                    problems.append(f"array {spec.name!r}: {rule} = {size}, elsewhere {symbols[rule]}")
        return problems
