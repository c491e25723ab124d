"""Precompute fused SGM depth hints for KITTI raw (Watson et al. 2019; docs/METHOD.md, section 5).

Both images of every ``<folder> <frame>`` pair of a split file get a hint, at
``kitti_utils.depth_hint_path`` (the path training reads)::

    <save_path>/<folder>/image_0{2,3}/<frame:010d>.npy    float32 (1, H, W), 0 = no hint

The pair is decoded and Lanczos-resized to W x H once (as datasets/ resizes the training
images). 12 OpenCV SGBM matchers give candidate depths fx * 0.1 / d (0: no match; the right
base matches the mirrored pair). Every candidate, "no match" included, warps the other image
into the base view (layers.BackprojectDepth / Project3D / warp), is scored with
layers.compute_reprojection_loss (the training loss), and each pixel keeps the best; where
"no match" wins the hint is 0. One-thread workers of a spawn pool (only they import Paddle)
run the pairs; valid outputs are skipped unless --overwrite_saved_depths; writes are atomic;
an unreadable input is reported in one line and the run exits with 1. Progress, errors and
the summary also go to <save_path>/precompute.log. Options: ``--help``.
"""
import argparse
import multiprocessing as mp
import os
import signal
import sys
import time

import numpy as np

import image_io
import kitti_utils
from camera import IntrinsicsLookup, intrinsics_from_option
from hint_fusion import HintComputer
from kitti_utils import depth_hint_path as hint_path, image_path  # noqa: F401 (older callers' P.* names)
from progress import ProgressLog
from runtime import limit_threads, quiet_paddle_notices
from utils import ToolkitError, run_cli
from fileio import atomic_save_npy, check_output_dir, clean_stale_temp_files, read_npy_header

REPO_ROOT = os.path.dirname(os.path.abspath(__file__))

DEFAULT_FILENAMES = os.path.join("splits", "eigen_full", "all_files.txt")
STAGES = ("load", "sgbm", "fuse", "save")
LOG_FILE = "precompute.log"  # in --save_path: start, progress lines, errors and summary of every run


# ----------------------------------------------------------------------------- files
def read_pairs(filenames):
    """Split file of ``<folder> <frame> [<side>]`` lines -> unique ``(folder, frame)`` in
    order (both sides get a hint); :class:`ToolkitError` names a malformed line
    (``kitti_utils.parse_split_line``)."""
    pairs = {}
    for folder, frame, _ in kitti_utils.read_split_entries(filenames, side_required=False):
        pairs.setdefault((folder, frame), None)
    return list(pairs)


def hint_is_valid(path, height, width):
    """True when ``path`` is a complete float32 (1, height, width) C-order .npy (header only)."""
    try:
        shape, fortran, dtype, size, full = read_npy_header(path)
    except Exception:  # missing, truncated, not a .npy: recompute it
        return False
    return shape == (1, height, width) and dtype == np.float32 and not fortran and size == full


class InputError(Exception):
    """An input image that is missing or cannot be decoded; ``args`` = (path, reason)."""


def load_image(path, width, height):
    """Image file -> uint8 RGB (height, width, 3), Lanczos (antialiased) resized. Read with
    ``image_io.load_image`` (PIL decodes it fully and raises on a truncated file, which
    OpenCV would not); any failure is an :class:`InputError`."""
    try:
        im = image_io.load_image(path)
    except image_io.ImageReadError as e:
        raise InputError(path, e.reason) from None
    if im.size != (width, height):
        im = im.resize((width, height), image_io.LANCZOS)
    return np.ascontiguousarray(np.asarray(im, dtype=np.uint8))


# ----------------------------------------------------------------------------- workers
_WORKER = {}


def _init_worker(cfg):
    """Pool initializer: one thread per worker, one HintComputer per worker."""
    quiet_paddle_notices()
    limit_threads(1)
    import paddle
    paddle.set_device("cpu")
    limit_threads(1)  # again: importing Paddle may reset the counts
    if mp.current_process().name != "MainProcess":  # the parent handles Ctrl-C (else Paddle's handler dumps)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    _WORKER.update(cfg=cfg, camera=IntrinsicsLookup(cfg["data_path"], cfg["K"]), hcs={})


def _hint_computer(folder):
    """The worker's HintComputer for ``folder``'s camera (one per distinct K)."""
    K, hcs, cfg = _WORKER["camera"](folder), _WORKER["hcs"], _WORKER["cfg"]
    if K.tobytes() not in hcs:
        hcs[K.tobytes()] = HintComputer(cfg["height"], cfg["width"], K)
    return hcs[K.tobytes()]


def _process_pair(task):
    """Compute and save the hints of one pair ``(folder, frame, sides)``; never raises. Returns
    ``written`` (sides), ``failed`` ([(path, reason, sides)]), ``images``, ``cpu_times``."""
    folder, frame, sides = task
    cfg, hc = _WORKER["cfg"], _hint_computer(folder)
    res = {"folder": folder, "frame": frame, "written": [], "failed": [], "images": len(sides),
           "cpu_times": dict.fromkeys(STAGES, 0.0)}
    last = [time.process_time()]

    def lap(stage):
        res["cpu_times"][stage] += time.process_time() - last[0]
        last[0] = time.process_time()

    try:
        left, right = (load_image(kitti_utils.image_path(cfg["data_path"], folder, frame, s, cfg["ext"]),
                                  cfg["width"], cfg["height"]) for s in ("l", "r"))
        lap("load")
    except InputError as e:
        res["failed"].append((*e.args, list(sides)))
        return res
    for s in sides:
        out = kitti_utils.depth_hint_path(cfg["save_path"], folder, frame, s)
        try:
            cands = hc.candidates(left, right, s)
            lap("sgbm")
            base, other = (left, right) if s == "l" else (right, left)
            hint = hc.fuse(base, other, cands, s, return_pe=False)[0]
            lap("fuse")
            atomic_save_npy(out, hint[None])
            lap("save")
            res["written"].append(s)
        except Exception as e:  # a write error or a bug: report, keep going
            res["failed"].append((out, f"{type(e).__name__}: {e}", [s]))
    return res


def _iter_results(tasks, cfg, num_workers):
    """Yield ``_process_pair`` results, in-process for one worker, else from a spawn pool."""
    if num_workers <= 1:
        _init_worker(cfg)
        yield from map(_process_pair, tasks)
        return
    limit_threads(1)  # the spawned workers inherit the thread environment variables
    pool = mp.get_context("spawn").Pool(num_workers, initializer=_init_worker, initargs=(cfg,))
    try:
        yield from pool.imap_unordered(_process_pair, tasks, chunksize=1)
        pool.close()
    except BaseException:  # Ctrl-C, an error in the parent, or an abandoned generator
        pool.terminate()
        raise
    finally:
        pool.join()


# ----------------------------------------------------------------------------- driver
def build_parser():
    p = argparse.ArgumentParser(description="Fused SGM depth hints (Watson et al. 2019).")
    p.add_argument("--data_path", required=True, help="KITTI raw root folder")
    p.add_argument("--filenames", default=None, help=f"split file of '<folder> <frame> "
                   f"<side>' lines (default: <repo>/{DEFAULT_FILENAMES})")
    p.add_argument("--save_path", default=None, help="output (default <data_path>/depth_hints)")
    p.add_argument("--height", type=int, default=320, help="hint height")
    p.add_argument("--width", type=int, default=1024, help="hint width")
    p.add_argument("--overwrite_saved_depths", action="store_true", help="recompute existing hints")
    p.add_argument("--num_workers", type=int, default=None, help="processes (default: all cores)")
    p.add_argument("--png", action="store_true", help="images are .png instead of .jpg")
    p.add_argument("--log_interval", type=float, default=30.0, help="seconds between progress lines in "
                   f"<save_path>/{LOG_FILE} (and on the console when it is not a terminal)")
    p.add_argument("--intrinsics", nargs="+", default=None, metavar="FX_FY_CX_CY_OR_FILE", help="normalised "
                   "intrinsics fx/W fy/H cx/W cy/H or a file of them (default KITTI's); a folder's intrinsics.txt wins")
    return p


def resolve_filenames(filenames):
    """The split file to read; the default one must exist in the repo's splits/."""
    path = os.path.join(REPO_ROOT, DEFAULT_FILENAMES)
    if filenames is None and not os.path.isfile(path):
        raise ToolkitError(f"default split list not found ({path}): download the KITTI split "
                           f"lists (Monodepth2 / Depth Hints 'splits' folders, see README) "
                           f"into {os.path.join(REPO_ROOT, 'splits')}, or pass --filenames FILE")
    if filenames is not None and not os.path.isfile(filenames):
        raise ToolkitError(f"split file not found (--filenames {filenames}): "
                           f"pass an existing '<folder> <frame> <side>' list")
    return path if filenames is None else filenames


def plan(pairs, save_path, height, width, overwrite):
    """Tasks ``(folder, frame, sides)`` still to do and the number of valid hints skipped
    (the temp files a killed run left in the output folders are removed on the way)."""
    tasks, skipped = [], 0
    for folder in {f for f, _ in pairs}:
        for side in ("l", "r"):
            clean_stale_temp_files(kitti_utils.depth_hint_dir(save_path, folder, side))
    for folder, frame in pairs:
        sides = tuple(s for s in ("l", "r") if overwrite or not hint_is_valid(
            kitti_utils.depth_hint_path(save_path, folder, frame, s), height, width))
        skipped += 2 - len(sides)
        if sides:
            tasks.append((folder, frame, sides))
    return tasks, skipped


def run(args, out=sys.stdout, err=sys.stderr):
    """Run the precompute for parsed ``args``; summary dict: ``written``, ``skipped``, ``failed``
    (images), ``failed_files``, ``seconds`` (start-up included), ``result_log`` ([(s, images)]
    per pair), ``cpu_times`` (per stage, summed over workers), ``images_per_s``, ``workers``."""
    if args.height < 32 or args.width < 32:
        raise ToolkitError(f"hint size too small (--height {args.height} --width {args.width}): "
                           f"use at least 32 x 32")
    if not os.path.isdir(args.data_path):
        raise ToolkitError(f"data folder not found (--data_path {args.data_path}): "
                           f"point it at the KITTI raw root")
    pairs = read_pairs(filenames := resolve_filenames(args.filenames))
    if not pairs:
        raise ToolkitError(f"the split file lists no image pair ({filenames}): give a list of "
                           f"'<folder> <frame> <side>' lines (--filenames)")
    K = intrinsics_from_option(args.intrinsics)
    save_path = check_output_dir(args.save_path or kitti_utils.default_depth_hint_root(args.data_path),
                                 "--save_path")
    num_workers = args.num_workers or os.cpu_count() or 1
    if num_workers < 1:
        raise ToolkitError(f"bad worker count (--num_workers {args.num_workers}): use >= 1")
    tasks, skipped = plan(pairs, save_path, args.height, args.width, args.overwrite_saved_depths)
    sm = {"written": 0, "skipped": skipped, "failed": 0, "failed_files": 0, "seconds": 0.0,
          "cpu_times": dict.fromkeys(STAGES, 0.0), "images_per_s": 0.0, "save_path": save_path,
          "result_log": [], "workers": min(num_workers, len(tasks))}
    if not tasks:
        print(f"nothing to do: all {skipped} hints of {len(pairs)} pairs in {filenames} already "
              f"exist in {save_path} (--overwrite_saved_depths recomputes them)", file=out)
        return sm
    ext = ".png" if args.png else ".jpg"
    probe = [kitti_utils.image_path(args.data_path, f, i, "l", ext) for f, i, _ in tasks[:20]]
    if not any(os.path.isfile(p) for p in probe):
        raise ToolkitError(
            f"no input images found (e.g. {probe[0]}) (--data_path {args.data_path}"
            f"{' --png' if args.png else ''}): point --data_path at the KITTI raw root "
            f"(<date>/<drive>/image_02/data/...), and pass --png if the images are PNG")
    n_images = sum(len(t[2]) for t in tasks)
    start = (f"computing {n_images} hints ({len(tasks)} pairs, {skipped} already done) at "
             f"{args.width}x{args.height} with {sm['workers']} worker(s) -> {save_path}")
    print(start + f" (log: {os.path.join(save_path, LOG_FILE)})", file=out)
    cfg = {"data_path": args.data_path, "save_path": save_path, "height": args.height,
           "width": args.width, "ext": ext, "K": K}
    bad_files, t0 = set(), time.perf_counter()
    with ProgressLog(n_images, "img", os.path.join(save_path, LOG_FILE), stream=err, desc="hints",
                     interval=args.log_interval) as prog:
        prog.message(start, log_only=True)
        try:
            for res in _iter_results(tasks, cfg, sm["workers"]):
                sm["result_log"].append((time.perf_counter() - t0, len(res["written"])))
                for k in STAGES:
                    sm["cpu_times"][k] += res["cpu_times"][k]
                sm["written"] += len(res["written"])
                for path, reason, sides in res["failed"]:
                    sm["failed"] += len(sides)
                    bad_files.add(path)
                    prog.message(f"error: {path}: {reason} (skipped {res['folder']} {res['frame']} "
                                 f"side {','.join(sides)})")
                prog.update(res["images"])
        except KeyboardInterrupt:
            prog.message(f"interrupted after {sm['written']} hints; finished hints are kept", log_only=True)
            raise
        sm["seconds"], sm["failed_files"] = time.perf_counter() - t0, len(bad_files)
        sm["images_per_s"] = sm["written"] / max(sm["seconds"], 1e-9)
        split = ", ".join(f"{k} {1e3 * v / max(sm['written'], 1):.0f}" for k, v in sm["cpu_times"].items())
        done = (f"done: {sm['written']} hints written, {skipped} already present, {sm['failed']} "
                f"failed ({sm['failed_files']} bad file(s)) in {sm['seconds']:.1f}s "
                f"({sm['images_per_s']:.2f} images/s); CPU ms per image: {split}")
        prog.message(done, log_only=True)
    print(done, file=out)
    return sm


def main(argv=None):
    """CLI: exit 0, 1 when some inputs failed, 2 on a usage error, 130 on Ctrl-C."""
    args = build_parser().parse_args(argv)
    try:
        return run_cli(lambda: 1 if run(args)["failed"] else 0)
    except KeyboardInterrupt:
        print("interrupted: finished hints are kept; run again to do the rest", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
