"""Accuracy of the fused SGM depth hints (precompute_depth_hints.py) against ground truth.

Two references:

- **Real stereo** (:func:`motorcycle_accuracy`): the Middlebury 2014 "motorcycle" pair
  with its ground-truth disparity, as shipped inside the scikit-image wheel
  (``skimage.data.stereo_motorcycle()``, 741 x 500, reads no network). The pair is saved as
  JPEG (quality 95) in the KITTI layout and run through the precompute CLI; the left hint
  is turned back into pixel disparity d = fx * 0.1 / hint (fx = 0.58 W) and compared with
  the ground truth resized by nearest neighbour and scaled by W / 741 (non-finite = no
  ground truth). Metrics: coverage (fraction of the pixels with ground truth that have a
  hint), end-point error (mean |d - gt| in pixels) and bad-2px (fraction of the hinted
  pixels off by more than 2 px). :data:`PUBLISHED_MOTORCYCLE` holds the published Depth
  Hints script's figures at 480 x 320 (Watson et al. 2019).
- **Synthetic truth** (:func:`hint_accuracy`): the renderer's true depth of
  tools/make_synthetic_kitti.py, per single SGBM matcher and for the fused hints.

CLI (prints the tables)::

    python bench/hint_accuracy.py [--synthetic DATA --pairs 6 --width 1024 --height 320]

(the motorcycle pair is always run at 480 x 320, the size of the published figures).
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import hint_fusion as HF  # noqa: E402
import kitti_utils  # noqa: E402
import precompute_depth_hints as P  # noqa: E402
from runtime import quiet_paddle_notices  # noqa: E402
from camera import STEREO_SCALE_FACTOR  # noqa: E402
from layers import MAX_DEPTH, MIN_DEPTH  # noqa: E402

quiet_paddle_notices()

# ----------------------------------------------------------------------------- real stereo

MOTORCYCLE_FOLDER = os.path.join("middlebury", "motorcycle_sync")
# the published Depth Hints script on the same JPEG pair at 480 x 320
PUBLISHED_MOTORCYCLE = {"coverage": 0.8415, "epe": 0.976, "bad2": 0.0734}


def write_motorcycle(data_path, quality=95):
    """Save skimage's motorcycle pair as JPEG frame 0 of a KITTI-layout drive under
    ``data_path``. Returns ``(folder, frame, gt_disparity)`` (the full-size (500, 741)
    float32 ground truth of the left image, NaN/inf = unknown)."""
    import skimage.data
    from PIL import Image
    left, right, disp = skimage.data.stereo_motorcycle()
    for side, im in (("l", left), ("r", right)):
        path = kitti_utils.image_path(data_path, MOTORCYCLE_FOLDER, 0, side, ".jpg")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        Image.fromarray(im).save(path, quality=quality)
    return MOTORCYCLE_FOLDER, 0, disp.astype(np.float32)


def disparity_accuracy(hint, gt_disp, focal_ratio=0.58):
    """Coverage, end-point error and bad-2px of a (H, W) hint against full-size ground
    truth disparity (pixels of a ``gt_disp.shape[1]``-wide image); see the module doc."""
    import cv2
    h, w = hint.shape
    gt = cv2.resize(gt_disp, (w, h), interpolation=cv2.INTER_NEAREST) * (w / gt_disp.shape[1])
    known = np.isfinite(gt)
    hinted = known & (hint > 0)
    disp = focal_ratio * w * 0.1 / hint[hinted].astype(np.float64)
    err = np.abs(disp - gt[hinted])
    return {"coverage": hinted.sum() / max(known.sum(), 1), "epe": float(err.mean()),
            "bad2": float(np.mean(err > 2.0)), "pixels": int(hinted.sum())}


def run_cli(data_path, filenames, save_path, height, width, workers=1, extra=()):
    """Run precompute_depth_hints.py as a user would; returns the CompletedProcess."""
    cmd = [sys.executable, os.path.join(ROOT, "precompute_depth_hints.py"),
           "--data_path", data_path, "--filenames", filenames, "--save_path", save_path,
           "--height", str(height), "--width", str(width), "--num_workers", str(workers),
           *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def motorcycle_accuracy(work_dir, height=320, width=480, compare_excluded=False):
    """Motorcycle pair -> KITTI layout in ``work_dir`` -> CLI hints -> metrics of the left
    hint (:func:`disparity_accuracy`). Raises RuntimeError when the CLI fails.

    ``compare_excluded`` adds ``"excluded"``: the metrics of the same fusion with invalid
    candidates excluded from the argmin (+1000 on their error), the rule this toolkit
    used before it let "no match" compete as the published method does."""
    data = os.path.join(work_dir, "data")
    folder, frame, gt = write_motorcycle(data)
    files = os.path.join(work_dir, "files.txt")
    with open(files, "w") as f:
        f.write(f"{folder} {frame} l\n")
    save = os.path.join(work_dir, "hints")
    proc = run_cli(data, files, save, height, width)
    if proc.returncode != 0:
        raise RuntimeError(f"precompute failed ({proc.returncode}): {proc.stderr[-2000:]}")
    hint = np.load(kitti_utils.depth_hint_path(save, folder, frame, "l"))[0]
    result = disparity_accuracy(hint, gt)
    if compare_excluded:
        img = load_pair(data, folder, frame, width, height)
        hc = HF.HintComputer(height, width)
        cands = hc.candidates(img["l"], img["r"], "l")
        pe = hc.fuse(img["l"], img["r"], cands, "l")[1]
        result["excluded"] = disparity_accuracy(HF.select(cands, pe + 1000.0 * (cands <= 0)), gt)
    return result


def format_motorcycle_table(ours, width=480, height=320):
    """Markdown table of ours beside the published script's figures."""
    rows = [("published Depth Hints script", PUBLISHED_MOTORCYCLE), ("this toolkit", ours)]
    if "excluded" in ours:
        rows.append(("invalid candidates excluded (+1000; the earlier rule)", ours["excluded"]))
    lines = [f"| hints ({width} x {height}) | coverage | end-point error (px) | bad-2px |",
             "|---|---|---|---|"]
    for name, m in rows:
        lines.append(f"| {name} | {m['coverage']:.4f} | {m['epe']:.3f} | {m['bad2']:.4f} |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- synthetic truth

METRICS = ("abs_rel", "a1", "coverage", "abs_rel_common", "a1_common")


def read_true_depth(data_path, folder, frame, side, width, height):
    """The synthetic renderer's true depth (metres, 0 = none) of one image, resized to
    ``width`` x ``height`` by nearest neighbour."""
    import cv2
    from tools.make_synthetic_kitti import true_depth_path
    gt = np.load(true_depth_path(data_path, folder, frame, side)).astype(np.float32)
    return cv2.resize(gt, (width, height), interpolation=cv2.INTER_NEAREST)


def load_pair(data_path, folder, frame, width, height, ext=".jpg"):
    """``{"l": left, "r": right}`` uint8 RGB images resized as the precompute does."""
    return {s: P.load_image(kitti_utils.image_path(data_path, folder, frame, s, ext), width, height)
            for s in ("l", "r")}


def _error_sums(pred, gt, mask):
    """[pixels, sum |gt - p| / gt, pixels with max(gt/p, p/gt) < 1.25] over ``mask``
    (predictions clipped to the evaluation range, docs/METHOD.md, section 6)."""
    p = np.clip(pred[mask].astype(np.float64), MIN_DEPTH, MAX_DEPTH)
    g = gt[mask].astype(np.float64)
    ratio = np.maximum(g / p, p / g)
    return [mask.sum(), np.sum(np.abs(g - p) / g), np.sum(ratio < 1.25)]


def hint_accuracy(data_path, pairs, height, width, ext=".jpg", scale=STEREO_SCALE_FACTOR,
                  hc=None, wrong_sign=False):
    """Accuracy of each single SGBM matcher and of the fused hints against true depth.

    ``pairs``: (folder, frame) list of the synthetic data (:func:`read_true_depth`);
    hints are multiplied by ``scale`` (5.4: network baseline 0.1 vs KITTI's 0.54 m).
    Pixels count when MIN_DEPTH < true depth < MAX_DEPTH; hints are clipped to that
    range. Sums are pooled over both sides of all pairs. ``wrong_sign`` fuses with the
    baseline sign flipped.

    Returns ``{name: metrics}`` for ``"b{block}_n{numdisp}"`` of each matcher,
    ``"mean_single"`` (mean of the 12 matchers' metrics) and ``"fused"``. Metrics:
    ``abs_rel`` and ``a1`` (fraction with max ratio < 1.25) on the pixels where that
    hint is valid, ``coverage`` (fraction of the counted pixels with a valid hint), and
    ``abs_rel_common`` / ``a1_common`` on the pixels where all 12 matchers are valid, so
    that every row is scored on the same pixels.
    """
    hc = hc or HF.HintComputer(height, width)
    names = [f"b{b}_n{n}" for b, n in HF.MATCHERS] + ["fused"]
    own = np.zeros((len(names), 3))
    common = np.zeros((len(names), 3))
    n_counted = 0
    for folder, frame in pairs:
        arr = load_pair(data_path, folder, frame, width, height, ext)
        for s in ("l", "r"):
            gt = read_true_depth(data_path, folder, frame, s, width, height)
            counted = (gt > MIN_DEPTH) & (gt < MAX_DEPTH)
            n_counted += counted.sum()
            cands = hc.candidates(arr["l"], arr["r"], s)
            base, other = (arr["l"], arr["r"]) if s == "l" else (arr["r"], arr["l"])
            sign = (1 if s == "l" else -1) if wrong_sign else None
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


def tiled_vs_reference(hc, left, right):
    """How far :meth:`HintComputer.fuse` (tiled) is from :meth:`fuse_reference` on one
    pair, per side: fraction of equal hint pixels, max |pe difference|, max error gap
    (reference error of the tiled choice minus the reference minimum) and whether the
    hinted pixels (hint > 0) are the same."""
    out = {}
    for side in ("l", "r"):
        base, other = (left, right) if side == "l" else (right, left)
        cands = hc.candidates(left, right, side)
        hint, pe = hc.fuse(base, other, cands, side)
        ref, ref_pe = hc.fuse_reference(base, other, cands, side)
        chosen = np.take_along_axis(ref_pe, np.argmin(pe, 0)[None], 0)[0]
        out[side] = {"equal": float(np.mean(hint == ref)),
                     "pe_diff": float(np.abs(pe - ref_pe).max()),
                     "gap": float((chosen - ref_pe.min(0)).max()),
                     "same_hinted": float(np.mean((hint > 0) == (ref > 0)))}
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--height", type=int, default=320, help="synthetic hints' height")
    p.add_argument("--width", type=int, default=1024, help="synthetic hints' width")
    p.add_argument("--synthetic", default=None,
                   help="synthetic KITTI folder (tools/make_synthetic_kitti.py) for the "
                        "true-depth table")
    p.add_argument("--pairs", type=int, default=6, help="synthetic pairs of the first drive")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        ours = motorcycle_accuracy(tmp, compare_excluded=True)
    print("Middlebury 2014 motorcycle (skimage), left hint vs ground-truth disparity:\n")
    print(format_motorcycle_table(ours))
    if args.synthetic:
        import glob
        drive = sorted(glob.glob(os.path.join(args.synthetic, "*", "*_sync")))[0]
        pairs = [(os.path.relpath(drive, args.synthetic), i) for i in range(args.pairs)]
        table = hint_accuracy(args.synthetic, pairs, args.height, args.width)
        print(f"\nsynthetic true depth, {len(pairs)} pairs (both sides), "
              f"{args.width}x{args.height}:\n")
        print(format_accuracy_table(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
