"""The trainer state of earlier releases, read safely.

``load_legacy_trainer_state`` reads the ``trainer_state.pdstate`` pickle that earlier
releases' ``checkpoint.save_checkpoint`` wrote (``pickle.dumps(Trainer.trainer_state())``),
with the numpy allow-list plus paddle's ``GeneratorState`` (rebuilt as
:class:`PaddleGeneratorState` data, never the pybind class). This release writes the
trainer state as JSON (checkpoint.py): nothing in it is ever unpickled.
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
