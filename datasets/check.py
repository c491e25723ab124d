"""Every check of a run's data, so that a bad file is reported in seconds instead of after hours of training, and a
sample that fails to load names the file to blame (:func:`find_bad_file`). :func:`check_split`: every file an item reads
exists (one directory listing per folder; the evaluation tools use it too); :func:`check_contents`: :func:`check_file`
over whole lists, in threads; :func:`check_training_data`: both, for train.py (``--check_data quick|full``).
"""
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from image_io import ImageReadError, load_image
from utils import ToolkitError
from fileio import read_npy_header

MAX_LISTED = 5
TAIL_BYTES = 4096
KINDS = ("image", "hint", "depth")
LABELS = {"image": "image", "hint": "hint", "depth": "ground-truth"}
FIXES = {"image": "re-extract or re-convert the bad images",
         "hint": "delete the bad hints and rerun precompute_depth_hints.py (it recomputes missing hints)",
         "depth": "re-download the bad ground-truth files"}


def item_paths(dataset, idx):
    """``[(kind, path)]`` of the files item ``idx`` reads; kind is 'image', 'hint' or 'depth'."""
    folder, frame_index, side = dataset.lines[idx]
    out = [("image", dataset.get_image_path(fo, fr, sd))
           for fo, fr, sd in dataset.frame_sources(folder, frame_index, side).values()]
    if dataset.use_depth_hints:
        out.append(("hint", dataset.get_depth_hint_path(folder, frame_index, side)))
    if dataset.load_depth and hasattr(dataset, "depth_paths"):
        out += [("depth", p) for p in dataset.depth_paths(folder, frame_index, side)]
    return out


def _unique_files(datasets):
    """``[(kind, path, dataset)]`` of every file the items of ``datasets`` read, each path once, in split order."""
    files = {}
    for ds in datasets:
        for idx in range(len(ds.lines)):
            for kind, path in item_paths(ds, idx):
                files.setdefault(path, (kind, path, ds))
    return list(files.values())


def _decode_reason(path):
    """None when the image (or ground-truth PNG) decodes as training reads it, else why not."""
    try:
        load_image(path)
    except ImageReadError as exc:
        return exc.reason
    return None


def _check_image(path, full):
    try:
        size = os.path.getsize(path)
        if size == 0:
            return "empty file"
        if full:
            return _decode_reason(path)
        with open(path, "rb") as f:
            head = f.read(8)
            f.seek(max(0, size - TAIL_BYTES))
            tail = f.read()
    except OSError as exc:
        return f"cannot read ({exc.strerror or exc})"
    end = b"\xff\xd9" if head.startswith(b"\xff\xd8") else b"IEND" if head.startswith(b"\x89PNG") else None
    if end is None:
        return _decode_reason(path)  # another format: decode it to be sure
    if end in tail:
        return None
    # no end marker: truncated, or data appended after it; the decoder decides
    reason = _decode_reason(path)
    return None if reason is None else "truncated or corrupt: " + reason


# Hints are depths in network units (metres / 5.4); beyond --max_depth (default 100) no prediction can follow one.
HINT_MAX_DEPTH = 100.0


def hint_values_reason(hint, max_depth=HINT_MAX_DEPTH):
    """Why a hint array's values are not depths (negative, or above ``max_depth``; 0 = no hint), or None."""
    low, high = float(np.min(hint)), float(np.max(hint))
    if low < 0:
        return "negative values (min {:.4g}): hints are depths, 0 = no hint".format(low)
    if high > max_depth:
        return f"values above the depth range (max {high:.4g} > {max_depth:g}): hints are depths, 0 = no hint"
    return None


def _check_hint(path, full):
    try:
        shape, _, dtype, size, expected = read_npy_header(path)
    except Exception as exc:  # noqa: BLE001 - not a .npy, truncated header
        return "not a readable .npy file ({}: {})".format(type(exc).__name__, (str(exc).splitlines() or [""])[0])
    if len(shape) != 3 or shape[0] != 1 or min(shape[1:]) < 1:
        return "shape {}, expected (1, H, W)".format(tuple(shape))
    if dtype.kind != "f":
        return "dtype {}, expected float".format(dtype)
    if size < expected:
        return "truncated: {} bytes, its header needs {}".format(size, expected)
    if not full:
        return None
    from .mono_dataset import DepthHintError, read_depth_hint
    try:
        return hint_values_reason(read_depth_hint(path))
    except DepthHintError as exc:
        return exc.reason


def _check_depth(path, full):
    try:
        size = os.path.getsize(path)
    except OSError as exc:
        return f"cannot read ({exc.strerror or exc})"
    if size == 0:
        return "empty file"
    if path.endswith(".bin"):
        return ("truncated: {} bytes is not a whole number of LiDAR points (16 bytes each)".format(size)
                if size % 16 else None)
    return _decode_reason(path) if full else None


def check_file(kind, path, dataset=None, full=False):
    """Why ``path`` (a file of ``kind`` 'image', 'hint' or 'depth' read by ``dataset``) is bad, or None.

    Quick: a hint's .npy header (shape (1, H, W), float) and size against it; an image non-empty and ending with its
    format's end marker (decoded when not, or when neither JPEG nor PNG); ground truth non-empty (a LiDAR scan a whole
    number of points). ``full``: images and ground-truth PNGs decode (:func:`image_io.load_image`, as training reads
    them), hints load (``read_depth_hint``: no NaN or inf) and hold depths (:func:`hint_values_reason`)."""
    return {"image": _check_image, "hint": _check_hint}.get(kind, _check_depth)(path, full)


def find_bad_file(dataset, idx):
    """One-line message naming the first file of item ``idx`` that does not decode, or None."""
    if not hasattr(dataset, "lines"):
        return None
    for kind, path in item_paths(dataset, idx):
        reason = check_file(kind, path, dataset, full=True) if os.path.exists(path) else "missing"
        if reason is not None:
            return "bad {} ({}): {}; {}".format(kind, path, reason, FIXES[kind])
    return None


def check_split(dataset, max_listed=MAX_LISTED):
    """ToolkitError naming the first ``max_listed`` missing files (and the count) of those ``dataset`` reads."""
    listings = {}  # folder -> its names
    missing = {}
    for kind, path, _ in _unique_files([dataset]):
        folder, name = os.path.split(path)
        if folder not in listings:
            try:
                listings[folder] = frozenset(os.listdir(folder))
            except OSError:
                listings[folder] = frozenset()
        if name not in listings[folder]:
            missing.setdefault(kind, []).append(path)
    if not missing:
        return None
    total = sum(len(v) for v in missing.values())
    first = [p for kind in KINDS for p in missing.get(kind, [])][:max_listed]
    fixes = {"image": "check --data_path and the split, and --png if the images are PNG",
             "hint": f"run precompute_depth_hints.py for this split or set --depth_hint_path "
                     f"(now {dataset.depth_hint_path})",
             "depth": "download the ground truth (velodyne_points / proj_depth) for these drives"}
    counts = ", ".join(f"{len(v)} {k}" for k, v in missing.items())
    src = f" of {dataset.split_file}" if getattr(dataset, "split_file", None) else ""
    raise ToolkitError(f"{total} file(s) missing for the split{src} ({counts}; first: {', '.join(first)}): "
                       + "; ".join(fixes[k] for k in KINDS if k in missing))


def check_contents(datasets, full=False, workers=None, progress=None):
    """``[(kind, path, reason)]`` of the bad (existing) files the items of ``datasets`` read, in split order.
    ``full`` decodes every file, with a progress bar (``progress=None``: on a terminal) and a rate line."""
    jobs = _unique_files(datasets if isinstance(datasets, (list, tuple)) else [datasets])
    workers = workers or max(1, min(8, 2 * (os.cpu_count() or 1)))
    t0 = time.time()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        reasons = pool.map(lambda job: check_file(job[0], job[1], job[2], full), jobs, chunksize=16)
        if full:
            from tqdm import tqdm
            reasons = tqdm(reasons, total=len(jobs), desc="check data", unit="file", dynamic_ncols=True,
                           disable=(not sys.stderr.isatty()) if progress is None else not progress)
        bad = [(kind, path, reason) for (kind, path, _), reason in zip(jobs, reasons) if reason is not None]
    if full:
        dt = max(time.time() - t0, 1e-9)
        n = {k: sum(1 for j in jobs if j[0] == k) for k in KINDS}
        print("check data: {} images, {} hints, {} ground-truth files checked in {:.1f}s ({:.0f} images/s); "
              "{} bad".format(n["image"], n["hint"], n["depth"], dt, n["image"] / dt, len(bad)))
    return bad


def bad_files_error(bad, full, what="the training data", how=None):
    """The ToolkitError of :func:`check_contents`' findings: all with ``full``, else the first ``MAX_LISTED``."""
    kinds = [k for k in KINDS if any(b[0] == k for b in bad)]
    counts = ", ".join("{} {}".format(sum(1 for b in bad if b[0] == k), LABELS[k]) for k in kinds)
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
    """Data path, split files and every file of the train and val lists exist and (``opt.check_data``) look right or
    decode, else a ToolkitError. Returns ``build_dataset(opt, "train", True), build_dataset(opt, "val", False)``."""
    from .kitti_dataset import build_dataset, split_dir_of
    if not os.path.isdir(opt.data_path):
        raise ToolkitError(f"data path not found: {opt.data_path} (--data_path): point --data_path at the KITTI "
                           "raw folder")
    if opt.use_depth_hints and opt.depth_hint_path is not None and not os.path.isdir(opt.depth_hint_path):
        raise ToolkitError("depth hint path not found: {} (--depth_hint_path): run precompute_depth_hints.py "
                           "or fix the path".format(opt.depth_hint_path))
    split_dir_of(opt)
    sets = (build_dataset(opt, "train", is_train=True), build_dataset(opt, "val", is_train=False))
    for ds in sets:
        check_split(ds)
    full = getattr(opt, "check_data", "quick") == "full"
    bad = check_contents(list(sets), full=full)
    if bad:
        raise bad_files_error(bad, full)
    return sets
