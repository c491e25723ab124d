"""Loading weights, optimizer state, trainer state and arrays without running code.

``paddle.load`` is ``pickle.load`` (PaddlePaddle issue 77735), ``np.load(allow_pickle=True)``
and ``torch.load(weights_only=False)`` are too: a file with a pickle payload in it runs
whatever it asks for. Every loader here reads the same files with an allow-list unpickler
that builds plain data only (dicts, lists, tuples, numbers, strings, numpy arrays) and
refuses anything else with one-line :class:`UnsafeFileError`, before anything is called.
A damaged, truncated or foreign file raises one-line :class:`UnreadableFileError`; a
missing one :class:`utils.MissingFileError` (all three are :class:`utils.ToolkitError`).

API (all return numpy, never paddle/torch objects unless asked for):

- ``load_paddle(path, return_numpy=True)``: a ``.pdparams`` / ``.pdopt`` / any
  ``paddle.save`` pickle. Returns what ``paddle.load(path, return_numpy=True)`` returns
  (numpy arrays where ``paddle.load(path)`` gives Tensors; ints, floats, strings, lists and
  the ``LR_Scheduler`` dict as they are). ``return_numpy=False`` gives paddle Tensors in
  exactly the places ``paddle.load(path)`` does (imports paddle).
- ``load_legacy_trainer_state(path, paddle_rng="paddle")``: a ``trainer_state.pdstate``
  (a plain ``pickle.dump`` of ``Trainer.trainer_state()``). ``paddle_rng`` entries come
  back as real ``GeneratorState`` objects (``"paddle"``) or as :class:`PaddleGeneratorState`
  data (``"data"``, no paddle import).
- ``load_npy(path)`` / ``load_npz(path, keys=None)``: numpy files; object arrays (the
  published ``gt_depths.npz``) are read through the allow-list unpickler, everything else
  through ``np.load(allow_pickle=False)``. ``load_npz`` returns a dict ``{name: array}``.
- ``load_torch(path)``: a PyTorch ``.pth`` file (zip format of torch >= 1.6 and the legacy
  format of torch < 1.6) without importing torch. Tensors and Parameters come back as
  numpy arrays (C-contiguous copies that honour stride and offset, native byte order;
  bfloat16 as float32, exactly), storages as 1-D arrays, ``torch.float32``-style dtype
  values as the string ``"torch.float32"``; containers as ``torch.load`` gives them
  (``OrderedDict`` with its ``_metadata``).
- ``save_state(path_prefix, state)`` / ``load_state(path)``: trainer state as plain data:
  ``<prefix>.json`` plus ``<prefix>.npz`` for numpy arrays, each written atomically;
  see :func:`save_state`.
- ``safe_loads(data, what="<bytes>")``: the allow-list unpickler on bytes.

What the allow-list holds (exactly what real files of this project contain): the pickle
opcodes for builtin containers and scalars; ``collections.OrderedDict``; numpy's array,
dtype and scalar reconstructors (``numpy[._]core.multiarray._reconstruct`` / ``scalar``,
``numpy[._]core.numeric._frombuffer``, ``numpy.ndarray``, ``numpy.dtype``) for the
builtin numeric, bool, fixed-size string and object dtypes; ``builtins.tuple`` (Paddle
3 writes a Tensor as ``tuple((name, ndarray))``), ``list``, ``set``, ``frozenset``,
``bytes``, ``bytearray``, ``complex``; ``_codecs.encode`` with latin-1 (how protocol 2
writes bytes); Paddle's ``GeneratorState`` (RNG state in trainer state files), rebuilt as
data; and for ``.pth`` files torch's storage classes, dtypes and
``torch._utils._rebuild_tensor[_v2|_v3]`` / ``_rebuild_parameter[_with_state]``,
implemented here. None of these is the real callable: each is a small function that
checks its arguments and builds data. numpy's own ``ndarray.__setstate__`` is never
handed unchecked state (an object array whose element list is shorter than its shape
crashes the interpreter there), and no real object is left on the unpickler's stack where
a ``BUILD`` opcode could reach it.
"""
import base64
import collections
import hashlib
import io
import json
import math
import os
import pickle
import pickletools
import struct
import zipfile

import numpy as np

from utils import MissingFileError, ToolkitError

__all__ = [
    "UnsafeFileError", "UnreadableFileError", "PaddleGeneratorState",
    "safe_loads", "load_paddle", "load_legacy_trainer_state", "load_npy", "load_npz",
    "load_torch", "save_state", "load_state", "MAX_DEPTH",
]

MAX_DEPTH = 100          # containers nested deeper than this are refused
_MAX_NDIM = 64           # numpy's limit
_MAX_LISTED_NAME = 120   # characters of a name taken from a file, in a message
_TRUST = "only load files from sources you trust, or re-export them"


class UnsafeFileError(ToolkitError):
    """A file that asks to run code (or to build an object outside the allow-list)."""


class UnreadableFileError(ToolkitError):
    """A file that is damaged, truncated, of another format or absurd in its declared sizes."""


class _Refusal(Exception):
    """Internal: the file asks for something outside the allow-list (``asked`` completes
    'it asks to ...')."""

    def __init__(self, asked):
        super().__init__(asked)
        self.asked = asked


class _Corrupt(Exception):
    """Internal: the file is inconsistent (reason in the message)."""


def _shown(text, limit=_MAX_LISTED_NAME):
    """``text`` (a name read from a file, a path) as one printable line."""
    text = str(text)
    out = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)
    return out if len(out) <= limit else out[:limit] + "..."


def _one_line(exc):
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return _shown(" ".join(lines), 200) if lines else type(exc).__name__


def _unsafe(what, asked, kind):
    return UnsafeFileError(f"refusing to load {_shown(what, 300)}: it asks to {asked} (a file with code in it, "
                           f"not plain {kind}); {_TRUST}")


def _unreadable(what, reason, expected):
    return UnreadableFileError(f"cannot read {_shown(what, 300)}: {reason}; the file is damaged or truncated, "
                               f"or not {expected}")


# ----------------------------------------------------------------------------- building blocks
#
# Everything the unpickler can reach is one of these: a _Safe callable (a checked
# reconstructor), a _Marker value, one of the _Builder placeholders, or plain builtin data.
# None has a __dict__ or accepts attributes, so BUILD can only go through a checked
# __setstate__. _finish() turns placeholders into real values after unpickling.


class _Inert:
    """No __dict__, no attribute setting, no state: BUILD on it is refused."""
    __slots__ = ()

    def __setattr__(self, name, value):
        raise _Corrupt(f"unexpected attribute {_shown(name)} on a {type(self).__name__}")

    def __setstate__(self, state):
        raise _Corrupt(f"unexpected state for a {type(self).__name__}")


class _Safe(_Inert):
    """A checked reconstructor the allow-list returns for one global."""
    __slots__ = ("_fn", "_name")

    def __init__(self, name, fn):
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_fn", fn)

    def __call__(self, *args, **kwargs):
        return self._fn(*args, **kwargs)

    def __repr__(self):
        return f"<safe {self._name}>"


class _Marker(tuple):
    """An immutable named value (torch dtypes and storage classes, numpy.ndarray)."""
    __slots__ = ()

    def __new__(cls, kind, name, payload=None):
        return tuple.__new__(cls, (kind, name, payload))

    kind = property(lambda self: self[0])
    name = property(lambda self: self[1])
    payload = property(lambda self: self[2])

    def __setstate__(self, state):
        raise _Corrupt(f"unexpected state for {self.name}")

    def __reduce__(self):  # never pickled again
        raise TypeError("not picklable")


class _Builder(_Inert):
    """A placeholder turned into its value by ``build(ctx, depth)`` after unpickling."""
    __slots__ = ()


class _Built(_Builder):
    """A value already made (kept off the unpickler's stack)."""
    __slots__ = ("value",)

    def __init__(self, value):
        object.__setattr__(self, "value", value)

    def build(self, ctx, depth):
        return self.value


def _is_int(x):
    return isinstance(x, int) and not isinstance(x, bool)


def _check_shape(shape, what="shape"):
    if not isinstance(shape, (tuple, list)) or len(shape) > _MAX_NDIM:
        raise _Corrupt(f"bad array {what} {_shown(repr(shape), 60)}")
    for s in shape:
        if not _is_int(s) or s < 0:
            raise _Corrupt(f"bad array {what} {_shown(repr(shape), 60)}")
    return tuple(int(s) for s in shape)


def _prod(shape):
    n = 1
    for s in shape:
        n *= s
    return n


# --- numpy ------------------------------------------------------------------------------------

_NP_RECONSTRUCT = np.array(0).__reduce__()[0]       # numpy's _reconstruct, whatever its module
_SIMPLE_KINDS = "biufc"                             # bool, int, uint, float, complex
_NDARRAY = _Marker("class", "numpy.ndarray")


def _resolve_dtype(d):
    if isinstance(d, _DtypeBuilder):
        return d.dtype()
    raise _Refusal("build a numpy array with a dtype that is not a numpy dtype")


def _plain_dtype(spec):
    """np.dtype for a simple dtype string ('<f4', 'i8', 'O8', 'U5', 'b1', ...), else _Refusal."""
    if isinstance(spec, bytes):
        spec = spec.decode("latin1")
    if not isinstance(spec, str) or len(spec) > 12:
        raise _Refusal(f"build a numpy dtype from {_shown(repr(spec), 60)}")
    try:
        dt = np.dtype(spec)
    except (TypeError, ValueError):
        raise _Corrupt(f"unknown numpy dtype {_shown(spec)}") from None
    if dt.fields is not None or dt.subdtype is not None or dt.metadata:
        raise _Refusal(f"build a structured numpy dtype {_shown(spec)}")
    if dt.kind not in _SIMPLE_KINDS + "OUS":
        raise _Refusal(f"build a numpy dtype of kind {dt.kind!r}")
    return dt


class _DtypeBuilder(_Builder):
    """numpy.dtype(spec, align, copy) + BUILD(state): only the byte order is taken from the state."""
    __slots__ = ("_dt", "_order", "_set")

    def __init__(self, dt):
        object.__setattr__(self, "_dt", dt)
        object.__setattr__(self, "_order", None)
        object.__setattr__(self, "_set", False)

    def __setstate__(self, state):
        if self._set:
            raise _Corrupt("a numpy dtype given two states")
        # (version, byteorder, subdescr, names, fields, elsize, alignment, flags[, metadata])
        if not isinstance(state, tuple) or len(state) not in (8, 9) or state[0] not in (3, 4):
            raise _Corrupt("bad numpy dtype state")
        order = state[1]
        if isinstance(order, bytes):
            order = order.decode("latin1")
        if order not in ("<", ">", "|", "=") or any(x is not None for x in state[2:5]):
            raise _Refusal("build a structured or unusual numpy dtype")
        if len(state) == 9 and state[8] is not None:
            raise _Refusal("build a numpy dtype with metadata")
        object.__setattr__(self, "_order", order)
        object.__setattr__(self, "_set", True)

    def dtype(self):
        dt = self._dt
        if self._order in ("<", ">") and dt.byteorder not in ("|",):
            dt = dt.newbyteorder(self._order)
        return dt

    def build(self, ctx, depth):
        return self.dtype()


def _np_dtype(spec, align=False, copy=True):
    if not isinstance(align, bool) or not isinstance(copy, bool):
        raise _Corrupt("bad numpy dtype arguments")
    return _DtypeBuilder(_plain_dtype(spec))


def _raw_bytes(data):
    if isinstance(data, str):         # Python 2 pickles, read with encoding='latin1'
        return data.encode("latin1")
    if isinstance(data, (bytes, bytearray)):
        return data
    raise _Corrupt("array data is not bytes")


class _ArrayBuilder(_Builder):
    """numpy's _reconstruct(ndarray, (0,), b'b') + BUILD(state), checked before numpy sees it."""
    __slots__ = ("_state",)

    def __init__(self):
        object.__setattr__(self, "_state", None)

    def __setstate__(self, state):
        if self._state is not None:
            raise _Corrupt("a numpy array given two states")
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise _Corrupt("bad numpy array state")
        if len(state) == 5:
            if not _is_int(state[0]):
                raise _Corrupt("bad numpy array state")
            state = state[1:]
        shape, dtype, fortran, data = state
        shape = _check_shape(shape)
        dt = _resolve_dtype(dtype)
        if not isinstance(fortran, (bool, int)):
            raise _Corrupt("bad numpy array state")
        n = _prod(shape)
        if dt.hasobject:
            if not isinstance(data, list) or len(data) != n:
                raise _Corrupt("object array of {} elements holds {}".format(
                    n, len(data) if isinstance(data, list) else type(data).__name__))
        else:
            data = _raw_bytes(data)
            if len(data) != n * dt.itemsize:
                raise _Corrupt(f"array of shape {shape} and dtype {dt} holds {len(data)} bytes")
        object.__setattr__(self, "_state", (shape, dt, bool(fortran), data))

    def build(self, ctx, depth):
        if self._state is None:
            raise _Corrupt("a numpy array without data")
        shape, dt, fortran, data = self._state
        if dt.hasobject:
            flat = np.empty(len(data), dtype=object)
            for i, v in enumerate(data):
                flat[i] = _finish(v, ctx, depth + 1)
            arr = flat.reshape(shape)   # the pickle lists elements in C order
            return np.asfortranarray(arr) if fortran and arr.ndim > 1 else arr
        arr = _NP_RECONSTRUCT(np.ndarray, (0,), b"b")
        arr.__setstate__((1, shape, dt, fortran, bytes(data) if isinstance(data, bytearray) else data))
        # (checked above: the sizes agree and there are no objects in it)
        return arr


def _np_reconstruct(subtype, shape, typecode):
    if subtype is not _NDARRAY:
        shown = (f"{subtype.__module__}.{subtype.__qualname__}" if isinstance(subtype, type)
                 else getattr(subtype, "name", None) or getattr(subtype, "_name", None) or type(subtype).__name__)
        raise _Refusal(f"build a numpy array of class {_shown(shown)}")
    if not isinstance(shape, tuple) or not isinstance(typecode, (bytes, str)):
        raise _Corrupt("bad numpy array reconstruction")
    return _ArrayBuilder()


def _np_scalar(dtype, data=None):
    dt = _resolve_dtype(dtype)
    if dt.hasobject:
        raise _Refusal("build a numpy object scalar")
    raw = _raw_bytes(data)
    if len(raw) != dt.itemsize:
        raise _Corrupt(f"numpy {dt} scalar of {len(raw)} bytes")
    return _Built(np.frombuffer(raw, dtype=dt)[0])


def _np_frombuffer(buf, dtype, shape, order):
    if isinstance(buf, pickle.PickleBuffer):
        buf = bytes(buf.raw())
    raw = _raw_bytes(buf)
    dt = _resolve_dtype(dtype)
    shape = _check_shape(shape)
    if dt.hasobject or order not in ("C", "F"):
        raise _Refusal("build a numpy object array from a buffer")
    if len(raw) != _prod(shape) * dt.itemsize:
        raise _Corrupt(f"array of shape {shape} and dtype {dt} holds {len(raw)} bytes")
    if isinstance(raw, bytes):
        raw = bytearray(raw)   # writable, as numpy's own _frombuffer of an in-band buffer
    return _Built(np.frombuffer(raw, dtype=dt).reshape(shape, order=order))


# --- builtins ------------------------------------------------------------------------------

_DATA_TYPES = (str, bytes, bytearray, int, float, complex, bool, type(None))


def _container_arg(args, name):
    if len(args) == 0:
        return ()
    if len(args) == 1 and type(args[0]) in (list, tuple, set, frozenset):
        return args[0]
    raise _Refusal(f"call builtins.{name} on something other than a list or tuple")


def _b_tuple(*args):
    return tuple(_container_arg(args, "tuple"))


def _b_list(*args):
    return list(_container_arg(args, "list"))


def _b_set(*args):
    return set(_container_arg(args, "set"))


def _b_frozenset(*args):
    return frozenset(_container_arg(args, "frozenset"))


def _b_complex(real=0.0, imag=0.0):
    if not all(isinstance(x, (int, float)) for x in (real, imag)):
        raise _Refusal("call builtins.complex on something other than numbers")
    return complex(real, imag)


def _b_bytes(*args):
    if args:
        raise _Refusal("call builtins.bytes with arguments")
    return b""


def _b_bytearray(*args):
    if not args:
        return bytearray()
    if len(args) == 1 and isinstance(args[0], bytes):
        return bytearray(args[0])
    if len(args) == 2 and isinstance(args[0], str) and args[1] in ("latin-1", "latin1"):
        return bytearray(args[0].encode("latin1"))
    raise _Refusal("call builtins.bytearray on something other than bytes")


def _codecs_encode(obj, encoding="utf-8", errors="strict"):
    if isinstance(obj, str) and encoding in ("latin1", "latin-1") and errors == "strict":
        return obj.encode("latin1")
    raise _Refusal("call _codecs.encode other than for latin-1 bytes")


# --- paddle RNG state -----------------------------------------------------------------------


class PaddleGeneratorState:
    """The data of one ``paddle.get_rng_state()`` entry (a pybind ``GeneratorState``):
    ``device`` (-1 on CPU), ``seed`` (its current_seed), ``offset`` (its thread offset) and
    ``state`` (the engine state, bytes: a text dump of a mt19937_64; None when absent).
    ``to_paddle()`` makes the real object (``paddle.set_rng_state([...])`` takes a list)."""
    __slots__ = ("device", "seed", "offset", "state", "_set")
    _PADDLE_NAMES = ("paddle.base.libpaddle", "paddle.fluid.libpaddle", "paddle.fluid.core_avx",
                     "paddle.fluid.core_noavx", "paddle.base.core", "paddle.fluid.core")

    def __new__(cls, *args, **kwargs):   # NEWOBJ of a pickle calls this alone, then BUILD
        self = object.__new__(cls)
        for k, v in (("device", -1), ("seed", 0), ("offset", 0), ("state", None), ("_set", False)):
            object.__setattr__(self, k, v)
        return self

    def __init__(self, device=-1, seed=0, offset=0, state=None):
        self._assign((device, seed, offset) + (() if state is None else (list(state),)))
        object.__setattr__(self, "_set", True)

    def _assign(self, tup):
        if not isinstance(tup, tuple) or len(tup) not in (3, 4) or not all(_is_int(x) for x in tup[:3]):
            raise _Corrupt("bad paddle GeneratorState")
        state = None
        if len(tup) == 4:
            raw = tup[3]
            if not isinstance(raw, list) or len(raw) > (1 << 20) or not all(_is_int(c) and 0 <= c < 256 for c in raw):
                raise _Corrupt("bad paddle GeneratorState engine state")
            state = bytes(raw)
        for k, v in zip(("device", "seed", "offset", "state"), tuple(tup[:3]) + (state,)):
            object.__setattr__(self, k, v)

    def __setattr__(self, name, value):
        raise _Corrupt(f"unexpected attribute {_shown(name)} on a GeneratorState")

    def __setstate__(self, state):      # the pickle of a real GeneratorState: NEWOBJ + BUILD
        if self._set:
            raise _Corrupt("a GeneratorState given two states")
        self._assign(state)
        object.__setattr__(self, "_set", True)

    def as_tuple(self):
        """The tuple ``GeneratorState.__getstate__()`` gives (and ``__setstate__`` takes)."""
        base = (self.device, self.seed, self.offset)
        return base if self.state is None else base + (list(self.state),)

    def to_paddle(self):
        """A real ``paddle`` GeneratorState with this state (imports paddle)."""
        from paddle.base.libpaddle import GeneratorState
        gs = GeneratorState.__new__(GeneratorState)
        gs.__setstate__(self.as_tuple())
        return gs

    @classmethod
    def from_paddle(cls, gs):
        """The data of a real GeneratorState."""
        tup = gs.__getstate__()
        return cls(*tup[:3], state=tup[3] if len(tup) > 3 else None)

    def __eq__(self, other):
        return isinstance(other, PaddleGeneratorState) and self.as_tuple() == other.as_tuple()

    def __hash__(self):
        return hash((self.device, self.seed, self.offset, self.state))

    def __repr__(self):
        return (f"PaddleGeneratorState(device={self.device}, seed={self.seed}, offset={self.offset}, "
                f"state=<{len(self.state or b'')} bytes>)")


# --- torch ----------------------------------------------------------------------------------

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
        raise _Corrupt(f"tensors of dtype {name} are not supported (numpy has no such dtype)")
    return np.dtype("<u2") if code == "bfloat16" else np.dtype(code)


class _TorchStorage(_Builder):
    """A storage named by a persistent id: its bytes come from the zip member or, in the
    legacy format, from after the pickles (``data`` is set by the loader)."""
    __slots__ = ("key", "code", "dtype", "numel", "data", "_fetch")

    def __init__(self, key, code, numel, fetch=None):
        for k, v in (("key", key), ("code", code), ("dtype", _torch_np_dtype(code, code)), ("numel", numel),
                     ("data", None), ("_fetch", fetch)):
            object.__setattr__(self, k, v)

    def array(self):
        """The storage as a 1-D little-endian array of its dtype (read-only view)."""
        if self.data is None:
            if self._fetch is None:
                raise _Corrupt(f"storage {_shown(self.key)} has no data")
            object.__setattr__(self, "data", self._fetch(self))
        return self.data

    def build(self, ctx, depth):
        return _torch_out(self.array().copy(), self.code)


class _TorchStorageView(_Builder):
    """A view ``(root, offset, size)`` of a storage (legacy format), in elements."""
    __slots__ = ("root", "offset", "size", "code", "dtype")

    def __init__(self, root, offset, size):
        if not _is_int(offset) or not _is_int(size) or offset < 0 or size < 0:
            raise _Corrupt("bad storage view")
        for k, v in (("root", root), ("offset", offset), ("size", size), ("code", root.code), ("dtype", root.dtype)):
            object.__setattr__(self, k, v)

    def array(self):
        base = self.root.array()
        if self.offset + self.size > base.shape[0]:
            raise _Corrupt("storage view past the end of its storage")
        return base[self.offset:self.offset + self.size]

    def build(self, ctx, depth):
        return _torch_out(self.array().copy(), self.code)


def _torch_out(arr, code):
    """A storage/tensor array in native byte order; bfloat16 (held as uint16) as float32."""
    if code == "bfloat16":
        return (arr.astype(np.uint32) << 16).view(np.float32)
    if arr.dtype.byteorder not in ("=", "|"):
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return arr


class _TorchTensor(_Builder):
    """``_rebuild_tensor[_v2|_v3]``: a strided view of a storage, materialised as a copy."""
    __slots__ = ("storage", "offset", "size", "stride", "code")

    def __init__(self, storage, offset, size, stride, code=None):
        if not isinstance(storage, (_TorchStorage, _TorchStorageView)):
            raise _Refusal("rebuild a torch tensor from something other than a storage")
        size = _check_shape(size, "size")
        stride = _check_shape(stride, "stride")
        if len(size) != len(stride) or not _is_int(offset) or offset < 0:
            raise _Corrupt("bad tensor size/stride/offset")
        for k, v in (("storage", storage), ("offset", offset), ("size", size), ("stride", stride),
                     ("code", code if code is not None else storage.code)):
            object.__setattr__(self, k, v)

    def build(self, ctx, depth):
        base = self.storage.array()
        if self.code != self.storage.code:  # _rebuild_tensor_v3: an untyped (byte) storage + a dtype
            dt = _torch_np_dtype(self.code, self.code)
            if base.dtype.itemsize != 1 or base.shape[0] % dt.itemsize:
                raise _Corrupt("storage size is not a multiple of the tensor's element size")
            base = base.view(dt)
        n = base.shape[0]
        if _prod(self.size) == 0:
            out = np.zeros(self.size, dtype=base.dtype)
        else:
            last = self.offset + sum((s - 1) * st for s, st in zip(self.size, self.stride))
            if last >= n:
                raise _Corrupt(f"tensor of size {list(self.size)} reaches past its storage of {n} elements")
            item = base.dtype.itemsize
            out = np.lib.stride_tricks.as_strided(base[self.offset:], shape=self.size,
                                                  strides=[st * item for st in self.stride],
                                                  writeable=False).copy()
        return _torch_out(out, self.code)


def _torch_dtype_code(d):
    if isinstance(d, _Marker) and d.kind == "torch_dtype":
        return d.payload
    raise _Refusal("rebuild a torch tensor with a dtype that is not a torch dtype")


def _check_hooks(hooks):
    if hooks is not None and not (isinstance(hooks, (dict, collections.OrderedDict)) and not hooks):
        raise _Refusal("attach backward hooks to a torch tensor")


def _check_grad(requires_grad):
    if not isinstance(requires_grad, bool):
        raise _Corrupt("bad requires_grad")


def _check_metadata(metadata):
    if metadata is not None and not isinstance(metadata, dict):
        raise _Corrupt("bad tensor metadata")
    if metadata and any(metadata.values()):   # {'conj': True} / {'neg': True}: not plain data
        raise _Corrupt("tensors with the conj/neg bit set are not supported")


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
        raise _Corrupt(f"tensors of dtype torch.{dtype.name} are not supported (numpy has no such dtype)")
    return _TorchTensor(storage, offset, size, stride, code)


def _t_rebuild_parameter(data, requires_grad, backward_hooks):
    if not isinstance(data, _TorchTensor):
        raise _Refusal("make a torch Parameter of something other than a tensor")
    _check_grad(requires_grad)
    _check_hooks(backward_hooks)
    return data


def _t_rebuild_parameter_with_state(data, requires_grad, backward_hooks, state):
    if state is not None and not isinstance(state, dict):
        raise _Refusal("give a torch Parameter a state that is not plain data")
    return _t_rebuild_parameter(data, requires_grad, backward_hooks)


# --- the allow-lists -------------------------------------------------------------------------


def _named(table):
    return {key: (_Safe(".".join(key), fn) if callable(fn) and not isinstance(fn, (type, _Marker)) else fn)
            for key, fn in table.items()}


_BASE_GLOBALS = _named({
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "tuple"): _b_tuple, ("builtins", "list"): _b_list, ("builtins", "set"): _b_set,
    ("builtins", "frozenset"): _b_frozenset, ("builtins", "complex"): _b_complex,
    ("builtins", "bytes"): _b_bytes, ("builtins", "bytearray"): _b_bytearray,
    ("_codecs", "encode"): _codecs_encode,
    ("numpy", "ndarray"): _NDARRAY, ("numpy", "dtype"): _np_dtype,
    ("numpy.core.multiarray", "_reconstruct"): _np_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _np_reconstruct,
    ("numpy.core.multiarray", "scalar"): _np_scalar, ("numpy._core.multiarray", "scalar"): _np_scalar,
    ("numpy.core.numeric", "_frombuffer"): _np_frombuffer, ("numpy._core.numeric", "_frombuffer"): _np_frombuffer,
})
_PADDLE_RNG_GLOBALS = {(m, "GeneratorState"): PaddleGeneratorState for m in PaddleGeneratorState._PADDLE_NAMES}

_TORCH_GLOBALS = dict(_named({
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
        _TORCH_GLOBALS[(_mod, _name)] = _Marker("torch_storage", f"{_mod}.{_name}", _code)
for _name, _code in list(_TORCH_DTYPES.items()) + [(n, None) for n in _TORCH_OTHER_DTYPES]:
    _TORCH_GLOBALS[("torch", _name)] = _Marker("torch_dtype", _name, _code)

_PY2_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}


class _SafeUnpickler(pickle.Unpickler):
    """pickle.Unpickler that hands out only the entries of ``allowed`` for globals."""

    def __init__(self, file, allowed, persistent=None):
        super().__init__(file, encoding="latin1")
        self._allowed = allowed
        self._persistent = persistent

    def find_class(self, module, name):
        module = _PY2_MODULES.get(module, module)
        try:
            return self._allowed[(module, name)]
        except (KeyError, TypeError):
            raise _Refusal(f"run {_shown(module)}.{_shown(name)}") from None

    def persistent_load(self, pid):
        if self._persistent is None:
            raise _Corrupt("a persistent id in a file that should have none")
        return self._persistent(pid)


# ----------------------------------------------------------------------------- pre-scan
#
# Before the unpickler runs: every declared length fits in the file and memo indices stay
# below the number of opcodes read (CPython grows its memo table to the largest index, so
# a 12-byte file could otherwise ask for gigabytes).

_OPS = {}
for _op in pickletools.opcodes:
    _OPS[ord(_op.code.encode("latin1"))] = (_op.name, _op.arg.n if _op.arg else 0,
                                            _op.arg.name if _op.arg else "")
_LEN_PREFIX = {pickletools.TAKEN_FROM_ARGUMENT1: ("<B", 1), pickletools.TAKEN_FROM_ARGUMENT4: ("<i", 4),
               pickletools.TAKEN_FROM_ARGUMENT4U: ("<I", 4), pickletools.TAKEN_FROM_ARGUMENT8U: ("<Q", 8)}


def _scan(f, pos, end):
    """Check the pickle at offset ``pos`` of file object ``f`` (``end`` bytes long) without
    building anything; return the offset just after its STOP."""
    f.seek(pos)
    read, ops = f.read, 0
    while True:
        c = read(1)
        if not c:
            raise _Corrupt("the pickle ends before its STOP opcode (truncated)")
        try:
            name, n, argname = _OPS[c[0]]
        except KeyError:
            raise _Corrupt(f"byte 0x{c[0]:02x} at offset {f.tell() - 1} is not a pickle opcode") from None
        ops += 1
        if n > 0:
            arg = read(n)
            if len(arg) < n:
                raise _Corrupt("the pickle is truncated")
            if name == "BINPUT" or name == "LONG_BINPUT":
                idx = arg[0] if n == 1 else struct.unpack("<I", arg)[0]
                if idx > ops:
                    raise _Corrupt(f"memo index {idx} is absurd")
            elif name == "FRAME" and struct.unpack("<Q", arg)[0] > end - f.tell():
                raise _Corrupt("a pickle frame is longer than the file (truncated)")
        elif n == pickletools.UP_TO_NEWLINE:
            for _ in range(2 if argname == "stringnl_noescape_pair" else 1):
                line = f.readline()
                if not line.endswith(b"\n"):
                    raise _Corrupt("the pickle is truncated")
            if name == "PUT":
                try:
                    idx = int(line)
                except ValueError:
                    raise _Corrupt("bad memo index") from None
                if idx > ops or idx < 0:
                    raise _Corrupt(f"memo index {idx} is absurd")
        elif n in _LEN_PREFIX:
            fmt, size = _LEN_PREFIX[n]
            arg = read(size)
            if len(arg) < size:
                raise _Corrupt("the pickle is truncated")
            length = struct.unpack(fmt, arg)[0]
            if length < 0 or length > end - f.tell():
                raise _Corrupt(f"a {name} of {length} bytes does not fit in the file (truncated or absurd)")
            f.seek(length, 1)
        if name == "STOP":
            return f.tell()


# ----------------------------------------------------------------------------- finishing


class _Ctx:
    __slots__ = ("done", "active")

    def __init__(self):
        self.done = {}
        self.active = set()


_ATOMIC = frozenset((str, bytes, bytearray, int, float, complex, bool, type(None)))


def _finish(obj, ctx, depth=0):
    """The value of an unpickled structure: placeholders built, containers checked."""
    t = type(obj)
    if t in _ATOMIC:
        return obj
    oid = id(obj)
    if oid in ctx.done:
        return ctx.done[oid]
    if depth > MAX_DEPTH:
        raise _Corrupt(f"containers nested deeper than {MAX_DEPTH} levels")
    if oid in ctx.active:
        raise _Corrupt("a structure that contains itself")
    ctx.active.add(oid)
    try:
        if isinstance(obj, _Builder):
            res = obj.build(ctx, depth)
        elif t is list:
            for i, v in enumerate(obj):
                obj[i] = _finish(v, ctx, depth + 1)
            res = obj
        elif t is tuple:
            res = tuple(_finish(v, ctx, depth + 1) for v in obj)
        elif t is dict or t is collections.OrderedDict:
            if t is collections.OrderedDict:   # BUILD may have set attributes (torch's _metadata)
                extra = object.__getattribute__(obj, "__dict__")
                for k in list(extra):
                    if not isinstance(k, str) or hasattr(collections.OrderedDict, k):
                        raise _Refusal(f"set attribute {_shown(k)} of an OrderedDict")
                    extra[k] = _finish(extra[k], ctx, depth + 1)
            # the class's own methods: an instance attribute can not stand in for them
            items = [(_finish(k, ctx, depth + 1), _finish(v, ctx, depth + 1)) for k, v in t.items(obj)]
            t.clear(obj)
            for k, v in items:
                t.__setitem__(obj, k, v)
            res = obj
        elif t is set or t is frozenset:
            res = t(_finish(v, ctx, depth + 1) for v in obj)
        elif t is PaddleGeneratorState:
            if not obj._set:
                raise _Corrupt("a GeneratorState without state")
            res = obj
        elif isinstance(obj, _Marker) and obj.kind == "torch_dtype":
            res = "torch." + obj.name
        else:
            shown = obj.name if isinstance(obj, _Marker) else getattr(obj, "_name", None) or t.__name__
            raise _Corrupt(f"it holds a {_shown(shown)} as a value")
    finally:
        ctx.active.discard(oid)
    ctx.done[oid] = res
    return res


# ----------------------------------------------------------------------------- reading


class _Source:
    """A file (or given bytes) to read pickles from, with a display name and size."""

    def __init__(self, path=None, data=None, what=None):
        self.what = what or (os.fspath(path) if path is not None else "<bytes>")
        if data is not None:
            self.f = io.BytesIO(data)
            self.size = len(data)
            return
        path = os.fspath(path)
        if os.path.isdir(path):
            raise _Corrupt("it is a folder")
        self.f = open(path, "rb")
        self.size = os.fstat(self.f.fileno()).st_size

    def read_at(self, pos, n):
        self.f.seek(pos)
        return self.f.read(n)

    def close(self):
        self.f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _unpickle_at(src, pos, allowed, persistent=None):
    """(object, end offset) of the pickle at ``pos`` of ``src``; placeholders not yet built."""
    if src.read_at(pos, 4) == b"PK\x03\x04":
        raise _Corrupt("it is a zip archive, not a pickle (a PyTorch .pth or a .npz file?)")
    end = _scan(src.f, pos, src.size)
    src.f.seek(pos)
    obj = _SafeUnpickler(src.f, allowed, persistent).load()
    return obj, end


def _guard(what, kind, expected, fn):
    """Run ``fn()``; every failure becomes one-line UnsafeFileError / UnreadableFileError."""
    try:
        return fn()
    except ToolkitError:
        raise
    except _Refusal as exc:
        raise _unsafe(what, exc.asked, kind) from None
    except _Corrupt as exc:
        raise _unreadable(what, str(exc), expected) from None
    except FileNotFoundError:
        raise MissingFileError(f"file not found ({_shown(what, 300)}): check the path") from None
    except OSError as exc:
        raise _unreadable(what, f"{type(exc).__name__}: {exc.strerror or _one_line(exc)}", expected) from None
    except MemoryError:
        raise _unreadable(what, "it asks for more memory than there is", expected) from None
    except RecursionError:
        raise _unreadable(what, "it is nested too deeply", expected) from None
    except Exception as exc:  # noqa: BLE001  (a corrupt file can raise anything from the unpickler)
        raise _unreadable(what, f"{type(exc).__name__}: {_one_line(exc)}", expected) from None


def _check_exists(path):
    path = os.fspath(path)
    if not os.path.exists(path):
        raise MissingFileError(f"file not found ({_shown(path, 300)}): check the path")
    return path


def safe_loads(data, what="<bytes>", kind="data"):
    """The allow-list unpickler on ``data`` (bytes): plain data and numpy arrays only."""
    def run():
        src = _Source(data=bytes(data), what=what)
        obj, _ = _unpickle_at(src, 0, _BASE_GLOBALS)
        return _finish(obj, _Ctx())
    return _guard(what, kind, "a pickle of plain data", run)


# ----------------------------------------------------------------------------- paddle

_NAME_TABLE = "StructuredToParameterName@@"
_BIG_PARAMS = "UnpackBigParamInfor@@"  # typos: disable-line  (Paddle's spelling)


def _is_name_tuple(obj):
    return isinstance(obj, tuple) and len(obj) == 2 and isinstance(obj[0], str) and isinstance(obj[1], np.ndarray)


def _contains(obj, cond):
    if cond(obj):
        return True
    if type(obj) in (dict, collections.OrderedDict):
        return any(_contains(v, cond) for v in obj.values())
    if type(obj) in (list, tuple):
        return any(_contains(v, cond) for v in obj)
    return False


def _convert(obj, cond, fn):
    """Paddle's _parse_every_object: replace what ``cond`` holds for with ``fn(obj)``."""
    if cond(obj):
        return fn(obj)
    t = type(obj)
    if t in (dict, collections.OrderedDict):
        for k in list(obj.keys()):
            obj[k] = _convert(obj[k], cond, fn)
        return obj
    if t is list:
        return [_convert(v, cond, fn) for v in obj]
    if t is tuple:
        return tuple(_convert(v, cond, fn) for v in obj)
    if t is set:
        return set(_convert(v, cond, fn) for v in obj)
    return obj


def _pack_big_params(obj):
    """Join the slices ``paddle.save`` (protocol 2/3) cuts parameters above 1 GiB into."""
    info = obj.get(_BIG_PARAMS)
    if info is None:
        return obj
    if not isinstance(info, dict):
        raise _Corrupt(f"bad {_BIG_PARAMS} entry")
    removes = []
    for key, value in info.items():
        try:
            slices = [obj[part] for part in value["slices"]]
            shape = _check_shape(tuple(value["OriginShape"]))
            obj[key] = np.concatenate(slices).reshape(shape)
        except (KeyError, TypeError, ValueError) as exc:
            raise _Corrupt(f"bad {_BIG_PARAMS} entry for {_shown(key)} ({_one_line(exc)})") from None
        removes += value["slices"]
    for key in removes:
        obj.pop(key, None)
    obj.pop(_BIG_PARAMS)
    return obj


def _paddle_result(obj, return_numpy):
    """What paddle.load makes of the unpickled object (io.load / _parse_load_result)."""
    if return_numpy:
        def to_tensor(arr, name=None):
            return arr
    else:
        import paddle

        def to_tensor(arr, name=None):
            t = paddle.to_tensor(arr)
            if name:
                t.name = name
            return t
    if isinstance(obj, dict):
        obj = _pack_big_params(obj)
        if _NAME_TABLE in obj:
            table = obj.pop(_NAME_TABLE)
            if not isinstance(table, dict):
                raise _Corrupt(f"bad {_NAME_TABLE} entry")
            for key, name in table.items():
                if key in obj and isinstance(obj[key], np.ndarray):
                    obj[key] = to_tensor(obj[key], name if isinstance(name, str) else None)
            return obj
    if _contains(obj, _is_name_tuple):   # paddle >= 2.1: a Tensor is (name, ndarray)
        return _convert(obj, _is_name_tuple, lambda t: to_tensor(t[1], t[0]))
    if return_numpy:
        return obj
    return _convert(obj, lambda x: isinstance(x, np.ndarray), to_tensor)


def load_paddle(path, return_numpy=True):
    """A safe ``paddle.load(path)`` for ``.pdparams`` / ``.pdopt`` / ``paddle.save`` pickles.

    Returns what ``paddle.load(path, return_numpy=True)`` returns: a state dict of numpy
    arrays (the non-tensor entries, e.g. ``height``/``width``/``use_stereo`` or Adam's
    ``LR_Scheduler`` dict, as they were saved). ``return_numpy=False`` makes paddle Tensors
    (named as saved) wherever ``paddle.load(path)`` would. Refused or unreadable files raise
    one-line :class:`UnsafeFileError` / :class:`UnreadableFileError`."""
    path = _check_exists(path)

    def run():
        with _Source(path) as src:
            obj, _ = _unpickle_at(src, 0, _BASE_GLOBALS)
        if obj == _TORCH_MAGIC and type(obj) is int:
            raise _Corrupt("it is a PyTorch .pth file (convert it with tools/convert_torch_weights.py)")
        return _paddle_result(_finish(obj, _Ctx()), return_numpy)
    return _guard(path, "weights", "a file written by paddle.save", run)


def load_legacy_trainer_state(path, paddle_rng="paddle"):
    """A ``trainer_state.pdstate`` (pickle of ``Trainer.trainer_state()``) read safely.

    Returns the dict as ``pickle.load`` gives it: ``epoch``/``batch_in_epoch``/``step``,
    ``scheduler``, ``numpy_rng`` (the ``np.random.get_state()`` tuple), ``python_rng``
    (``random.getstate()``), ``val_position``, ``world_size``, ``opt``, and ``paddle_rng``:
    a list of real paddle ``GeneratorState`` objects (``paddle_rng="paddle"``, ready for
    ``paddle.set_rng_state``) or of :class:`PaddleGeneratorState` (``"data"``)."""
    if paddle_rng not in ("paddle", "data"):
        raise ValueError("paddle_rng must be 'paddle' or 'data'")
    path = _check_exists(path)
    allowed = dict(_BASE_GLOBALS)
    allowed.update(_PADDLE_RNG_GLOBALS)

    def run():
        with _Source(path) as src:
            obj, _ = _unpickle_at(src, 0, allowed)
        return _finish(obj, _Ctx())
    state = _guard(path, "trainer state", "a trainer_state.pdstate written by train.py", run)
    if paddle_rng == "paddle":
        state = _rng_to_paddle(state, path)
    return state


def _rng_to_paddle(obj, what):
    """Replace PaddleGeneratorState values (top level and in lists) by real ones."""
    def conv(v):
        if isinstance(v, PaddleGeneratorState):
            try:
                return v.to_paddle()
            except (RuntimeError, ValueError, TypeError) as exc:
                raise _unreadable(what, f"its paddle RNG state is invalid ({_one_line(exc)})",
                                  "a trainer state written by train.py") from None
        if type(v) is list:
            return [conv(x) for x in v]
        if type(v) is dict:
            return {k: conv(x) for k, x in v.items()}
        return v
    return conv(obj)


# ----------------------------------------------------------------------------- numpy files


def _npy_header(f):
    fmt = np.lib.format
    version = fmt.read_magic(f)
    if version == (1, 0):
        return fmt.read_array_header_1_0(f)
    if version == (2, 0):
        return fmt.read_array_header_2_0(f)
    raise _Corrupt(f".npy format version {version[0]}.{version[1]} is not supported")


def _read_npy_stream(f, size, what):
    """The array of the .npy in file object ``f`` (at its start) of ``size`` bytes."""
    start = f.tell()
    shape, fortran, dtype = _npy_header(f)
    header_end = f.tell()
    if not dtype.hasobject:
        if header_end - start + _prod(shape) * dtype.itemsize > size:
            raise _Corrupt(f"its header promises {shape} {dtype} but the data is shorter (truncated)")
        f.seek(start)
        return np.lib.format.read_array(f, allow_pickle=False)
    payload = f.read(size - (header_end - start))
    src = _Source(data=payload, what=what)
    obj, _ = _unpickle_at(src, 0, _BASE_GLOBALS)
    arr = _finish(obj, _Ctx())
    if not isinstance(arr, np.ndarray) or arr.shape != tuple(shape) or not arr.dtype.hasobject:
        raise _Corrupt(f"its object array does not match its header ({shape} {dtype})")
    return arr


def load_npy(path):
    """A ``.npy`` file: plain arrays via ``np.load(allow_pickle=False)``, object arrays via
    the allow-list unpickler. Returns the array."""
    path = _check_exists(path)

    def run():
        with open(path, "rb") as f:
            return _read_npy_stream(f, os.fstat(f.fileno()).st_size, path)
    return _guard(path, "data", "a .npy file", run)


def load_npz(path, keys=None):
    """The arrays of a ``.npz`` file as a dict ``{name: array}`` (names without ``.npy``;
    ``keys``, a name or a list of names, limits it to those, missing ones are a
    ToolkitError). Object arrays (Monodepth2's ``gt_depths.npz`` stores ``data`` as an
    object array of per-image float32 maps) go through the allow-list unpickler."""
    path = _check_exists(path)
    wanted = None if keys is None else ([keys] if isinstance(keys, str) else list(keys))

    def run():
        try:
            zf = zipfile.ZipFile(path)
        except zipfile.BadZipFile:
            raise _Corrupt("it is not a zip archive") from None
        with zf:
            members = {}
            for info in zf.infolist():
                name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
                members[name] = info
            if wanted is not None:
                missing = [k for k in wanted if k not in members]
                if missing:
                    raise ToolkitError(f"{_shown(path, 300)} holds no {', '.join(map(_shown, missing))} "
                                       f"(it holds {', '.join(map(_shown, sorted(members))) or 'nothing'}): "
                                       "is it the right file?")
            out = {}
            for name in (wanted if wanted is not None else members):
                info = members[name]
                if info.file_size > max(1 << 16, 1100 * info.compress_size):
                    raise _Corrupt(f"member {_shown(info.filename)} claims an absurd size")
                with zf.open(info) as raw:
                    if info.filename.endswith(".npy"):
                        out[name] = _read_npy_stream(raw, info.file_size, f"{path} (member {info.filename})")
                    else:
                        out[name] = raw.read()
            return out
    return _guard(path, "data", "a .npz file", run)


# ----------------------------------------------------------------------------- torch

_TORCH_MAGIC = 0x1950a86a20f9469cfc6c
_TORCH_PROTOCOL = 1001


def _storage_from_pid(pid, storages, fetch, legacy):
    if not isinstance(pid, tuple) or not pid:
        raise _Corrupt("bad persistent id")
    typename = pid[0].decode("ascii") if isinstance(pid[0], bytes) else pid[0]
    if typename == "module":
        raise _Refusal("rebuild a whole torch module (a saved model object, not a state dict)")
    if typename != "storage" or len(pid) != (6 if legacy else 5):
        raise _Corrupt(f"unknown persistent id {_shown(repr(pid[:1]), 60)}")
    stype, key, _location, numel = pid[1:5]
    if not (isinstance(stype, _Marker) and stype.kind == "torch_storage"):
        raise _Refusal("rebuild a torch storage of an unknown type")
    if isinstance(key, bytes):
        key = key.decode("ascii")
    if not isinstance(key, str) or not _is_int(numel) or numel < 0:
        raise _Corrupt("bad storage id")
    if key in storages:
        root = storages[key]
        if root.code != stype.payload and "u1" not in (root.code, stype.payload):
            raise _Corrupt(f"storage {_shown(key)} given two dtypes")
    else:
        root = storages[key] = _TorchStorage(key, stype.payload, numel, fetch)
    view = pid[5] if legacy else None
    if view is None:
        return root
    if not isinstance(view, tuple) or len(view) != 3:
        raise _Corrupt("bad storage view id")
    view_key, offset, size = view
    vkey = ("view", view_key)
    if vkey not in storages:
        storages[vkey] = _TorchStorageView(root, offset, size)
    return storages[vkey]


def _load_torch_zip(path, zf):
    names = zf.namelist()
    pkls = [n for n in names if n.endswith("data.pkl") and n.count("/") <= 1]
    if len(pkls) != 1:
        raise _Corrupt("a zip archive without one data.pkl (not written by torch.save)")
    prefix = pkls[0][:-len("data.pkl")]
    order = "<"
    if prefix + "byteorder" in names:
        bo = zf.read(prefix + "byteorder").strip()
        if bo not in (b"little", b"big"):
            raise _Corrupt("bad byteorder record")
        order = "<" if bo == b"little" else ">"

    def fetch(storage):
        name = f"{prefix}data/{storage.key}"
        try:
            info = zf.getinfo(name)
        except KeyError:
            raise _Corrupt(f"storage {_shown(storage.key)} missing from the archive") from None
        nbytes = storage.numel * storage.dtype.itemsize
        if info.file_size != nbytes:
            raise _Corrupt(f"storage {_shown(storage.key)} holds {info.file_size} bytes, not {nbytes}")
        if info.compress_type != zipfile.ZIP_STORED and nbytes > 1100 * info.compress_size + (1 << 16):
            raise _Corrupt(f"storage {_shown(storage.key)} claims an absurd size")
        dt = storage.dtype if storage.dtype.itemsize == 1 else storage.dtype.newbyteorder(order)
        return np.frombuffer(zf.read(info), dtype=dt)

    storages = {}
    allowed = dict(_BASE_GLOBALS)
    allowed.update(_TORCH_GLOBALS)
    info = zf.getinfo(pkls[0])
    if info.file_size > max(1 << 20, 1100 * info.compress_size):
        raise _Corrupt("its data.pkl claims an absurd size")
    src = _Source(data=zf.read(info), what=path)
    obj, _ = _unpickle_at(src, 0, allowed, lambda pid: _storage_from_pid(pid, storages, fetch, False))
    return _finish(obj, _Ctx())


def _load_torch_legacy(path, src):
    plain = {}
    if _scan(src.f, 0, src.size) > 64:   # the magic number's pickle is about 16 bytes
        raise _Corrupt("it does not start with torch's magic number (not a .pth file?)")
    magic, pos = _unpickle_at(src, 0, plain)
    if magic != _TORCH_MAGIC:
        raise _Corrupt("not a torch.save file (wrong magic number)")
    proto, pos = _unpickle_at(src, pos, plain)
    if proto != _TORCH_PROTOCOL:
        raise _Corrupt(f"unsupported torch serialization protocol {_shown(repr(proto), 40)}")
    info, pos = _unpickle_at(src, pos, plain)
    info = _finish(info, _Ctx())
    order = "<" if not isinstance(info, dict) or info.get("little_endian", True) else ">"
    storages = {}
    allowed = dict(_BASE_GLOBALS)
    allowed.update(_TORCH_GLOBALS)
    obj, pos = _unpickle_at(src, pos, allowed, lambda pid: _storage_from_pid(pid, storages, None, True))
    keys, pos = _unpickle_at(src, pos, plain)
    keys = _finish(keys, _Ctx())
    if not isinstance(keys, list):
        raise _Corrupt("bad storage key list")
    for key in keys:
        key = key.decode("ascii") if isinstance(key, bytes) else key
        storage = storages.get(key) if isinstance(key, str) else None
        if storage is None or storage.data is not None:
            raise _Corrupt(f"storage key {_shown(repr(key), 60)} unknown or repeated")
        head = src.read_at(pos, 8)
        if len(head) < 8:
            raise _Corrupt("the storage data is truncated")
        count = struct.unpack(order + "q", head)[0]
        pos += 8
        nbytes = count * storage.dtype.itemsize
        if count != storage.numel or nbytes > src.size - pos:
            raise _Corrupt(f"storage {_shown(key)} of {storage.numel} elements holds {count} (truncated or damaged)")
        dt = storage.dtype if storage.dtype.itemsize == 1 else storage.dtype.newbyteorder(order)
        data = src.read_at(pos, nbytes)
        if len(data) < nbytes:
            raise _Corrupt("the storage data is truncated")
        object.__setattr__(storage, "data", np.frombuffer(data, dtype=dt))
        pos += nbytes
    return _finish(obj, _Ctx())


def load_torch(path):
    """A PyTorch ``.pth`` file read without torch: tensors as numpy arrays.

    Both formats: the zip archive of torch >= 1.6 and the legacy stream of torch < 1.6
    (Monodepth2 / Depth Hints releases). The structure is what ``torch.load`` returns
    (an ``OrderedDict`` state dict, with Monodepth2's ``height``/``width``/``use_stereo``
    entries as ints/bools); each tensor or Parameter is a C-contiguous numpy array equal to
    ``tensor.numpy()`` (bfloat16 as float32). Anything but tensors, storages, dtypes and
    plain data is refused with :class:`UnsafeFileError`."""
    path = _check_exists(path)

    def run():
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                return _load_torch_zip(path, zf)
        with _Source(path) as src:
            if src.read_at(257, 5) == b"ustar":
                raise _Corrupt("a tar archive (the format of torch < 0.4) is not supported")
            return _load_torch_legacy(path, src)
    return _guard(path, "weights", "a file written by torch.save", run)


# ----------------------------------------------------------------------------- plain-data state

STATE_FORMAT = "monodepth-hints-state"
STATE_VERSION = 1
_TAGS = ("__tuple__", "__odict__", "__items__", "__ndarray__", "__npscalar__", "__float__", "__bytes__",
         "__paddle_generator_state__")


def _is_paddle_generator_state(obj):
    t = type(obj)
    return t.__name__ == "GeneratorState" and (t.__module__ or "").startswith("paddle")


class _Encoder:
    def __init__(self):
        self.arrays = {}

    def __call__(self, obj, depth=0):
        if depth > MAX_DEPTH:
            raise TypeError(f"state nested deeper than {MAX_DEPTH} levels")
        enc = lambda v: self(v, depth + 1)  # noqa: E731
        if obj is None or isinstance(obj, (bool, str)):
            return obj
        if _is_int(obj):
            return int(obj)
        if isinstance(obj, float):
            return obj if math.isfinite(obj) else {"__float__": repr(obj)}
        if isinstance(obj, (bytes, bytearray)):
            return {"__bytes__": base64.b64encode(bytes(obj)).decode("ascii")}
        if isinstance(obj, np.generic) and not isinstance(obj, np.ndarray):
            if obj.dtype.kind not in "biuf":
                raise TypeError(f"cannot store a numpy {obj.dtype} scalar")
            return {"__npscalar__": obj.dtype.str, "value": self(obj.item(), depth + 1)}
        if isinstance(obj, np.ndarray) or (hasattr(obj, "numpy") and type(obj).__name__ == "Tensor"):
            arr = np.asarray(obj.numpy() if not isinstance(obj, np.ndarray) else obj)
            if arr.dtype.hasobject or arr.dtype.kind not in _SIMPLE_KINDS + "US":
                raise TypeError(f"cannot store an array of dtype {arr.dtype} as plain data")
            key = f"a{len(self.arrays)}"
            self.arrays[key] = arr
            return {"__ndarray__": key}
        if isinstance(obj, PaddleGeneratorState) or _is_paddle_generator_state(obj):
            g = obj if isinstance(obj, PaddleGeneratorState) else PaddleGeneratorState.from_paddle(obj)
            out = {"device": g.device, "seed": g.seed, "offset": g.offset}
            if g.state is not None:
                try:
                    out["state_text"] = g.state.decode("ascii")
                except UnicodeDecodeError:
                    out["state_base64"] = base64.b64encode(g.state).decode("ascii")
            return {"__paddle_generator_state__": out}
        if isinstance(obj, tuple):
            return {"__tuple__": [enc(v) for v in obj]}
        if isinstance(obj, list):
            return [enc(v) for v in obj]
        if isinstance(obj, collections.OrderedDict):
            return {"__odict__": [[enc(k), enc(v)] for k, v in obj.items()]}
        if isinstance(obj, dict):
            if all(isinstance(k, str) and not (k.startswith("__") and k.endswith("__")) for k in obj):
                return {k: enc(v) for k, v in obj.items()}
            return {"__items__": [[enc(k), enc(v)] for k, v in obj.items()]}
        raise TypeError(f"cannot store a {type(obj).__module__}.{type(obj).__qualname__} as plain data")


def save_state(path_prefix, state):
    """Write ``state`` as plain data: ``<prefix>.json`` and, when it holds numpy arrays,
    ``<prefix>.npz``; returns the JSON path.

    Holds dicts, lists, tuples, ints, floats (inf/nan too), strings, bytes, bools, None,
    numpy arrays (bool/int/float/complex/str) and scalars, paddle Tensors (stored, and read
    back, as numpy arrays) and paddle ``GeneratorState`` objects (``paddle.get_rng_state()``
    entries: device, seed, offset and the engine state, which restores exactly). Anything
    else is a TypeError. Each file is written to a temp file and renamed into place, the
    ``.npz`` first; the JSON records the ``.npz``'s SHA-256, so a JSON with an ``.npz``
    of another save is refused on loading, never mixed."""
    from utils import atomic_write_bytes, atomic_write_text
    prefix = os.fspath(path_prefix)
    if prefix.endswith(".json"):
        prefix = prefix[:-5]
    encoder = _Encoder()
    body = encoder(state)
    doc = {"format": STATE_FORMAT, "version": STATE_VERSION, "arrays": None, "arrays_sha256": None, "state": body}
    if encoder.arrays:
        buf = io.BytesIO()
        np.savez(buf, **encoder.arrays)
        data = buf.getvalue()
        atomic_write_bytes(prefix + ".npz", data)
        doc["arrays"] = os.path.basename(prefix) + ".npz"
        doc["arrays_sha256"] = hashlib.sha256(data).hexdigest()
    text = json.dumps(doc, allow_nan=False, separators=(",", ":"))
    return atomic_write_text(prefix + ".json", text + "\n")


class _Decoder:
    def __init__(self, arrays):
        self.arrays = arrays

    def __call__(self, obj):
        dec = self
        if isinstance(obj, list):
            return [dec(v) for v in obj]
        if not isinstance(obj, dict):
            return obj
        tag = next((k for k in obj if k in _TAGS), None)
        if tag is None:
            return {k: dec(v) for k, v in obj.items()}
        val = obj[tag]
        if tag == "__tuple__":
            return tuple(dec(v) for v in val)
        if tag == "__odict__":
            return collections.OrderedDict((dec(k), dec(v)) for k, v in val)
        if tag == "__items__":
            return {dec(k): dec(v) for k, v in val}
        if tag == "__float__":
            if val not in ("inf", "-inf", "nan"):
                raise _Corrupt(f"bad float {_shown(val)}")
            return float(val)
        if tag == "__bytes__":
            return base64.b64decode(val, validate=True)
        if tag == "__ndarray__":
            if val not in self.arrays:
                raise _Corrupt(f"array {_shown(val)} missing from the .npz")
            return self.arrays[val]
        if tag == "__npscalar__":
            dt = _plain_dtype(val)
            if dt.kind not in "biuf":
                raise _Corrupt(f"bad scalar dtype {_shown(val)}")
            return np.array(obj["value"], dtype=dt)[()]
        if tag == "__paddle_generator_state__":
            if "state_text" in val:
                raw = val["state_text"].encode("ascii")
            elif "state_base64" in val:
                raw = base64.b64decode(val["state_base64"], validate=True)
            else:
                raw = None
            return PaddleGeneratorState(val["device"], val["seed"], val["offset"], raw)
        raise _Corrupt(f"unknown tag {_shown(tag)}")


def load_state(path, paddle_rng="paddle"):
    """Read what :func:`save_state` wrote (``path``: the ``.json`` file or the prefix).

    Tuples, OrderedDicts, numpy arrays and scalars come back as saved (paddle Tensors as
    numpy arrays); GeneratorStates as real paddle objects (``paddle_rng="paddle"``, ready
    for ``paddle.set_rng_state``) or :class:`PaddleGeneratorState` data (``"data"``)."""
    if paddle_rng not in ("paddle", "data"):
        raise ValueError("paddle_rng must be 'paddle' or 'data'")
    path = os.fspath(path)
    if not path.endswith(".json"):
        path += ".json"
    path = _check_exists(path)
    expected = "a state file written by safe_load.save_state"

    def run():
        with open(path, "rb") as f:
            doc = json.loads(f.read().decode("utf-8"))
        if not isinstance(doc, dict) or doc.get("format") != STATE_FORMAT:
            raise _Corrupt("it is not a saved state")
        if doc.get("version") != STATE_VERSION:
            raise _Corrupt(f"state format version {_shown(doc.get('version'))} is not supported")
        arrays = {}
        if doc.get("arrays"):
            npz = os.path.join(os.path.dirname(path), os.path.basename(str(doc["arrays"])))
            if not os.path.isfile(npz):
                raise _Corrupt(f"its arrays file {_shown(npz)} is missing")
            with open(npz, "rb") as f:
                data = f.read()
            if hashlib.sha256(data).hexdigest() != doc.get("arrays_sha256"):
                raise _Corrupt(f"its arrays file {_shown(npz)} belongs to another save")
            arrays = load_npz(npz)
        return _Decoder(arrays)(doc.get("state"))
    state = _guard(path, "data", expected, run)
    if paddle_rng == "paddle":
        state = _rng_to_paddle(state, path)
    return state
