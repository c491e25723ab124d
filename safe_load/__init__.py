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
  numpy arrays (C-contiguous, writable, honouring stride and offset, no two sharing
  memory, native byte order; bfloat16 as float32, exactly), storages as 1-D arrays,
  ``torch.float32``-style dtype values as the string ``"torch.float32"``; containers as
  ``torch.load`` gives them (``OrderedDict`` with its ``_metadata``).
- ``safe_loads(data, what="<bytes>")``: the allow-list unpickler on bytes.

The machinery lives in this package's unpickler.py (the unpickler, its pre-scan and
finishing pass), numpy_files.py (numpy/builtins reconstructors, .npy/.npz), state.py
(trainer state, paddle RNG state) and torch_files.py (.pth files); import this package.

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
implemented in those modules. None of these is the real callable: each is a small
function that checks its arguments and builds data. numpy's own ``ndarray.__setstate__`` is never
handed unchecked state (an object array whose element list is shorter than its shape
crashes the interpreter there), and no real object is left on the unpickler's stack where
a ``BUILD`` opcode could reach it.
"""
import collections

import numpy as np

from .numpy_files import BASE_GLOBALS, load_npy, load_npz, safe_loads
from .unpickler import (MAX_DEPTH, Corrupt, Ctx, Source, UnreadableFileError, UnsafeFileError, check_exists,
                         check_shape, finish, guard, one_line, printable, unpickle_at)
from .state import PaddleGeneratorState, load_legacy_trainer_state
from .torch_files import TORCH_MAGIC, load_torch

__all__ = [
    "UnsafeFileError", "UnreadableFileError", "PaddleGeneratorState", "MAX_DEPTH",
    "load_paddle", "load_legacy_trainer_state", "load_npy", "load_npz", "load_torch",
    "safe_loads",
]


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
        raise Corrupt(f"bad {_BIG_PARAMS} entry")
    removes = []
    for key, value in info.items():
        try:
            slices = [obj[part] for part in value["slices"]]
            shape = check_shape(tuple(value["OriginShape"]))
            obj[key] = np.concatenate(slices).reshape(shape)
        except (KeyError, TypeError, ValueError) as exc:
            raise Corrupt(f"bad {_BIG_PARAMS} entry for {printable(key)} ({one_line(exc)})") from None
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
                raise Corrupt(f"bad {_NAME_TABLE} entry")
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
    path = check_exists(path)

    def run():
        with Source(path) as src:
            obj, _ = unpickle_at(src, 0, BASE_GLOBALS)
        if obj == TORCH_MAGIC and type(obj) is int:
            raise Corrupt("it is a PyTorch .pth file (convert it with tools/convert_torch_weights.py)")
        return _paddle_result(finish(obj, Ctx()), return_numpy)
    return guard(path, "weights", "a file written by paddle.save", run)
