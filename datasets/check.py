"""Up-front checks of a run's data: every file a dataset will read exists (images for all
frame ids and sides, depth hints when used, ground truth when loaded), so a missing file is
reported in seconds instead of after hours of training."""
import os

from utils import ToolkitError

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
    """Yield ``(kind, path)`` for every file the dataset's items read; kind is 'image',
    'hint' or 'depth'."""
    for folder, frame_index, side in dataset.lines:
        for fo, fr, sd in dataset.frame_sources(folder, frame_index, side).values():
            yield "image", dataset.get_image_path(fo, fr, sd)
        if dataset.use_depth_hints:
            yield "hint", dataset.get_depth_hint_path(folder, frame_index, side)
        if dataset.load_depth and hasattr(dataset, "depth_paths"):
            for p in dataset.depth_paths(folder, frame_index, side):
                yield "depth", p


def check_split(dataset, max_listed=MAX_LISTED):
    """Raise :class:`ToolkitError` listing the first ``max_listed`` missing files (and how
    many are missing in all) if any file an item of ``dataset`` reads does not exist.

    Only existence is checked (one directory listing per folder); hint contents are
    validated when an item is loaded. Returns None when everything is there.
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


def check_training_data(opt):
    """Check data path, split files and every file of the train and val lists (ToolkitError)."""
    from .sampling import build_dataset, split_dir_of
    if not os.path.isdir(opt.data_path):
        raise ToolkitError("data path not found: {} (--data_path): point --data_path at the KITTI raw "
                           "folder".format(opt.data_path))
    if opt.use_depth_hints and opt.depth_hint_path is not None and not os.path.isdir(opt.depth_hint_path):
        raise ToolkitError("depth hint path not found: {} (--depth_hint_path): run precompute_depth_hints.py "
                           "or fix the path".format(opt.depth_hint_path))
    split_dir_of(opt)
    for which in ("train", "val"):
        check_split(build_dataset(opt, which, is_train=False))
