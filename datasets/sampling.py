"""From datasets to batches: the loaders of a training run, and the sampling that makes a resumed run
see exactly the batches an uninterrupted one would (the safe loading under it: datasets/safe_loading.py)."""
import os
import random
import types

import numpy as np
import paddle

from utils import ToolkitError

from .safe_loading import DataLoadError, SafeDataset, checked_batches, collate, stop_signals_end_worker


def training_loaders(opt, train, val, world_size=1):
    """The loaders of a run over ``train`` (augmentation on) and ``val``: a namespace of train_dataset, val_dataset
    (:class:`SeededDataset`), train_sampler, train_loader, val_batches (:class:`PositionedBatches`) and num_workers."""
    train.is_train = True
    d = types.SimpleNamespace(train_dataset=SeededDataset(train, opt.seed),
                              val_dataset=SeededDataset(val, opt.seed + 1))
    if len(d.train_dataset) < opt.batch_size * world_size:
        raise ToolkitError("only {} training samples for batch size {} x {} processes (--batch_size): lower it or "
                           "use a bigger split".format(len(d.train_dataset), opt.batch_size, world_size))
    d.num_workers = max(0, min(opt.num_workers, os.cpu_count() or 1))
    d.train_sampler = ResumableBatchSampler(d.train_dataset, opt.batch_size, opt.seed)
    d.train_loader = paddle.io.DataLoader(d.train_dataset, batch_sampler=d.train_sampler, num_workers=d.num_workers,
                                          collate_fn=collate, use_shared_memory=d.num_workers > 0,
                                          worker_init_fn=stop_signals_end_worker)
    val_sampler = ResumableBatchSampler(d.val_dataset, min(opt.batch_size, len(val)), opt.seed + 1)
    d.val_batches = PositionedBatches(paddle.io.DataLoader(d.val_dataset, batch_sampler=val_sampler, num_workers=0,
                                                           collate_fn=collate), val_sampler)
    return d


class SeededDataset(SafeDataset):
    """A :class:`SafeDataset` whose key ``epoch * N + i`` is item i, its RNGs seeded by (seed, epoch, i) whatever
    worker loads it: ``get_item(index, rng)`` gets a ``random.Random``, other datasets ``random`` / ``np.random``."""

    def __init__(self, dataset, seed):
        super().__init__(dataset)
        self.seed = int(seed)

    def _index(self, key):
        return int(key) % len(self.dataset)

    def _load(self, key):
        epoch, idx = divmod(int(key), len(self.dataset))
        s = (self.seed * 1000003 + epoch * 7919 + idx) % (2 ** 32)
        if hasattr(self.dataset, "get_item"):
            return self.dataset.get_item(idx, rng=random.Random(s))
        random.seed(s)
        np.random.seed(s)
        return self.dataset[idx]


class ResumableBatchSampler(paddle.io.DistributedBatchSampler):
    """DistributedBatchSampler with a seeded per-epoch permutation and a start batch, yielding keys ``epoch * N +
    index`` for :class:`SeededDataset`; every rank takes its strided share of the (padded) permutation."""

    def __init__(self, dataset, batch_size, seed, shuffle=True, drop_last=True):
        super().__init__(dataset, batch_size, shuffle=shuffle, drop_last=drop_last)
        self.seed = int(seed)
        self.start_batch = 0

    def set_epoch(self, epoch, start_batch=0):
        self.epoch, self.start_batch = int(epoch), int(start_batch)

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
        for b in range(self.start_batch, len(self)):
            yield [int(self.epoch * n + i) for i in idx[b * self.batch_size:(b + 1) * self.batch_size]]

    def __len__(self):
        per_rank = int(np.ceil(len(self.dataset) / self.nranks))
        return per_rank // self.batch_size if self.drop_last else int(np.ceil(per_rank / self.batch_size))


class PositionedBatches:
    """Endless batches of ``loader`` over ``sampler`` (a :class:`ResumableBatchSampler`), each a pure function of
    (seed, epoch, batch): :meth:`seek` to a saved :attr:`position` continues exactly (the trainer's validation)."""

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
