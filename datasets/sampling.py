"""From options to batches: the training/validation datasets of a run, and the sampling
that makes a resumed run see exactly the batches an uninterrupted one would."""
import os
import random

import numpy as np
import paddle

from camera import IntrinsicsLookup, intrinsics_from_option
from utils import ToolkitError, resolve_split_dir

from .kitti_dataset import KITTIDepthDataset, KITTIOdomDataset, KITTIRAWDataset
from .mono_dataset import read_split_file

DATASETS = {"kitti": KITTIRAWDataset, "kitti_odom": KITTIOdomDataset, "kitti_depth": KITTIDepthDataset}


def split_dir_of(opt):
    """Folder holding train_files.txt / val_files.txt for ``opt.split`` (ToolkitError if missing)."""
    try:
        d = resolve_split_dir(opt.split, getattr(opt, "splits_dir", None))
    except FileNotFoundError as e:
        raise ToolkitError("split not found: {} (--split {}): give a split name under splits/ (see "
                           "--splits_dir) or a folder with train_files.txt".format(e, opt.split)) from None
    for f in ("train_files.txt", "val_files.txt"):
        if not os.path.isfile(os.path.join(d, f)):
            raise ToolkitError("split file missing: {} (--split {}): the split folder needs train_files.txt "
                               "and val_files.txt".format(os.path.join(d, f), opt.split))
    return d


def build_dataset(opt, which, is_train):
    """Dataset for the ``which`` ('train' or 'val') list of ``opt.split``."""
    if opt.dataset not in DATASETS:
        raise ToolkitError("dataset '{}' cannot be trained on (--dataset): use kitti, kitti_odom "
                           "or kitti_depth".format(opt.dataset))
    split_file = os.path.join(split_dir_of(opt), "{}_files.txt".format(which))
    filenames = read_split_file(split_file)
    if not filenames:
        raise ToolkitError("split list is empty ({}_files.txt of --split {}): add samples".format(which, opt.split))
    frame_ids = list(opt.frame_ids) + (["s"] if opt.use_stereo and "s" not in opt.frame_ids else [])
    intrinsics = IntrinsicsLookup(opt.data_path, intrinsics_from_option(opt.intrinsics))
    return DATASETS[opt.dataset](opt.data_path, filenames, opt.height, opt.width, frame_ids, len(opt.scales),
                                 is_train=is_train, img_ext=".png" if opt.png else ".jpg",
                                 use_depth_hints=opt.use_depth_hints, depth_hint_path=opt.depth_hint_path,
                                 split_file=split_file, intrinsics=intrinsics)


# ----------------------------------------------------------------------------- safe loading
#
# An exception raised inside a dataset runs in Paddle's reader thread (num_workers=0) or in
# a worker process: with no worker it leaves the main thread waiting forever, with workers
# it arrives as stacked tracebacks. So no exception leaves these datasets: a sample that
# fails to load becomes a marker {LOAD_ERROR_KEY: message as uint8 bytes}, ``collate``
# turns a batch holding one into a marker batch, and ``checked_batches`` raises the
# message as a DataLoadError in the main thread.

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


class SeededDataset(SafeDataset):
    """Wraps a dataset so that key ``epoch * N + i`` is item i drawn with RNGs seeded by
    (seed, epoch, i): augmentation is a pure function of the sample, whatever worker
    process loads it, so a resumed run sees exactly the same batches. Datasets with
    ``get_item(index, rng)`` (MonoDataset) get their own ``random.Random``, so loading never
    touches the global RNGs; others get ``random`` and ``np.random`` seeded. Like
    :class:`SafeDataset`, it never raises."""

    def __init__(self, dataset, seed):
        super().__init__(dataset)
        self.seed = int(seed)

    def _index(self, key):
        return int(key) % len(self.dataset)

    def _load(self, key):
        n = len(self.dataset)
        epoch, idx = divmod(int(key), n)
        s = (self.seed * 1000003 + epoch * 7919 + idx) % (2 ** 32)
        if hasattr(self.dataset, "get_item"):
            return self.dataset.get_item(idx, rng=random.Random(s))
        random.seed(s)
        np.random.seed(s)
        return self.dataset[idx]


class ResumableBatchSampler(paddle.io.DistributedBatchSampler):
    """DistributedBatchSampler with a seeded per-epoch permutation and a start batch.

    Yields lists of keys ``epoch * N + index`` for :class:`SeededDataset`. Every rank takes
    its strided share of the (padded) permutation, as DistributedBatchSampler does.
    """

    def __init__(self, dataset, batch_size, seed, shuffle=True, drop_last=True):
        super().__init__(dataset, batch_size, shuffle=shuffle, drop_last=drop_last)
        self.seed = int(seed)
        self.start_batch = 0

    def set_epoch(self, epoch, start_batch=0):
        self.epoch = int(epoch)
        self.start_batch = int(start_batch)

    def _indices(self):
        n = len(self.dataset)
        idx = np.arange(n)
        if self.shuffle:
            np.random.RandomState((self.seed * 9973 + self.epoch) % (2 ** 32)).shuffle(idx)
        total = int(np.ceil(n / self.nranks)) * self.nranks
        idx = np.concatenate([idx, idx[:total - n]]) if total > n else idx
        return idx[self.local_rank:total:self.nranks]

    def __iter__(self):
        idx = self._indices()
        n = len(self.dataset)
        nb = len(idx) // self.batch_size if self.drop_last else int(np.ceil(len(idx) / self.batch_size))
        for b in range(self.start_batch, nb):
            yield [int(self.epoch * n + i) for i in idx[b * self.batch_size:(b + 1) * self.batch_size]]

    def __len__(self):
        per_rank = int(np.ceil(len(self.dataset) / self.nranks))
        if self.drop_last:
            return per_rank // self.batch_size
        return int(np.ceil(per_rank / self.batch_size))


class PositionedBatches:
    """Endless batches of ``loader`` (over ``sampler``, a :class:`ResumableBatchSampler`) from
    a position ``(epoch, batch)``: batch ``b`` of epoch ``e`` is a pure function of (seed,
    e, b), so saving :attr:`position` and :meth:`seek`-ing to it continues exactly (the
    trainer's validation). Load errors are raised as in :func:`checked_batches`."""

    def __init__(self, loader, sampler, epoch=0, batch=0):
        self.loader, self.sampler = loader, sampler
        self.watchdog = None  # times each wait, as in checked_batches
        self.seek(epoch, batch)

    @property
    def position(self):
        """``(epoch, batch)`` of the next batch."""
        return self.epoch, self.batch

    def seek(self, epoch, batch=0):
        self.epoch, self.batch, self._it = int(epoch), int(batch), None

    def next(self):
        for _ in range(2):
            if self._it is None:
                self.sampler.set_epoch(self.epoch, self.batch)
                self._it = checked_batches(self.loader, 0, self.watchdog)
            try:
                batch = next(self._it)
            except StopIteration:
                self.seek(self.epoch + 1, 0)
                continue
            except DataLoadError:
                self._it = None  # this position is tried again next time
                raise
            self.batch += 1
            return batch
        raise ToolkitError("the validation list yields no batch (val_files.txt): add samples")


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
    DataLoadError too. ``watchdog`` (a datasets.watchdog.LoaderWatchdog) times each wait."""
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
