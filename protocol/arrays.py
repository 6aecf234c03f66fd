"""numpy arrays and raw bytes as buffer frames, described in the JSON content.

An array anywhere in a content dict is replaced by ``{"__array__": {"buffer": i, "dtype": "<f4",
"shape": [..]}}`` and its bytes travel as buffer frame ``i`` without being copied (the frame
references the array's memory). Raw ``bytes``/``memoryview`` values become ``{"__bytes__":
{"buffer": i, "size": n}}``. On receive the descriptors turn back into arrays that *view* the
received frame (``np.frombuffer``: no copy) and are therefore **read-only**; call ``.copy()`` to
modify one. Received raw bytes come back as read-only ``memoryview`` objects.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from .errors import MalformedMessage, ProtocolError

ARRAY_KEY = "__array__"
BYTES_KEY = "__bytes__"
RESERVED_KEYS = frozenset({ARRAY_KEY, BYTES_KEY})
MAX_NDIM = 32
# Byte order (< little, > big, | not applicable), kind (bool, int, uint, float, complex), item size.
# Object, string, structured and datetime dtypes are refused on purpose: they are not plain bytes.
_DTYPE_RE = re.compile(r"[<>|][biufc][0-9]{1,2}")  # fullmatch: "$" would pass "<f4\n"
_ALLOWED_KINDS = frozenset("biufc")

Buffer = memoryview


def dtype_to_wire(dtype: np.dtype[Any]) -> str:
    """The dtype string sent on the wire, byte order included (``<f4``, ``>i2``, ``|u1``)."""
    if dtype.kind not in _ALLOWED_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise ProtocolError(f"dtype {dtype!s} cannot travel as a buffer (only bool/int/uint/float/complex)")
    return dtype.str


def dtype_from_wire(text: object) -> np.dtype[Any]:
    if not isinstance(text, str) or _DTYPE_RE.fullmatch(text) is None:
        raise MalformedMessage(f"bad array dtype {str(text)[:32]!r}")
    try:
        dtype = np.dtype(text)
    except TypeError as exc:  # e.g. "<f3": well formed but not a real dtype
        raise MalformedMessage(f"bad array dtype {text!r}") from exc
    if dtype.kind not in _ALLOWED_KINDS:
        raise MalformedMessage(f"bad array dtype {text!r}")
    return dtype


def extract_buffers(content: Any, buffers: list[Buffer]) -> Any:
    """Return a JSON-able copy of ``content`` with arrays/bytes replaced by descriptors.

    Appends each payload to ``buffers`` as a memoryview (no copy for C-contiguous arrays;
    other arrays are made contiguous once, which copies them).
    """
    if isinstance(content, dict):
        out: dict[str, Any] = {}
        for key, value in content.items():
            if key in RESERVED_KEYS:
                raise ProtocolError(f"the key {key!r} is reserved for buffer descriptors")
            if not isinstance(key, str):
                raise ProtocolError(f"JSON object keys must be strings, got {type(key).__name__}")
            out[key] = extract_buffers(value, buffers)
        return out
    if isinstance(content, list | tuple):
        return [extract_buffers(value, buffers) for value in content]
    if isinstance(content, np.ndarray):
        wire_dtype = dtype_to_wire(content.dtype)
        # No copy when already C-contiguous (np.ascontiguousarray would turn 0-d into 1-d).
        array = content if content.flags.c_contiguous else content.copy(order="C")
        buffers.append(memoryview(array.reshape(-1).view(np.uint8)) if array.size else memoryview(b""))
        return {ARRAY_KEY: {"buffer": len(buffers) - 1, "dtype": wire_dtype, "shape": list(array.shape)}}
    if isinstance(content, bytes | bytearray | memoryview):
        view = memoryview(content)
        if not view.c_contiguous:
            view = memoryview(view.tobytes())
        view = view.cast("B") if view.ndim != 1 or view.format != "B" else view
        buffers.append(view)
        return {BYTES_KEY: {"buffer": len(buffers) - 1, "size": view.nbytes}}
    if isinstance(content, np.generic):  # numpy scalars: plain JSON numbers/bools
        return content.item()
    return content


def _index(descriptor: dict[str, Any], buffers: Sequence[Buffer]) -> int:
    index = descriptor.get("buffer")
    if type(index) is not int or not 0 <= index < len(buffers):
        raise MalformedMessage(f"buffer index {str(index)[:32]} out of range (have {len(buffers)} buffers)")
    return index


def _decode_array(descriptor: object, buffers: Sequence[Buffer]) -> np.ndarray:
    if not isinstance(descriptor, dict):
        raise MalformedMessage("array descriptor must be an object")
    buffer = buffers[_index(descriptor, buffers)]
    dtype = dtype_from_wire(descriptor.get("dtype"))
    shape = descriptor.get("shape")
    if not isinstance(shape, list) or len(shape) > MAX_NDIM:
        raise MalformedMessage(f"array shape must be a list of at most {MAX_NDIM} sizes")
    count = 1
    for size in shape:
        if type(size) is not int or size < 0:
            raise MalformedMessage(f"array shape entries must be non-negative ints, got {str(size)[:32]}")
        count *= size
    if count * dtype.itemsize != buffer.nbytes:
        raise MalformedMessage(
            f"array of shape {shape} and dtype {dtype.str} needs {count * dtype.itemsize} bytes, "
            f"buffer has {buffer.nbytes}"
        )
    array = np.frombuffer(buffer, dtype=dtype, count=count).reshape(tuple(shape))
    array.flags.writeable = False
    return array


def _decode_bytes(descriptor: object, buffers: Sequence[Buffer]) -> memoryview:
    if not isinstance(descriptor, dict):
        raise MalformedMessage("bytes descriptor must be an object")
    buffer = buffers[_index(descriptor, buffers)]
    size = descriptor.get("size")
    if size is not None and (type(size) is not int or size != buffer.nbytes):
        raise MalformedMessage(f"bytes descriptor says {str(size)[:32]} bytes, buffer has {buffer.nbytes}")
    return buffer.toreadonly()


def restore_buffers(content: Any, buffers: Sequence[Buffer]) -> Any:
    """Replace every descriptor in parsed JSON ``content`` by a read-only array/memoryview.

    Raises :class:`MalformedMessage` for bad descriptors (unknown dtype, wrong size, bad index).
    Iterative, so deeply nested input cannot exhaust the Python stack.
    """
    root: list[Any] = [content]
    stack: list[tuple[Any, Any]] = [(root, 0)]
    while stack:
        container, key = stack.pop()
        value = container[key]
        if isinstance(value, dict):
            if ARRAY_KEY in value or BYTES_KEY in value:
                if len(value) != 1:
                    raise MalformedMessage("a buffer descriptor object must have exactly one key")
                if ARRAY_KEY in value:
                    container[key] = _decode_array(value[ARRAY_KEY], buffers)
                else:
                    container[key] = _decode_bytes(value[BYTES_KEY], buffers)
            else:
                stack.extend((value, k) for k in value)
        elif isinstance(value, list):
            stack.extend((value, i) for i in range(len(value)))
    return root[0]
