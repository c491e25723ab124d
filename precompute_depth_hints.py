"""Precompute fused SGM depth hints for KITTI raw (Watson et al. 2019; docs/METHOD.md, section 5).

Both images of every ``<folder> <frame>`` pair of a split file get a hint::

    <save_path>/<folder>/image_0{2,3}/<frame:010d>.npy    float32 (1, H, W), 0 = no hint

The pair is decoded and Lanczos-resized to W x H once (as datasets/ resizes the training
images). 12 OpenCV SGBM matchers give candidate depths fx * 0.1 / d (0: no match; the
right base matches the mirrored pair). Every candidate, "no match" included, warps the
other image into the base view (layers.BackprojectDepth / Project3D / warp), is scored
with layers.compute_reprojection_loss (the training loss), and each pixel keeps the best;
where "no match" wins the hint is 0. One-thread workers of a spawn pool (only they import
Paddle) run the pairs; valid outputs are skipped unless --overwrite_saved_depths; writes
are atomic (a killed run leaves no partial file); an unreadable input is reported in one
line and counted, and the run exits with 1. Options: ``--help``.
"""
import argparse
import multiprocessing as mp
import os
import signal
import sys
import time

import numpy as np

from camera import KITTI_K, NETWORK_BASELINE, IntrinsicsLookup, intrinsics_from_option, scale_intrinsics
from runtime import limit_threads, quiet_paddle_notices
from utils import (ToolkitError, atomic_save_npy, check_output_dir, clean_stale_temp_files, read_npy_header,
                   readlines, run_cli)

REPO_ROOT = os.path.dirname(os.path.abspath(__file__))

DEFAULT_FILENAMES = os.path.join("splits", "eigen_full", "all_files.txt")
BLOCK_SIZES = (1, 2, 3)
NUM_DISPARITIES = (64, 96, 128, 160)
MATCHERS = tuple((b, n) for b in BLOCK_SIZES for n in NUM_DISPARITIES)
SIDE_DIRS = {"l": "image_02", "r": "image_03"}
STAGES = ("load", "sgbm", "fuse", "save")
STRIP_ROWS = 16   # fusion tile height (kept rows; +1-row halo each side)
TILE_COLS = 64    # fusion tile width (kept columns; +1-column halo each side)


# ----------------------------------------------------------------------------- files
def read_pairs(filenames):
    """Split file of ``<folder> <frame> [<side>]`` lines -> unique ``(folder, frame)`` in
    order (both sides get a hint); :class:`ToolkitError` names a malformed line."""
    pairs = {}
    for n, line in enumerate(readlines(filenames), 1):
        try:
            pairs.setdefault((line.split()[0], int(line.split()[1])), None)
        except (IndexError, ValueError):
            raise ToolkitError(f"bad line {n} '{line}' ({filenames}): expected "
                               f"'<folder> <frame> <side>'") from None
    return list(pairs)


def image_path(data_path, folder, frame, side, ext):
    """``<data_path>/<folder>/image_0{2,3}/data/<frame:010d><ext>``."""
    return os.path.join(data_path, folder, SIDE_DIRS[side], "data", f"{frame:010d}{ext}")


def hint_path(save_path, folder, frame, side):
    """``<save_path>/<folder>/image_0{2,3}/<frame:010d>.npy``."""
    return os.path.join(save_path, folder, SIDE_DIRS[side], f"{frame:010d}.npy")


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
    """Image file -> uint8 RGB (height, width, 3), Lanczos (antialiased) resized; PIL decodes
    it fully and raises on a truncated file (OpenCV would not): :class:`InputError`."""
    from PIL import Image
    if not os.path.isfile(path):
        raise InputError(path, "file not found")
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
    except Exception as e:  # PIL raises many types for corrupt data
        raise InputError(path, f"cannot decode image ({type(e).__name__}: {e})") from None
    if im.size != (width, height):
        im = im.resize((width, height), getattr(Image, "Resampling", Image).LANCZOS)
    return np.ascontiguousarray(np.asarray(im, dtype=np.uint8))


# ----------------------------------------------------------------------------- hints
def _tiles(total, size):
    """Blocks ``(keep0, keep1, crop0, crop1)`` of ``size`` indices covering range(total), each in a
    crop of ``size + 2`` with a neighbour on each side (shifted inwards at the borders)."""
    if total <= size + 2:
        yield 0, total, 0, total
        return
    for k0 in range(0, total, size):
        c0 = min(max(k0 - 1, 0), total - size - 2)
        yield k0, min(k0 + size, total), c0, c0 + size + 2


def make_matchers():
    """The 12 SGBM matchers (docs/METHOD.md, section 5), in MATCHERS order."""
    import cv2
    return [cv2.StereoSGBM_create(minDisparity=0, numDisparities=n, blockSize=b, P1=36, P2=288, preFilterCap=63,
                                  uniquenessRatio=10, speckleWindowSize=100, speckleRange=16) for b, n in MATCHERS]


def disparity_to_depth(disp, focal):
    """Pixel disparity -> depth ``focal * 0.1 / d`` where d > 0, else 0 (no match); ``focal``: fx in pixels."""
    disp = np.asarray(disp, dtype=np.float32)
    return np.divide(np.float32(focal * NETWORK_BASELINE), disp, out=np.zeros_like(disp), where=disp > 0)


def select(cands, pe):
    """Per pixel the depth of the candidate with the smallest error (first on ties); "no match" gives 0."""
    return np.take_along_axis(cands, np.argmin(pe, axis=0)[None], 0)[0].astype(np.float32)


class HintComputer:
    """SGBM candidates and their fusion for one image size and camera (one per worker and K).
    ``K``: normalised 4x4 intrinsics (default KITTI's); its fx also converts disparity to
    depth, so a candidate's warp moves each pixel by exactly its disparity."""

    def __init__(self, height, width, K=None, strip_rows=STRIP_ROWS, tile_cols=TILE_COLS):
        import paddle
        import layers
        self.paddle, self.layers = paddle, layers
        self.K_full = scale_intrinsics(KITTI_K if K is None else K, width, height)
        self.focal = float(self.K_full[0, 0])
        self.matchers = make_matchers()
        # OpenCV's half-window is blockSize // 2, so blockSize 2 runs exactly like 3: run once
        keys = [((b // 2) * 2 + 1, nd) for b, nd in MATCHERS]
        firsts = sorted({keys.index(key) for key in keys})
        self.unique = [self.matchers[k] for k in firsts]
        self.unique_index = np.array([firsts.index(keys.index(key)) for key in keys])
        self.row_tiles = list(_tiles(height, strip_rows))
        self.col_tiles = list(_tiles(width, tile_cols))
        hs = self.row_tiles[0][3] - self.row_tiles[0][2]
        ws = self.col_tiles[0][3] - self.col_tiles[0][2]
        self.crop_shape = (hs, ws)
        # a crop's grid in whole-image units: Project3D divides x by ws-1 and y by hs-1,
        # so K's rows are scaled by (ws-1)/(W-1) and (hs-1)/(H-1)
        scale = np.diag([(ws - 1) / max(width - 1, 1), (hs - 1) / max(height - 1, 1), 1, 1])
        self.K_proj = (scale @ self.K_full).astype(np.float32)
        # crop cameras: the whole image's with the principal point shifted by the offset
        self.inv_K_crop = {}
        for r0, c0 in {(r[2], c[2]) for r in self.row_tiles for c in self.col_tiles}:
            K = self.K_full.copy()
            K[:2, 2] -= (c0, r0)
            self.inv_K_crop[(r0, c0)] = np.linalg.pinv(K).astype(np.float32)
        self.T = {s: np.array([[1, 0, 0, s * NETWORK_BASELINE], [0, 1, 0, 0], [0, 0, 1, 0],
                               [0, 0, 0, 1]], np.float32) for s in (-1, 1)}
        self.backproject = layers.BackprojectDepth(1, hs, ws)
        self.project = layers.Project3D(1, hs, ws)
        self._whole = None  # whole-image layers of fuse_reference, made on first use

    def candidates(self, left, right, side):
        """(12, H, W) float32 candidate depths for base ``side`` from uint8 RGB images.
        SGBM matches for its left input: a right base mirrors the pair and the result."""
        base, other = (left, right) if side == "l" else (right[:, ::-1], left[:, ::-1])
        base, other = np.ascontiguousarray(base), np.ascontiguousarray(other)
        disp = np.stack([m.compute(base, other) for m in self.unique]) / np.float32(16)
        disp = disp if side == "l" else disp[:, :, ::-1]
        return np.ascontiguousarray(disparity_to_depth(disp, self.focal)[self.unique_index])

    def _inputs(self, base, other, side, baseline_sign):
        other_t = self.paddle.to_tensor(other.transpose(2, 0, 1)[None].astype(np.float32) / 255)
        return (baseline_sign or (-1 if side == "l" else 1),
                base.transpose(2, 0, 1).astype(np.float32) / 255, other_t)

    def fuse(self, base, other, cands, side, baseline_sign=None, return_pe=True):
        """Per pixel, the candidate of ``cands`` (N, H, W; 0 = no match) whose warp of
        ``other`` best matches ``base`` (uint8 RGB (H, W, 3)) by photometric error.
        ``baseline_sign`` overrides the sign (-1 for a left base, +1 for a right base).
        Returns ``(hint (H, W), pe (N, H, W))`` float32 (pe None unless ``return_pe``).

        "No match" competes (Watson et al. 2019; docs/METHOD.md, section 5): a depth-0
        pixel back-projects to the camera centre, Project3D sends it to x = +-inf, y = 0,
        and the border-padded warp samples the other image's top-row corner pixel.

        Same choice as :meth:`fuse_reference` but for float-rounding ties, and faster:
        ``strip_rows`` x ``tile_cols`` tiles in crops with a 1-pixel halo, a row strip's
        tiles in one batch, candidates equal on a crop scored once (so the candidates
        without any match on a crop, all warped to one constant colour, are one job). A
        crop is a camera of its own (principal point shifted, Project3D's K scaled to
        whole-image grid units), so warp samples the whole other image; the error depends
        on the 3x3 neighbourhood, and reflection padding reaches only the halo."""
        paddle, layers = self.paddle, self.layers
        sign, base_f, other_t = self._inputs(base, other, side, baseline_sign)
        hs, ws = self.crop_shape
        hint = np.empty(cands.shape[1:], np.float32)
        pe = np.empty(cands.shape, np.float32) if return_pe else None
        for y0, y1, r0, r1 in self.row_tiles:
            tiles, depths, inv_Ks, targets = [], [], [], []
            for x0, x1, c0, c1 in self.col_tiles:
                crops = cands[:, r0:r1, c0:c1]
                groups = {}  # crop bytes -> candidates equal on the crop (exact comparison)
                for k in range(len(cands)):
                    groups.setdefault(crops[k].tobytes(), []).append(k)
                tiles.append((x0, x1, c0, list(groups.values())))
                depths += [crops[ks[0]] for ks in groups.values()]
                inv_Ks += [self.inv_K_crop[(r0, c0)]] * len(groups)
                targets += [base_f[:, r0:r1, c0:c1]] * len(groups)
            m = len(depths)
            points = self.backproject(paddle.to_tensor(np.stack(depths)[:, None]),
                                      paddle.to_tensor(np.stack(inv_Ks)))
            grid = self.project(points, paddle.to_tensor(np.repeat(self.K_proj[None], m, 0)),
                                paddle.to_tensor(np.repeat(self.T[sign][None], m, 0)))
            # one warp call for the whole strip: the m grids stacked as one tall grid
            warped = layers.warp(other_t, grid.reshape([1, m * hs, ws, 2]))
            warped = warped.reshape([3, m, hs, ws]).transpose([1, 0, 2, 3])
            err = layers.compute_reprojection_loss(warped, paddle.to_tensor(np.stack(targets)))
            err = err.numpy()[:, 0, y0 - r0:y1 - r0]
            j = 0
            for x0, x1, c0, groups in tiles:
                e = err[j:j + len(groups), :, x0 - c0:x1 - c0]
                j += len(groups)
                first = [ks[0] for ks in groups]  # groups are ordered by their first member
                hint[y0:y1, x0:x1] = select(cands[first, y0:y1, x0:x1], e)
                if return_pe:
                    for ks, e_k in zip(groups, e):
                        pe[ks, y0:y1, x0:x1] = e_k
        return hint, pe

    def fuse_reference(self, base, other, cands, side, baseline_sign=None):
        """:meth:`fuse` written plainly, all candidates over the whole image in one batch (slow;
        for tests and bench/). Returns ``(hint (H, W), pe (N, H, W))``."""
        paddle, layers = self.paddle, self.layers
        n, H, W = cands.shape
        sign, base_f, other_t = self._inputs(base, other, side, baseline_sign)
        if self._whole is None:
            self._whole = (layers.BackprojectDepth(1, H, W), layers.Project3D(1, H, W))

        def rep(a):
            return paddle.to_tensor(np.repeat(np.asarray(a, np.float32)[None], n, 0))

        points = self._whole[0](paddle.to_tensor(cands[:, None]), rep(np.linalg.pinv(self.K_full)))
        grid = self._whole[1](points, rep(self.K_full), rep(self.T[sign]))
        warped = layers.warp(other_t.expand([n, 3, H, W]), grid)
        pe = layers.compute_reprojection_loss(warped, rep(base_f)).numpy()[:, 0]
        return select(cands, pe), pe


# ----------------------------------------------------------------------------- workers
_WORKER = {}


def _init_worker(cfg):
    """Pool initializer: one thread per worker, one HintComputer per worker."""
    quiet_paddle_notices()
    limit_threads(1)
    import paddle
    paddle.set_device("cpu")
    limit_threads(1)
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
        left, right = (load_image(image_path(cfg["data_path"], folder, frame, s, cfg["ext"]),
                                  cfg["width"], cfg["height"]) for s in ("l", "r"))
        lap("load")
    except InputError as e:
        res["failed"].append((*e.args, list(sides)))
        return res
    for s in sides:
        out = hint_path(cfg["save_path"], folder, frame, s)
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
        for side in SIDE_DIRS.values():
            clean_stale_temp_files(os.path.join(save_path, folder, side))
    for folder, frame in pairs:
        sides = tuple(s for s in ("l", "r") if overwrite or not hint_is_valid(
            hint_path(save_path, folder, frame, s), height, width))
        skipped += 2 - len(sides)
        if sides:
            tasks.append((folder, frame, sides))
    return tasks, skipped


def run(args, out=sys.stdout, err=sys.stderr):
    """Run the precompute for parsed ``args``; summary dict: ``written``, ``skipped``, ``failed``
    (images), ``failed_files``, ``seconds`` (start-up included), ``result_log`` ([(s, images)]
    per pair), ``cpu_times`` (per stage, summed over workers), ``images_per_s``, ``workers``."""
    from tqdm import tqdm
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
    save_path = check_output_dir(args.save_path or os.path.join(args.data_path, "depth_hints"), "--save_path")
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
    probe = [image_path(args.data_path, f, i, "l", ext) for f, i, _ in tasks[:20]]
    if not any(os.path.isfile(p) for p in probe):
        raise ToolkitError(
            f"no input images found (e.g. {probe[0]}) (--data_path {args.data_path}"
            f"{' --png' if args.png else ''}): point --data_path at the KITTI raw root "
            f"(<date>/<drive>/image_02/data/...), and pass --png if the images are PNG")
    n_images = sum(len(t[2]) for t in tasks)
    print(f"computing {n_images} hints ({len(tasks)} pairs, {skipped} already done) at "
          f"{args.width}x{args.height} with {sm['workers']} worker(s) -> {save_path}", file=out)
    cfg = {"data_path": args.data_path, "save_path": save_path, "height": args.height,
           "width": args.width, "ext": ext, "K": K}
    bad_files, t0 = set(), time.perf_counter()
    with tqdm(total=n_images, unit="img", dynamic_ncols=True, smoothing=0.1, file=err) as bar:
        for res in _iter_results(tasks, cfg, sm["workers"]):
            sm["result_log"].append((time.perf_counter() - t0, len(res["written"])))
            for k in STAGES:
                sm["cpu_times"][k] += res["cpu_times"][k]
            sm["written"] += len(res["written"])
            for path, reason, sides in res["failed"]:
                sm["failed"] += len(sides)
                bad_files.add(path)
                bar.write(f"error: {path}: {reason} (skipped {res['folder']} {res['frame']} "
                          f"side {','.join(sides)})", file=err)
            bar.update(res["images"])
    sm["seconds"], sm["failed_files"] = time.perf_counter() - t0, len(bad_files)
    sm["images_per_s"] = sm["written"] / max(sm["seconds"], 1e-9)
    cpu = sm["cpu_times"]
    split = ", ".join(f"{k} {1e3 * v / max(sm['written'], 1):.0f}" for k, v in cpu.items())
    print(f"done: {sm['written']} hints written, {skipped} already present, {sm['failed']} "
          f"failed ({sm['failed_files']} bad file(s)) in {sm['seconds']:.1f}s "
          f"({sm['images_per_s']:.2f} images/s); CPU ms per image: {split}", file=out)
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
