"""The allow-list unpickler under safe_load: the machinery, without the allow-lists.

``SafeUnpickler.find_class`` hands out only the entries of the table it is given (see
numpy_files, state, torch_files); anything else raises :class:`Refusal`, before it is
called. ``scan`` checks a pickle's opcodes before it is unpickled (every declared length
fits in the file; memo indices stay below the opcode count, since CPython grows its memo
table to the largest index and a 12-byte file could otherwise ask for gigabytes).
``finish`` turns the placeholders the allowed reconstructors leave (``Builder``) into
values after unpickling, refusing structures nested deeper than ``MAX_DEPTH`` or that
contain themselves. ``guard`` turns every failure into one-line :class:`UnsafeFileError`
or :class:`UnreadableFileError` (both ``utils.ToolkitError``).

Everything the unpickler can reach is a ``SafeCall`` (a checked reconstructor), a
``Marker`` value, a ``Builder`` placeholder, an ``OrderedDict`` or plain builtin data:
none has a ``__dict__`` or accepts attributes, so a ``BUILD`` opcode can only go through a
checked ``__setstate__``; no real numpy object is ever on the unpickler's stack.
"""
import collections
import io
import os
import pickle
import pickletools
import struct

from utils import MissingFileError, ToolkitError

MAX_DEPTH = 100          # containers nested deeper than this are refused
_MAX_NDIM = 64           # numpy's limit
_MAX_LISTED_NAME = 120   # characters of a name taken from a file, in a message
TRUST = "only load files from sources you trust, or re-export them"


class UnsafeFileError(ToolkitError):
    """A file that asks to run code (or to build an object outside the allow-list)."""


class UnreadableFileError(ToolkitError):
    """A file that is damaged, truncated, of another format or absurd in its declared sizes."""


class Refusal(Exception):
    """Internal: the file asks for something outside the allow-list (``asked`` completes
    'it asks to ...')."""

    def __init__(self, asked):
        super().__init__(asked)
        self.asked = asked


class Corrupt(Exception):
    """Internal: the file is inconsistent (reason in the message)."""


def printable(text, limit=_MAX_LISTED_NAME):
    """``text`` (a name read from a file, a path) as one printable line."""
    text = str(text)
    out = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)
    return out if len(out) <= limit else out[:limit] + "..."


def one_line(exc):
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return printable(" ".join(lines), 200) if lines else type(exc).__name__


def unsafe_error(what, asked, kind):
    return UnsafeFileError(f"refusing to load {printable(what, 300)}: it asks to {asked} (a file with code in it, "
                           f"not plain {kind}); {TRUST}")


def unreadable_error(what, reason, expected):
    return UnreadableFileError(f"cannot read {printable(what, 300)}: {reason}; the file is damaged or truncated, "
                               f"or not {expected}")


# ----------------------------------------------------------------------------- building blocks


class Inert:
    """No __dict__, no attribute setting, no state: BUILD on it is refused."""
    __slots__ = ()

    def __setattr__(self, name, value):
        raise Corrupt(f"unexpected attribute {printable(name)} on a {type(self).__name__}")

    def __setstate__(self, state):
        raise Corrupt(f"unexpected state for a {type(self).__name__}")


class SafeCall(Inert):
    """A checked reconstructor the allow-list returns for one global."""
    __slots__ = ("_fn", "_name")

    def __init__(self, name, fn):
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_fn", fn)

    def __call__(self, *args, **kwargs):
        return self._fn(*args, **kwargs)

    def __repr__(self):
        return f"<safe {self._name}>"


class Marker(tuple):
    """An immutable named value (torch dtypes and storage classes, numpy.ndarray) that the
    allowed reconstructors recognise; as a value of the result it becomes ``value``, or is
    refused when that is None."""
    __slots__ = ()

    def __new__(cls, kind, name, payload=None, value=None):
        return tuple.__new__(cls, (kind, name, payload, value))

    kind = property(lambda self: self[0])
    name = property(lambda self: self[1])
    payload = property(lambda self: self[2])
    value = property(lambda self: self[3])

    def __setstate__(self, state):
        raise Corrupt(f"unexpected state for {self.name}")

    def __reduce__(self):  # never pickled again
        raise TypeError("not picklable")


class Builder(Inert):
    """A placeholder turned into its value by ``build(ctx, depth)`` after unpickling."""
    __slots__ = ()


class Built(Builder):
    """A value already made (kept off the unpickler's stack)."""
    __slots__ = ("value",)

    def __init__(self, value):
        object.__setattr__(self, "value", value)

    def build(self, ctx, depth):
        return self.value


def is_int(x):
    return isinstance(x, int) and not isinstance(x, bool)


def check_shape(shape, what="shape"):
    if not isinstance(shape, (tuple, list)) or len(shape) > _MAX_NDIM:
        raise Corrupt(f"bad array {what} {printable(repr(shape), 60)}")
    for s in shape:
        if not is_int(s) or s < 0:
            raise Corrupt(f"bad array {what} {printable(repr(shape), 60)}")
    return tuple(int(s) for s in shape)


def prod(shape):
    n = 1
    for s in shape:
        n *= s
    return n


def named(table):
    return {key: (SafeCall(".".join(key), fn) if callable(fn) and not isinstance(fn, (type, Marker)) else fn)
            for key, fn in table.items()}


_PY2_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}


class SafeUnpickler(pickle.Unpickler):
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
            raise Refusal(f"run {printable(module)}.{printable(name)}") from None

    def persistent_load(self, pid):
        if self._persistent is None:
            raise Corrupt("a persistent id in a file that should have none")
        return self._persistent(pid)


# ----------------------------------------------------------------------------- pre-scan

_OPS = {}
for _op in pickletools.opcodes:
    _OPS[ord(_op.code.encode("latin1"))] = (_op.name, _op.arg.n if _op.arg else 0,
                                            _op.arg.name if _op.arg else "")
_LEN_PREFIX = {pickletools.TAKEN_FROM_ARGUMENT1: ("<B", 1), pickletools.TAKEN_FROM_ARGUMENT4: ("<i", 4),
               pickletools.TAKEN_FROM_ARGUMENT4U: ("<I", 4), pickletools.TAKEN_FROM_ARGUMENT8U: ("<Q", 8)}


def scan(f, pos, end):
    """Check the pickle at offset ``pos`` of file object ``f`` (``end`` bytes long) without
    building anything; return the offset just after its STOP."""
    f.seek(pos)
    read, ops = f.read, 0
    while True:
        c = read(1)
        if not c:
            raise Corrupt("the pickle ends before its STOP opcode (truncated)")
        try:
            name, n, argname = _OPS[c[0]]
        except KeyError:
            raise Corrupt(f"byte 0x{c[0]:02x} at offset {f.tell() - 1} is not a pickle opcode") from None
        ops += 1
        if n > 0:
            arg = read(n)
            if len(arg) < n:
                raise Corrupt("the pickle is truncated")
            if name == "BINPUT" or name == "LONG_BINPUT":
                idx = arg[0] if n == 1 else struct.unpack("<I", arg)[0]
                if idx > ops:
                    raise Corrupt(f"memo index {idx} is absurd")
            elif name == "FRAME" and struct.unpack("<Q", arg)[0] > end - f.tell():
                raise Corrupt("a pickle frame is longer than the file (truncated)")
        elif n == pickletools.UP_TO_NEWLINE:
            for _ in range(2 if argname == "stringnl_noescape_pair" else 1):
                line = f.readline()
                if not line.endswith(b"\n"):
                    raise Corrupt("the pickle is truncated")
            if name == "PUT":
                try:
                    idx = int(line)
                except ValueError:
                    raise Corrupt("bad memo index") from None
                if idx > ops or idx < 0:
                    raise Corrupt(f"memo index {idx} is absurd")
        elif n in _LEN_PREFIX:
            fmt, size = _LEN_PREFIX[n]
            arg = read(size)
            if len(arg) < size:
                raise Corrupt("the pickle is truncated")
            length = struct.unpack(fmt, arg)[0]
            if length < 0 or length > end - f.tell():
                raise Corrupt(f"a {name} of {length} bytes does not fit in the file (truncated or absurd)")
            f.seek(length, 1)
        if name == "STOP":
            return f.tell()


# ----------------------------------------------------------------------------- finishing


class Ctx:
    __slots__ = ("done", "active")

    def __init__(self):
        self.done = {}
        self.active = set()


_ATOMIC = frozenset((str, bytes, bytearray, int, float, complex, bool, type(None)))


def finish(obj, ctx, depth=0):
    """The value of an unpickled structure: placeholders built, containers checked."""
    t = type(obj)
    if t in _ATOMIC:
        return obj
    oid = id(obj)
    if oid in ctx.done:
        return ctx.done[oid]
    if depth > MAX_DEPTH:
        raise Corrupt(f"containers nested deeper than {MAX_DEPTH} levels")
    if oid in ctx.active:
        raise Corrupt("a structure that contains itself")
    ctx.active.add(oid)
    try:
        if isinstance(obj, Builder):
            res = obj.build(ctx, depth)
        elif t is list:
            for i, v in enumerate(obj):
                obj[i] = finish(v, ctx, depth + 1)
            res = obj
        elif t is tuple:
            res = tuple(finish(v, ctx, depth + 1) for v in obj)
        elif t is dict or t is collections.OrderedDict:
            if t is collections.OrderedDict:   # BUILD may have set attributes (torch's _metadata)
                extra = object.__getattribute__(obj, "__dict__")
                for k in list(extra):
                    if not isinstance(k, str) or hasattr(collections.OrderedDict, k):
                        raise Refusal(f"set attribute {printable(k)} of an OrderedDict")
                    extra[k] = finish(extra[k], ctx, depth + 1)
            # the class's own methods: an instance attribute can not stand in for them
            items = [(finish(k, ctx, depth + 1), finish(v, ctx, depth + 1)) for k, v in t.items(obj)]
            t.clear(obj)
            for k, v in items:
                t.__setitem__(obj, k, v)
            res = obj
        elif t is set or t is frozenset:
            res = t(finish(v, ctx, depth + 1) for v in obj)
        elif isinstance(obj, Marker) and obj.value is not None:
            res = obj.value
        else:
            shown = obj.name if isinstance(obj, Marker) else getattr(obj, "_name", None) or t.__name__
            raise Corrupt(f"it holds a {printable(shown)} as a value")
    finally:
        ctx.active.discard(oid)
    ctx.done[oid] = res
    return res


# ----------------------------------------------------------------------------- reading


class Source:
    """A file (or given bytes) to read pickles from, with a display name and size."""

    def __init__(self, path=None, data=None, what=None):
        self.what = what or (os.fspath(path) if path is not None else "<bytes>")
        if data is not None:
            self.f = io.BytesIO(data)
            self.size = len(data)
            return
        path = os.fspath(path)
        if os.path.isdir(path):
            raise Corrupt("it is a folder")
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


def unpickle_at(src, pos, allowed, persistent=None):
    """(object, end offset) of the pickle at ``pos`` of ``src``; placeholders not yet built."""
    if src.read_at(pos, 4) == b"PK\x03\x04":
        raise Corrupt("it is a zip archive, not a pickle (a PyTorch .pth or a .npz file?)")
    end = scan(src.f, pos, src.size)
    src.f.seek(pos)
    obj = SafeUnpickler(src.f, allowed, persistent).load()
    return obj, end


def guard(what, kind, expected, fn):
    """Run ``fn()``; every failure becomes one-line UnsafeFileError / UnreadableFileError."""
    try:
        return fn()
    except ToolkitError:
        raise
    except Refusal as exc:
        raise unsafe_error(what, exc.asked, kind) from None
    except Corrupt as exc:
        raise unreadable_error(what, str(exc), expected) from None
    except FileNotFoundError:
        raise MissingFileError(f"file not found ({printable(what, 300)}): check the path") from None
    except OSError as exc:
        raise unreadable_error(what, f"{type(exc).__name__}: {exc.strerror or one_line(exc)}", expected) from None
    except MemoryError:
        raise unreadable_error(what, "it asks for more memory than there is", expected) from None
    except RecursionError:
        raise unreadable_error(what, "it is nested too deeply", expected) from None
    except Exception as exc:  # noqa: BLE001  (a corrupt file can raise anything from the unpickler)
        raise unreadable_error(what, f"{type(exc).__name__}: {one_line(exc)}", expected) from None


def check_exists(path):
    path = os.fspath(path)
    if not os.path.exists(path):
        raise MissingFileError(f"file not found ({printable(path, 300)}): check the path")
    return path
