"""What keeps a training run safe, in one place, so that trainer.py reads as the method:

    with guard:                              # signals, the watchdog, errors -> one line
        for batch in guard.batches(loader):  # stops cleanly, at the same step on every rank
            ...one optimisation step...

SIGINT / SIGTERM stop the run after the current step with ``weights_last`` saved (a second signal interrupts at once).
Data-parallel ranks agree every ``agree_every`` steps (one small all-reduce over a window of batches fetched ahead), so
a load error, a signal or the end of the data on one rank stops every rank at the same step. :class:`LoaderWatchdog`
ends a run whose batch never arrives; a bad sample, a dead loader worker or a failed collective is one line (exit 2).
"""
import multiprocessing
import os
import signal
import sys
import threading
import time

import paddle
import paddle.distributed as dist

from datasets import DataLoadError, checked_batches, worker_died
from utils import ToolkitError

AGREE_EVERY = 8  # data parallel: steps between two stop agreements of the ranks


class RunGuard:
    """``save(all_ranks=True)`` writes weights_last (on rank 0; called on every rank, or only on rank 0 with
    ``all_ranks=False``) and returns its path, ``log(text)`` reports, ``step()`` is the global step;
    ``reduce_max(list of ints)`` is the element-wise maximum over the ranks (tests give their own)."""

    def __init__(self, save, log, step, models_dir, world_size=1, rank=0, loader_timeout=0,
                 num_workers=0, parameters=(), agree_every=AGREE_EVERY, reduce_max=None):
        self.save, self.log, self.step, self.models_dir = save, log, step, models_dir
        self.world_size, self.rank, self.num_workers = world_size, rank, num_workers
        self.loader_timeout, self.parameters, self.agree_every = loader_timeout, parameters, agree_every
        self.reduce_max = reduce_max or max_over_ranks
        self.signal = None  # the signal received
        self.stopped = None  # the signal the run stopped for, once it has
        self._error = None  # a load error to tell every rank at the next agreement
        self.watchdog = None

    # ------------------------------------------------------------------ the context
    def __enter__(self):
        self._old_handlers = {}

        def handler(signum, frame):
            if self.signal is not None:
                raise KeyboardInterrupt
            self.signal = signum

        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old_handlers[sig] = signal.signal(sig, handler)
            except ValueError:  # not in the main thread
                pass
        self.watchdog = LoaderWatchdog(self.loader_timeout, on_timeout=self._save_at_timeout)
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is None:
                if self.world_size > 1:
                    check_weights_in_sync(self.parameters, self.step())
                return False
            if isinstance(exc, DataLoadError):
                if self.signal is not None:  # the loader's workers got the signal too
                    self._stop_for_signal()
                    return True
                raise DataLoadError("{}; training stopped at step {} (saved to {}): continue with --resume "
                                    "once fixed".format(exc, self.step(), self._save_all())) from None
            if isinstance(exc, (SystemError, OSError, RuntimeError)) and not isinstance(exc, ToolkitError):
                # a loader worker died (Paddle raises that anywhere in the main thread) or a collective failed
                advice = "continue with --resume (from the last checkpoint in {})".format(self.models_dir)
                died = lost_rank(exc, self.world_size, self.models_dir) or worker_died(exc, self.num_workers, advice)
                if died is not exc:
                    raise died from None
            return False
        finally:
            self.watchdog.close()
            for sig, h in self._old_handlers.items():
                signal.signal(sig, h)

    def defer(self, exc):
        """A load error outside the training batches (validation): raised now, or at the ranks' next agreement."""
        if self.world_size == 1:
            raise exc
        self._error = exc

    # ------------------------------------------------------------------ the batches
    def batches(self, loader):
        """``loader``'s batches (:func:`datasets.checked_batches`) until it ends or the run stops (and saves)."""
        it = checked_batches(loader, self.num_workers, self.watchdog)
        if self.world_size == 1:
            while self.signal is None:
                try:
                    batch = next(it)
                except StopIteration:
                    return
                except DataLoadError:
                    if self.signal is None:
                        raise
                    break  # the read was interrupted by the signal
                yield batch
            self._stop_for_signal()
            return
        while True:
            window, error = self._fetch_window(it)
            error = error or self._error
            failed, sig, short = self.reduce_max([self.rank + 1 if error else 0, self.signal or 0,
                                                  self.agree_every - len(window)])
            yield from window[:self.agree_every - short]
            if error is not None:
                raise error
            if failed:
                raise DataLoadError("rank {} of {} could not load a sample: its own error line names the file "
                                    "(its log, log/workerlog.{} under paddle.distributed.launch)".format(
                                        failed - 1, self.world_size, failed - 1))
            if sig:
                self.signal = self.signal or sig
                self._stop_for_signal()
                return
            if short:
                return

    def _fetch_window(self, it):
        """Up to ``agree_every`` batches, stopping early at the end, a load error or a signal."""
        window = []
        while len(window) < self.agree_every and self.signal is None:
            try:
                window.append(next(it))
            except StopIteration:
                break
            except DataLoadError as exc:
                return window, (exc if self.signal is None else None)
        return window, None

    # ------------------------------------------------------------------ stopping
    def _save_all(self):
        """weights_last, written by rank 0 while the others wait (a launcher ends the job when the first rank exits)."""
        self.save()
        if self.world_size > 1:
            barrier()
        return os.path.join(self.models_dir, "weights_last")

    def _stop_for_signal(self):
        path = self._save_all()
        self.stopped = self.signal
        text = "Stopping on signal {} at step {}: checkpoint saved to {}".format(self.signal, self.step(), path)
        if self.rank == 0:
            self.log(text)
        else:
            print("rank {}: {}".format(self.rank, text), flush=True)

    def _save_at_timeout(self):
        """The watchdog's action (its thread; the main thread waits for a batch)."""
        if self.rank != 0:
            return "; rank {} saves nothing (rank 0 does)".format(self.rank)
        self.log("no batch within --loader_timeout {:.0f} s: stopping".format(self.loader_timeout))
        return "; training stopped at step {} (saved to {})".format(self.step(), self.save(all_ranks=False))


# ----------------------------------------------------------------------------- collectives
# beyond paddle.DataParallel's gradient all-reduce (NCCL on GPUs, gloo on CPUs)
def max_over_ranks(values):
    """The element-wise maximum of a list of ints over all ranks (one small all-reduce)."""
    t = paddle.to_tensor([int(v) for v in values], dtype="int64")
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [int(v) for v in t.numpy()]


def barrier():
    dist.barrier()


def check_weights_in_sync(parameters, step):
    """Sanity check: every rank holds the same trained weights (BN running statistics stay per rank: left out)."""
    total = float(sum(float(p.astype("float64").sum()) for p in parameters if not p.stop_gradient))
    extremes = paddle.to_tensor([total, -total], dtype="float64")
    dist.all_reduce(extremes, op=dist.ReduceOp.MAX)  # [max, -min] over the ranks in one collective
    hi, lo = float(extremes[0]), -float(extremes[1])
    if abs(hi - lo) > 1e-6 * max(1.0, abs(hi)):
        raise ToolkitError("data-parallel ranks hold different weights (sum {} vs {}) after step {}: "
                           "report this bug".format(lo, hi, step))


COLLECTIVE_ERRORS = ("gloo", "NCCL", "nccl", "ProcessGroup")


def lost_rank(exc, world_size, models_dir):
    """A one-line ToolkitError if ``exc`` is a failed gloo / NCCL collective (another rank stopped or died), or None."""
    text = str(exc)
    if world_size <= 1 or not any(k in text for k in COLLECTIVE_ERRORS):
        return None
    first = (text.strip().splitlines() or [""])[-1].strip()[:300]
    return ToolkitError("data-parallel communication failed ({}): another rank probably stopped or died "
                        "(its log, log/workerlog.<rank> under paddle.distributed.launch, says why); continue "
                        "with --resume from the last checkpoint in {}".format(first, models_dir))


# ----------------------------------------------------------------------------- the watchdog
class LoaderWatchdog:
    """A read on a dead network mount blocks for good: Paddle's DataLoader waits in C++ (its ``timeout`` does not end
    the wait) and Ctrl-C cannot reach a worker stuck in the kernel. Call ``waiting()`` before asking for a batch and
    ``done()`` once it is there. Past ``timeout`` seconds of one wait (<= 0: never) it runs ``on_timeout`` (saves
    weights_last: the model is between steps), kills the loader workers, prints one ``error:`` line and exits 2. The
    main thread holds a lock except while waiting, so a batch that arrives at the last moment cannot start a step while
    the checkpoint is written."""

    def __init__(self, timeout, what="training", on_timeout=None, stream=None, exit=None,
                 advice="continue with --resume"):
        self.timeout, self.what, self.on_timeout, self.advice = timeout, what, on_timeout, advice
        self.stream, self._exit = stream, exit or os._exit
        self._since = None
        self._lock = threading.Lock()
        self._lock.acquire()  # held by the main thread outside waits
        self._stop = threading.Event()
        self.fired = False
        if timeout and timeout > 0:
            threading.Thread(target=self._watch, name="loader-watchdog", daemon=True).start()

    def waiting(self):
        self._since = time.monotonic()
        self._lock.release()

    def done(self):
        self._lock.acquire()
        self._since = None

    def close(self):
        self._stop.set()

    def _watch(self):
        while not self._stop.wait(min(self.timeout / 4.0, 5.0)):
            since = self._since
            if since is None or time.monotonic() - since <= self.timeout:
                continue
            if not self._lock.acquire(blocking=False):  # the batch has just arrived
                continue
            since = self._since  # again under the lock: the wait that timed out may have ended and a new one begun
            if since is None or time.monotonic() - since <= self.timeout or self._stop.is_set():
                self._lock.release()
                continue
            self.fire()
            self._lock.release()  # only reached when ``exit`` returns (tests)
            return

    def fire(self):
        """What happens at the timeout (called by the watch thread, holding the lock)."""
        self.fired = True
        saved = ""
        if self.on_timeout is not None:
            try:
                saved = self.on_timeout() or ""
            except Exception as exc:  # noqa: BLE001 - the line below must still be printed
                saved = "; saving weights_last failed ({}: {})".format(type(exc).__name__, exc)
        for child in multiprocessing.active_children():  # loader workers, maybe stuck in a read
            child.kill()
        print("error: no {} batch arrived in {:.0f} s: a read may never return (a dead network mount? a "
              "stuck disk?){}; fix the data source, then {} (--loader_timeout 0 waits forever)".format(
                  self.what, self.timeout, saved, self.advice), file=self.stream or sys.stderr, flush=True)
        self._exit(2)
