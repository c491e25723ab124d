"""Export the Eigen test ground truth once to ``<splits_dir>/<split>/gt_depths.npz`` (docs/METHOD.md, section 6).

- ``--split eigen``: the LiDAR scan projected into camera 2 (``generate_depth_map`` with
  ``vel_depth=True``, i.e. depth = LiDAR x), at the calibration's image size.
- ``--split eigen_benchmark``: KITTI's improved annotated depth
  ``<folder>/proj_depth/groundtruth/image_02/<frame:010d>.png`` / 256.

The file holds key ``data``: an object array of per-image float32 (rows, cols) maps in the
order of ``test_files.txt``, as Monodepth2 writes it (read it without running code with
``safe_load.load_npz(path, "data")["data"]``, as evaluate_depth.py does). Written
atomically (a full disk is one line naming the folder, and no file); missing inputs are
reported up front. Progress: a bar on a terminal, else a status line with rate and ETA
every 30 s (progress.ProgressLog, on stderr).

Usage: ``python export_gt_depth.py --data_path KITTI_RAW --split eigen [--splits_dir DIR]``
"""
import argparse
import os
import sys

import numpy as np

import fileio
import kitti_utils
import utils
from progress import ProgressLog
from utils import ToolkitError, run_cli

SPLITS = ("eigen", "eigen_benchmark")


def gt_source(data_path, split, folder, frame):
    """The file the ground truth of one test line is read from (camera 2, whatever the line's
    side, as Monodepth2 exports it): the LiDAR scan for eigen, the improved PNG otherwise."""
    if split == "eigen":
        return kitti_utils.velodyne_path(data_path, folder, frame)
    return kitti_utils.gt_depth_path(data_path, folder, frame, "l")


def load_gt(data_path, split, folder, frame):
    """Ground-truth depth map (float32) of one test image."""
    path = gt_source(data_path, split, folder, frame)
    if split == "eigen":
        calib_dir = kitti_utils.calib_dir(data_path, folder)
        try:
            return kitti_utils.generate_depth_map(calib_dir, path, 2, True).astype(np.float32)
        except ToolkitError:
            raise
        except Exception as e:  # noqa: BLE001 - a truncated scan or calibration file
            first = (str(e).splitlines() or [""])[0]
            raise ToolkitError(f"unreadable LiDAR scan or calibration ({path}, {calib_dir}): "
                               f"{type(e).__name__}: {first}; re-download them") from None
    from PIL import Image
    try:
        with Image.open(path) as img:
            return np.asarray(img).astype(np.float32) / 256.0
    except (OSError, ValueError) as e:
        raise ToolkitError(f"unreadable ground-truth PNG ({path}): {e}; re-download "
                           f"data_depth_annotated") from None


def export_gt_depths(data_path, split, splits_dir=None, progress=True):
    """Write ``gt_depths.npz`` for ``split`` and return its path."""
    if split not in SPLITS:
        raise ToolkitError(f"unknown split '{split}' (--split): use one of {', '.join(SPLITS)}")
    data_path = os.fspath(data_path)
    if not os.path.isdir(data_path):
        raise ToolkitError(f"data folder not found ({data_path}) (--data_path): point it at the "
                           f"KITTI raw data")
    base = os.fspath(splits_dir) if splits_dir else os.path.join(kitti_utils.REPO_ROOT, "splits")
    try:
        split_dir = kitti_utils.resolve_split_dir(split, splits_dir)
    except utils.MissingFileError:
        raise ToolkitError(f"split '{split}' not found ({os.path.join(base, split)}) (--splits_dir {base}): "
                           f"point --splits_dir at the folder holding {split}/test_files.txt") from None
    out = os.path.join(split_dir, "gt_depths.npz")
    fileio.check_output_file(out, "--splits_dir")  # before any work
    list_path = os.path.join(split_dir, "test_files.txt")
    if not os.path.isfile(list_path):
        raise ToolkitError(f"test list not found ({list_path}) (--splits_dir {base}): the {split} split "
                           f"folder needs its test_files.txt; point --splits_dir at the folder holding it")
    items = [(folder, frame) for folder, frame, _ in kitti_utils.read_split_entries(list_path)]
    if not items:
        raise ToolkitError(f"empty split list ({list_path}): add the test images")
    missing = [p for p in (gt_source(data_path, split, f, i) for f, i in items) if not os.path.isfile(p)]
    if missing:
        what = ("the KITTI raw velodyne_points" if split == "eigen"
                else "KITTI's data_depth_annotated (proj_depth/groundtruth)")
        raise ToolkitError(f"{len(missing)} ground-truth file(s) missing (first: {', '.join(missing[:3])}): "
                           f"download {what} into --data_path")
    if split == "eigen":
        calibs = sorted({c for f, _ in items for c in kitti_utils.calib_files(data_path, f)})
        absent = [c for c in calibs if not os.path.isfile(c)]
        if absent:
            raise ToolkitError(f"calibration file(s) missing (first: {', '.join(absent[:3])}): download "
                               f"the KITTI raw calibration for each date into --data_path")
    gt = np.empty(len(items), dtype=object)
    # a bar on a terminal, else a plain status line (rate, ETA) every 30 s and at the end
    log = ProgressLog(len(items), "img", stream=sys.stderr, desc=f"export {split} gt") if progress else None
    try:
        for k, (folder, frame) in enumerate(items):
            gt[k] = load_gt(data_path, split, folder, frame)
            if log is not None:
                log.update()
    finally:
        if log is not None:
            log.close()
    fileio.clean_stale_temp_files(split_dir)
    try:
        fileio.atomic_save_npz(out, data=gt)
    except OSError as exc:  # a full disk, a read-only file system: no file, one line naming the folder
        from test_simple import write_error
        raise write_error(exc, out, "--splits_dir") from None
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description="Export Eigen test ground-truth depth to gt_depths.npz")
    p.add_argument("--data_path", required=True, help="KITTI raw data folder")
    p.add_argument("--split", required=True, choices=SPLITS,
                   help="eigen (LiDAR) or eigen_benchmark (improved annotated depth)")
    p.add_argument("--splits_dir", default=None, help="folder holding the split folders (default <repo>/splits)")
    args = p.parse_args(argv)
    return run_cli(lambda: print(f"saved {export_gt_depths(args.data_path, args.split, args.splits_dir)}"))


if __name__ == "__main__":
    sys.exit(main())
