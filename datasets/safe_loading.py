"""Safe sample loading: an exception inside a dataset runs in Paddle's reader thread (num_workers=0: the main
thread then waits forever) or in a worker (stacked tracebacks), so none leaves: a failing sample becomes a marker
{LOAD_ERROR_KEY: message as uint8}, which :func:`collate` and :func:`checked_batches` raise here as one line."""
import numpy as np
import paddle

from utils import ToolkitError

LOAD_ERROR_KEY = "load_error"


class DataLoadError(ToolkitError):
    """A sample failed to load (unreadable image, bad hint, ...); the message names the file."""


def _error_marker(message):
    return {LOAD_ERROR_KEY: np.frombuffer(str(message).encode("utf-8"), dtype=np.uint8).copy()}


def describe_load_error(dataset, idx, exc):
    """One line for ``exc`` raised by item ``idx``: a ToolkitError's text, else its first bad file or split line."""
    from .check import find_bad_file
    if isinstance(exc, ToolkitError):
        return str(exc)
    bad = find_bad_file(dataset, idx)
    if bad is not None:
        return bad
    first = (str(exc).strip().splitlines() or [""])[0]
    lines = getattr(dataset, "filenames", None)
    where = "item {}".format(idx)
    if lines is not None and 0 <= idx < len(lines):
        where += " '{}' of {}".format(lines[idx], getattr(dataset, "split_file", None) or "the split")
    return ("cannot load {} ({}: {}): run train.py with --check_data full to list the bad files, then "
            "fix or regenerate them".format(where, type(exc).__name__, first))


class SafeDataset(paddle.io.Dataset):
    """Wraps a dataset so that ``__getitem__`` never raises: items are dicts of numpy arrays, or error markers."""

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
            return {k: (v.numpy() if hasattr(v, "numpy") else np.asarray(v)) for k, v in self._load(key).items()}
        except Exception as exc:  # noqa: BLE001 - reported as one line in the main thread
            try:
                return _error_marker(describe_load_error(self.dataset, self._index(key), exc))
            except Exception as exc2:  # noqa: BLE001 - never let anything escape
                return _error_marker(f"cannot load item {key} ({type(exc2).__name__}: {exc2}): check the split's files")


def collate(samples):
    """Stack sample dicts into (B, ...) arrays per key; never raises (a marker or an unstackable batch: a marker)."""
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
        message = bytes(np.asarray(batch[LOAD_ERROR_KEY], dtype=np.uint8).reshape(-1))
        raise DataLoadError(message.decode("utf-8", "replace"))
    return batch


def stop_signals_end_worker(worker_id=None):
    """Training's ``worker_init_fn``: SIGINT / SIGTERM raise KeyboardInterrupt, which ends Paddle's workers quietly."""
    import signal
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.default_int_handler)


def worker_died(exc, num_workers, then="run again"):
    """A one-line DataLoadError for the error Paddle's SIGCHLD handler raises anywhere if a worker died; else exc."""
    line = next((ln.strip() for ln in str(exc).splitlines() if "DataLoader process" in ln), None)
    if line is None:
        return exc
    return DataLoadError("a data loader worker process died ({}; --num_workers {}): lower --num_workers or "
                         "free memory, then {}".format(line[:300], num_workers, then))


def checked_batches(loader, num_workers=None, watchdog=None):
    """Iterate ``loader`` (over a Safe/SeededDataset, with :func:`collate`), raising a sample's load error or the
    loader's own failure as a one-line DataLoadError in this thread; ``watchdog`` (run_guard) times each wait."""
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
            first = "{}: {}".format(type(exc).__name__, (str(exc).strip().splitlines() or [""])[0][:300])
            workers = "?" if num_workers is None else num_workers
            raise DataLoadError(f"data loading failed, a loader worker may have died ({first}; --num_workers "
                                f"{workers}): lower --num_workers or free memory, and run again") from None
        yield raise_if_load_error(batch)
