"""Export the Eigen test ground truth once to ``<splits_dir>/<split>/gt_depths.npz`` (docs/METHOD.md, section 6).

- ``--split eigen``: the LiDAR scan projected into camera 2 (``generate_depth_map`` with
  ``vel_depth=True``, i.e. depth = LiDAR x), at the calibration's image size.
- ``--split eigen_benchmark``: KITTI's improved annotated depth
  ``<folder>/proj_depth/groundtruth/image_02/<frame:010d>.png`` / 256.

The file holds key ``data``: an object array of per-image float32 (rows, cols) maps in the
order of ``test_files.txt`` (load with ``np.load(path, allow_pickle=True)["data"]``), as
Monodepth2 writes it. Written atomically; missing inputs are reported up front.

Usage: ``python export_gt_depth.py --data_path KITTI_RAW --split eigen [--splits_dir DIR]``
"""
import argparse
import os
import sys

import numpy as np

import utils
from utils import ToolkitError, run_cli

SPLITS = ("eigen", "eigen_benchmark")


def _parse_line(line, lineno, path):
    parts = line.split()
    if len(parts) != 3:
        raise ToolkitError(f"malformed split line {lineno} '{line.strip()}' of {path}: expected "
                           f"'<folder> <frame_index> <side>'")
    try:
        frame = int(parts[1])
    except ValueError:
        raise ToolkitError(f"malformed split line {lineno} '{line.strip()}' of {path}: the frame "
                           f"index is not an integer") from None
    return parts[0], frame


def gt_source(data_path, split, folder, frame):
    """The file the ground truth of one test line is read from."""
    if split == "eigen":
        return os.path.join(data_path, folder, "velodyne_points", "data", f"{frame:010d}.bin")
    return os.path.join(data_path, folder, "proj_depth", "groundtruth", "image_02", f"{frame:010d}.png")


def load_gt(data_path, split, folder, frame):
    """Ground-truth depth map (float32) of one test image."""
    path = gt_source(data_path, split, folder, frame)
    if split == "eigen":
        from kitti_utils import generate_depth_map
        calib_dir = os.path.join(data_path, folder.split("/")[0])
        try:
            return generate_depth_map(calib_dir, path, 2, True).astype(np.float32)
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
    split_dir = utils.resolve_split_dir(split, splits_dir)
    out = os.path.join(split_dir, "gt_depths.npz")
    utils.check_output_file(out, "--splits_dir")  # before any work
    list_path = os.path.join(split_dir, "test_files.txt")
    lines = utils.readlines(list_path)
    if not lines:
        raise ToolkitError(f"empty split list ({list_path}): add the test images")
    items = [_parse_line(ln, k + 1, list_path) for k, ln in enumerate(lines)]
    missing = [p for p in (gt_source(data_path, split, f, i) for f, i in items) if not os.path.isfile(p)]
    if missing:
        what = ("the KITTI raw velodyne_points" if split == "eigen"
                else "KITTI's data_depth_annotated (proj_depth/groundtruth)")
        raise ToolkitError(f"{len(missing)} ground-truth file(s) missing (first: {', '.join(missing[:3])}): "
                           f"download {what} into --data_path")
    if split == "eigen":
        calibs = sorted({os.path.join(data_path, f.split("/")[0], c) for f, _ in items
                         for c in ("calib_cam_to_cam.txt", "calib_velo_to_cam.txt")})
        absent = [c for c in calibs if not os.path.isfile(c)]
        if absent:
            raise ToolkitError(f"calibration file(s) missing (first: {', '.join(absent[:3])}): download "
                               f"the KITTI raw calibration for each date into --data_path")
    if progress:
        from tqdm import tqdm
        items_it = tqdm(items, desc=f"export {split} gt", unit="img")
    else:
        items_it = items
    gt = np.empty(len(items), dtype=object)
    for k, (folder, frame) in enumerate(items_it):
        gt[k] = load_gt(data_path, split, folder, frame)
    utils.clean_stale_temp_files(split_dir)
    utils.atomic_save_npz(out, data=gt)
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
