"""Safe sample loading: a sample that fails to load becomes one line in the main thread,
never a hang or a stack of worker tracebacks.

An exception raised inside a dataset runs in Paddle's reader thread (num_workers=0) or in
a worker process: with no worker it leaves the main thread waiting forever, with workers
it arrives as stacked tracebacks. So no exception leaves these datasets: a sample that
fails to load becomes a marker {LOAD_ERROR_KEY: message as uint8 bytes}, ``collate``
turns a batch holding one into a marker batch, and ``checked_batches`` raises the
message as a DataLoadError in the main thread.
"""
import numpy as np
import paddle

from utils import ToolkitError

LOAD_ERROR_KEY = "load_error"


class DataLoadError(ToolkitError):
    """A sample failed to load (unreadable image, bad hint, ...); the message names the file."""


def _error_marker(message):
    return {LOAD_ERROR_KEY: np.frombuffer(str(message).encode("utf-8"), dtype=np.uint8).copy()}


def _marker_message(value):
    arr = value.numpy() if hasattr(value, "numpy") else np.asarray(value)
    return bytes(np.asarray(arr, dtype=np.uint8).reshape(-1)).decode("utf-8", "replace")


def describe_load_error(dataset, idx, exc):
    """One-line message for ``exc`` raised while loading item ``idx`` of ``dataset``: a
    ToolkitError's own text (it names the file), else the item's first file that does not
    decode, else the split line."""
    if isinstance(exc, ToolkitError):
        return str(exc)
    first = (str(exc).strip().splitlines() or [""])[0]
    from .check import find_bad_file
    bad = find_bad_file(dataset, idx)
    if bad is not None:
        return bad
    lines = getattr(dataset, "filenames", None)
    where = "item {}".format(idx)
    if lines is not None and 0 <= idx < len(lines):
        where += " '{}' of {}".format(lines[idx], getattr(dataset, "split_file", None) or "the split")
    return ("cannot load {} ({}: {}): run train.py with --check_data full to list the bad files, then "
            "fix or regenerate them".format(where, type(exc).__name__, first))


class SafeDataset(paddle.io.Dataset):
    """Wraps a dataset so that ``__getitem__`` never raises: a failing item becomes an error
    marker that :func:`collate` keeps and :func:`checked_batches` raises in the main thread.
    Items come back as dicts of numpy arrays."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def _index(self, key):
        return int(key)

    def _load(self, key):
        return self.dataset[self._index(key)]

    def __getitem__(self, key):
        try:
            item = self._load(key)
            return {k: (v.numpy() if hasattr(v, "numpy") else np.asarray(v)) for k, v in item.items()}
        except Exception as exc:  # noqa: BLE001 - reported as one line in the main thread
            try:
                return _error_marker(describe_load_error(self.dataset, self._index(key), exc))
            except Exception as exc2:  # noqa: BLE001 - never let anything escape
                return _error_marker("cannot load item {} ({}: {}): check the split's files".format(
                    key, type(exc2).__name__, exc2))


def collate(samples):
    """Stack a list of sample dicts of numpy arrays into a dict of batched numpy arrays.

    Never raises: a batch holding an error marker (or whose samples do not stack) becomes
    an error marker batch for :func:`checked_batches`."""
    for sample in samples:
        if LOAD_ERROR_KEY in sample:
            return {LOAD_ERROR_KEY: sample[LOAD_ERROR_KEY]}
    try:
        return {k: np.stack([s[k] for s in samples], 0) for k in samples[0]}
    except Exception as exc:  # noqa: BLE001
        shapes = {k: sorted({tuple(np.shape(s.get(k))) for s in samples}) for k in samples[0]}
        bad = next((k for k, v in shapes.items() if len(v) > 1), None)
        return _error_marker("samples of a batch do not stack (key {!r}, shapes {}; {}: {}): every item "
                             "must have the same keys and sizes, check --height/--width and the "
                             "split's files".format(bad, shapes.get(bad), type(exc).__name__, exc))


def raise_if_load_error(batch):
    """Raise the DataLoadError a marker batch carries; return ``batch`` otherwise."""
    if isinstance(batch, dict) and LOAD_ERROR_KEY in batch:
        raise DataLoadError(_marker_message(batch[LOAD_ERROR_KEY]))
    return batch


def stop_signals_end_worker(worker_id=None):
    """``worker_init_fn`` of the training loader: in its worker processes SIGINT and SIGTERM
    raise KeyboardInterrupt, which Paddle's worker loop takes as a clean exit, so a signal
    to the whole process group (Ctrl-C in a terminal, a job scheduler's SIGTERM) ends the
    workers quietly (no "worker killed" error) while the trainer saves weights_last."""
    import signal
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.default_int_handler)


def worker_died(exc, num_workers, then="run again"):
    """The one-line DataLoadError for Paddle's error when a loader worker process dies (killed,
    out of memory), which its SIGCHLD handler raises anywhere in the main thread; any other
    exception is returned as it is (for the caller to raise)."""
    line = next((ln.strip() for ln in str(exc).splitlines() if "DataLoader process" in ln), None)
    if line is None:
        return exc
    return DataLoadError("a data loader worker process died ({}; --num_workers {}): lower --num_workers or "
                         "free memory, then {}".format(line[:300], num_workers, then))


def checked_batches(loader, num_workers=None, watchdog=None):
    """Iterate ``loader`` (a DataLoader over a Safe/SeededDataset with :func:`collate`),
    raising a sample's load error as a one-line DataLoadError in this (the main) thread.
    A loader that itself fails (a worker process killed, out of shared memory) becomes a
    DataLoadError too. ``watchdog`` (a run_guard.LoaderWatchdog) times each wait."""
    it = iter(loader)
    while True:
        try:
            if watchdog is not None:
                watchdog.waiting()
            try:
                batch = next(it)
            finally:
                if watchdog is not None:
                    watchdog.done()
        except StopIteration:
            return
        except (ToolkitError, KeyboardInterrupt):
            raise
        except Exception as exc:  # noqa: BLE001 - Paddle's reader/worker failures
            first = (str(exc).strip().splitlines() or [""])[0]
            raise DataLoadError("data loading failed, a loader worker may have died ({}: {}; --num_workers {}): "
                                "lower --num_workers or free memory, and run again".format(
                                    type(exc).__name__, first[:300],
                                    "?" if num_workers is None else num_workers)) from None
        yield raise_if_load_error(batch)
