"""run_guard.RunGuard: the loop's safety net, driven through its interface (``with guard:``,
``guard.batches(loader)``) and real signals. Two data-parallel ranks are two threads here,
agreeing through an in-process element-wise max (the real run does one all-reduce); the
two-process gloo runs are in tests/test_data_parallel.py."""
import os
import signal
import threading

import numpy as np
import pytest

from datasets import DataLoadError
from datasets.safe_loading import LOAD_ERROR_KEY
from run_guard import RunGuard


class Ranks:
    """An element-wise max over ``n`` threads, like dist.all_reduce(op=MAX)."""

    def __init__(self, n):
        self.barrier = threading.Barrier(n)
        self.values = [None] * n
        self.calls = [0] * n

    def reduce_for(self, rank):
        def reduce_max(values):
            self.values[rank] = values
            self.calls[rank] += 1
            self.barrier.wait()
            out = [max(v) for v in zip(*self.values)]
            self.barrier.wait()
            return out
        return reduce_max


def marker(text):
    return {LOAD_ERROR_KEY: np.frombuffer(text.encode(), dtype=np.uint8)}


def make_guard(rank=0, world_size=1, reduce_max=None, agree_every=4):
    saved, lines, step = [], [], [0]
    g = RunGuard(save=lambda all_ranks=True: saved.append(step[0]) or "models/weights_last", log=lines.append,
                 step=lambda: step[0], models_dir="models", world_size=world_size, rank=rank,
                 agree_every=agree_every, reduce_max=reduce_max)
    return g, saved, lines, step


def run(guard, step, loader, on_step=None):
    """The trainer's loop shape: returns the steps run."""
    with guard:
        for _ in guard.batches(loader):
            step[0] += 1
            if on_step:
                on_step(step[0])
    return step[0]


def test_a_signal_stops_after_the_current_step_and_saves():
    g, saved, lines, step = make_guard()
    signal_at_3 = lambda s: s == 3 and os.kill(os.getpid(), signal.SIGTERM)  # noqa: E731
    assert run(g, step, [{"x": i} for i in range(10)], signal_at_3) == 3
    assert g.stopped == signal.SIGTERM and saved == [3]
    assert lines == ["Stopping on signal 15 at step 3: checkpoint saved to models/weights_last"]
    assert signal.getsignal(signal.SIGTERM) is not g  # handlers restored


def test_the_end_of_the_data_is_no_stop():
    g, saved, lines, step = make_guard()
    assert run(g, step, [{"x": i} for i in range(5)]) == 5
    assert g.stopped is None and saved == [] and lines == []


def test_a_bad_sample_saves_and_is_one_line_naming_it():
    g, saved, _, step = make_guard()
    with pytest.raises(DataLoadError) as err:
        run(g, step, [{"x": 0}, {"x": 1}, marker("cannot read /data/b.jpg")])
    assert str(err.value) == ("cannot read /data/b.jpg; training stopped at step 2 (saved to models/weights_last): "
                              "continue with --resume once fixed")
    assert saved == [2]


def test_a_dead_loader_worker_is_one_line():
    g, _, _, step = make_guard()

    def die(s):
        raise SystemError("DataLoader process (pid 123) exited unexpectedly with code -9")
    with pytest.raises(DataLoadError, match=r"^a data loader worker process died \(DataLoader process \(pid 123\)"):
        run(g, step, [{"x": 0}], die)


def _two_ranks(loaders, on_step, agree_every=4):
    ranks = Ranks(2)
    out, errors, guards = [None, None], [None, None], [None, None]

    def one(r):
        g, saved, lines, step = make_guard(r, 2, ranks.reduce_for(r), agree_every)
        guards[r] = (g, saved)
        try:
            it = g.batches(loaders[r])
            for _ in it:
                step[0] += 1
                on_step(r, step[0], g)
        except DataLoadError as exc:
            errors[r] = str(exc)
        out[r] = step[0]
    threads = [threading.Thread(target=one, args=(r,)) for r in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert not any(t.is_alive() for t in threads), "a rank hangs"
    return out, errors, guards, ranks


def test_a_signal_to_one_rank_stops_both_at_the_same_step(monkeypatch):
    import run_guard
    monkeypatch.setattr(run_guard, "barrier", lambda: None)

    def on_step(rank, step, guard):
        if rank == 1 and step == 5:
            guard.signal = signal.SIGTERM  # what the handler does when rank 1 gets SIGTERM
    steps, errors, guards, ranks = _two_ranks([[{"x": i} for i in range(40)]] * 2, on_step)
    assert steps == [8, 8] and errors == [None, None]  # the next agreement, 4 steps a window
    assert [g.stopped for g, _ in guards] == [signal.SIGTERM] * 2
    assert [saved for _, saved in guards] == [[8], [8]]
    assert ranks.calls == [3, 3]  # one agreement per window of 4 steps, not one per step


def test_a_bad_sample_on_one_rank_stops_both_at_the_same_step(monkeypatch):
    import run_guard
    monkeypatch.setattr(run_guard, "barrier", lambda: None)
    good = [{"x": i} for i in range(40)]
    bad = good[:6] + [marker("cannot read /data/r1.jpg")] + good[7:]
    steps, errors, _, _ = _two_ranks([good, bad], lambda *a: None)
    assert steps == [6, 6]  # both run the good batches of the window, then stop
    assert errors[1] == "cannot read /data/r1.jpg"
    assert errors[0].startswith("rank 1 of 2 could not load a sample")


def test_the_end_of_the_data_ends_both(monkeypatch):
    steps, errors, guards, ranks = _two_ranks([[{"x": i} for i in range(10)]] * 2, lambda *a: None)
    assert steps == [10, 10] and errors == [None, None] and [g.stopped for g, _ in guards] == [None, None]
    assert ranks.calls == [3, 3]
