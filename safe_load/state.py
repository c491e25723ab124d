"""Trainer state: the legacy pickle read safely, and a plain-data format to replace it.

``load_legacy_trainer_state`` reads the ``trainer_state.pdstate`` pickle that
``checkpoint.save_checkpoint`` writes (``pickle.dumps(Trainer.trainer_state())``), with
the numpy allow-list plus paddle's ``GeneratorState`` (rebuilt as
:class:`PaddleGeneratorState` data, never the pybind class). ``save_state`` /
``load_state`` write and read the same content as JSON plus an ``.npz``: nothing in them
is ever unpickled.
"""
import base64
import collections
import hashlib
import io
import json
import math
import os

import numpy as np

from .numpy_files import BASE_GLOBALS, SIMPLE_KINDS, load_npz, plain_dtype
from .unpickler import (MAX_DEPTH, Builder, Corrupt, Ctx, Source, check_exists, finish, guard, is_int,
                         one_line, printable, unpickle_at, unreadable_error)


class PaddleGeneratorState(Builder):
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
        if not isinstance(tup, tuple) or len(tup) not in (3, 4) or not all(is_int(x) for x in tup[:3]):
            raise Corrupt("bad paddle GeneratorState")
        state = None
        if len(tup) == 4:
            raw = tup[3]
            if not isinstance(raw, list) or len(raw) > (1 << 20) or not all(is_int(c) and 0 <= c < 256 for c in raw):
                raise Corrupt("bad paddle GeneratorState engine state")
            state = bytes(raw)
        for k, v in zip(("device", "seed", "offset", "state"), tuple(tup[:3]) + (state,)):
            object.__setattr__(self, k, v)

    def __setattr__(self, name, value):
        raise Corrupt(f"unexpected attribute {printable(name)} on a GeneratorState")

    def __setstate__(self, state):      # the pickle of a real GeneratorState: NEWOBJ + BUILD
        if self._set:
            raise Corrupt("a GeneratorState given two states")
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

    def build(self, ctx, depth):
        if not self._set:
            raise Corrupt("a GeneratorState without state")
        return self

    def __eq__(self, other):
        return isinstance(other, PaddleGeneratorState) and self.as_tuple() == other.as_tuple()

    def __hash__(self):
        return hash((self.device, self.seed, self.offset, self.state))

    def __repr__(self):
        return (f"PaddleGeneratorState(device={self.device}, seed={self.seed}, offset={self.offset}, "
                f"state=<{len(self.state or b'')} bytes>)")


PADDLE_RNG_GLOBALS = {(m, "GeneratorState"): PaddleGeneratorState for m in PaddleGeneratorState._PADDLE_NAMES}


def load_legacy_trainer_state(path, paddle_rng="paddle"):
    """A ``trainer_state.pdstate`` (pickle of ``Trainer.trainer_state()``) read safely.

    Returns the dict as ``pickle.load`` gives it: ``epoch``/``batch_in_epoch``/``step``,
    ``scheduler``, ``numpy_rng`` (the ``np.random.get_state()`` tuple), ``python_rng``
    (``random.getstate()``), ``val_position``, ``world_size``, ``opt``, and ``paddle_rng``:
    a list of real paddle ``GeneratorState`` objects (``paddle_rng="paddle"``, ready for
    ``paddle.set_rng_state``) or of :class:`PaddleGeneratorState` (``"data"``)."""
    if paddle_rng not in ("paddle", "data"):
        raise ValueError("paddle_rng must be 'paddle' or 'data'")
    path = check_exists(path)
    allowed = dict(BASE_GLOBALS)
    allowed.update(PADDLE_RNG_GLOBALS)

    def run():
        with Source(path) as src:
            obj, _ = unpickle_at(src, 0, allowed)
        return finish(obj, Ctx())
    state = guard(path, "trainer state", "a trainer_state.pdstate written by train.py", run)
    if paddle_rng == "paddle":
        state = rng_to_paddle(state, path)
    return state


def rng_to_paddle(obj, what):
    """Replace PaddleGeneratorState values (top level and in lists) by real ones."""
    def conv(v):
        if isinstance(v, PaddleGeneratorState):
            try:
                return v.to_paddle()
            except (RuntimeError, ValueError, TypeError) as exc:
                raise unreadable_error(what, f"its paddle RNG state is invalid ({one_line(exc)})",
                                       "a trainer state written by train.py") from None
        if type(v) is list:
            return [conv(x) for x in v]
        if type(v) is dict:
            return {k: conv(x) for k, x in v.items()}
        return v
    return conv(obj)


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
        if is_int(obj):
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
            if arr.dtype.hasobject or arr.dtype.kind not in SIMPLE_KINDS + "US":
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
                raise Corrupt(f"bad float {printable(val)}")
            return float(val)
        if tag == "__bytes__":
            return base64.b64decode(val, validate=True)
        if tag == "__ndarray__":
            if val not in self.arrays:
                raise Corrupt(f"array {printable(val)} missing from the .npz")
            return self.arrays[val]
        if tag == "__npscalar__":
            dt = plain_dtype(val)
            if dt.kind not in "biuf":
                raise Corrupt(f"bad scalar dtype {printable(val)}")
            return np.array(obj["value"], dtype=dt)[()]
        if tag == "__paddle_generator_state__":
            if "state_text" in val:
                raw = val["state_text"].encode("ascii")
            elif "state_base64" in val:
                raw = base64.b64decode(val["state_base64"], validate=True)
            else:
                raw = None
            return PaddleGeneratorState(val["device"], val["seed"], val["offset"], raw)
        raise Corrupt(f"unknown tag {printable(tag)}")


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
    path = check_exists(path)
    expected = "a state file written by safe_load.save_state"

    def run():
        with open(path, "rb") as f:
            doc = json.loads(f.read().decode("utf-8"))
        if not isinstance(doc, dict) or doc.get("format") != STATE_FORMAT:
            raise Corrupt("it is not a saved state")
        if doc.get("version") != STATE_VERSION:
            raise Corrupt(f"state format version {printable(doc.get('version'))} is not supported")
        arrays = {}
        if doc.get("arrays"):
            npz = os.path.join(os.path.dirname(path), os.path.basename(str(doc["arrays"])))
            if not os.path.isfile(npz):
                raise Corrupt(f"its arrays file {printable(npz)} is missing")
            with open(npz, "rb") as f:
                data = f.read()
            if hashlib.sha256(data).hexdigest() != doc.get("arrays_sha256"):
                raise Corrupt(f"its arrays file {printable(npz)} belongs to another save")
            arrays = load_npz(npz)
        return _Decoder(arrays)(doc.get("state"))
    state = guard(path, "data", expected, run)
    if paddle_rng == "paddle":
        state = rng_to_paddle(state, path)
    return state
