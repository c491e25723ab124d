"""Precompute fused SGM depth hints for KITTI raw (Watson et al. 2019; docs/METHOD.md, section 5).

For every ``<folder> <frame>`` named in a split file, both images of the stereo pair
(left ``image_02`` and right ``image_03``) get a hint::

    <save_path>/<folder>/image_0{2,3}/<frame:010d>.npy    float32 (1, H, W), 0 = no hint

Per pair, both images are decoded once (PIL) and resized once to W x H with Lanczos (the
antialiased resize datasets/ uses for the training images). The 12 OpenCV SGBM matchers
(blockSize {1,2,3} x numDisparities {64,96,128,160}) run on the RGB pair for the left
base and on the mirrored pair for the right base. Disparity d = SGBM / 16, depth =
fx * 0.1 / d where d > 0, else 0 ("no match"). Fusion: the other image is warped into the
base view with every candidate by ``layers.BackprojectDepth`` / ``layers.Project3D`` /
``layers.warp`` (baseline -0.1 for a left base, +0.1 for a right base), scored by
``layers.compute_reprojection_loss`` (the training loss), and each pixel keeps the
candidate with the smallest error. "No match" competes like the others (its warp
samples the other image's top-row corner pixel) and where it wins the hint is 0.

Speed: a spawn process pool over image pairs (Paddle is imported by the workers only),
each worker on one thread (N workers use N cores). blockSize 2 and 3 are the same matcher
in OpenCV, so 8 matchers run. The fusion works on small tiles and scores each distinct
candidate of a tile once (:meth:`HintComputer.fuse`); :meth:`HintComputer.fuse_reference`
is the plain whole-image version it is tested against.

Safety: existing valid outputs are skipped (header + size check; a truncated or wrong
shaped file is recomputed) unless ``--overwrite_saved_depths``; outputs are written to a
temp file and renamed, so a killed run never leaves a partial .npy; unreadable inputs
are reported one line each and counted, the run goes on and exits with 1.

Usage::

    python precompute_depth_hints.py --data_path kitti_data [--filenames FILE]
        [--save_path kitti_data/depth_hints] [--height 320 --width 1024]
        [--overwrite_saved_depths] [--num_workers N] [--png]
"""
import argparse
import multiprocessing as mp
import os
import signal
import sys
import time

import numpy as np

REPO_ROOT = os.path.dirname(os.path.abspath(__file__))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from camera import KITTI_K, NETWORK_BASELINE, scale_intrinsics  # noqa: E402
from runtime import limit_threads  # noqa: E402
from utils import ToolkitError, atomic_save_npy, readlines  # noqa: E402

DEFAULT_FILENAMES = os.path.join("splits", "eigen_full", "all_files.txt")
BLOCK_SIZES = (1, 2, 3)
NUM_DISPARITIES = (64, 96, 128, 160)
MATCHERS = tuple((b, n) for b in BLOCK_SIZES for n in NUM_DISPARITIES)
SIDE_DIRS = {"l": "image_02", "r": "image_03"}
STAGES = ("decode", "resize", "sgbm", "fuse", "save")
STRIP_ROWS = 16   # fusion tile height (kept rows; +1-row halo each side)
TILE_COLS = 64    # fusion tile width (kept columns; +1-column halo each side)

# ----------------------------------------------------------------------------- files


def read_pairs(filenames):
    """Split file -> list of unique ``(folder, frame)`` in order of first appearance.

    Lines are ``<folder> <frame> [<side>]``; the side is ignored because both images of
    every pair get a hint. A malformed line raises :class:`ToolkitError` naming it.
    """
    pairs, seen = [], set()
    for n, line in enumerate(readlines(filenames), 1):
        parts = line.split()
        try:
            if len(parts) < 2:
                raise ValueError
            key = (parts[0], int(parts[1]))
        except ValueError:
            raise ToolkitError(f"bad line {n} '{line}' ({filenames}): expected "
                               f"'<folder> <frame> <side>'") from None
        if key not in seen:
            seen.add(key)
            pairs.append(key)
    return pairs


def image_path(data_path, folder, frame, side, ext):
    """``<data_path>/<folder>/image_0{2,3}/data/<frame:010d><ext>``."""
    return os.path.join(data_path, folder, SIDE_DIRS[side], "data", f"{frame:010d}{ext}")


def hint_path(save_path, folder, frame, side):
    """``<save_path>/<folder>/image_0{2,3}/<frame:010d>.npy``."""
    return os.path.join(save_path, folder, SIDE_DIRS[side], f"{frame:010d}.npy")


def hint_is_valid(path, height, width):
    """True when ``path`` is a complete float32 (1, height, width) C-order .npy.

    Reads only the header and compares the file size with header + data, so it is
    cheap enough to run over a whole split.
    """
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            size = os.fstat(f.fileno()).st_size
            return (tuple(shape) == (1, height, width) and dtype == np.float32
                    and not fortran and size == f.tell() + height * width * 4)
    except (OSError, ValueError):
        return False


class InputError(Exception):
    """An input image that is missing or cannot be decoded: ``path`` and ``reason``."""

    def __init__(self, path, reason):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def decode_image(path):
    """Decode an image file fully into a PIL RGB image; :class:`InputError` on failure.

    PIL raises on truncated files (OpenCV would return a half-grey image silently).
    """
    from PIL import Image
    if not os.path.isfile(path):
        raise InputError(path, "file not found")
    try:
        with Image.open(path) as im:
            im.load()
            return im.convert("RGB")
    except Exception as e:  # PIL raises many types for corrupt data
        raise InputError(path, f"cannot decode image ({type(e).__name__}: {e})") from None


def resize_image(im, width, height):
    """PIL image -> uint8 RGB array (height, width, 3), Lanczos (antialiased) resize."""
    from PIL import Image
    if im.size != (width, height):
        im = im.resize((width, height), getattr(Image, "Resampling", Image).LANCZOS)
    return np.ascontiguousarray(np.asarray(im, dtype=np.uint8))


# ----------------------------------------------------------------------------- hints


def _tiles(total, size):
    """Cover range(total) by blocks of ``size`` kept indices, each with an equal-sized
    crop of ``size + 2`` that contains the block and one neighbour on each side (a crop
    is shifted inwards at the borders, so it ends exactly at the image edge there).
    Yields ``(keep0, keep1, crop0, crop1)``; one crop of the whole range when it is small."""
    if total <= size + 2:
        yield 0, total, 0, total
        return
    for k0 in range(0, total, size):
        k1 = min(k0 + size, total)
        c0 = min(max(k0 - 1, 0), total - size - 2)
        yield k0, k1, c0, c0 + size + 2


def make_matchers():
    """The 12 SGBM matchers (docs/METHOD.md, section 5), in MATCHERS order."""
    import cv2
    return [cv2.StereoSGBM_create(minDisparity=0, numDisparities=n, blockSize=b,
                                  P1=36, P2=288, preFilterCap=63, uniquenessRatio=10,
                                  speckleWindowSize=100, speckleRange=16)
            for b, n in MATCHERS]


def disparity_to_depth(disp, focal):
    """Pixel disparity -> depth ``focal * 0.1 / d`` where d > 0, else 0 (no match).

    ``focal`` is fx in pixels (0.58 W for KITTI's intrinsics)."""
    disp = np.asarray(disp, dtype=np.float32)
    depth = np.zeros_like(disp)
    np.divide(np.float32(focal * NETWORK_BASELINE), disp, out=depth, where=disp > 0)
    return depth


def select(cands, pe):
    """Per pixel, the candidate depth with the smallest error: (N,H,W), (N,H,W) -> (H,W).
    A winning candidate with depth 0 ("no match") gives 0, i.e. no hint."""
    idx = np.argmin(pe, axis=0)
    return np.take_along_axis(cands, idx[None], 0)[0].astype(np.float32)


class HintComputer:
    """SGBM candidates and their fusion for one image size (one per worker process).

    ``K``: normalised 4x4 intrinsics (row 0 divided by the width, row 1 by the height;
    default :data:`camera.KITTI_K`). Its fx sets the disparity-to-depth conversion, so a
    candidate's warp moves each pixel by exactly its disparity.
    """

    def __init__(self, height, width, K=None, strip_rows=STRIP_ROWS, tile_cols=TILE_COLS):
        import paddle
        import layers
        self.paddle, self.layers = paddle, layers
        self.height, self.width = height, width
        self.K_full = scale_intrinsics(KITTI_K if K is None else K, width, height)
        self.focal = float(self.K_full[0, 0])
        self.matchers = make_matchers()
        # OpenCV's half-window is blockSize // 2, so blockSize 2 runs exactly like 3: run
        # each distinct (window, numDisparities) once and copy it to its candidates.
        keys = [((b // 2) * 2 + 1, nd) for b, nd in MATCHERS]
        firsts = sorted({keys.index(key) for key in keys})
        self.unique = [self.matchers[k] for k in firsts]
        self.unique_index = np.array([firsts.index(keys.index(key)) for key in keys])
        self.row_tiles = list(_tiles(height, strip_rows))
        self.col_tiles = list(_tiles(width, tile_cols))
        hs = self.row_tiles[0][3] - self.row_tiles[0][2]
        ws = self.col_tiles[0][3] - self.col_tiles[0][2]
        self.crop_shape = (hs, ws)
        # A crop's grid in whole-image units: Project3D divides x by ws-1 and y by hs-1,
        # so K's rows are scaled by (ws-1)/(W-1) and (hs-1)/(H-1).
        scale = np.diag([(ws - 1) / max(width - 1, 1), (hs - 1) / max(height - 1, 1), 1, 1])
        self.K_proj = (scale @ self.K_full).astype(np.float32)
        self._inv_K_crop = {}
        self.T = {}
        for sign in (-1, 1):
            self.T[sign] = np.eye(4, dtype=np.float32)
            self.T[sign][0, 3] = sign * NETWORK_BASELINE
        self.backproject = layers.BackprojectDepth(1, hs, ws)
        self.project = layers.Project3D(1, hs, ws)
        self._whole = None  # whole-image layers of fuse_reference, made on first use

    def inv_K_crop(self, r0, c0):
        """Inverse intrinsics of the crop starting at row r0, column c0 (the whole image's
        camera with its principal point shifted by the crop offset)."""
        if (r0, c0) not in self._inv_K_crop:
            K = self.K_full.copy()
            K[0, 2] -= c0
            K[1, 2] -= r0
            self._inv_K_crop[(r0, c0)] = np.linalg.pinv(K).astype(np.float32)
        return self._inv_K_crop[(r0, c0)]

    def candidates(self, left, right, side):
        """(12, H, W) float32 candidate depths for base ``side`` from uint8 RGB images.

        SGBM matches for its left input, so a right base mirrors the pair and mirrors the
        result back."""
        if side == "l":
            base, other = left, right
        else:
            base = np.ascontiguousarray(right[:, ::-1])
            other = np.ascontiguousarray(left[:, ::-1])
        disp = np.empty((len(self.unique), self.height, self.width), np.float32)
        for k, m in enumerate(self.unique):
            disp[k] = m.compute(base, other)
        disp *= 1.0 / 16.0
        if side == "r":
            disp = disp[:, :, ::-1]
        return np.ascontiguousarray(disparity_to_depth(disp, self.focal)[self.unique_index])

    def _setup(self, base, other, side, baseline_sign):
        sign = baseline_sign or (-1 if side == "l" else 1)
        to_t = self.paddle.to_tensor
        return (sign, base.transpose(2, 0, 1).astype(np.float32) / 255.0,
                to_t(other.transpose(2, 0, 1)[None].astype(np.float32) / 255.0))

    def fuse(self, base, other, cands, side, baseline_sign=None):
        """Per pixel, the candidate of ``cands`` with the smallest photometric error.

        ``base``/``other``: uint8 RGB (H, W, 3) of the base side and the other side;
        ``cands`` (N, H, W) depths, 0 = no match. ``baseline_sign`` overrides the sign
        (-1 for a left base, +1 for a right base); tests use it to show a wrong sign is
        worse. Returns ``(hint (H, W), pe (N, H, W))``, both float32.

        Every candidate competes, "no match" included (Watson et al. 2019; docs/METHOD.md,
        section 5): a depth-0 pixel back-projects to the camera centre, Project3D sends it
        to x = +-inf, y = 0, and the border-padded warp samples the other image's top-row
        corner pixel. Its error is computed like any other and where it wins the hint is 0.

        Same result as :meth:`fuse_reference`, faster. The image is cut into
        ``strip_rows`` x ``tile_cols`` tiles, each inside a crop with a 1-pixel halo, and
        all tiles of a row strip go through the layers in one batch. Candidates that are
        equal on a crop are scored once; as every "no match" pixel warps to the same
        constant colour, the candidates that have no match on a whole crop are all one
        job there. The crop is a camera of its own (principal point shifted by the crop
        offset, Project3D's K scaled to whole-image grid units), so the layers give the
        whole image's grid on the crop and warp samples the whole other image. The error
        depends on the 3x3 neighbourhood only and the crop's reflection padding reaches
        halo pixels only, so the kept pixels get the whole-image error (to float
        rounding) and hence the same argmin, except at float-rounding ties.
        """
        paddle, layers = self.paddle, self.layers
        n = cands.shape[0]
        sign, base_f, other_t = self._setup(base, other, side, baseline_sign)
        hs, ws = self.crop_shape
        pe = np.empty(cands.shape, np.float32)
        for y0, y1, r0, r1 in self.row_tiles:
            jobs, depths, inv_Ks, targets = [], [], [], []
            for x0, x1, c0, c1 in self.col_tiles:
                crops = cands[:, r0:r1, c0:c1]
                groups = {}  # crop bytes -> candidates equal on the crop (exact comparison)
                for k in range(n):
                    groups.setdefault(crops[k].tobytes(), []).append(k)
                for ks in groups.values():
                    jobs.append((x0, x1, c0, ks))
                    depths.append(crops[ks[0]])
                    inv_Ks.append(self.inv_K_crop(r0, c0))
                    targets.append(base_f[:, r0:r1, c0:c1])
            m = len(jobs)
            points = self.backproject(paddle.to_tensor(np.stack(depths)[:, None]),
                                      paddle.to_tensor(np.stack(inv_Ks)))
            grid = self.project(points, paddle.to_tensor(np.repeat(self.K_proj[None], m, 0)),
                                paddle.to_tensor(np.repeat(self.T[sign][None], m, 0)))
            # one warp call for the whole strip: the m grids stacked as one tall grid
            warped = layers.warp(other_t, grid.reshape([1, m * hs, ws, 2]))
            warped = warped.reshape([3, m, hs, ws]).transpose([1, 0, 2, 3])
            err = layers.compute_reprojection_loss(warped, paddle.to_tensor(np.stack(targets)))
            err = err.numpy()[:, 0]
            for e, (x0, x1, c0, ks) in zip(err, jobs):
                pe[ks, y0:y1, x0:x1] = e[y0 - r0:y1 - r0, x0 - c0:x1 - c0]
        return select(cands, pe), pe

    def fuse_reference(self, base, other, cands, side, baseline_sign=None):
        """The same fusion written plainly: all candidates warped over the whole image in
        one batch (slow and memory-hungry at full size; tests and bench/ compare
        :meth:`fuse` with it). Returns ``(hint (H, W), pe (N, H, W))``."""
        paddle, layers = self.paddle, self.layers
        n, H, W = cands.shape
        sign, base_f, other_t = self._setup(base, other, side, baseline_sign)
        if self._whole is None:
            self._whole = (layers.BackprojectDepth(1, H, W), layers.Project3D(1, H, W))

        def rep(a):
            return paddle.to_tensor(np.repeat(np.asarray(a, np.float32)[None], n, 0))

        points = self._whole[0](paddle.to_tensor(cands[:, None]), rep(np.linalg.pinv(self.K_full)))
        grid = self._whole[1](points, rep(self.K_full), rep(self.T[sign]))
        warped = layers.warp(other_t.expand([n, 3, H, W]), grid)
        pe = layers.compute_reprojection_loss(warped, rep(base_f)).numpy()[:, 0]
        return select(cands, pe), pe

    def hint(self, left, right, side):
        """Fused (H, W) hint for ``side`` of a resized uint8 RGB pair."""
        cands = self.candidates(left, right, side)
        base, other = (left, right) if side == "l" else (right, left)
        return self.fuse(base, other, cands, side)[0]


# ----------------------------------------------------------------------------- workers

_WORKER = {}


def _init_worker(cfg):
    """Pool initializer: one thread per worker, one HintComputer per worker."""
    import warnings
    warnings.filterwarnings("ignore", message="No ccache found")  # noise of Paddle's import
    limit_threads(1)
    import paddle
    paddle.set_device("cpu")
    limit_threads(1)
    if mp.current_process().name != "MainProcess":
        # Paddle's fatal-signal handler would dump a C++ "error" on pool.terminate();
        # Ctrl-C is handled by the parent, which terminates the pool.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    _WORKER["cfg"] = cfg
    _WORKER["hc"] = HintComputer(cfg["height"], cfg["width"], cfg.get("K"))


class _Clock:
    """Accumulates wall and CPU seconds per stage (CPU time is immune to other load)."""

    def __init__(self):
        self.wall = dict.fromkeys(STAGES, 0.0)
        self.cpu = dict.fromkeys(STAGES, 0.0)
        self._t = (time.perf_counter(), time.process_time())

    def lap(self, stage):
        now = (time.perf_counter(), time.process_time())
        self.wall[stage] += now[0] - self._t[0]
        self.cpu[stage] += now[1] - self._t[1]
        self._t = now


def _process_pair(task):
    """Compute and save the hints of one pair. Returns a result dict (never raises).

    ``task`` = (folder, frame, sides). Result: ``written`` (list of sides), ``failed``
    (list of (path, reason, sides)), ``times`` / ``cpu_times`` (wall / CPU seconds per
    stage), ``images``.
    """
    folder, frame, sides = task
    cfg, hc = _WORKER["cfg"], _WORKER["hc"]
    clock = _Clock()
    res = {"folder": folder, "frame": frame, "written": [], "failed": [],
           "times": clock.wall, "cpu_times": clock.cpu, "images": len(sides)}
    try:
        ims = {s: decode_image(image_path(cfg["data_path"], folder, frame, s, cfg["ext"]))
               for s in ("l", "r")}
        clock.lap("decode")
        arr = {s: resize_image(ims[s], cfg["width"], cfg["height"]) for s in ims}
        clock.lap("resize")
    except InputError as e:
        res["failed"].append((e.path, e.reason, list(sides)))
        return res
    for s in sides:
        out = hint_path(cfg["save_path"], folder, frame, s)
        try:
            cands = hc.candidates(arr["l"], arr["r"], s)
            clock.lap("sgbm")
            base, other = (arr["l"], arr["r"]) if s == "l" else (arr["r"], arr["l"])
            hint = hc.fuse(base, other, cands, s)[0]
            clock.lap("fuse")
            atomic_save_npy(out, hint[None])
            clock.lap("save")
            res["written"].append(s)
        except Exception as e:  # a write error or a bug: report, keep going
            res["failed"].append((out, f"{type(e).__name__}: {e}", [s]))
    return res


# ----------------------------------------------------------------------------- driver


def build_parser():
    p = argparse.ArgumentParser(
        description="Precompute fused SGM depth hints (Watson et al. 2019).")
    p.add_argument("--data_path", required=True, help="KITTI raw root folder")
    p.add_argument("--filenames", default=None,
                   help=f"split file of '<folder> <frame> <side>' lines "
                        f"(default: <repo>/{DEFAULT_FILENAMES})")
    p.add_argument("--save_path", default=None, help="output folder (default <data_path>/depth_hints)")
    p.add_argument("--height", type=int, default=320, help="hint height")
    p.add_argument("--width", type=int, default=1024, help="hint width")
    p.add_argument("--overwrite_saved_depths", action="store_true",
                   help="recompute hints that already exist")
    p.add_argument("--num_workers", type=int, default=None,
                   help="worker processes (default: all CPU cores)")
    p.add_argument("--png", action="store_true", help="images are .png instead of .jpg")
    return p


def resolve_filenames(filenames):
    """The split file to read; the default one must exist in the repo's splits/."""
    if filenames is None:
        path = os.path.join(REPO_ROOT, DEFAULT_FILENAMES)
        if not os.path.isfile(path):
            raise ToolkitError(
                f"default split list not found ({path}): download the KITTI split lists "
                f"(Monodepth2 / Depth Hints 'splits' folders, see README) into "
                f"{os.path.join(REPO_ROOT, 'splits')}, or pass --filenames FILE")
        return path
    if not os.path.isfile(filenames):
        raise ToolkitError(f"split file not found (--filenames {filenames}): "
                           f"pass an existing '<folder> <frame> <side>' list")
    return filenames


def plan(pairs, save_path, height, width, overwrite):
    """Tasks ``(folder, frame, sides)`` still to do and the number of valid hints skipped."""
    tasks, skipped = [], 0
    for folder, frame in pairs:
        sides = []
        for s in ("l", "r"):
            if not overwrite and hint_is_valid(hint_path(save_path, folder, frame, s),
                                               height, width):
                skipped += 1
            else:
                sides.append(s)
        if sides:
            tasks.append((folder, frame, tuple(sides)))
    return tasks, skipped


def _iter_results(tasks, cfg, num_workers):
    """Yield ``_process_pair`` results, in-process for one worker, else from a spawn pool."""
    if num_workers <= 1:
        _init_worker(cfg)
        for task in tasks:
            yield _process_pair(task)
        return
    limit_threads(1)  # the spawned workers inherit the thread environment variables
    ctx = mp.get_context("spawn")
    pool = ctx.Pool(num_workers, initializer=_init_worker, initargs=(cfg,))
    try:
        for res in pool.imap_unordered(_process_pair, tasks, chunksize=1):
            yield res
        pool.close()
    except BaseException:  # Ctrl-C, an error in the parent, or an abandoned generator
        pool.terminate()
        raise
    finally:
        pool.join()


def run(args, out=sys.stdout, err=sys.stderr):
    """Run the precompute for parsed ``args``. Returns a summary dict.

    Summary keys: ``written``, ``skipped``, ``failed`` (images), ``failed_files``,
    ``seconds`` (wall time of the compute phase, worker start-up included),
    ``first_result_s`` (start-up + one pair), ``result_log`` ([(seconds, images)] per
    finished pair), ``times`` / ``cpu_times`` (per-stage wall / CPU seconds summed over
    workers), ``images_per_s``,
    ``workers``.
    """
    from tqdm import tqdm
    if args.height < 32 or args.width < 32:
        raise ToolkitError(f"hint size too small (--height {args.height} --width {args.width}): "
                           f"use at least 32 x 32")
    if not os.path.isdir(args.data_path):
        raise ToolkitError(f"data folder not found (--data_path {args.data_path}): "
                           f"point it at the KITTI raw root")
    filenames = resolve_filenames(args.filenames)
    pairs = read_pairs(filenames)
    save_path = args.save_path or os.path.join(args.data_path, "depth_hints")
    num_workers = args.num_workers or os.cpu_count() or 1
    if num_workers < 1:
        raise ToolkitError(f"bad worker count (--num_workers {args.num_workers}): use >= 1")
    tasks, skipped = plan(pairs, save_path, args.height, args.width, args.overwrite_saved_depths)
    n_images = sum(len(t[2]) for t in tasks)
    summary = {"written": 0, "skipped": skipped, "failed": 0, "failed_files": 0,
               "seconds": 0.0, "first_result_s": 0.0, "times": dict.fromkeys(STAGES, 0.0),
               "cpu_times": dict.fromkeys(STAGES, 0.0),
               "images_per_s": 0.0, "save_path": save_path, "result_log": [], "workers": 0}
    if not tasks:
        print(f"nothing to do: all {skipped} hints of {len(pairs)} pairs in {filenames} already "
              f"exist in {save_path} (--overwrite_saved_depths recomputes them)", file=out)
        return summary
    ext = ".png" if args.png else ".jpg"
    probe = [image_path(args.data_path, f, i, "l", ext) for f, i, _ in tasks[:20]]
    if not any(os.path.isfile(p) for p in probe):
        raise ToolkitError(
            f"no input images found (e.g. {probe[0]}) (--data_path {args.data_path}"
            f"{' --png' if args.png else ''}): point --data_path at the KITTI raw root "
            f"(<date>/<drive>/image_02/data/...), and pass --png if the images are PNG")
    num_workers = min(num_workers, len(tasks))
    summary["workers"] = num_workers
    print(f"computing {n_images} hints ({len(tasks)} pairs, {skipped} already done) at "
          f"{args.width}x{args.height} with {num_workers} worker(s) -> {save_path}", file=out)
    cfg = {"data_path": args.data_path, "save_path": save_path, "height": args.height,
           "width": args.width, "ext": ext}
    bad_files = set()
    t0 = time.perf_counter()
    bar = tqdm(total=n_images, unit="img", dynamic_ncols=True, smoothing=0.1, file=err)
    try:
        for res in _iter_results(tasks, cfg, num_workers):
            now = time.perf_counter() - t0
            if not summary["first_result_s"]:
                summary["first_result_s"] = now
            summary["result_log"].append((now, len(res["written"])))
            for k in STAGES:
                summary["times"][k] += res["times"][k]
                summary["cpu_times"][k] += res["cpu_times"][k]
            summary["written"] += len(res["written"])
            for path, reason, sides in res["failed"]:
                summary["failed"] += len(sides)
                bad_files.add(path)
                bar.write(f"error: {path}: {reason} (skipped {res['folder']} {res['frame']} "
                          f"side {','.join(sides)})", file=err)
            bar.update(res["images"])
    finally:
        bar.close()
    summary["seconds"] = time.perf_counter() - t0
    summary["failed_files"] = len(bad_files)
    summary["images_per_s"] = summary["written"] / max(summary["seconds"], 1e-9)
    done = max(summary["written"], 1)
    split = ", ".join(f"{k} {1000 * v / done:.0f}" for k, v in summary["cpu_times"].items())
    print(f"done: {summary['written']} hints written, {skipped} already present, "
          f"{summary['failed']} failed ({summary['failed_files']} bad file(s)) in "
          f"{summary['seconds']:.1f}s ({summary['images_per_s']:.2f} images/s); "
          f"CPU ms per image: {split}", file=out)
    return summary


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        summary = run(args)
    except ToolkitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished hints are kept; run again to do the rest", file=sys.stderr)
        return 130
    return 1 if summary["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
