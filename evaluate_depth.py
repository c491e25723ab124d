"""Evaluate a trained depth model (or a saved predictions file) on a KITTI split (docs/METHOD.md, section 6).

    python evaluate_depth.py --load_weights_folder W --data_path P --eval_stereo
    python evaluate_depth.py --ext_disp_to_eval disps_eigen_split.npy --eval_mono

Monodepth2's protocol: predict the (min 0.1 / max 100 scaled) disparity at network
resolution, resize it to the ground-truth size, depth = 1 / disp * pred_depth_scale_factor,
mask to MIN_DEPTH < gt < MAX_DEPTH (plus the Garg crop on "eigen"), median-scale per image
in mono mode (stereo: x5.4, no median scaling), clamp to [1e-3, 80], compute the seven
metrics per image and average them.

Ground truth is read from ``<splits_dir>/<eval_split>/gt_depths.npz`` (key ``data``), which
``export_gt_depth.py`` writes. The ``benchmark`` split has no public ground truth: like
Monodepth2, its predictions are written as KITTI-benchmark 16-bit PNGs (depth * 256 at
1216x352, always scaled by 5.4) instead of being evaluated. The odometry splits are
evaluated by ``evaluate_pose.py``.

Nothing read runs code: ``gt_depths.npz`` (the published object array or this toolkit's)
and ``--ext_disp_to_eval`` go through safe_load (a pickle payload is refused in one line).
Predictions that cannot be scored are refused before anything is saved or printed: NaN,
infinite or negative disparities, all zeros (or an image of zeros), or another count than
the split's test images. ``--metrics_out`` is strict JSON, written atomically; a full disk
there (or at ``--eval_out_dir``) is one line naming the folder. Progress: a bar on a
terminal, else a status line with rate and ETA every 30 s (progress.ProgressLog, stderr).

The pieces are importable: :func:`compute_eval_mask`, :func:`batch_post_process_disparity`,
:func:`evaluate_predictions`, :func:`predict_disparities`, :func:`check_predictions`
(models load through model_loader.py).
"""
import contextlib
import json
import math
import os
import sys
import warnings

warnings.filterwarnings("ignore", message="No ccache found")  # noise from importing paddle

from runtime import cpu_env_defaults  # noqa: E402

cpu_env_defaults()  # MKL/OpenMP settings, before paddle is imported

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from layers import MAX_DEPTH, MIN_DEPTH, DepthErrors, compute_depth_errors, garg_crop_bounds  # noqa: E402
from camera import STEREO_SCALE_FACTOR  # noqa: E402
from model_loader import check_weights_folder, load_depth_model  # noqa: E402
from options import explicit_num_layers  # noqa: E402
from utils import ToolkitError, run_cli  # noqa: E402
DEPTH_SPLITS = ("eigen", "eigen_benchmark", "benchmark")
ODOM_SPLITS = ("odom_9", "odom_10")
BENCHMARK_SIZE = (1216, 352)  # (width, height) of KITTI depth benchmark submissions


# ----------------------------------------------------------------------------- pure parts


def batch_post_process_disparity(l_disp, r_disp):
    """Blend disparities of an image (``l_disp``) and of its mirror, mirrored back (``r_disp``).

    Both numpy (N, H, W). With x the column position normalised to [0, 1],
    l_mask = 1 - clip(20 (x - 0.05), 0, 1) and r_mask = l_mask mirrored:
    out = r_mask * l_disp + l_mask * r_disp + (1 - l_mask - r_mask) * mean(l_disp, r_disp).
    So the left edge comes from the mirrored pass, the right edge from the plain one.
    """
    l_disp = np.asarray(l_disp)
    r_disp = np.asarray(r_disp)
    if l_disp.shape != r_disp.shape or l_disp.ndim != 3:
        raise ValueError(f"post-processing needs two (N, H, W) arrays of one shape, "
                         f"got {l_disp.shape} and {r_disp.shape}")
    _, h, w = l_disp.shape
    m_disp = 0.5 * (l_disp + r_disp)
    x, _ = np.meshgrid(np.linspace(0, 1, w), np.linspace(0, 1, h))
    l_mask = (1.0 - np.clip(20 * (x - 0.05), 0, 1))[None, ...]
    r_mask = l_mask[:, :, ::-1]
    out = r_mask * l_disp + l_mask * r_disp + (1.0 - l_mask - r_mask) * m_disp
    return out.astype(l_disp.dtype, copy=False)


def compute_eval_mask(gt_depth, split):
    """Boolean mask of the evaluated pixels of one (H, W) ground-truth depth map.

    MIN_DEPTH < gt < MAX_DEPTH; for ``split == "eigen"`` also the Garg crop
    rows [0.40810811 H, 0.99189189 H), cols [0.03594771 W, 0.96405229 W).
    """
    gt_depth = np.asarray(gt_depth)
    mask = np.logical_and(gt_depth > MIN_DEPTH, gt_depth < MAX_DEPTH)
    if split == "eigen":
        h, w = gt_depth.shape[:2]
        top, bottom, left, right = garg_crop_bounds(h, w)
        crop_mask = np.zeros(mask.shape, dtype=bool)
        crop_mask[top:bottom, left:right] = True
        mask = np.logical_and(mask, crop_mask)
    return mask


def disp_to_gt_depth(pred_disp, gt_shape):
    """Resize one (h, w) scaled disparity to the ground truth's (H, W) and invert it."""
    gt_height, gt_width = gt_shape[:2]
    disp = cv2.resize(np.asarray(pred_disp, dtype=np.float32), (gt_width, gt_height))
    with np.errstate(divide="ignore"):  # zero disparity: infinite depth (clamped to 80 m later)
        return 1.0 / disp


def _opt_get(opt, overrides, name, default):
    if name in overrides:
        return overrides[name]
    return getattr(opt, name, default) if opt is not None else default


def evaluate_predictions(pred_disps, gt_depths, opt=None, **overrides):
    """Score scaled disparities (N, h, w) against N ground-truth depth maps (docs/METHOD.md, section 6).

    Settings come from ``opt`` (an options Namespace) and/or keyword overrides:
    ``eval_split`` ("eigen"), ``eval_stereo`` (False), ``disable_median_scaling`` (False),
    ``pred_depth_scale_factor`` (1.0). Stereo forces factor 5.4 and no median scaling.

    Returns a dict: ``metrics`` (the seven means), ``per_image`` (N x 7 list),
    ``num_images``, ``median_scaling``, ``pred_depth_scale_factor`` and, with median
    scaling, ``ratios`` (the per-image median(gt)/median(pred)) and ``ratio_stats``
    {"median", "std" (of ratios / median, as Monodepth2 prints), "mean", "std_raw"}.
    """
    split = _opt_get(opt, overrides, "eval_split", "eigen")
    stereo = bool(_opt_get(opt, overrides, "eval_stereo", False))
    median_scaling = not bool(_opt_get(opt, overrides, "disable_median_scaling", False))
    factor = float(_opt_get(opt, overrides, "pred_depth_scale_factor", 1.0))
    if stereo:
        median_scaling = False
        factor = STEREO_SCALE_FACTOR

    if len(pred_disps) != len(gt_depths):
        raise ToolkitError(
            f"{len(pred_disps)} predictions but {len(gt_depths)} ground-truth maps "
            f"(split {split}): predictions and gt_depths.npz must come from the same split's "
            "test_files.txt; re-run export_gt_depth.py or the prediction for that split")

    errors, ratios = [], []
    for i in range(len(pred_disps)):
        gt_depth = np.asarray(gt_depths[i], dtype=np.float64)
        pred_depth = disp_to_gt_depth(pred_disps[i], gt_depth.shape).astype(np.float64)
        mask = compute_eval_mask(gt_depth, split)
        if not mask.any():
            raise ToolkitError(
                f"ground-truth map {i} has no valid pixel (split {split}): "
                "check gt_depths.npz (re-run export_gt_depth.py)")
        pred_depth = pred_depth[mask] * factor
        gt_depth = gt_depth[mask]
        if median_scaling:
            if not np.isfinite(np.median(pred_depth)):
                raise ToolkitError(
                    f"prediction {i} has zero disparity (infinite depth) on at least half of the evaluated "
                    f"pixels (split {split}): median scaling is undefined; check the predictions")
            ratio = np.median(gt_depth) / np.median(pred_depth)
            ratios.append(ratio)
            pred_depth = pred_depth * ratio
        pred_depth = np.clip(pred_depth, MIN_DEPTH, MAX_DEPTH)
        errors.append(tuple(compute_depth_errors(gt_depth, pred_depth)))

    errors = np.array(errors, dtype=np.float64).reshape(-1, len(DepthErrors.NAMES))
    mean_errors = errors.mean(0)
    result = {
        "metrics": {k: float(v) for k, v in zip(DepthErrors.NAMES, mean_errors)},
        "per_image": errors.tolist(),
        "num_images": int(len(errors)),
        "eval_split": split,
        "mode": "stereo" if stereo else "mono",
        "median_scaling": median_scaling,
        "pred_depth_scale_factor": factor,
    }
    if median_scaling:
        ratios = np.array(ratios, dtype=np.float64)
        med = float(np.median(ratios))
        result["ratios"] = ratios.tolist()
        result["ratio_stats"] = {"median": med, "std": float(np.std(ratios / med)),
                                 "mean": float(np.mean(ratios)), "std_raw": float(np.std(ratios))}
    return result


def format_ratio_line(ratio_stats):
    """Monodepth2's ratio line (median and std of ratios / median), plus the plain mean."""
    return " Scaling ratios | med: {:0.3f} | std: {:0.3f} | mean: {:0.3f}".format(
        ratio_stats["median"], ratio_stats["std"], ratio_stats["mean"])


def format_metrics_table(metrics):
    """The two-line Monodepth2 table: header ``abs_rel | ... | a3`` and ``&   0.xxx  ...``."""
    values = [metrics[k] for k in DepthErrors.NAMES]
    header = ("{:>8} | " * 7).format(*DepthErrors.NAMES)
    row = ("&{: 8.3f}  " * 7).format(*values) + "\\\\"
    return header + "\n" + row


# ----------------------------------------------------------------------------- model parts


def predict_disparities(encoder, decoder, dataloader, post_process=False,
                        min_depth=0.1, max_depth=100.0, progress=True, loader_timeout=0):
    """Run the depth network over a DataLoader of items with ``("color", 0, 0)``.

    Returns the scaled disparities (disp_to_depth with ``min_depth``/``max_depth``) at
    network resolution as numpy (N, h, w) float32. With ``post_process`` each batch runs
    together with its mirror and the two are blended (:func:`batch_post_process_disparity`).
    ``loader_timeout`` > 0: a batch that takes longer ends the run with one line (LoaderWatchdog).
    """
    import paddle
    from layers import disp_to_depth

    from datasets import checked_batches
    from progress import ProgressLog
    from run_guard import LoaderWatchdog
    out = []
    watchdog = LoaderWatchdog(loader_timeout, "evaluation", advice="run it again")
    # a bar on a terminal, else a plain status line (rate, ETA) every 30 s and at the end
    log = ProgressLog(len(dataloader), "batch", stream=sys.stderr, desc="predict") if progress else None
    with paddle.no_grad(), contextlib.closing(watchdog), contextlib.ExitStack() as stack:
        if log is not None:
            stack.callback(log.close)
        for data in checked_batches(dataloader, watchdog=watchdog):
            color = data[("color", 0, 0)]
            if not isinstance(color, paddle.Tensor):
                color = paddle.to_tensor(np.asarray(color))
            color = color.astype("float32")
            if post_process:
                color = paddle.concat([color, paddle.flip(color, axis=[3])], axis=0)
            disp = decoder(encoder(color))[("disp", 0)]
            scaled, _ = disp_to_depth(disp, min_depth, max_depth)
            pred = scaled.numpy()[:, 0]
            if post_process:
                n = pred.shape[0] // 2
                pred = batch_post_process_disparity(pred[:n], pred[n:, :, ::-1])
            out.append(pred.astype(np.float32))
            if log is not None:
                log.update()
    if not out:
        raise ToolkitError("the split lists no image (test_files.txt): check the split file")
    return np.concatenate(out, 0)


def _split_file(opt):
    from kitti_utils import resolve_split_dir
    split_dir = resolve_split_dir(opt.eval_split, opt.splits_dir)
    path = os.path.join(split_dir, "test_files.txt")
    if not os.path.isfile(path):
        raise ToolkitError(f"test_files.txt missing ({path}): the evaluation split folder "
                           "needs the test list (see --splits_dir)")
    return split_dir, path


def run_model(opt):
    """Load the model of ``opt.load_weights_folder`` and predict the split's disparities."""
    import paddle
    import datasets
    from networks import check_input_size
    from runtime import pick_device
    from fileio import readlines

    if opt.no_cuda:
        opt.device = "cpu"
    device = pick_device(opt.device)
    encoder, decoder, meta = load_depth_model(opt.load_weights_folder, explicit_num_layers(opt))
    check_input_size(meta["height"], meta["width"], "--load_weights_folder",
                     what="recorded training size", fix="use weights trained at such a size, e.g. 640x192")
    _, test_file = _split_file(opt)
    filenames = readlines(test_file)
    img_ext = ".png" if opt.png else ".jpg"
    dataset = datasets.KITTIRAWDataset(opt.data_path, filenames, meta["height"], meta["width"],
                                       [0], 1, is_train=False, img_ext=img_ext)
    # ground truth comes from gt_depths.npz: skip the per-item LiDAR projection
    dataset.load_depth = False
    datasets.check_eval_split(dataset)
    num_workers = max(0, min(int(opt.num_workers), os.cpu_count() or 1))
    # SafeDataset + collate: an unreadable image is one line, never a hang in the reader thread
    loader = paddle.io.DataLoader(datasets.SafeDataset(dataset), batch_size=int(opt.batch_size),
                                  shuffle=False, num_workers=num_workers, drop_last=False,
                                  collate_fn=datasets.collate)
    print("-> Loaded weights from {} ({}x{}, ResNet-{}, {}) on {}".format(
        opt.load_weights_folder, meta["width"], meta["height"], meta["num_layers"],
        "stereo-trained" if meta["use_stereo"] else "mono-trained", device))
    print("-> Computing predictions with size {}x{}".format(meta["width"], meta["height"]))
    preds = predict_disparities(encoder, decoder, loader, post_process=opt.post_process,
                                min_depth=opt.min_depth, max_depth=opt.max_depth,
                                loader_timeout=getattr(opt, "loader_timeout", 0))
    return preds, meta


def load_ext_disps(path):
    """Load a saved (N, h, w) disparity .npy (``--ext_disp_to_eval``) without running code
    (``safe_load.load_npy``: a file with a pickle payload is refused in one line)."""
    import safe_load
    path = os.path.expanduser(path)
    if not os.path.isfile(path):
        import published_models
        if path not in published_models.MODELS:
            raise ToolkitError(f"predictions file not found (--ext_disp_to_eval {path}): save one with "
                               "--save_pred_disps, or give a published model's name (python tools/models.py list)")
        path = published_models.fetch_predictions(path, log=lambda text: print(text, file=sys.stderr, flush=True))
    disps = safe_load.load_npy(path)
    if disps.dtype.kind not in "fiu" or disps.ndim != 3 or 0 in disps.shape:
        raise ToolkitError(f"predictions must be an (N, H, W) array of numbers, got {disps.dtype} of shape "
                           f"{disps.shape} (--ext_disp_to_eval {path}): use a file written by --save_pred_disps")
    return disps.astype(np.float32, copy=False)


def _share(count, total):
    """'12 %' (or 'all', '0.004 %') of ``count`` among ``total`` values."""
    if count == total:
        return "all"
    pct = 100.0 * count / total
    if pct >= 10:
        return "{:.0f} %".format(min(pct, 99.0))
    return "{:.2g} %".format(pct)


def check_predictions(disps, source, fix):
    """One-line ToolkitError naming ``source`` (the file or the model folder) when the
    disparities (N, h, w) cannot be scored: NaN or infinite values, negative ones, or all
    zeros (in the whole array or in one image: an infinite depth everywhere). ``fix`` ends
    the message. Checked before anything is saved or scored."""
    disps = np.asarray(disps)
    total = disps.size
    problems = []
    for what, count in (("NaN", np.count_nonzero(np.isnan(disps))),
                        ("infinite", np.count_nonzero(np.isinf(disps))),
                        ("negative", np.count_nonzero(disps < 0))):
        if count:
            problems.append("{} of the values ({} of {}) are {}".format(_share(count, total), count, total, what))
    if not problems:
        zero = ~disps.reshape(len(disps), -1).any(axis=1)
        if zero.all():
            problems.append("all values are zero")
        elif zero.any():
            first = int(np.flatnonzero(zero)[0])
            problems.append("{} of {} images have only zero values (first: image {}, line {} of test_files.txt)".format(
                int(zero.sum()), len(disps), first, first + 1))
    if problems:
        raise ToolkitError("predicted disparities unusable ({}): {}; {}".format(source, ", ".join(problems), fix))


def load_gt_depths(split, splits_dir=None):
    """The split's ground-truth depth maps from ``<splits_dir>/<split>/gt_depths.npz``: key
    ``data``, an object array of (H, W) maps (Monodepth2's published file and
    export_gt_depth.py's) or an (N, H, W) array, read without running code
    (``safe_load.load_npz``)."""
    import safe_load
    from kitti_utils import resolve_split_dir
    try:
        split_dir = resolve_split_dir(split, splits_dir)
    except FileNotFoundError:
        split_dir = os.path.join(splits_dir or os.path.join(os.path.dirname(os.path.abspath(__file__)), "splits"), split)
    gt_path = os.path.join(split_dir, "gt_depths.npz")
    if not os.path.isfile(gt_path):
        flag = f" --splits_dir {splits_dir}" if splits_dir else ""
        raise ToolkitError(f"ground truth not found ({gt_path}): export it with `python export_gt_depth.py "
                           f"--data_path <kitti> --split {split}{flag}`, or point --splits_dir at the folder "
                           f"holding {split}/gt_depths.npz")
    try:
        gt = safe_load.load_npz(gt_path, "data")["data"]
    except safe_load.UnreadableFileError as exc:
        raise ToolkitError(f"{exc}; re-run export_gt_depth.py") from None
    maps = list(gt) if (gt.ndim == 1 and gt.dtype == object) or gt.ndim == 3 else None
    if maps is None or not all(isinstance(m, np.ndarray) and m.ndim == 2 and m.dtype.kind in "fiu"
                               and min(m.shape) > 0 for m in maps):
        raise ToolkitError(f"ground truth is not a list of (H, W) depth maps ({gt_path}, key data: "
                           f"{gt.dtype} {gt.shape}): re-run export_gt_depth.py")
    return gt


def out_dir_for(opt):
    """Where predictions go: --eval_out_dir, else the weights folder, else beside the .npy."""
    if opt.eval_out_dir:
        return os.path.expanduser(opt.eval_out_dir)
    if opt.load_weights_folder:
        return os.path.expanduser(opt.load_weights_folder)
    return os.path.dirname(os.path.abspath(os.path.expanduser(opt.ext_disp_to_eval)))


def write_output(write, path, flag):
    """``write(path)`` (an atomic writer of utils); an OSError (a full disk, a read-only file
    system, no permission) becomes one line naming the folder and ``flag``
    (``test_simple.write_error``, the tools' one wording of it)."""
    try:
        return write(path)
    except OSError as exc:
        from test_simple import write_error
        raise write_error(exc, path, flag) from None


def write_metrics(path, summary, flag="--metrics_out"):
    """Write ``summary`` as strict JSON (no NaN / Infinity), atomically; one line when it
    cannot be written."""
    from fileio import atomic_write_text
    try:
        text = json.dumps(summary, indent=2, allow_nan=False) + "\n"
    except ValueError:
        bad = sorted(k for k, v in summary.get("metrics", {}).items() if not math.isfinite(v))
        raise ToolkitError(f"metrics are not finite ({', '.join(bad) or 'a value'}; {flag} {path}): nothing "
                           "written; check the predictions and the ground truth") from None
    return write_output(lambda p: atomic_write_text(p, text), os.path.expanduser(path), flag)


def save_benchmark_predictions(pred_disps, save_dir):
    """KITTI depth benchmark PNGs (Monodepth2): resize to 1216x352, depth = 5.4 / disp,
    clip to [0, 80], uint16(depth * 256), ``<idx:010d>.png``."""
    from fileio import atomic_write_bytes
    os.makedirs(save_dir, exist_ok=True)
    for idx in range(len(pred_disps)):
        disp = cv2.resize(np.asarray(pred_disps[idx], dtype=np.float32), BENCHMARK_SIZE)
        with np.errstate(divide="ignore"):
            depth = np.clip(STEREO_SCALE_FACTOR / disp, 0, 80)
        ok, buf = cv2.imencode(".png", np.uint16(depth * 256))
        if not ok:
            raise ToolkitError(f"could not encode benchmark prediction {idx} ({save_dir})")
        write_output(lambda p: atomic_write_bytes(p, buf.tobytes()),
                     os.path.join(save_dir, "{:010d}.png".format(idx)), "--eval_out_dir")


# ----------------------------------------------------------------------------- CLI


def validate_eval_options(opt):
    """One-line ToolkitErrors for invalid evaluation flag combinations and output paths
    that cannot be written (checked before any work)."""
    if int(bool(opt.eval_mono)) + int(bool(opt.eval_stereo)) != 1:
        raise ToolkitError("choose exactly one evaluation mode (--eval_mono / --eval_stereo): "
                           "--eval_mono for median-scaled mono models, --eval_stereo for "
                           "stereo-trained models (x5.4, no median scaling)")
    if opt.eval_split in ODOM_SPLITS:
        raise ToolkitError(f"{opt.eval_split} is an odometry split (--eval_split): evaluate "
                           f"poses with `python evaluate_pose.py --eval_split {opt.eval_split} "
                           "--load_weights_folder W --data_path <kitti_odometry>`")
    if opt.ext_disp_to_eval is None:
        if opt.load_weights_folder is None:
            raise ToolkitError("no model given (--load_weights_folder): point it at a models/weights_<epoch> "
                               "folder, or evaluate a saved file with --ext_disp_to_eval")
        check_weights_folder(opt.load_weights_folder)
    if opt.batch_size < 1:
        raise ToolkitError("batch size must be >= 1 (--batch_size): use a positive number")
    from fileio import check_output_dir, check_output_file, clean_stale_temp_files
    if opt.metrics_out and not opt.no_eval and opt.eval_split != "benchmark":
        check_output_file(opt.metrics_out, "--metrics_out")
    if opt.save_pred_disps or (opt.eval_split == "benchmark" and not opt.no_eval):
        out_dir = check_output_dir(out_dir_for(opt), "--eval_out_dir")
        clean_stale_temp_files(out_dir)  # left by a killed earlier run
        clean_stale_temp_files(os.path.join(out_dir, "benchmark_predictions"))


def expected_count(opt):
    """Number of test images of the split (the lines of its test_files.txt), or None when
    the split folder has no list (evaluating saved predictions)."""
    from fileio import readlines
    try:
        _, path = _split_file(opt)
    except ToolkitError:
        return None
    return len(readlines(path))


def check_gt_count(gt_depths, n, opt, what="test images", where="test_files.txt"):
    """ToolkitError when ``n`` (the predictions to come) differs from the ground truth."""
    if n is not None and n != len(gt_depths):
        raise ToolkitError(
            f"{n} {what} but {len(gt_depths)} ground-truth maps (split {opt.eval_split}, {where}): predictions "
            "and gt_depths.npz must come from the same split's test_files.txt; re-run export_gt_depth.py "
            "or the prediction for that split")


def evaluate(opt):
    """Evaluate per ``opt`` (MonodepthOptions namespace); returns the result dict or None
    (benchmark split / --no_eval: predictions are written, nothing is scored)."""
    validate_eval_options(opt)
    gt_depths = None
    if not opt.no_eval and opt.eval_split != "benchmark":  # ground truth first: fail before predicting
        gt_depths = load_gt_depths(opt.eval_split, opt.splits_dir)
        if opt.ext_disp_to_eval is None:
            check_gt_count(gt_depths, expected_count(opt), opt)
    if opt.ext_disp_to_eval is None:
        pred_disps, meta = run_model(opt)
        check_predictions(pred_disps, f"model {opt.load_weights_folder}, --load_weights_folder",
                          "the weights are damaged or diverged in training: evaluate another checkpoint")
        if opt.eval_stereo and not meta["use_stereo"]:
            print("   note: this model was trained without stereo (use_stereo=False): its depth has "
                  "no metric scale, so --eval_mono (median scaling) is the meaningful mode")
    else:
        print("-> Loading predictions from {}".format(opt.ext_disp_to_eval))
        pred_disps = load_ext_disps(opt.ext_disp_to_eval)
        if gt_depths is not None:
            check_gt_count(gt_depths, len(pred_disps), opt, "predictions", "--ext_disp_to_eval")
        n = expected_count(opt)
        if n is not None and n != len(pred_disps):
            raise ToolkitError(
                f"{len(pred_disps)} predictions but the split lists {n} test images (--ext_disp_to_eval "
                f"{opt.ext_disp_to_eval}, split {opt.eval_split}): predict that split's test_files.txt "
                "(--save_pred_disps) or pick the split the file was made for (--eval_split)")
        check_predictions(pred_disps, f"--ext_disp_to_eval {opt.ext_disp_to_eval}",
                          "save disparities (not depth) of a working model with --save_pred_disps")

    if opt.save_pred_disps:
        from fileio import atomic_save_npy
        path = os.path.join(out_dir_for(opt), "disps_{}_split.npy".format(opt.eval_split))
        write_output(lambda p: atomic_save_npy(p, pred_disps), path, "--eval_out_dir")
        print("-> Saved predicted disparities to {}".format(path))

    if opt.no_eval:
        print("-> Evaluation disabled. Done.")
        return None
    if opt.eval_split == "benchmark":
        save_dir = os.path.join(out_dir_for(opt), "benchmark_predictions")
        print("-> Saving out benchmark predictions to {}".format(save_dir))
        save_benchmark_predictions(pred_disps, save_dir)
        print("-> No ground truth is available for the KITTI benchmark, so not evaluating. Done.")
        return None

    print("-> Evaluating")
    if opt.eval_stereo:
        print("   Stereo evaluation - disabling median scaling, scaling by {}".format(STEREO_SCALE_FACTOR))
    else:
        print("   Mono evaluation - using median scaling")
    result = evaluate_predictions(pred_disps, gt_depths, opt)
    if result["median_scaling"]:
        print(format_ratio_line(result["ratio_stats"]))
    print("\n  " + format_metrics_table(result["metrics"]))

    result["post_process"] = bool(opt.post_process)
    result["weights_folder"] = opt.load_weights_folder
    result["ext_disp_to_eval"] = opt.ext_disp_to_eval
    if opt.metrics_out:
        write_metrics(opt.metrics_out, {k: v for k, v in result.items() if k not in ("per_image", "ratios")})
        print("-> Wrote metrics to {}".format(opt.metrics_out))
    print("\n-> Done!")
    return result


def main(argv=None):
    """CLI entry: parse MonodepthOptions, evaluate; ToolkitError -> one line, exit 2."""
    from options import MonodepthOptions
    return run_cli(lambda: evaluate(MonodepthOptions().parse(argv)))


if __name__ == "__main__":
    cv2.setNumThreads(0)
    sys.exit(main())
