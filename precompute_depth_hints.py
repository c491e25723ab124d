"""Precompute fused SGM depth hints for KITTI raw (SPEC section 5, Watson et al. 2019).

For every ``<folder> <frame>`` named in a split file, both images of the stereo pair
(left ``image_02`` and right ``image_03``) get a hint::

    <save_path>/<folder>/image_0{2,3}/<frame:010d>.npy    float32 (1, H, W), 0 = no hint

Per pair: both images are decoded once (PIL) and resized once to W x H with PIL's
Lanczos filter (the antialiased resize the SPEC prescribes and datasets/ uses for the
training images, so hints are matched on the pixels the network sees).
The 12 OpenCV SGBM matchers (blockSize {1,2,3} x numDisparities {64,96,128,160}) run on
the RGB images for the left base, and on the horizontally flipped pair for the right
base (result flipped back). Disparity d = SGBM / 16, depth = 0.58 W * 0.1 / d where
d > 0, else 0. Fusion: the other image is warped into the base view with every
candidate depth by ``layers.BackprojectDepth`` / ``layers.Project3D`` / ``layers.warp``
(baseline T[0,3] = -0.1 for a left base, +0.1 for a right base), the photometric error
is ``layers.compute_reprojection_loss`` (the training loss), invalid candidates get
+1000, and each pixel keeps the candidate with the smallest error (0 where none is
valid). So hints and training agree by construction.

Speed: a spawn process pool over image pairs (Paddle is only imported inside the
workers), each worker limited to one thread for OpenCV, Paddle, OpenMP and MKL (N workers
use N cores). OpenCV runs blockSize 2 exactly like 3 (its half-window is blockSize // 2),
so 8 distinct matchers run and their results are copied to the 12 candidates. The fusion
works on 16 x 64 pixel tiles (with a 1-pixel halo), all tiles of a row strip in one
batch; a tile skips candidates that are invalid on all its pixels and scores candidates
that are identical on it once (see HintComputer.fuse: same argmin as a whole-image pass
up to float rounding ties).

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

from camera import KITTI_K, STEREO_SCALE_FACTOR, scale_intrinsics  # noqa: E402
from runtime import limit_threads  # noqa: E402
from utils import MAX_DEPTH, MIN_DEPTH, ToolkitError, atomic_save_npy, readlines  # noqa: E402

DEFAULT_FILENAMES = os.path.join("splits", "eigen_full", "all_files.txt")
BLOCK_SIZES = (1, 2, 3)
NUM_DISPARITIES = (64, 96, 128, 160)
MATCHERS = tuple((b, n) for b in BLOCK_SIZES for n in NUM_DISPARITIES)
BASELINE = 0.1           # stereo baseline in the network's units (SPEC 1)
SIDE_DIRS = {"l": "image_02", "r": "image_03"}
STAGES = ("decode", "resize", "sgbm", "fuse", "save")
STRIP_ROWS = 16   # fusion tile height (kept rows; +1-row halo each side)
TILE_COLS = 64    # fusion tile width (kept columns; +1-column halo each side)
KILL_AFTER_ENV = "DEPTH_HINTS_KILL_AFTER"  # test hook: SIGKILL self after K images written


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
    """The 12 SGBM matchers of SPEC 5, in MATCHERS order."""
    import cv2
    return [cv2.StereoSGBM_create(minDisparity=0, numDisparities=n, blockSize=b,
                                  P1=36, P2=288, preFilterCap=63, uniquenessRatio=10,
                                  speckleWindowSize=100, speckleRange=16)
            for b, n in MATCHERS]


def intrinsics(height, width):
    """KITTI's normalised intrinsics scaled to ``width`` x ``height`` (4x4 float64)."""
    return scale_intrinsics(KITTI_K, width, height)


def disparity_to_depth(disp, width):
    """Pixel disparity -> depth fx * 0.1 / d (fx = 0.58 width), 0 where d <= 0."""
    disp = np.asarray(disp, dtype=np.float32)
    depth = np.zeros_like(disp)
    np.divide(np.float32(0.58 * width * BASELINE), disp, out=depth, where=disp > 0)
    return depth


class HintComputer:
    """SGBM candidates and their fusion for one image size (one per worker process)."""

    def __init__(self, height, width, strip_rows=STRIP_ROWS, tile_cols=TILE_COLS):
        import paddle
        import layers
        self.paddle, self.layers = paddle, layers
        self.height, self.width, self.strip_rows = height, width, strip_rows
        self.matchers = make_matchers()
        keys = [((b // 2) * 2 + 1, nd) for b, nd in MATCHERS]  # OpenCV's effective window
        first = {}
        for k, key in enumerate(keys):
            first.setdefault(key, k)
        self.unique = [self.matchers[k] for k in sorted(set(first.values()))]
        order = sorted(set(first.values()))
        self.unique_index = np.array([order.index(first[key]) for key in keys])
        # fusion tiles: kept strip_rows x tile_cols pixels inside equal-sized crops
        self.tile_cols = tile_cols
        self.row_tiles = list(_tiles(height, strip_rows))
        self.col_tiles = list(_tiles(width, tile_cols))
        hs = self.row_tiles[0][3] - self.row_tiles[0][2]
        ws = self.col_tiles[0][3] - self.col_tiles[0][2]
        self.crop_shape = (hs, ws)
        self.K_full = intrinsics(height, width)
        # projection straight to whole-image grid coordinates from a (hs, ws) crop:
        # Project3D divides by (ws-1, hs-1), so scale K's rows by (ws-1)/(W-1), (hs-1)/(H-1)
        scale = np.diag([(ws - 1) / max(width - 1, 1), (hs - 1) / max(height - 1, 1), 1, 1])
        self.K_proj = (scale @ self.K_full).astype(np.float32)
        self._inv_K_crop = {}
        self.T = {}
        for sign in (-1, 1):
            T = np.eye(4, dtype=np.float32)
            T[0, 3] = sign * BASELINE
            self.T[sign] = T
        self.backproject = layers.BackprojectDepth(1, hs, ws)
        self.project = layers.Project3D(1, hs, ws)

    def inv_K_crop(self, r0, c0):
        """Pseudo-inverse of the intrinsics of the crop starting at row r0, column c0."""
        key = (r0, c0)
        if key not in self._inv_K_crop:
            K = self.K_full.copy()
            K[0, 2] -= c0
            K[1, 2] -= r0
            self._inv_K_crop[key] = np.linalg.pinv(K).astype(np.float32)
        return self._inv_K_crop[key]

    def candidates(self, left, right, side):
        """(12, H, W) float32 candidate depths for base ``side`` from uint8 RGB images.

        Matchers that OpenCV runs identically (blockSize 2 and 3: both use a 3x3 window,
        since OpenCV takes blockSize // 2 as the half-window) run once and are copied.
        """
        if side == "l":
            base, other = left, right
        else:  # SGBM matches for its left input: mirror the pair, mirror the result back
            base = np.ascontiguousarray(right[:, ::-1])
            other = np.ascontiguousarray(left[:, ::-1])
        disp = np.empty((len(self.unique), self.height, self.width), np.float32)
        for k, m in enumerate(self.unique):
            disp[k] = m.compute(base, other)
        disp *= 1.0 / 16.0
        if side == "r":
            disp = disp[:, :, ::-1]
        return np.ascontiguousarray(disparity_to_depth(disp, self.width)[self.unique_index])

    def fuse(self, base, other, cands, side, baseline_sign=None):
        """Per-pixel minimum-photometric-error choice among ``cands`` (SPEC 5).

        ``base``/``other``: uint8 RGB (H, W, 3) of the base side and the other side;
        ``cands`` (N, H, W) depths. ``baseline_sign`` overrides the SPEC sign (-1 for a
        left base, +1 for a right base); tests use it to show a wrong sign is worse.
        Returns ``(hint (H, W) float32, pe (N, H, W) float32)``: pe is the photometric
        error + 1000 where the candidate is invalid (1001 in tiles where it is invalid
        everywhere and so was not scored).

        Work is done per tile: ``strip_rows`` x ``tile_cols`` kept pixels inside a crop
        with a 1-pixel halo, all tiles of a row strip in one batch. For each tile,
        candidates invalid on all its pixels are skipped and candidates identical on
        the crop are scored once. The crop is a camera of its own (principal point
        shifted by the crop offset), so BackprojectDepth / Project3D on the crop give
        the whole image's sampling grid (Project3D's K is scaled to whole-image grid
        units), warp samples the whole other image, and compute_reprojection_loss on the
        crop equals the whole-image error at the kept pixels (it depends on the 3x3
        neighbourhood only; the crop's reflection padding reaches halo pixels only).
        Valid errors are <= 1 < 1000 and equal maps have equal errors, so the argmin
        is the whole-image argmin (up to float rounding of the grid).
        """
        paddle, layers = self.paddle, self.layers
        n, H, W = cands.shape
        if baseline_sign is None:
            baseline_sign = -1 if side == "l" else 1
        hs, ws = self.crop_shape
        K_proj, T = self.K_proj, self.T[baseline_sign]
        base_f = base.transpose(2, 0, 1).astype(np.float32) / 255.0
        other_t = paddle.to_tensor(other.transpose(2, 0, 1)[None].astype(np.float32) / 255.0)
        valid = cands > 0
        pe = np.full((n, H, W), 1.0, np.float32)  # becomes 1001 where never scored
        for y0, y1, r0, r1 in self.row_tiles:
            jobs, depths, inv_Ks, targets = [], [], [], []
            live_cols = valid[:, y0:y1].any(axis=1)  # (N, W): valid somewhere in the strip
            for x0, x1, c0, c1 in self.col_tiles:
                live = np.flatnonzero(live_cols[:, x0:x1].any(axis=1))
                if not live.size:
                    continue  # candidates invalid on the whole tile are never chosen there
                crops = cands[live, r0:r1, c0:c1]
                groups = {}  # crop bytes -> candidates equal on the crop (exact comparison)
                for i, k in enumerate(live):
                    groups.setdefault(crops[i].tobytes(), (i, []))[1].append(k)
                for i, ks in groups.values():
                    jobs.append((x0, x1, c0, ks))
                    depths.append(crops[i])
                    inv_Ks.append(self.inv_K_crop(r0, c0))
                    targets.append(base_f[:, r0:r1, c0:c1])
            if not jobs:
                continue
            m = len(jobs)
            points = self.backproject(paddle.to_tensor(np.stack(depths)[:, None]),
                                      paddle.to_tensor(np.stack(inv_Ks)))
            grid = self.project(points, paddle.to_tensor(np.repeat(K_proj[None], m, 0)),
                                paddle.to_tensor(np.repeat(T[None], m, 0)))
            warped = layers.warp(other_t, grid.reshape([1, m * hs, ws, 2]))
            warped = warped.reshape([3, m, hs, ws]).transpose([1, 0, 2, 3])
            err = layers.compute_reprojection_loss(warped, paddle.to_tensor(np.stack(targets)))
            err = err.numpy()[:, 0]
            for e, (x0, x1, c0, ks) in zip(err, jobs):
                pe[ks, y0:y1, x0:x1] = e[y0 - r0:y1 - r0, x0 - c0:x1 - c0]
        pe += 1000.0 * ~valid
        idx = np.argmin(pe, axis=0)
        hint = np.take_along_axis(cands, idx[None], 0)[0]
        return hint.astype(np.float32), pe

    def hint(self, left, right, side):
        """Fused (H, W) hint for ``side`` of a resized uint8 RGB pair."""
        cands = self.candidates(left, right, side)
        base, other = (left, right) if side == "l" else (right, left)
        return self.fuse(base, other, cands, side)[0]


# ----------------------------------------------------------------------------- accuracy


METRICS = ("abs_rel", "a1", "coverage", "abs_rel_common", "a1_common")


def _error_sums(pred, gt, mask):
    """[pixels, sum |gt - p| / gt, pixels with max(gt/p, p/gt) < 1.25] over ``mask``
    (predictions clipped to the SPEC 6 range)."""
    p = np.clip(pred[mask].astype(np.float64), MIN_DEPTH, MAX_DEPTH)
    g = gt[mask].astype(np.float64)
    ratio = np.maximum(g / p, p / g)
    return [mask.sum(), np.sum(np.abs(g - p) / g), np.sum(ratio < 1.25)]


def hint_accuracy(data_path, pairs, height, width, ext=".jpg", scale=STEREO_SCALE_FACTOR,
                  hc=None, wrong_sign=False):
    """Accuracy of each single SGBM matcher and of the fused hints against true depth.

    ``pairs``: (folder, frame) list; true depth is read from the synthetic data's
    ``<folder>/true_depth/image_0{2,3}/<frame:010d>.npy`` (metres, 0 = none) and resized
    to the hint size with nearest neighbour; hints are multiplied by ``scale`` (5.4:
    network baseline 0.1 vs KITTI's 0.54 m). Pixels count when MIN_DEPTH < true depth
    < MAX_DEPTH (SPEC 6); hints are clipped to that range. Sums are pooled over both
    sides of all pairs. ``wrong_sign`` fuses with the baseline sign flipped (tests).

    Returns ``{name: metrics}`` for ``"b{block}_n{numdisp}"`` of each matcher,
    ``"mean_single"`` (mean of the 12 matchers' metrics) and ``"fused"``. Metrics:
    ``abs_rel`` and ``a1`` (fraction with max ratio < 1.25) on the pixels where that
    hint is valid, ``coverage`` (fraction of the counted pixels with a valid hint), and
    ``abs_rel_common`` / ``a1_common`` on the pixels where all 12 matchers are valid, so
    that every row is scored on the same pixels.
    """
    import cv2
    hc = hc or HintComputer(height, width)
    names = [f"b{b}_n{n}" for b, n in MATCHERS] + ["fused"]
    own = np.zeros((len(names), 3))
    common = np.zeros((len(names), 3))
    n_counted = 0
    for folder, frame in pairs:
        arr = {s: resize_image(decode_image(image_path(data_path, folder, frame, s, ext)),
                               width, height) for s in ("l", "r")}
        for s in ("l", "r"):
            gt = np.load(os.path.join(data_path, folder, "true_depth", SIDE_DIRS[s],
                                      f"{frame:010d}.npy")).astype(np.float32)
            gt = cv2.resize(gt, (width, height), interpolation=cv2.INTER_NEAREST)
            counted = (gt > MIN_DEPTH) & (gt < MAX_DEPTH)
            n_counted += counted.sum()
            cands = hc.candidates(arr["l"], arr["r"], s)
            base, other = (arr["l"], arr["r"]) if s == "l" else (arr["r"], arr["l"])
            sign = None
            if wrong_sign:
                sign = 1 if s == "l" else -1
            fused = hc.fuse(base, other, cands, s, baseline_sign=sign)[0]
            all_valid = counted & (cands > 0).all(0)
            for k, d in enumerate(list(cands) + [fused]):
                own[k] += _error_sums(d * scale, gt, counted & (d > 0))
                common[k] += _error_sums(d * scale, gt, all_valid)
    table = {}
    for name, (n, rel, good), (nc, relc, goodc) in zip(names, own, common):
        table[name] = {"abs_rel": rel / max(n, 1), "a1": good / max(n, 1),
                       "coverage": n / max(n_counted, 1),
                       "abs_rel_common": relc / max(nc, 1), "a1_common": goodc / max(nc, 1)}
    singles = [table[k] for k in names[:-1]]
    table["mean_single"] = {m: float(np.mean([t[m] for t in singles])) for m in METRICS}
    table["fused"] = table.pop("fused")
    return table


def format_accuracy_table(table):
    """Markdown table of :func:`hint_accuracy`'s result."""
    lines = ["| hints | abs_rel | a1 | coverage | abs_rel (common px) | a1 (common px) |",
             "|---|---|---|---|---|---|"]
    for name, m in table.items():
        lines.append(f"| {name} | " + " | ".join(f"{m[k]:.4f}" for k in METRICS) + " |")
    return "\n".join(lines)


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
    _WORKER["hc"] = HintComputer(cfg["height"], cfg["width"])


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
        description="Precompute fused SGM depth hints (Depth Hints, SPEC section 5).")
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
    kill_after = int(os.environ.get(KILL_AFTER_ENV, "0") or 0)
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
            if kill_after and summary["written"] >= kill_after:
                os.kill(os.getpid(), signal.SIGKILL)  # test hook: die like a killed job
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
