"""libbpf over cffi: objects, programs, maps, pins, XDP attachment, test runs.

Everything that can fail raises BpfError (an OSError: `.errno` plus a message
saying what failed); a verifier rejection raises VerifierError carrying the log.
Map keys and values are typed by the map's own BTF (the structs of maps/*.h), so
Python never restates a layout: pass an int, a dict or a cdata of that type.
"""
from __future__ import annotations

import array
import errno as errno_mod
import logging
import os
import pathlib
import sys
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterator

try:
    from dfxdp._libbpf import ffi, lib
except ImportError as exc:  # pragma: no cover - exercised only on a broken install
    raise ImportError("dfxdp._libbpf is not built: run `make bpf` (python -m dfxdp.build)") from exc

from .encoder import compile_encoder

log = logging.getLogger(__name__)

_encoders: dict = {}  # cffi type name -> its compiled encoder, None where cffi encodes it
_UNCOMPILED = object()

BPF_MAP_TYPE_PROG_ARRAY = 3
BPF_MAP_TYPE_RINGBUF = 27  # bytes, not entries: no keys to iterate
PERCPU_MAP_TYPES = {5, 6, 10}  # PERCPU_HASH, PERCPU_ARRAY, LRU_PERCPU_HASH
ARRAY_MAP_TYPES = {2, 6}  # ARRAY, PERCPU_ARRAY: every slot always exists, none can be deleted
# The kernel's answer for a batch command a map type lacks (its internal ENOTSUPP, not in
# errno): on 6.18 arrays have no BPF_MAP_DELETE_BATCH; older kernels may lack LPM trie batches.
ENOTSUPP = 524
_NO_BATCH: set[tuple[str, int]] = set()  # (command, map type) this kernel refused: done key by key since
BPF_MAP_TYPE_ARRAY = 2
MAP_IN_MAP_TYPES = {12, 13}  # ARRAY_OF_MAPS, HASH_OF_MAPS
BTF_KIND_INT, BTF_KIND_ARRAY, BTF_KIND_STRUCT, BTF_KIND_UNION = 1, 3, 4, 5
BTF_KIND_TYPEDEF, BTF_KIND_VOLATILE, BTF_KIND_CONST = 8, 9, 10
BPF_F_TEST_XDP_LIVE_FRAMES = 1 << 1  # linux/bpf.h
XDP_ACTIONS = ["XDP_ABORTED", "XDP_DROP", "XDP_PASS", "XDP_TX", "XDP_REDIRECT"]


class BpfError(OSError):
    def __init__(self, err: int, message: str, log_text: str = ""):
        super().__init__(err, f"{message}: {os.strerror(err)}" if err else message)
        self.log = log_text


class BatchError(BpfError):
    """A batch stopped at one entry: the `done` entries before it were applied, the
    entry at index `done` failed (errno says why), the ones after it were not tried."""

    def __init__(self, err: int, message: str, done: int):
        super().__init__(err, message)
        self.done = done


class VerifierError(BpfError):
    """The kernel refused a program; `.log` holds libbpf's and the verifier's output."""

    def __str__(self) -> str:
        return f"{super().__str__()}\n{self.log}"


def _check(ret: int, what: str) -> int:
    if ret < 0:
        raise BpfError(-ret, what)
    return ret


# libbpf reports through a print callback; collect it per thread while a load runs.
_capture = threading.local()


@ffi.def_extern()
def dfxdp_libbpf_log(level: int, msg) -> None:
    text = ffi.string(msg).decode(errors="replace")
    lines = getattr(_capture, "lines", None)
    if lines is not None:
        lines.append(text)
    elif level == 0:  # LIBBPF_WARN
        log.warning("libbpf: %s", text.rstrip())
    else:
        log.debug("libbpf: %s", text.rstrip())


lib.dfxdp_install_printer()
NUM_CPUS = lib.libbpf_num_possible_cpus()


# --- bpffs -------------------------------------------------------------------

def is_bpffs(path: str | os.PathLike) -> bool:
    return lib.dfxdp_fs_magic(os.fsencode(path)) == lib.BPF_FS_MAGIC


def ensure_bpffs(path: str | os.PathLike) -> pathlib.Path:
    """Make sure `path` lies on a bpffs, mounting one at `path` when it does not."""
    path = pathlib.Path(path)
    path.mkdir(parents=True, exist_ok=True)
    if not is_bpffs(path):
        _check(lib.dfxdp_mount_bpffs(os.fsencode(path)), f"mounting bpffs at {path}")
    return path


def unpin(path: str | os.PathLike) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _get_pinned_fd(path: str | os.PathLike) -> int:
    fd = lib.bpf_obj_get(os.fsencode(path))
    if fd < 0:
        raise BpfError(-fd if fd != -1 else ffi.errno, f"opening pinned object {path}")
    return fd


# --- BTF: the map's own declaration of its key and value types ----------------

def _btf_ctype(btf, type_id: int, size: int) -> str:
    """The cffi type name for a BTF type: struct/typedef names as in maps/*.h."""
    for _ in range(16):  # typedef chains are short; bound the walk anyway
        t = lib.btf__type_by_id(btf, type_id)
        if t == ffi.NULL:
            break
        kind = (t.info >> 24) & 0x1F
        name = ffi.string(lib.btf__name_by_offset(btf, t.name_off)).decode()
        if kind in (BTF_KIND_STRUCT, BTF_KIND_UNION) and name:
            ctype = f"{'struct' if kind == BTF_KIND_STRUCT else 'union'} {name}"
        elif kind in (BTF_KIND_TYPEDEF, BTF_KIND_INT) and name:
            ctype = name
        elif kind in (BTF_KIND_VOLATILE, BTF_KIND_CONST, BTF_KIND_TYPEDEF):
            type_id = t.type
            continue
        else:
            break
        try:
            if ffi.sizeof(ctype) == size:
                return ctype
        except ffi.error:
            pass
        if kind == BTF_KIND_TYPEDEF:
            type_id = t.type
            continue
        break
    return f"unsigned char[{size}]"


@dataclass
class MapInfo:
    name: str
    type: int
    id: int
    key_size: int
    value_size: int
    max_entries: int
    map_flags: int
    btf_id: int
    btf_key_type_id: int
    btf_value_type_id: int


def map_info(fd: int) -> MapInfo:
    info = ffi.new("struct bpf_map_info *")
    size = ffi.new("__u32 *", ffi.sizeof("struct bpf_map_info"))
    _check(lib.bpf_obj_get_info_by_fd(fd, info, size), f"reading info of map fd {fd}")
    return MapInfo(ffi.string(info.name).decode(), info.type, info.id, info.key_size, info.value_size,
                   info.max_entries, info.map_flags, info.btf_id, info.btf_key_type_id, info.btf_value_type_id)


# --- maps ----------------------------------------------------------------------

class Map:
    """A BPF map by fd. Keys/values: int, dict, bytes (raw) or cdata of the map's type."""

    def __init__(self, fd: int, owns_fd: bool = True):
        self.fd = fd
        self._owns_fd = owns_fd
        self.info = map_info(fd)
        self.name = self.info.name
        self.key_type, self.value_type = self._types()
        self.percpu = self.info.type in PERCPU_MAP_TYPES
        self.is_array = self.info.type in ARRAY_MAP_TYPES
        # per-CPU values are laid out one per possible CPU, each rounded up to 8 bytes
        self._slot = (self.info.value_size + 7) & ~7

    @classmethod
    def pinned(cls, path: str | os.PathLike) -> "Map":
        return cls.of(_get_pinned_fd(path))

    @staticmethod
    def of(fd: int, owns_fd: bool = True) -> "Map":
        """The right class for the map behind fd: maps of maps hold whole arrays."""
        kind = MapOfArrays if map_info(fd).type in MAP_IN_MAP_TYPES else Map
        return kind(fd, owns_fd)

    def _types(self) -> tuple[str, str]:
        info = self.info
        if not info.btf_id:
            return f"unsigned char[{info.key_size}]", f"unsigned char[{info.value_size}]"
        btf = lib.btf__load_from_kernel_by_id(info.btf_id)
        if btf == ffi.NULL:
            raise BpfError(ffi.errno, f"loading BTF {info.btf_id} of map {info.name}")
        try:
            return (_btf_ctype(btf, info.btf_key_type_id, info.key_size),
                    _btf_ctype(btf, info.btf_value_type_id, info.value_size))
        finally:
            lib.btf__free(btf)

    def close(self) -> None:
        if self._owns_fd and self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __repr__(self) -> str:
        return f"<Map {self.name} {self.key_type}->{self.value_type} max={self.info.max_entries}>"

    # conversions
    def _buf(self, ctype: str, value: Any):
        if isinstance(value, ffi.CData):
            if ffi.typeof(value) is ffi.typeof(ctype):
                return ffi.new(f"{ctype} *", value) if not ctype.endswith("]") else value
            if ffi.typeof(value) is ffi.typeof(f"{ctype} *"):
                return value
        if isinstance(value, (bytes, bytearray)):
            size = ffi.sizeof(ctype)
            if len(value) != size:
                raise ValueError(f"map {self.name}: expected {size} bytes for {ctype}, got {len(value)}")
            buf = ffi.new("unsigned char[]", size)
            ffi.memmove(buf, bytes(value), size)
            return buf
        if ctype.endswith("]"):
            return ffi.new(ctype, value)
        return ffi.new(f"{ctype} *", value)

    def _out(self, ctype: str, buf, offset: int = 0):
        size = ffi.sizeof(ctype)
        raw = ffi.buffer(buf)[offset:offset + size]
        return self.decode(ctype, raw)

    @staticmethod
    def decode(ctype: str, raw: bytes):
        """bytes -> int for scalar types, else an owning `ctype *` (fields read as attributes)."""
        if ctype.endswith("]"):
            return bytes(raw)
        obj = ffi.new(f"{ctype} *")
        ffi.memmove(obj, raw, len(raw))
        return obj[0] if ffi.typeof(ctype).kind == "primitive" else obj

    def _value_out_buf(self):
        return ffi.new("unsigned char[]", self._slot * NUM_CPUS if self.percpu else self.info.value_size)

    def _percpu_values(self, buf) -> list:
        return [self._out(self.value_type, buf, cpu * self._slot) for cpu in range(NUM_CPUS)]

    # element operations
    def lookup(self, key):
        """The value (a list per CPU for per-CPU maps), or None when absent."""
        out = self._value_out_buf()
        ret = lib.bpf_map_lookup_elem(self.fd, self._buf(self.key_type, key), out)
        if ret < 0:
            if -ret == errno_mod.ENOENT:
                return None
            raise BpfError(-ret, f"lookup in map {self.name}")
        return self._percpu_values(out) if self.percpu else self._out(self.value_type, out)

    def update(self, key, value, flags: int = 0) -> None:
        """Insert or replace. For per-CPU maps `value` is one value (every CPU) or a list."""
        _check(lib.bpf_map_update_elem(self.fd, self._buf(self.key_type, key),
                                       ffi.from_buffer(self.kernel_value(value)), flags),
               f"update of map {self.name}")

    def delete(self, key) -> bool:
        """Remove key; False when it was not there."""
        ret = lib.bpf_map_delete_elem(self.fd, self._buf(self.key_type, key))
        if ret < 0:
            if -ret == errno_mod.ENOENT:
                return False
            raise BpfError(-ret, f"delete from map {self.name}")
        return True

    def take(self, key):
        """Remove key and return the value it held at that instant (one atomic step for
        hash maps), or None when it was not there."""
        out = self._value_out_buf()
        ret = lib.bpf_map_lookup_and_delete_elem(self.fd, self._buf(self.key_type, key), out)
        if ret < 0:
            if -ret == errno_mod.ENOENT:
                return None
            raise BpfError(-ret, f"lookup and delete in map {self.name}")
        return self._percpu_values(out) if self.percpu else self._out(self.value_type, out)

    def keys(self) -> Iterator:
        prev = ffi.NULL
        nxt = ffi.new("unsigned char[]", self.info.key_size)
        while True:
            ret = lib.bpf_map_get_next_key(self.fd, prev, nxt)
            if ret < 0:
                if -ret == errno_mod.ENOENT:
                    return
                raise BpfError(-ret, f"iterating map {self.name}")
            yield self._out(self.key_type, nxt)
            prev = ffi.new("unsigned char[]", bytes(ffi.buffer(nxt)))

    def raw_items(self) -> dict[bytes, bytes]:
        """Every entry as raw key/value bytes (any map type, LPM tries included)."""
        return dict(self.raw_iter())

    def raw_iter(self) -> Iterator[tuple[bytes, bytes]]:
        """Every entry as raw key/value bytes, read in batches of syscalls where the kernel
        offers them, else key by key: a big map is never held whole."""
        if ("lookup", self.info.type) not in _NO_BATCH:
            try:
                first = True
                for item in self._raw_batches():
                    first = False
                    yield item
                return
            except BpfError as exc:
                if not first or exc.errno not in (ENOTSUPP, errno_mod.EOPNOTSUPP):
                    raise
                _NO_BATCH.add(("lookup", self.info.type))
        value = self._value_out_buf()
        for key in self.keys():
            kbuf = self._buf(self.key_type, key)
            if lib.bpf_map_lookup_elem(self.fd, kbuf, value) == 0:
                yield bytes(ffi.buffer(kbuf, self.info.key_size)), bytes(ffi.buffer(value))

    @property
    def value_size(self) -> int | None:
        """Bytes of one value as update_batch_raw takes it (per-CPU maps: not one size)."""
        return None if self.percpu else self.info.value_size

    def encode_key(self, key) -> bytes:
        return self._encode(self.key_type, key, self.info.key_size)

    def encode_value(self, value) -> bytes:
        return self._encode(self.value_type, value, self.info.value_size)

    def _encode(self, ctype: str, value: Any, size: int) -> bytes:
        """Through the type's compiled encoder (dfxdp/datapath/encoder.py) where it takes the
        value, else through cffi (which also says what is wrong with a bad one)."""
        encode = _encoders.get(ctype, _UNCOMPILED)
        if encode is _UNCOMPILED:
            encode = _encoders[ctype] = compile_encoder(ctype)
        if encode is not None:
            try:
                return encode(value)
            except (LookupError, TypeError, ValueError, OverflowError):
                pass
        return bytes(ffi.buffer(self._buf(ctype, value), size))

    def kernel_value(self, value) -> bytes:
        """A value as the kernel takes it: for per-CPU maps one 8-byte aligned slot per
        possible CPU, from a list (one per CPU) or one value for every CPU."""
        if not self.percpu:
            return self.encode_value(value)
        values = value if isinstance(value, list) else [value] * NUM_CPUS
        if len(values) != NUM_CPUS:
            raise ValueError(f"map {self.name}: {len(values)} per-CPU values for {NUM_CPUS} CPUs")
        pad = bytes(self._slot - self.info.value_size)
        return b"".join(self.encode_value(v) + pad for v in values)

    def items(self) -> Iterator[tuple]:
        for key in self.keys():
            value = self.lookup(key)
            if value is not None:  # deleted while we iterated
                yield key, value

    def __len__(self) -> int:
        return sum(1 for _ in self.keys())

    # batches: one syscall for many entries
    def update_batch(self, pairs: list[tuple]) -> None:
        """Insert or replace (key, value) pairs, typed as for update(); see update_batch_raw."""
        self.update_batch_raw(b"".join(self.encode_key(k) for k, _ in pairs),
                              b"".join(self.kernel_value(v) for _, v in pairs))

    def update_batch_raw(self, keys, values, flags: int = 0) -> None:
        """Write encoded entries in order: `keys` and `values` are the concatenated
        encodings (bytes-like; values as kernel_value() gives them). One
        BPF_MAP_UPDATE_BATCH, or one update per entry where the map type has no batch.
        Raises BatchError at the first entry that fails."""
        count = self._batch_count(keys, values)
        vs, vals = len(values) // max(count, 1), memoryview(values)
        self._batched("update", keys, count, flags,
                      lambda k, done, opts: lib.bpf_map_update_batch(self.fd, k, ffi.from_buffer(vals), done, opts),
                      lambda k, i: lib.bpf_map_update_elem(self.fd, k, ffi.from_buffer(vals[i * vs:(i + 1) * vs]),
                                                           flags))

    def delete_batch_raw(self, keys) -> None:
        """Delete encoded keys (concatenated) in order, as update_batch_raw writes them.
        A key that is not there stops the batch like any failure (BatchError, ENOENT)."""
        count = self._batch_count(keys)
        self._batched("delete", keys, count, 0,
                      lambda k, done, opts: lib.bpf_map_delete_batch(self.fd, k, done, opts),
                      lambda k, i: lib.bpf_map_delete_elem(self.fd, k))

    def _batch_count(self, keys, values=None) -> int:
        ks = self.info.key_size
        count = len(keys) // ks
        if len(keys) != count * ks:
            raise ValueError(f"map {self.name}: {len(keys)} bytes of keys is no whole number of {ks}-byte keys")
        if values is not None:
            vs = self._slot * NUM_CPUS if self.percpu else self.info.value_size
            if len(values) != count * vs:
                raise ValueError(f"map {self.name}: {len(values)} bytes of values for {count} {vs}-byte values")
        return count

    def _batched(self, command: str, keys, count: int, flags: int, batch, one) -> None:
        """Run `batch(keys, count pointer, opts)` (one syscall) or, where this kernel has no
        such batch for this map type, `one(key, index)` per entry; either way stop at the first
        failure with a BatchError saying how many entries were done."""
        if not count:
            return
        ks = self.info.key_size
        if (command, self.info.type) not in _NO_BATCH:
            done = ffi.new("__u32 *", count)
            opts = ffi.new("struct bpf_map_batch_opts *",
                           {"sz": ffi.sizeof("struct bpf_map_batch_opts"), "elem_flags": flags})
            ret = batch(ffi.from_buffer(keys), done, opts)
            if ret == 0:
                return
            if -ret not in (ENOTSUPP, errno_mod.EOPNOTSUPP):
                raise BatchError(-ret, f"batch {command} of map {self.name} stopped at entry {done[0]} of {count}",
                                 done[0])
            _NO_BATCH.add((command, self.info.type))  # refused before touching any entry
        view = memoryview(keys)
        for i in range(count):
            ret = one(ffi.from_buffer(view[i * ks:(i + 1) * ks]), i)
            if ret < 0:
                raise BatchError(-ret, f"{command} in map {self.name} failed at entry {i} of {count}", i)

    def lookup_batch(self, chunk: int = 256) -> list[tuple]:
        """All entries through BPF_MAP_LOOKUP_BATCH, decoded."""
        out = []
        for key, value in self._raw_batches(chunk):
            if self.percpu:
                out.append((self.decode(self.key_type, key), self._percpu_values(ffi.from_buffer(value))))
            else:
                out.append((self.decode(self.key_type, key), self.decode(self.value_type, value)))
        return out

    def _raw_batches(self, chunk: int = 1024) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) bytes of every entry, `chunk` entries per BPF_MAP_LOOKUP_BATCH."""
        ks, vs = self.info.key_size, self._slot * NUM_CPUS if self.percpu else self.info.value_size
        keys = ffi.new("unsigned char[]", ks * chunk)
        values = ffi.new("unsigned char[]", vs * chunk)
        in_batch, out_batch = ffi.NULL, ffi.new("unsigned char[]", max(ks, 8))
        opts = ffi.new("struct bpf_map_batch_opts *", {"sz": ffi.sizeof("struct bpf_map_batch_opts")})
        while True:
            count = ffi.new("__u32 *", chunk)
            ret = lib.bpf_map_lookup_batch(self.fd, in_batch, out_batch, keys, values, count, opts)
            if ret < 0 and -ret != errno_mod.ENOENT:
                raise BpfError(-ret, f"batch lookup of map {self.name}")
            key_bytes, value_bytes = ffi.buffer(keys, ks * count[0])[:], ffi.buffer(values, vs * count[0])[:]
            for i in range(count[0]):
                yield key_bytes[i * ks:(i + 1) * ks], value_bytes[i * vs:(i + 1) * vs]
            if ret < 0:  # ENOENT: that was the last chunk
                return
            in_batch = ffi.new("unsigned char[]", bytes(ffi.buffer(out_batch)))

    # per-CPU helpers
    def lookup_sum(self, key) -> dict[str, int]:
        """A per-CPU value summed over CPUs, as {field: total}."""
        values = self.lookup(key)
        return sum_percpu(values) if values is not None else {}

    def pin(self, path: str | os.PathLike) -> None:
        _check(lib.bpf_obj_pin(self.fd, os.fsencode(path)), f"pinning map {self.name} at {path}")


class MapOfArrays(Map):
    """An ARRAY_OF_MAPS / HASH_OF_MAPS whose inner maps are ARRAYs of __u32 (e.g. the load
    balancer's rings). A value is the whole inner array, as a sequence of ints or its bytes:
    `update` fills a new inner array and then swaps it in with one write to the outer map,
    so a program sees the old array or the new one, never one half written."""

    def _types(self) -> tuple[str, str]:
        # libbpf records no BTF types for a map of maps: its keys are __u32 here, its
        # values an inner map's fd (written) or id (read)
        key_type, _ = super()._types()
        return ("__u32" if key_type.startswith("unsigned char") and self.info.key_size == 4 else key_type), "__u32"

    def _inner_bytes(self, value) -> bytes:
        return bytes(value) if isinstance(value, (bytes, bytearray)) else array.array("I", value).tobytes()

    def encode_value(self, value) -> bytes:
        return self._inner_bytes(value)

    def update(self, key, value, flags: int = 0) -> None:
        data = self._inner_bytes(value)
        size = len(data) // 4
        fd = _check(lib.bpf_map_create(BPF_MAP_TYPE_ARRAY, f"{self.name[:11]}_in".encode(), 4, 4, size, ffi.NULL),
                    f"creating an inner array of {size} for map {self.name}")
        inner = Map(fd)
        try:
            inner.update_batch_raw(array.array("I", range(size)).tobytes(), data)
            # the kernel refuses an inner map unlike the declared one (its size included)
            _check(lib.bpf_map_update_elem(self.fd, self._buf(self.key_type, key), ffi.new("__u32 *", fd), flags),
                   f"swapping an inner array into map {self.name}")
        finally:
            inner.close()

    def update_batch_raw(self, keys, values, flags: int = 0) -> None:
        """Each inner array made and swapped in in turn (values: the arrays' bytes, concatenated)."""
        ks = self.info.key_size
        count = len(keys) // ks
        vs = len(values) // max(count, 1)
        for i in range(count):
            try:
                self.update(bytes(keys[i * ks:(i + 1) * ks]), bytes(values[i * vs:(i + 1) * vs]), flags)
            except BpfError as exc:
                raise BatchError(exc.errno, f"update of map {self.name} failed at entry {i} of {count}", i) from exc

    def lookup(self, key):
        """The inner array as a list of ints, or None when absent."""
        map_id = super().lookup(key)
        return None if map_id is None else list(array.array("I", self._read_inner(map_id)))

    def _read_inner(self, map_id) -> bytes:
        fd = _check(lib.bpf_map_get_fd_by_id(map_id),
                    f"opening an inner map of {self.name}")
        inner = Map(fd)
        try:
            items = inner.raw_items()
            return b"".join(items[k] for k in sorted(items, key=lambda k: int.from_bytes(k, sys.byteorder)))
        finally:
            inner.close()

    value_size = None  # a value is a whole inner array: kept as it is

    def raw_iter(self) -> Iterator[tuple[bytes, bytes]]:
        for key in self.keys():
            map_id = super().lookup(key)
            if map_id is not None:
                yield self.encode_key(key), self._read_inner(map_id)


def to_dict(value) -> dict | int | bytes:
    """A struct cdata as a dict (arrays become lists), recursively; scalars unchanged."""
    if not isinstance(value, ffi.CData):
        return value
    t = ffi.typeof(value)
    if t.kind == "pointer" and t.item.kind == "struct":
        return to_dict(value[0])
    if t.kind == "struct":
        return {name: to_dict(getattr(value, name)) for name, _ in t.fields}
    if t.kind == "array":
        return [to_dict(v) for v in value]
    return value


def sum_percpu(values: list) -> dict[str, int]:
    total: dict[str, int] = {}
    for v in values:
        for name, field in to_dict(v).items():
            total[name] = total.get(name, 0) + field
    return total


# --- programs ------------------------------------------------------------------

@dataclass
class TestRunResult:
    retval: int
    data_out: bytes
    duration_ns: int
    ctx_out: Any = None

    @property
    def action(self) -> str:
        return XDP_ACTIONS[self.retval] if 0 <= self.retval < len(XDP_ACTIONS) else str(self.retval)


class Program:
    def __init__(self, fd: int, name: str, owns_fd: bool = False):
        self.fd = fd
        self.name = name
        self._owns_fd = owns_fd

    @classmethod
    def pinned(cls, path: str | os.PathLike) -> "Program":
        return cls(_get_pinned_fd(path), pathlib.Path(path).name, owns_fd=True)

    def __repr__(self) -> str:
        return f"<Program {self.name} fd={self.fd}>"

    def close(self) -> None:
        if self._owns_fd and self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def pin(self, path: str | os.PathLike) -> None:
        _check(lib.bpf_obj_pin(self.fd, os.fsencode(path)), f"pinning program {self.name} at {path}")

    def test_run(self, data: bytes, ingress_ifindex: int = 0, repeat: int = 1,
                 out_size: int | None = None, live_frames: bool = False, batch_size: int = 0) -> TestRunResult:
        """BPF_PROG_TEST_RUN: run the program on `data` (`repeat` times), kernel-timed.

        `live_frames` (BPF_F_TEST_XDP_LIVE_FRAMES) makes an XDP program's verdicts real:
        each of the `repeat` frames, `batch_size` at a time (the kernel's default 64 when 0),
        is built from `data` in a page the kernel recycles, and a redirect really transmits
        it. There is no output frame then, and the kernel reports no duration. The kernel
        runs the program on the calling thread's CPU: pin the thread to choose it."""
        data_in = ffi.new("unsigned char[]", bytes(data))
        opts = ffi.new("struct bpf_test_run_opts *")
        opts.sz = ffi.sizeof("struct bpf_test_run_opts")
        opts.data_in, opts.data_size_in = data_in, len(data)
        data_out = ffi.NULL
        if live_frames:
            opts.flags, opts.batch_size = BPF_F_TEST_XDP_LIVE_FRAMES, batch_size
        else:
            size_out = out_size or len(data) + 512  # room for encapsulation headers
            data_out = ffi.new("unsigned char[]", size_out)
            opts.data_out, opts.data_size_out = data_out, size_out
        opts.repeat = repeat
        ctx = None
        if ingress_ifindex:
            ctx = ffi.new("struct xdp_md *", {"data_end": len(data), "ingress_ifindex": ingress_ifindex})
            opts.ctx_in, opts.ctx_size_in = ctx, ffi.sizeof("struct xdp_md")
        _check(lib.bpf_prog_test_run_opts(self.fd, opts), f"test run of program {self.name}")
        out = bytes(ffi.buffer(data_out, opts.data_size_out)) if data_out != ffi.NULL else b""
        return TestRunResult(opts.retval, out, opts.duration)


# --- objects -------------------------------------------------------------------

class BpfObject:
    """An ELF object: open, load (maps pinned by name under pin_root reused), inspect."""

    def __init__(self, path: str | os.PathLike, pin_root: str | os.PathLike | None = None):
        self.path = pathlib.Path(path)
        if not self.path.exists():
            raise BpfError(errno_mod.ENOENT, f"BPF object {self.path} (run `make bpf`)")
        self._keep = []  # cffi buffers libbpf points into must outlive the object
        opts = ffi.new("struct bpf_object_open_opts *")
        opts.sz = ffi.sizeof("struct bpf_object_open_opts")
        if pin_root is not None:
            root = ffi.new("char[]", os.fsencode(pin_root))
            self._keep.append(root)
            opts.pin_root_path = root
        self._obj = lib.bpf_object__open_file(os.fsencode(self.path), opts)
        if self._obj == ffi.NULL:  # libbpf 1.x: NULL with errno set
            raise BpfError(ffi.errno or errno_mod.EINVAL, f"opening BPF object {self.path}")
        self.programs: dict[str, Program] = {}
        self.maps: dict[str, Map] = {}
        self.loaded = False

    def pinned_maps(self) -> dict[str, tuple[pathlib.Path, list[str] | None]]:
        """Before load: every map this object pins by name, as {name: (pin path, how the
        pinned map differs from this object's declaration)}; the differences are None when
        nothing is pinned there yet, [] when libbpf will reuse the pin as it is."""
        found = {}
        m = lib.bpf_object__next_map(self._obj, ffi.NULL)
        while m != ffi.NULL:
            pin = lib.bpf_map__pin_path(m)
            if pin != ffi.NULL:
                path = pathlib.Path(os.fsdecode(ffi.string(pin)))
                found[path.name] = (path, self._pin_differences(m, path) if path.exists() else None)
            m = lib.bpf_object__next_map(self._obj, m)
        return found

    @staticmethod
    def _pin_differences(m, path: pathlib.Path) -> list[str]:
        want = ffi.new("struct bpf_map_def_view *")
        lib.dfxdp_map_def(m, want)
        fd = _get_pinned_fd(path)
        try:
            have = map_info(fd)
        finally:
            os.close(fd)
        return [f"{field} {getattr(have, field)} -> {getattr(want, field)}"
                for field in ("type", "key_size", "value_size", "max_entries", "map_flags")
                if getattr(have, field) != getattr(want, field)]

    def _each_program(self) -> Iterator[tuple[str, Any]]:
        prog = lib.bpf_object__next_program(self._obj, ffi.NULL)
        while prog != ffi.NULL:
            yield ffi.string(lib.bpf_program__name(prog)).decode(), prog
            prog = lib.bpf_object__next_program(self._obj, prog)

    def declared_programs(self) -> dict[str, tuple[int, str]]:
        """Before load: {program name: (BPF program type, ELF section, e.g. "xdp")}."""
        return {name: (lib.bpf_program__type(prog), ffi.string(lib.bpf_program__section_name(prog)).decode())
                for name, prog in self._each_program()}

    def load_only(self, name: str) -> None:
        """Before load: load just program `name`; the object's other programs stay out of the kernel."""
        for other, prog in self._each_program():
            if other != name:
                lib.bpf_program__set_autoload(prog, False)

    def load(self) -> "BpfObject":
        _capture.lines = []
        try:
            ret = lib.bpf_object__load(self._obj)
            text = "".join(_capture.lines)
        finally:
            _capture.lines = None
        if ret < 0:
            raise VerifierError(-ret, f"loading {self.path.name} was refused", text)
        self.loaded = True
        for name, prog in self._each_program():
            fd = lib.bpf_program__fd(prog)
            if fd >= 0:  # not a program left out by load_only
                self.programs[name] = Program(fd, name)
        m = lib.bpf_object__next_map(self._obj, ffi.NULL)
        while m != ffi.NULL:
            name = ffi.string(lib.bpf_map__name(m)).decode()
            if not name.startswith("."):  # .rodata/.bss internals are not our maps
                self.maps[name] = Map.of(lib.bpf_map__fd(m), owns_fd=False)
            m = lib.bpf_object__next_map(self._obj, m)
        return self

    def close(self) -> None:
        if self._obj is not None and self._obj != ffi.NULL:
            lib.bpf_object__close(self._obj)
        self._obj = None
        self.programs.clear()
        self.maps.clear()

    def __enter__(self) -> "BpfObject":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --- XDP attachment ------------------------------------------------------------

XDP_MODES = {"native": lib.XDP_FLAGS_DRV_MODE, "generic": lib.XDP_FLAGS_SKB_MODE}


def xdp_attach(ifindex: int, prog: Program, mode: str = "native", replace: Program | None = None) -> None:
    """Attach (or atomically replace `replace` with) prog on ifindex."""
    if mode not in XDP_MODES:
        raise ValueError(f"XDP mode {mode!r}: use native or generic")
    flags = XDP_MODES[mode]
    opts = ffi.new("struct bpf_xdp_attach_opts *")
    opts.sz = ffi.sizeof("struct bpf_xdp_attach_opts")
    if replace is not None:
        flags |= lib.XDP_FLAGS_REPLACE
        opts.old_prog_fd = replace.fd
    _check(lib.bpf_xdp_attach(ifindex, prog.fd, flags, opts),
           f"attaching {prog.name} to ifindex {ifindex} ({mode} XDP)")


def xdp_detach(ifindex: int, mode: str = "native") -> None:
    _check(lib.bpf_xdp_detach(ifindex, XDP_MODES[mode], ffi.NULL), f"detaching XDP from ifindex {ifindex}")


def xdp_query(ifindex: int) -> tuple[int, str]:
    """(program id, mode) attached to ifindex; (0, "none") when nothing is."""
    opts = ffi.new("struct bpf_xdp_query_opts *")
    opts.sz = ffi.sizeof("struct bpf_xdp_query_opts")
    _check(lib.bpf_xdp_query(ifindex, 0, opts), f"querying XDP on ifindex {ifindex}")
    mode = {0: "none", 1: "native", 2: "generic", 3: "hw"}.get(opts.attach_mode, "multi")
    return opts.prog_id, mode


def prog_by_id(prog_id: int) -> Program:
    fd = lib.bpf_prog_get_fd_by_id(prog_id)
    if fd < 0:
        raise BpfError(-fd if fd != -1 else ffi.errno, f"opening program id {prog_id}")
    return Program(fd, f"id{prog_id}", owns_fd=True)


@dataclass
class ProgInfo:
    type: int
    id: int
    name: str
    gpl_compatible: bool


def prog_info(prog: Program) -> ProgInfo:
    view = ffi.new("struct dfxdp_prog_view *")
    _check(lib.dfxdp_prog_info(prog.fd, view), f"reading info of program {prog.name}")
    return ProgInfo(view.type, view.id, ffi.string(view.name).decode(), bool(view.gpl_compatible))


def prog_array_set(prog_array: Map, slot: int, prog: Program) -> None:
    """Point a PROG_ARRAY slot at a program (atomic for the datapath)."""
    _check(lib.bpf_map_update_elem(prog_array.fd, ffi.new("__u32 *", slot), ffi.new("__u32 *", prog.fd), 0),
           f"setting slot {slot} of {prog_array.name} to {prog.name}")


def prog_array_clear(prog_array: Map, slot: int) -> None:
    ret = lib.bpf_map_delete_elem(prog_array.fd, ffi.new("__u32 *", slot))
    if ret < 0 and -ret != errno_mod.ENOENT:
        raise BpfError(-ret, f"clearing slot {slot} of {prog_array.name}")


# --- ring buffers ----------------------------------------------------------------

@ffi.def_extern()
def dfxdp_ring_sample(ctx, data, size: int) -> int:
    reader = ffi.from_handle(ctx)
    try:
        reader.on_record(bytes(ffi.buffer(data, size)))
    except Exception:  # noqa: BLE001 - one bad record must not stop the reader
        log.exception("ring buffer %s: handling a record failed", reader.name)
    return 0


class RingBuffer:
    """A BPF_MAP_TYPE_RINGBUF map read through libbpf: each poll() hands every
    waiting record, as bytes, to `on_record` (in the polling thread)."""

    def __init__(self, ring: Map, on_record: Callable[[bytes], None]):
        self.name = ring.name
        self.on_record = on_record
        self._handle = ffi.new_handle(self)  # kept alive as long as libbpf may call back
        out = ffi.new("struct ring_buffer **")
        _check(lib.dfxdp_ring_buffer_new(ring.fd, self._handle, out), f"reading ring buffer {ring.name}")
        self._rb = out[0]

    def poll(self, timeout_ms: int) -> int:
        """Wait up to timeout_ms for records, handle them; returns how many."""
        ret = lib.ring_buffer__poll(self._rb, timeout_ms)
        if ret == -errno_mod.EINTR:
            return 0
        return _check(ret, f"polling ring buffer {self.name}")

    def close(self) -> None:
        if self._rb is not None:
            lib.ring_buffer__free(self._rb)
            self._rb = None
