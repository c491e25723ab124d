"""A watchdog for reads that never return.

A data file on a dead network mount or a stuck disk blocks its read for good, and nothing
inside the process can interrupt it: Paddle's DataLoader waits for the batch in C++ (its
``timeout`` does not end that wait), and Ctrl-C cannot reach a loader worker stuck in the
kernel. :class:`LoaderWatchdog` watches the time the main thread has been waiting for one
batch; past ``timeout`` seconds it runs ``on_timeout`` (the trainer saves ``weights_last``:
the model is between steps then), ends the loader's worker processes, prints one
``error:`` line and ends the process with exit code 2. ``--resume`` continues from there.

The main thread holds a lock except while it waits for a batch; the watchdog takes it
before acting, so a batch that arrives at the last moment cannot start a step while the
checkpoint is written.
"""
import multiprocessing
import os
import sys
import threading
import time


class LoaderWatchdog:
    """``waiting()`` before asking the loader for a batch, ``done()`` once it is there;
    ``close()`` at the end. ``timeout`` <= 0 or None: watch nothing."""

    def __init__(self, timeout, what="training", on_timeout=None, stream=None, exit=None,
                 advice="continue with --resume"):
        self.timeout, self.what, self.on_timeout, self.advice = timeout, what, on_timeout, advice
        self.stream, self._exit = stream, exit or (lambda code: os._exit(code))
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
            if self._since is None or self._stop.is_set():
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
