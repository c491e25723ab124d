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
an unreadable input is reported in one line and the run exits with 1; an output folder that
cannot take a hint (full disk, quota, read-only) stops the run with one line (exit 2).
``--shard K/N`` computes the K-th of N interleaved parts of the split (N machines or a job
array; :func:`shard_pairs`). Progress, errors and the summary of every run also go to
<save_path>/precompute.log (a shard's to precompute_shard_K_of_N.log). Options: ``--help``.
"""
import argparse
import contextlib
import errno
import multiprocessing as mp
import os
import shutil
import signal
import sys
import time

import numpy as np

import image_io
import kitti_utils
from camera import IntrinsicsLookup, intrinsics_from_option
from hint_fusion import MATCHERS, MIN_WIDTH, HintComputer
from kitti_utils import depth_hint_path as hint_path, image_path  # noqa: F401 (older callers' P.* names)
from progress import ProgressLog
from runtime import limit_threads, quiet_paddle_notices
from fileio import PROCESS_START, TEMP_FILE_RE, atomic_save_npy, check_output_dir, read_npy_header
from utils import ToolkitError, run_cli

REPO_ROOT = os.path.dirname(os.path.abspath(__file__))

DEFAULT_FILENAMES = os.path.join("splits", "eigen_full", "all_files.txt")
STAGES = ("load", "sgbm", "fuse", "save")
LOG_FILE = "precompute.log"  # in --save_path: start, progress lines, errors and summary of every run
SHARD_LOG_FILE = "precompute_shard_{k}_of_{n}.log"  # the same for a --shard K/N run (one file per shard)
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)  # a write error that more space (or another --save_path) fixes
WRITE_ERRORS = NO_SPACE + (errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO)  # of the log: a folder problem


# ----------------------------------------------------------------------------- files
def read_pairs(filenames):
    """Split file of ``<folder> <frame> [<side>]`` lines -> unique ``(folder, frame)`` in
    order (both sides get a hint); :class:`ToolkitError` names a malformed line
    (``kitti_utils.parse_split_line``)."""
    pairs = {}
    for folder, frame, _ in kitti_utils.read_split_entries(filenames, side_required=False):
        pairs.setdefault((folder, frame), None)
    return list(pairs)


def parse_shard(text):
    """``--shard K/N`` -> ``(K, N)`` with 1 <= K <= N (None -> None); else a one-line ToolkitError."""
    if text is None:
        return None
    try:
        k, n = (int(x) for x in str(text).split("/"))
    except ValueError:
        k = n = 0
    if not 1 <= k <= n:
        raise ToolkitError(f"bad shard (--shard {text}): give K/N with 1 <= K <= N, e.g. --shard 1/4 "
                           f"... --shard 4/4 for 4 machines")
    return k, n


def shard_pairs(pairs, shard):
    """The pairs of shard ``(K, N)``: numbers K, K+N, K+2N, ... (1-based) of ``pairs``, the split's
    unique pairs in the order of their first line. Shards 1..N are disjoint and cover every pair,
    so no two write the same file (the two lines of a pair, l and r, are one pair)."""
    return list(pairs) if shard is None else list(pairs)[shard[0] - 1::shard[1]]


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
    ``written`` (sides), ``failed`` ([(path, reason, sides)]), ``images``, ``cpu_times`` and
    ``write_error`` ((path, errno, strerror) of a hint the output folder refused, else None)."""
    folder, frame, sides = task
    cfg, hc = _WORKER["cfg"], _hint_computer(folder)
    res = {"folder": folder, "frame": frame, "written": [], "failed": [], "images": len(sides),
           "cpu_times": dict.fromkeys(STAGES, 0.0), "write_error": None}
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
        except Exception as e:  # a bug: report in one line, keep going
            res["failed"].append((out, " ".join(f"{type(e).__name__}: {e}".split()), [s]))
            continue
        try:
            atomic_save_npy(out, hint[None])  # a failed write leaves no file behind
        except OSError as e:  # the output folder's problem (full, read-only, ...): the run stops
            res["write_error"] = (out, *write_failure(e, os.path.dirname(out), hint.nbytes))
            return res
        lap("save")
        res["written"].append(s)
    return res


def write_failure(exc, folder, nbytes):
    """``(errno, reason)`` of a hint write that raised ``exc``. numpy's short write on a full disk
    raises an OSError without errno ('N requested and M written'): a folder with less room than
    the hint is then a full one."""
    err, reason = exc.errno, exc.strerror or str(exc)
    if err in (None, errno.ENOSPC):
        try:
            free = shutil.disk_usage(folder).free
        except OSError:
            free = None
        if free is not None and free < nbytes + (64 << 10):
            err, reason = errno.ENOSPC, f"no space left on device, {free >> 10} KiB free"
    return err, reason


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
    p = argparse.ArgumentParser(
        description="Fused SGM depth hints (Watson et al. 2019) for every pair of a split file, both sides.",
        epilog="Sharding: --shard K/N takes the K-th of every N pairs of the split (pairs K, K+N, K+2N, ... "
               "counted from 1 in the order of the split's lines, the l and r lines of a frame being one pair), "
               "so N runs with K = 1..N, on N machines or as a job array writing to one --save_path, compute "
               "every hint once between them. Each shard resumes on its own and logs to "
               "<save_path>/" + SHARD_LOG_FILE.format(k="K", n="N") + ".")
    p.add_argument("--data_path", required=True, help="KITTI raw root folder")
    p.add_argument("--filenames", default=None, help=f"split file of '<folder> <frame> "
                   f"<side>' lines (default: <repo>/{DEFAULT_FILENAMES})")
    p.add_argument("--save_path", default=None, help="output (default <data_path>/depth_hints)")
    p.add_argument("--height", type=int, default=320, help="hint height (at least 32)")
    p.add_argument("--width", type=int, default=1024, help=f"hint width (at least {MIN_WIDTH}: the widest "
                   f"SGBM matcher's {max(n for _, n in MATCHERS)} disparities + its half-window)")
    p.add_argument("--overwrite_saved_depths", action="store_true", help="recompute existing hints")
    p.add_argument("--num_workers", type=int, default=None, help="processes (default: all cores)")
    p.add_argument("--png", action="store_true", help="images are .png instead of .jpg")
    p.add_argument("--shard", default=None, metavar="K/N", help="compute only shard K of N (1 <= K <= N), "
                   "see below (default: the whole split)")
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


def check_size(height, width):
    """One-line ToolkitError naming --height/--width unless every SGBM matcher can take the size."""
    if height < 32:
        raise ToolkitError(f"hint height too small (--height {height}): use at least 32, e.g. --height 320 "
                           f"--width 1024")
    if width < MIN_WIDTH:
        b, n = max(MATCHERS, key=lambda m: (m[1] + m[0] // 2, m[0]))
        raise ToolkitError(f"hint width too small for the SGBM matchers (--width {width}): the widest ("
                           f"{n} disparities, block size {b}) needs at least {MIN_WIDTH} pixels; use e.g. "
                           f"--width 1024 --height 320 or --width 640 --height 192")


def clean_own_temp_files(folder, names, older_than=None):
    """Delete the temp files a killed run left for the hints ``names`` of ``folder``
    (``.<name>.<8 characters>.tmp``, older than this process): those of other hints, which a
    concurrent run (another shard, another split) may be writing, are left alone."""
    older_than = PROCESS_START if older_than is None else older_than
    try:
        found = os.listdir(folder)
    except OSError:
        return
    for name in found:
        path = os.path.join(folder, name)
        try:
            if (TEMP_FILE_RE.match(name) and name[1:-13] in names and os.path.isfile(path)
                    and os.path.getmtime(path) < older_than):
                os.remove(path)
        except OSError:
            pass


def plan(pairs, save_path, height, width, overwrite):
    """Tasks ``(folder, frame, sides)`` still to do and the number of valid hints skipped
    (the temp files a killed run left for these hints are removed on the way)."""
    tasks, skipped, names = [], 0, {}
    for folder, frame in pairs:
        for side in ("l", "r"):
            path = kitti_utils.depth_hint_path(save_path, folder, frame, side)
            names.setdefault(os.path.dirname(path), set()).add(os.path.basename(path))
    for folder, own in names.items():
        clean_own_temp_files(folder, own)
    for folder, frame in pairs:
        sides = tuple(s for s in ("l", "r") if overwrite or not hint_is_valid(
            kitti_utils.depth_hint_path(save_path, folder, frame, s), height, width))
        skipped += 2 - len(sides)
        if sides:
            tasks.append((folder, frame, sides))
    return tasks, skipped


def _write_error(save_path, path, err, reason, tag=""):
    """The one-line ToolkitError of an output folder that refused a hint or a log line."""
    fix = ("free space there" if err in NO_SPACE else "make it writable (permissions, mount, free space)")
    return ToolkitError(f"{tag}cannot write hints in the output folder ({reason}; --save_path {save_path}): "
                        f"{fix} or choose another --save_path, then run again to do the rest (the hints "
                        f"written so far are kept; failed on {os.path.relpath(path, save_path)})")


def _log_only(path, text):
    """Append one time-stamped line to the run log (a run with nothing to compute)."""
    with ProgressLog(None, "img", path, interval=None) as prog:
        prog.message(text, log_only=True)


def run(args, out=sys.stdout, err=sys.stderr):
    """Run the precompute for parsed ``args``; summary dict: ``written``, ``skipped``, ``failed``
    (images), ``failed_files``, ``seconds`` (start-up included), ``result_log`` ([(s, images)]
    per pair), ``cpu_times`` (per stage, summed over workers), ``images_per_s``, ``workers``."""
    check_size(args.height, args.width)
    shard = parse_shard(getattr(args, "shard", None))
    tag = f"shard {shard[0]}/{shard[1]}: " if shard else ""
    if not os.path.isdir(args.data_path):
        raise ToolkitError(f"data folder not found (--data_path {args.data_path}): "
                           f"point it at the KITTI raw root")
    all_pairs = read_pairs(filenames := resolve_filenames(args.filenames))
    if not all_pairs:
        raise ToolkitError(f"the split file lists no image pair ({filenames}): give a list of "
                           f"'<folder> <frame> <side>' lines (--filenames)")
    pairs = shard_pairs(all_pairs, shard)
    K = intrinsics_from_option(args.intrinsics)
    save_path = check_output_dir(args.save_path or kitti_utils.default_depth_hint_root(args.data_path),
                                 "--save_path")
    log_path = os.path.join(save_path, SHARD_LOG_FILE.format(k=shard[0], n=shard[1]) if shard else LOG_FILE)
    num_workers = args.num_workers or os.cpu_count() or 1
    if num_workers < 1:
        raise ToolkitError(f"bad worker count (--num_workers {args.num_workers}): use >= 1")
    tasks, skipped = plan(pairs, save_path, args.height, args.width, args.overwrite_saved_depths)
    sm = {"written": 0, "skipped": skipped, "failed": 0, "failed_files": 0, "seconds": 0.0,
          "cpu_times": dict.fromkeys(STAGES, 0.0), "images_per_s": 0.0, "save_path": save_path,
          "result_log": [], "workers": min(num_workers, len(tasks)), "log": log_path}
    if not tasks:
        if pairs:
            done = (f"{tag}nothing to do: all {skipped} hints of {len(pairs)} pairs in {filenames} already "
                    f"exist in {save_path} (--overwrite_saved_depths recomputes them)")
        else:
            done = (f"{tag}nothing to do: none of the {len(all_pairs)} pairs of {filenames} is in this shard "
                    f"(shard K of N takes pairs K, K+N, ...)")
        try:
            _log_only(log_path, done)
        except OSError as e:  # the summary goes to the log of every run
            raise _write_error(save_path, log_path, e.errno, e.strerror or str(e), tag) from None
        print(done, file=out)
        return sm
    ext = ".png" if args.png else ".jpg"
    probe = [kitti_utils.image_path(args.data_path, f, i, "l", ext) for f, i, _ in tasks[:20]]
    if not any(os.path.isfile(p) for p in probe):
        raise ToolkitError(
            f"no input images found (e.g. {probe[0]}) (--data_path {args.data_path}"
            f"{' --png' if args.png else ''}): point --data_path at the KITTI raw root "
            f"(<date>/<drive>/image_02/data/...), and pass --png if the images are PNG")
    n_images = sum(len(t[2]) for t in tasks)
    start = (f"{tag}computing {n_images} hints ({len(tasks)} pairs, {skipped} already done) at "
             f"{args.width}x{args.height} with {sm['workers']} worker(s) -> {save_path}")
    print(start + f" (log: {log_path})", file=out)
    cfg = {"data_path": args.data_path, "save_path": save_path, "height": args.height,
           "width": args.width, "ext": ext, "K": K}
    bad_files, t0, fatal = set(), time.perf_counter(), None
    try:
        with ProgressLog(n_images, "img", log_path, stream=err, desc=tag + "hints",
                         interval=args.log_interval) as prog:
            prog.message(start, log_only=True)
            try:
                with contextlib.closing(_iter_results(tasks, cfg, sm["workers"])) as results:
                    for res in results:
                        sm["result_log"].append((time.perf_counter() - t0, len(res["written"])))
                        for k in STAGES:
                            sm["cpu_times"][k] += res["cpu_times"][k]
                        sm["written"] += len(res["written"])
                        if res["write_error"]:  # the folder refuses hints: stop (the pool too)
                            fatal = _write_error(save_path, *res["write_error"], tag)
                            prog.message(f"error: {fatal}", log_only=True)
                            break
                        for path, reason, sides in res["failed"]:
                            sm["failed"] += len(sides)
                            bad_files.add(path)
                            prog.message(f"error: {tag}{path}: {reason} (skipped {res['folder']} "
                                         f"{res['frame']} side {','.join(sides)})")
                        prog.update(res["images"])
            except KeyboardInterrupt:
                prog.message(f"{tag}interrupted after {sm['written']} hints; finished hints are kept",
                             log_only=True)
                raise
            if fatal is None:
                sm["seconds"], sm["failed_files"] = time.perf_counter() - t0, len(bad_files)
                sm["images_per_s"] = sm["written"] / max(sm["seconds"], 1e-9)
                split = ", ".join(f"{k} {1e3 * v / max(sm['written'], 1):.0f}"
                                  for k, v in sm["cpu_times"].items())
                done = (f"{tag}done: {sm['written']} hints written, {skipped} already present, "
                        f"{sm['failed']} failed ({sm['failed_files']} bad file(s)) in {sm['seconds']:.1f}s "
                        f"({sm['images_per_s']:.2f} images/s); CPU ms per image: {split}")
                prog.message(done, log_only=True)
    except OSError as e:  # the run log itself cannot be written (the same full folder, mostly)
        if fatal is None and e.errno not in WRITE_ERRORS:
            raise
        fatal = fatal or _write_error(save_path, log_path, e.errno, e.strerror or str(e), tag)
    if fatal is not None:
        raise fatal
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
