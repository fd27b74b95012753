"""Map keys and values as bytes without a cffi object per entry.

A full pass encodes half a million entries at 100,000 ports; through cffi each
costs a `ffi.new` and a copy. Here a type of maps/*.h is compiled once, from
cffi's own description of its layout (field names, offsets, types: nothing
restated by hand), into one `struct.Struct` whose scalar fields are packed as
numbers and whose arrays and nested structs as byte strings made at C speed
(`array`, `bytes`), so an entry costs one pack. Values are what cffi takes: an
int for a scalar, a dict of fields (missing ones zero) for a struct, bytes or a
list of ints for a byte array, a list for any other array. A layout it does not
handle (unions, bit fields, floats, pointers) has no encoder, and a value it
does not take (a cdata, raw bytes, a bad one) raises: either way the caller
goes through cffi, which also says what is wrong with a bad value.
tests/unit/test_encoder.py checks every struct against cffi.
"""
from __future__ import annotations

import array
import struct
from typing import Any, Callable

from dfxdp._libbpf import ffi

Encoder = Callable[[Any], bytes]

_INTS = {(1, False): "B", (2, False): "H", (4, False): "I", (8, False): "Q",
         (1, True): "b", (2, True): "h", (4, True): "i", (8, True): "q"}


class _Unsupported(TypeError):
    """A layout (or a value) this compiler leaves to cffi."""


def _int_format(ctype) -> str:
    if ctype.kind != "primitive" or ctype.cname in ("char", "_Bool") or "float" in ctype.cname \
            or "double" in ctype.cname:
        raise _Unsupported(ctype.cname)
    return _INTS[(ffi.sizeof(ctype), int(ffi.cast(ctype, -1)) < 0)]


def _fit(data: bytes, size: int, what: str) -> bytes:
    if len(data) > size:
        raise IndexError(f"{what}: {len(data)} bytes for {size}")
    return data


def _to_bytes(ctype, what: str) -> Callable[[Any], bytes]:
    """value -> its bytes (at most sizeof(ctype); what is short of it is zeros) for an array
    or a struct nested in a struct."""
    size = ffi.sizeof(ctype)
    if ctype.kind == "struct":
        encode = _compile(ctype)
        return encode
    if ctype.kind != "array":
        raise _Unsupported(ctype.kind)
    item, length = ctype.item, ctype.length
    if item.kind == "primitive" and ffi.sizeof(item) == 1 and item.cname not in ("char", "_Bool"):
        # a list of ints: each 0…255 or ValueError
        return lambda value: _fit(value if value.__class__ is bytes else bytes(value), size, what)
    if item.kind == "primitive":
        code = _int_format(item)
        if array.array(code).itemsize != ffi.sizeof(item):
            raise _Unsupported(item.cname)

        def ints(value: Any) -> bytes:
            if value.__class__ not in (list, tuple):
                raise _Unsupported(type(value).__name__)
            return _fit(array.array(code, value).tobytes(), size, what)
        return ints
    one, item_size = _to_bytes(item, what + "[]"), ffi.sizeof(item)

    def items(value: Any) -> bytes:
        if len(value) > length:
            raise IndexError(f"{what}: {len(value)} items for {length}")
        return b"".join(one(x).ljust(item_size, b"\0") for x in value)
    return items


def _compile(ctype) -> Encoder:
    """The encoder of a struct: straight-line code made for it (a loop over fields costs
    several times the pack itself; namedtuple and dataclasses make methods the same way)."""
    env: dict[str, Any] = {"_Unsupported": _Unsupported, "_cname": ctype.cname}
    fmt, offset, args = "", 0, []
    for i, (name, field) in enumerate(ctype.fields):
        if field.bitsize != -1 or field.offset < offset:
            raise _Unsupported(f"{ctype.cname}.{name}")  # bit fields, unions
        fmt += "x" * (field.offset - offset)
        if field.type.kind == "primitive":
            fmt += _int_format(field.type)
            args.append(f"g({name!r}, 0)")
        else:
            fmt += f"{ffi.sizeof(field.type)}s"
            env[f"_f{i}"] = _to_bytes(field.type, f"{ctype.cname}.{name}")
            args.append(f"_f{i}(g({name!r})) if {name!r} in v else b''")
        offset = field.offset + ffi.sizeof(field.type)
    fmt += "x" * (ffi.sizeof(ctype) - offset)
    packer = struct.Struct("=" + fmt)
    if packer.size != ffi.sizeof(ctype):  # a layout misread: never encode it wrongly
        raise _Unsupported(ctype.cname)
    env["_pack"], env["_names"] = packer.pack, frozenset(name for name, _ in ctype.fields)
    source = (
        "def encode(v):\n"
        "    if v.__class__ is not dict:\n"
        "        raise _Unsupported(type(v).__name__)\n"
        "    if not v.keys() <= _names:\n"
        "        raise KeyError(f'{_cname} has no field {sorted(v.keys() - _names)[0]!r}')\n"
        "    g = v.get\n"
        f"    return _pack({', '.join(args)})\n")
    exec(compile(source, f"<encoder of {ctype.cname}>", "exec"), env)
    return env["encode"]


def compile_encoder(ctype_name: str) -> Encoder | None:
    """An encoder of values of `ctype_name` (a type of maps/*.h as cffi knows it), or None
    when the layout is one this compiler leaves to cffi. It raises for a value it does not
    take (a cdata, raw bytes, an unknown field, a number out of range)."""
    ctype = ffi.typeof(ctype_name)
    try:
        if ctype.kind == "primitive":
            pack = struct.Struct("=" + _int_format(ctype)).pack

            def scalar(value: Any) -> bytes:
                if value.__class__ is not int:
                    raise _Unsupported(type(value).__name__)
                return pack(value)
            encode = scalar
        elif ctype.kind == "struct":
            encode = _compile(ctype)
        else:
            return None  # raw byte arrays (maps without BTF) take bytes: cffi copies them
    except _Unsupported:
        return None

    def checked(value: Any) -> bytes:
        try:
            return encode(value)
        except struct.error as exc:  # a number out of its field's range
            raise OverflowError(f"{ctype_name}: {exc}") from None
    return checked
