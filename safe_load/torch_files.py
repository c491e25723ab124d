"""PyTorch ``.pth`` files read without torch (``safe_load.load_torch``).

Both formats: the zip archive of torch >= 1.6 (``<name>/data.pkl`` plus one raw member
``<name>/data/<key>`` per storage, persistent ids ``('storage', type, key, location,
numel)``) and the legacy stream of torch < 1.6 (pickles of the magic number, protocol
version and sys info, the main pickle with persistent ids ``('storage', type, key,
location, numel, view)``, the list of storage keys, then per key an int64 element count
and the raw bytes). Only torch's storage classes and dtypes (recognised by name) and
``torch._utils._rebuild_tensor[_v2|_v3]`` / ``_rebuild_parameter[_with_state]`` are
allowed, each implemented here; torch is never imported.
"""
import collections
import struct
import zipfile
import zlib

import numpy as np

from .numpy_files import BASE_GLOBALS
from .unpickler import (Builder, Corrupt, Ctx, Marker, Refusal, Source, check_exists, check_shape, finish,
                         guard, is_int, named, printable, prod, scan, unpickle_at)

_TORCH_STORAGE_DTYPES = {
    "FloatStorage": "<f4", "DoubleStorage": "<f8", "HalfStorage": "<f2", "BFloat16Storage": "bfloat16",
    "LongStorage": "<i8", "IntStorage": "<i4", "ShortStorage": "<i2", "CharStorage": "i1",
    "ByteStorage": "u1", "BoolStorage": "?", "ComplexFloatStorage": "<c8", "ComplexDoubleStorage": "<c16",
    "UntypedStorage": "u1",
}
_TORCH_DTYPES = {
    "float32": "<f4", "float": "<f4", "float64": "<f8", "double": "<f8", "float16": "<f2", "half": "<f2",
    "bfloat16": "bfloat16", "int64": "<i8", "long": "<i8", "int32": "<i4", "int": "<i4",
    "int16": "<i2", "short": "<i2", "int8": "i1", "uint8": "u1", "bool": "?",
    "uint16": "<u2", "uint32": "<u4", "uint64": "<u8",
    "complex64": "<c8", "cfloat": "<c8", "complex128": "<c16", "cdouble": "<c16",
}
# dtypes torch has and numpy does not: recognised (so a file with them is not "unsafe"),
# refused as unsupported when a tensor of them is built
_TORCH_OTHER_DTYPES = ("float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz", "float8_e8m0fnu",
                       "float4_e2m1fn_x2", "complex32", "chalf", "qint8", "quint8", "qint32", "quint4x2",
                       "quint2x4", "bits1x8", "bits2x4", "bits4x2", "bits8", "bits16", "uint1", "uint2",
                       "uint3", "uint4", "uint5", "uint6", "uint7", "int1", "int2", "int3", "int4", "int5",
                       "int6", "int7")


def _torch_np_dtype(code, name):
    if code is None:
        raise Corrupt(f"tensors of dtype {name} are not supported (numpy has no such dtype)")
    return np.dtype("<u2") if code == "bfloat16" else np.dtype(code)


class _TorchStorage(Builder):
    """A storage named by a persistent id: its bytes come from the zip member or, in the
    legacy format, from after the pickles (``data`` is set by the loader)."""
    __slots__ = ("key", "code", "dtype", "numel", "data", "_fetch", "lent")

    def __init__(self, key, code, numel, fetch=None):
        for k, v in (("key", key), ("code", code), ("dtype", _torch_np_dtype(code, code)), ("numel", numel),
                     ("data", None), ("_fetch", fetch), ("lent", False)):
            object.__setattr__(self, k, v)

    def array(self):
        """The storage as a 1-D array of its dtype in the file's byte order (over a private
        writable buffer: the first tensor that is all of it may keep it, see _TorchTensor)."""
        if self.data is None:
            if self._fetch is None:
                raise Corrupt(f"storage {printable(self.key)} has no data")
            object.__setattr__(self, "data", self._fetch(self))
        return self.data

    def build(self, ctx, depth):
        return _torch_out(self.array().copy(), self.code)


class _TorchStorageView(Builder):
    """A view ``(root, offset, size)`` of a storage (legacy format), in elements."""
    __slots__ = ("root", "offset", "size", "code", "dtype")

    def __init__(self, root, offset, size):
        if not is_int(offset) or not is_int(size) or offset < 0 or size < 0:
            raise Corrupt("bad storage view")
        for k, v in (("root", root), ("offset", offset), ("size", size), ("code", root.code), ("dtype", root.dtype)):
            object.__setattr__(self, k, v)

    def array(self):
        base = self.root.array()
        if self.offset + self.size > base.shape[0]:
            raise Corrupt("storage view past the end of its storage")
        return base[self.offset:self.offset + self.size]

    def build(self, ctx, depth):
        return _torch_out(self.array().copy(), self.code)


def _torch_out(arr, code):
    """A storage/tensor array in native byte order; bfloat16 (held as uint16) as float32."""
    if code == "bfloat16":
        return (arr.astype(np.uint32) << 16).view(np.float32)
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return arr


class _TorchTensor(Builder):
    """``_rebuild_tensor[_v2|_v3]``: a strided view of a storage, materialised as a copy
    (or, for the first tensor that is all of its storage in C order, as that buffer: no two
    results share memory)."""
    __slots__ = ("storage", "offset", "size", "stride", "code")

    def __init__(self, storage, offset, size, stride, code=None):
        if not isinstance(storage, (_TorchStorage, _TorchStorageView)):
            raise Refusal("rebuild a torch tensor from something other than a storage")
        size = check_shape(size, "size")
        stride = check_shape(stride, "stride")
        if len(size) != len(stride) or not is_int(offset) or offset < 0:
            raise Corrupt("bad tensor size/stride/offset")
        for k, v in (("storage", storage), ("offset", offset), ("size", size), ("stride", stride),
                     ("code", code if code is not None else storage.code)):
            object.__setattr__(self, k, v)

    def build(self, ctx, depth):
        base = self.storage.array()
        if self.code != self.storage.code:  # _rebuild_tensor_v3: an untyped (byte) storage + a dtype
            dt = _torch_np_dtype(self.code, self.code)
            if base.dtype.itemsize != 1 or base.shape[0] % dt.itemsize:
                raise Corrupt("storage size is not a multiple of the tensor's element size")
            base = base.view(dt)
        n = base.shape[0]
        if prod(self.size) == 0:
            out = np.zeros(self.size, dtype=base.dtype)
        else:
            last = self.offset + sum((s - 1) * st for s, st in zip(self.size, self.stride))
            if last >= n:
                raise Corrupt(f"tensor of size {list(self.size)} reaches past its storage of {n} elements")
            item = base.dtype.itemsize
            whole = (self.offset == 0 and prod(self.size) == n and isinstance(self.storage, _TorchStorage)
                     and not self.storage.lent and self.stride == _c_strides(self.size) and base.flags.writeable)
            if whole:
                object.__setattr__(self.storage, "lent", True)
                out = base.reshape(self.size)
            else:
                out = np.lib.stride_tricks.as_strided(base[self.offset:], shape=self.size,
                                                      strides=[st * item for st in self.stride],
                                                      writeable=False).copy()
        return _torch_out(out, self.code)


def _c_strides(size):
    """The strides (in elements) of a C-contiguous tensor of ``size``."""
    out, step = [], 1
    for s in reversed(size):
        out.append(step)
        step *= max(s, 1)
    return tuple(reversed(out))


def _torch_dtype_code(d):
    if isinstance(d, Marker) and d.kind == "torch_dtype":
        return d.payload
    raise Refusal("rebuild a torch tensor with a dtype that is not a torch dtype")


def _check_hooks(hooks):
    if hooks is not None and not (isinstance(hooks, (dict, collections.OrderedDict)) and not hooks):
        raise Refusal("attach backward hooks to a torch tensor")


def _check_grad(requires_grad):
    if not isinstance(requires_grad, bool):
        raise Corrupt("bad requires_grad")


def _check_metadata(metadata):
    if metadata is not None and not isinstance(metadata, dict):
        raise Corrupt("bad tensor metadata")
    if metadata and any(metadata.values()):   # {'conj': True} / {'neg': True}: not plain data
        raise Corrupt("tensors with the conj/neg bit set are not supported")


def _t_rebuild_tensor(storage, offset, size, stride):
    return _TorchTensor(storage, offset, size, stride)


def _t_rebuild_tensor_v2(storage, offset, size, stride, requires_grad, backward_hooks, metadata=None):
    _check_grad(requires_grad)
    _check_hooks(backward_hooks)
    _check_metadata(metadata)
    return _TorchTensor(storage, offset, size, stride)


def _t_rebuild_tensor_v3(storage, offset, size, stride, requires_grad, backward_hooks, dtype, metadata=None):
    _check_grad(requires_grad)
    _check_hooks(backward_hooks)
    _check_metadata(metadata)
    code = _torch_dtype_code(dtype)
    if code is None:
        raise Corrupt(f"tensors of dtype torch.{dtype.name} are not supported (numpy has no such dtype)")
    return _TorchTensor(storage, offset, size, stride, code)


def _t_rebuild_parameter(data, requires_grad, backward_hooks):
    if not isinstance(data, _TorchTensor):
        raise Refusal("make a torch Parameter of something other than a tensor")
    _check_grad(requires_grad)
    _check_hooks(backward_hooks)
    return data


def _t_rebuild_parameter_with_state(data, requires_grad, backward_hooks, state):
    if state is not None and not isinstance(state, dict):
        raise Refusal("give a torch Parameter a state that is not plain data")
    return _t_rebuild_parameter(data, requires_grad, backward_hooks)


_TORCH_GLOBALS = dict(named({
    ("torch._utils", "_rebuild_tensor"): _t_rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _t_rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor_v3"): _t_rebuild_tensor_v3,
    ("torch._utils", "_rebuild_parameter"): _t_rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _t_rebuild_parameter_with_state,
}))
for _mod in ("torch", "torch.cuda", "torch.storage"):
    for _name, _code in _TORCH_STORAGE_DTYPES.items():
        if _name == "UntypedStorage" and _mod == "torch.cuda":
            continue
        _TORCH_GLOBALS[(_mod, _name)] = Marker("torch_storage", f"{_mod}.{_name}", _code)
for _name, _code in list(_TORCH_DTYPES.items()) + [(n, None) for n in _TORCH_OTHER_DTYPES]:
    _TORCH_GLOBALS[("torch", _name)] = Marker("torch_dtype", _name, _code, "torch." + _name)


# ----------------------------------------------------------------------------- reading .pth files

TORCH_MAGIC = 0x1950a86a20f9469cfc6c
_TORCH_PROTOCOL = 1001


def _storage_from_pid(pid, storages, fetch, legacy):
    if not isinstance(pid, tuple) or not pid:
        raise Corrupt("bad persistent id")
    typename = pid[0].decode("ascii") if isinstance(pid[0], bytes) else pid[0]
    if typename == "module":
        raise Refusal("rebuild a whole torch module (a saved model object, not a state dict)")
    if typename != "storage" or len(pid) != (6 if legacy else 5):
        raise Corrupt(f"unknown persistent id {printable(repr(pid[:1]), 60)}")
    stype, key, _location, numel = pid[1:5]
    if not (isinstance(stype, Marker) and stype.kind == "torch_storage"):
        raise Refusal("rebuild a torch storage of an unknown type")
    if isinstance(key, bytes):
        key = key.decode("ascii")
    if not isinstance(key, str) or not is_int(numel) or numel < 0:
        raise Corrupt("bad storage id")
    if key in storages:
        root = storages[key]
        if root.code != stype.payload and "u1" not in (root.code, stype.payload):
            raise Corrupt(f"storage {printable(key)} given two dtypes")
    else:
        root = storages[key] = _TorchStorage(key, stype.payload, numel, fetch)
    view = pid[5] if legacy else None
    if view is None:
        return root
    if not isinstance(view, tuple) or len(view) != 3:
        raise Corrupt("bad storage view id")
    view_key, offset, size = view
    vkey = ("view", view_key)
    if vkey not in storages:
        storages[vkey] = _TorchStorageView(root, offset, size)
    return storages[vkey]


def _read_member(path, zf, info):
    """The bytes of zip member ``info`` in a writable buffer, CRC checked; a stored member
    (torch writes storages uncompressed) is read straight from the file: one copy."""
    if info.compress_type != zipfile.ZIP_STORED:
        return bytearray(zf.read(info))
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        head = f.read(30)
        if len(head) != 30 or head[:4] != b"PK\x03\x04":
            raise Corrupt(f"bad zip entry {printable(info.filename)}")
        name_len, extra_len = struct.unpack("<HH", head[26:30])
        f.seek(info.header_offset + 30 + name_len + extra_len)
        buf = bytearray(info.file_size)
        if f.readinto(buf) != info.file_size:
            raise Corrupt(f"zip entry {printable(info.filename)} is truncated")
    if zlib.crc32(buf) != info.CRC:
        raise Corrupt(f"zip entry {printable(info.filename)} is damaged (CRC mismatch)")
    return buf


def _load_torch_zip(path, zf):
    names = zf.namelist()
    pkls = [n for n in names if n.endswith("data.pkl") and n.count("/") <= 1]
    if len(pkls) != 1:
        raise Corrupt("a zip archive without one data.pkl (not written by torch.save)")
    prefix = pkls[0][:-len("data.pkl")]
    order = "<"
    if prefix + "byteorder" in names:
        bo = zf.read(prefix + "byteorder").strip()
        if bo not in (b"little", b"big"):
            raise Corrupt("bad byteorder record")
        order = "<" if bo == b"little" else ">"

    def fetch(storage):
        name = f"{prefix}data/{storage.key}"
        try:
            info = zf.getinfo(name)
        except KeyError:
            raise Corrupt(f"storage {printable(storage.key)} missing from the archive") from None
        nbytes = storage.numel * storage.dtype.itemsize
        if info.file_size != nbytes:
            raise Corrupt(f"storage {printable(storage.key)} holds {info.file_size} bytes, not {nbytes}")
        if info.compress_type != zipfile.ZIP_STORED and nbytes > 1100 * info.compress_size + (1 << 16):
            raise Corrupt(f"storage {printable(storage.key)} claims an absurd size")
        dt = storage.dtype if storage.dtype.itemsize == 1 else storage.dtype.newbyteorder(order)
        return np.frombuffer(_read_member(path, zf, info), dtype=dt)

    storages = {}
    allowed = dict(BASE_GLOBALS)
    allowed.update(_TORCH_GLOBALS)
    info = zf.getinfo(pkls[0])
    if info.file_size > max(1 << 20, 1100 * info.compress_size):
        raise Corrupt("its data.pkl claims an absurd size")
    src = Source(data=zf.read(info), what=path)
    obj, _ = unpickle_at(src, 0, allowed, lambda pid: _storage_from_pid(pid, storages, fetch, False))
    return finish(obj, Ctx())


def _load_torch_legacy(path, src):
    plain = {}
    if scan(src.f, 0, src.size) > 64:   # the magic number's pickle is about 16 bytes
        raise Corrupt("it does not start with torch's magic number (not a .pth file?)")
    magic, pos = unpickle_at(src, 0, plain)
    if magic != TORCH_MAGIC:
        raise Corrupt("not a torch.save file (wrong magic number)")
    proto, pos = unpickle_at(src, pos, plain)
    if proto != _TORCH_PROTOCOL:
        raise Corrupt(f"unsupported torch serialization protocol {printable(repr(proto), 40)}")
    info, pos = unpickle_at(src, pos, plain)
    info = finish(info, Ctx())
    order = "<" if not isinstance(info, dict) or info.get("little_endian", True) else ">"
    storages = {}
    allowed = dict(BASE_GLOBALS)
    allowed.update(_TORCH_GLOBALS)
    obj, pos = unpickle_at(src, pos, allowed, lambda pid: _storage_from_pid(pid, storages, None, True))
    keys, pos = unpickle_at(src, pos, plain)
    keys = finish(keys, Ctx())
    if not isinstance(keys, list):
        raise Corrupt("bad storage key list")
    for key in keys:
        key = key.decode("ascii") if isinstance(key, bytes) else key
        storage = storages.get(key) if isinstance(key, str) else None
        if storage is None or storage.data is not None:
            raise Corrupt(f"storage key {printable(repr(key), 60)} unknown or repeated")
        head = src.read_at(pos, 8)
        if len(head) < 8:
            raise Corrupt("the storage data is truncated")
        count = struct.unpack(order + "q", head)[0]
        pos += 8
        nbytes = count * storage.dtype.itemsize
        if count != storage.numel or nbytes > src.size - pos:
            raise Corrupt(f"storage {printable(key)} of {storage.numel} elements holds {count} (truncated or damaged)")
        dt = storage.dtype if storage.dtype.itemsize == 1 else storage.dtype.newbyteorder(order)
        data = bytearray(nbytes)
        src.f.seek(pos)
        if src.f.readinto(data) != nbytes:
            raise Corrupt("the storage data is truncated")
        object.__setattr__(storage, "data", np.frombuffer(data, dtype=dt))
        pos += nbytes
    return finish(obj, Ctx())


def load_torch(path):
    """A PyTorch ``.pth`` file read without torch: tensors as numpy arrays.

    Both formats: the zip archive of torch >= 1.6 and the legacy stream of torch < 1.6
    (Monodepth2 / Depth Hints releases). The structure is what ``torch.load`` returns
    (an ``OrderedDict`` state dict, with Monodepth2's ``height``/``width``/``use_stereo``
    entries as ints/bools); each tensor or Parameter is a C-contiguous numpy array equal to
    ``tensor.numpy()`` (bfloat16 as float32). Anything but tensors, storages, dtypes and
    plain data is refused with :class:`UnsafeFileError`."""
    path = check_exists(path)

    def run():
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                return _load_torch_zip(path, zf)
        with Source(path) as src:
            if src.read_at(257, 5) == b"ustar":
                raise Corrupt("a tar archive (the format of torch < 0.4) is not supported")
            return _load_torch_legacy(path, src)
    return guard(path, "weights", "a file written by torch.save", run)
