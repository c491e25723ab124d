"""Up-front checks of a run's data, so that a bad file is reported in seconds instead of
after hours of training.

- :func:`check_split`: every file a dataset's items read exists (images for all frame ids
  and sides, depth hints when used, ground truth when loaded); one directory listing per
  folder. The evaluation tools use it.
- :func:`check_contents`: what can be validated cheaply (``full=False``): every hint's
  .npy header (shape (1, H, W), float dtype) and its size against the header, every image
  non-empty and ending with its format's end marker (a JPEG without one is decoded to be
  sure), ground-truth files non-empty. ``full=True`` decodes every image, hint and
  ground-truth file instead (NaN hints, corrupt JPEG data).
- :func:`check_training_data`: both, for train.py (``--check_data quick|full``).
"""
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from utils import ToolkitError

from .file_checks import FIXES, check_file, item_paths

MAX_LISTED = 5


class _DirCache:
    """Answers "does this file exist?" with one ``os.listdir`` per folder."""

    def __init__(self):
        self.cache = {}

    def exists(self, path):
        folder, name = os.path.split(path)
        names = self.cache.get(folder)
        if names is None:
            try:
                names = frozenset(os.listdir(folder))
            except OSError:
                names = frozenset()
            self.cache[folder] = names
        return name in names


def split_paths(dataset):
    """Yield ``(kind, path)`` for every file the dataset's items read."""
    for idx in range(len(dataset.lines)):
        yield from item_paths(dataset, idx)


def check_split(dataset, max_listed=MAX_LISTED):
    """Raise :class:`ToolkitError` listing the first ``max_listed`` missing files (and how
    many are missing in all) if any file an item of ``dataset`` reads does not exist.

    Only existence is checked (one directory listing per folder); :func:`check_contents`
    looks inside the files. Returns None when everything is there.
    """
    cache = _DirCache()
    missing = {}
    seen = set()
    for kind, path in split_paths(dataset):
        if path in seen:
            continue
        seen.add(path)
        if not cache.exists(path):
            missing.setdefault(kind, []).append(path)
    if not missing:
        return None
    total = sum(len(v) for v in missing.values())
    first = [p for kind in ("image", "hint", "depth") for p in missing.get(kind, [])][:max_listed]
    fixes = []
    if "image" in missing:
        fixes.append("check --data_path and the split, and --png if the images are PNG")
    if "hint" in missing:
        fixes.append(f"run precompute_depth_hints.py for this split or set --depth_hint_path "
                     f"(now {dataset.depth_hint_path})")
    if "depth" in missing:
        fixes.append("download the ground truth (velodyne_points / proj_depth) for these drives")
    counts = ", ".join(f"{len(v)} {k}" for k, v in missing.items())
    src = f" of {dataset.split_file}" if getattr(dataset, "split_file", None) else ""
    raise ToolkitError(
        f"{total} file(s) missing for the split{src} ({counts}; first: {', '.join(first)}): "
        + "; ".join(fixes))


# ----------------------------------------------------------------------------- whole lists


def check_contents(datasets, full=False, workers=None, progress=None):
    """Check inside every (existing) file the items of ``datasets`` read; returns the bad
    ones as ``[(kind, path, reason)]`` in split order. ``full`` decodes every file and shows
    a progress bar (``progress=None``: only on a terminal) and a closing rate line."""
    if not isinstance(datasets, (list, tuple)):
        datasets = [datasets]
    jobs, seen = [], set()
    for ds in datasets:
        for kind, path in split_paths(ds):
            if path not in seen:
                seen.add(path)
                jobs.append((kind, path, ds))
    workers = workers or max(1, min(8, 2 * (os.cpu_count() or 1)))
    t0 = time.time()
    bar = None
    if full:
        from tqdm import tqdm
        bar = tqdm(total=len(jobs), desc="check data", unit="file", dynamic_ncols=True,
                   disable=(not sys.stderr.isatty()) if progress is None else not progress)
    bad = []

    def one(job):
        kind, path, ds = job
        return kind, path, check_file(kind, path, ds, full)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for kind, path, reason in pool.map(one, jobs, chunksize=16):
            if reason is not None:
                bad.append((kind, path, reason))
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
        dt = max(time.time() - t0, 1e-9)
        n_img = sum(1 for j in jobs if j[0] == "image")
        print("check data: {} images, {} hints, {} ground-truth files checked in {:.1f}s ({:.0f} images/s); "
              "{} bad".format(n_img, sum(1 for j in jobs if j[0] == "hint"),
                              sum(1 for j in jobs if j[0] == "depth"), dt, n_img / dt, len(bad)))
    return bad


def bad_files_error(bad, full, what="the training data", how=None):
    """The one-line ToolkitError for :func:`check_contents`' findings: all of them with
    ``full``, else the first ``MAX_LISTED`` and the counts."""
    kinds = [k for k in ("image", "hint", "depth") if any(b[0] == k for b in bad)]
    label = {"image": "image", "hint": "hint", "depth": "ground-truth"}
    counts = ", ".join("{} {}".format(sum(1 for b in bad if b[0] == k), label[k]) for k in kinds)
    listed = bad if full else bad[:MAX_LISTED]
    items = "; ".join("{} ({})".format(path, reason) for _, path, reason in listed)
    more = "" if len(listed) == len(bad) else "; and {} more".format(len(bad) - len(listed))
    if how is None:
        how = "--check_data full" if full else "--check_data quick; --check_data full also decodes every file"
    return ToolkitError("{} bad file(s) in {} ({}; {}): {}{}: {}".format(
        len(bad), what, counts, how, items, more, "; ".join(FIXES[k] for k in kinds)))


def check_eval_split(dataset):
    """For the evaluation tools: every file exists and passes the quick content checks."""
    check_split(dataset)
    bad = check_contents(dataset)
    if bad:
        raise bad_files_error(bad, False, "the evaluation split", "checked before predicting")


def check_training_data(opt):
    """Check data path, split files and every file of the train and val lists (ToolkitError):
    they exist, and (``opt.check_data``) look right (quick) or decode (full)."""
    from .sampling import build_dataset, split_dir_of
    if not os.path.isdir(opt.data_path):
        raise ToolkitError("data path not found: {} (--data_path): point --data_path at the KITTI raw "
                           "folder".format(opt.data_path))
    if opt.use_depth_hints and opt.depth_hint_path is not None and not os.path.isdir(opt.depth_hint_path):
        raise ToolkitError("depth hint path not found: {} (--depth_hint_path): run precompute_depth_hints.py "
                           "or fix the path".format(opt.depth_hint_path))
    split_dir_of(opt)
    sets = [build_dataset(opt, which, is_train=False) for which in ("train", "val")]
    for ds in sets:
        check_split(ds)
    full = getattr(opt, "check_data", "quick") == "full"
    bad = check_contents(sets, full=full)
    if bad:
        raise bad_files_error(bad, full)
