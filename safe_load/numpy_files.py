"""numpy and builtins reconstructors for the allow-list unpickler, and safe .npy/.npz reading.

What numpy's pickles name (``numpy[._]core.multiarray._reconstruct`` / ``scalar``,
``numpy[._]core.numeric._frombuffer``, ``numpy.ndarray``, ``numpy.dtype``) and what
pickles of builtin data name (``builtins.tuple`` and co., ``_codecs.encode`` of protocol 2
bytes) map to the checked stand-ins here: simple dtypes only (bool, int, uint, float,
complex, fixed-size str/bytes, object), array state checked before numpy sees it
(numpy's own ``ndarray.__setstate__`` reads past an object array's element list when it
is shorter than the shape, and crashes the interpreter).
"""
import collections
import os
import pickle
import zipfile

import numpy as np

from .unpickler import (Builder, Built, Corrupt, Ctx, Marker, Refusal, Source, check_exists, check_shape,
                         finish, guard, is_int, named, printable, prod, unpickle_at)
from utils import ToolkitError

_NP_RECONSTRUCT = np.array(0).__reduce__()[0]       # numpy's _reconstruct, whatever its module
SIMPLE_KINDS = "biufc"                             # bool, int, uint, float, complex
_NDARRAY = Marker("class", "numpy.ndarray")


def _resolve_dtype(d):
    if isinstance(d, _DtypeBuilder):
        return d.dtype()
    raise Refusal("build a numpy array with a dtype that is not a numpy dtype")


def plain_dtype(spec):
    """np.dtype for a simple dtype string ('<f4', 'i8', 'O8', 'U5', 'b1', ...), else Refusal."""
    if isinstance(spec, bytes):
        spec = spec.decode("latin1")
    if not isinstance(spec, str) or len(spec) > 12:
        raise Refusal(f"build a numpy dtype from {printable(repr(spec), 60)}")
    try:
        dt = np.dtype(spec)
    except (TypeError, ValueError):
        raise Corrupt(f"unknown numpy dtype {printable(spec)}") from None
    if dt.fields is not None or dt.subdtype is not None or dt.metadata:
        raise Refusal(f"build a structured numpy dtype {printable(spec)}")
    if dt.kind not in SIMPLE_KINDS + "OUS":
        raise Refusal(f"build a numpy dtype of kind {dt.kind!r}")
    return dt


class _DtypeBuilder(Builder):
    """numpy.dtype(spec, align, copy) + BUILD(state): only the byte order is taken from the state."""
    __slots__ = ("_dt", "_order", "_set")

    def __init__(self, dt):
        object.__setattr__(self, "_dt", dt)
        object.__setattr__(self, "_order", None)
        object.__setattr__(self, "_set", False)

    def __setstate__(self, state):
        if self._set:
            raise Corrupt("a numpy dtype given two states")
        # (version, byteorder, subdescr, names, fields, elsize, alignment, flags[, metadata])
        if not isinstance(state, tuple) or len(state) not in (8, 9) or state[0] not in (3, 4):
            raise Corrupt("bad numpy dtype state")
        order = state[1]
        if isinstance(order, bytes):
            order = order.decode("latin1")
        if order not in ("<", ">", "|", "=") or any(x is not None for x in state[2:5]):
            raise Refusal("build a structured or unusual numpy dtype")
        if len(state) == 9 and state[8] is not None:
            raise Refusal("build a numpy dtype with metadata")
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
        raise Corrupt("bad numpy dtype arguments")
    return _DtypeBuilder(plain_dtype(spec))


def _raw_bytes(data):
    if isinstance(data, str):         # Python 2 pickles, read with encoding='latin1'
        return data.encode("latin1")
    if isinstance(data, (bytes, bytearray)):
        return data
    raise Corrupt("array data is not bytes")


class _ArrayBuilder(Builder):
    """numpy's _reconstruct(ndarray, (0,), b'b') + BUILD(state), checked before numpy sees it."""
    __slots__ = ("_state",)

    def __init__(self):
        object.__setattr__(self, "_state", None)

    def __setstate__(self, state):
        if self._state is not None:
            raise Corrupt("a numpy array given two states")
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise Corrupt("bad numpy array state")
        if len(state) == 5:
            if not is_int(state[0]):
                raise Corrupt("bad numpy array state")
            state = state[1:]
        shape, dtype, fortran, data = state
        shape = check_shape(shape)
        dt = _resolve_dtype(dtype)
        if not isinstance(fortran, (bool, int)):
            raise Corrupt("bad numpy array state")
        n = prod(shape)
        if dt.hasobject:
            if not isinstance(data, list) or len(data) != n:
                raise Corrupt("object array of {} elements holds {}".format(
                    n, len(data) if isinstance(data, list) else type(data).__name__))
        else:
            data = _raw_bytes(data)
            if len(data) != n * dt.itemsize:
                raise Corrupt(f"array of shape {shape} and dtype {dt} holds {len(data)} bytes")
        object.__setattr__(self, "_state", (shape, dt, bool(fortran), data))

    def build(self, ctx, depth):
        if self._state is None:
            raise Corrupt("a numpy array without data")
        shape, dt, fortran, data = self._state
        if dt.hasobject:
            flat = np.empty(len(data), dtype=object)
            for i, v in enumerate(data):
                flat[i] = finish(v, ctx, depth + 1)
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
        raise Refusal(f"build a numpy array of class {printable(shown)}")
    if not isinstance(shape, tuple) or not isinstance(typecode, (bytes, str)):
        raise Corrupt("bad numpy array reconstruction")
    return _ArrayBuilder()


def _np_scalar(dtype, data=None):
    dt = _resolve_dtype(dtype)
    if dt.hasobject:
        raise Refusal("build a numpy object scalar")
    raw = _raw_bytes(data)
    if len(raw) != dt.itemsize:
        raise Corrupt(f"numpy {dt} scalar of {len(raw)} bytes")
    return Built(np.frombuffer(raw, dtype=dt)[0])


def _np_frombuffer(buf, dtype, shape, order):
    if isinstance(buf, pickle.PickleBuffer):
        buf = bytes(buf.raw())
    raw = _raw_bytes(buf)
    dt = _resolve_dtype(dtype)
    shape = check_shape(shape)
    if dt.hasobject or order not in ("C", "F"):
        raise Refusal("build a numpy object array from a buffer")
    if len(raw) != prod(shape) * dt.itemsize:
        raise Corrupt(f"array of shape {shape} and dtype {dt} holds {len(raw)} bytes")
    if isinstance(raw, bytes):
        raw = bytearray(raw)   # writable, as numpy's own _frombuffer of an in-band buffer
    return Built(np.frombuffer(raw, dtype=dt).reshape(shape, order=order))


# ----------------------------------------------------------------------------- builtins

def _container_arg(args, name):
    if len(args) == 0:
        return ()
    if len(args) == 1 and type(args[0]) in (list, tuple, set, frozenset):
        return args[0]
    raise Refusal(f"call builtins.{name} on something other than a list or tuple")


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
        raise Refusal("call builtins.complex on something other than numbers")
    return complex(real, imag)


def _b_bytes(*args):
    if args:
        raise Refusal("call builtins.bytes with arguments")
    return b""


def _b_bytearray(*args):
    if not args:
        return bytearray()
    if len(args) == 1 and isinstance(args[0], bytes):
        return bytearray(args[0])
    if len(args) == 2 and isinstance(args[0], str) and args[1] in ("latin-1", "latin1"):
        return bytearray(args[0].encode("latin1"))
    raise Refusal("call builtins.bytearray on something other than bytes")


def _codecs_encode(obj, encoding="utf-8", errors="strict"):
    if isinstance(obj, str) and encoding in ("latin1", "latin-1") and errors == "strict":
        return obj.encode("latin1")
    raise Refusal("call _codecs.encode other than for latin-1 bytes")


BASE_GLOBALS = named({
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


def safe_loads(data, what="<bytes>", kind="data"):
    """The allow-list unpickler on ``data`` (bytes): plain data and numpy arrays only."""
    def run():
        src = Source(data=bytes(data), what=what)
        obj, _ = unpickle_at(src, 0, BASE_GLOBALS)
        return finish(obj, Ctx())
    return guard(what, kind, "a pickle of plain data", run)


# ----------------------------------------------------------------------------- numpy files


def _npy_header(f):
    fmt = np.lib.format
    version = fmt.read_magic(f)
    if version == (1, 0):
        return fmt.read_array_header_1_0(f)
    if version == (2, 0):
        return fmt.read_array_header_2_0(f)
    raise Corrupt(f".npy format version {version[0]}.{version[1]} is not supported")


def _read_npy_stream(f, size, what):
    """The array of the .npy in file object ``f`` (at its start) of ``size`` bytes."""
    start = f.tell()
    shape, fortran, dtype = _npy_header(f)
    header_end = f.tell()
    if not dtype.hasobject:
        if header_end - start + prod(shape) * dtype.itemsize > size:
            raise Corrupt(f"its header promises {shape} {dtype} but the data is shorter (truncated)")
        f.seek(start)
        return np.lib.format.read_array(f, allow_pickle=False)
    payload = f.read(size - (header_end - start))
    src = Source(data=payload, what=what)
    obj, _ = unpickle_at(src, 0, BASE_GLOBALS)
    arr = finish(obj, Ctx())
    if not isinstance(arr, np.ndarray) or arr.shape != tuple(shape) or not arr.dtype.hasobject:
        raise Corrupt(f"its object array does not match its header ({shape} {dtype})")
    return arr


def load_npy(path):
    """A ``.npy`` file: plain arrays via ``np.load(allow_pickle=False)``, object arrays via
    the allow-list unpickler. Returns the array."""
    path = check_exists(path)

    def run():
        with open(path, "rb") as f:
            return _read_npy_stream(f, os.fstat(f.fileno()).st_size, path)
    return guard(path, "data", "a .npy file", run)


def load_npz(path, keys=None):
    """The arrays of a ``.npz`` file as a dict ``{name: array}`` (names without ``.npy``;
    ``keys``, a name or a list of names, limits it to those, missing ones are a
    ToolkitError). Object arrays (Monodepth2's ``gt_depths.npz`` stores ``data`` as an
    object array of per-image float32 maps) go through the allow-list unpickler."""
    path = check_exists(path)
    wanted = None if keys is None else ([keys] if isinstance(keys, str) else list(keys))

    def run():
        try:
            zf = zipfile.ZipFile(path)
        except zipfile.BadZipFile:
            raise Corrupt("it is not a zip archive") from None
        with zf:
            members = {}
            for info in zf.infolist():
                name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
                members[name] = info
            if wanted is not None:
                missing = [k for k in wanted if k not in members]
                if missing:
                    raise ToolkitError(f"{printable(path, 300)} holds no {', '.join(map(printable, missing))} "
                                       f"(it holds {', '.join(map(printable, sorted(members))) or 'nothing'}): "
                                       "is it the right file?")
            out = {}
            for name in (wanted if wanted is not None else members):
                info = members[name]
                if info.file_size > max(1 << 16, 1100 * info.compress_size):
                    raise Corrupt(f"member {printable(info.filename)} claims an absurd size")
                with zf.open(info) as raw:
                    if info.filename.endswith(".npy"):
                        out[name] = _read_npy_stream(raw, info.file_size, f"{path} (member {info.filename})")
                    else:
                        out[name] = raw.read()
            return out
    return guard(path, "data", "a .npz file", run)
