"""Predict disparity for one image or a folder of images with a trained model.

    python test_simple.py --image_path assets/test_image.jpg --model_path W
    python test_simple.py --image_path my_folder --ext png --model_path W --pred_metric_depth

``W`` is a weights folder holding ``encoder.pdparams`` (with the training height, width
and use_stereo) and ``depth.pdparams``. For each image ``<name>.<ext>`` it writes (next to
the image, or into ``--output_dir``):

* ``<name>_disp.png``: the disparity resized to the image size, magma colour map with
  95th-percentile normalisation (``image_io.colormap_disp``);
* ``<name>_disp.npy``: the scaled disparity (``disp_to_depth(disp, 0.1, 100)[0]``) at network
  resolution, shape (1, 1, H, W) as in Monodepth2; or, with ``--pred_metric_depth`` (only
  for stereo-trained models), ``<name>_depth.npy``, depth in metres, same shape.

Metric depth = network depth x (stereo baseline in metres / 0.1) x (fx of these images /
fx of the training camera), both fx normalised by the image width. The baseline and the
training camera are recorded in the checkpoint (KITTI's 0.54 m and fx 0.58 when absent);
``--stereo_baseline`` overrides the baseline and ``--intrinsics`` gives these images'
camera (default: the training camera's, i.e. a ratio of 1).

Runs on the GPU when Paddle sees one (``--device auto``), else on the CPU. An image that
cannot be read (missing, not decodable, or degenerate: fewer than 2 pixels on a side) is
reported in one line on stderr and skipped; the others are processed, a closing
``N of M image(s) could not be read`` line follows and the exit code is 1. The two files of
an image are written together once its prediction is done (each into a temp file, then
both renamed into place), so there is never a ``.npy`` without its ``.png``; a write that
fails (a full disk, a read-only or forbidden ``--output_dir``) is one line naming the
folder, exit code 2. Output files that exist before the run and would be overwritten are
announced in one warning line (the first of them and their count). Progress: a bar on a
terminal, else a status line with rate and ETA every 30 s (progress.ProgressLog, stderr).
"""
import argparse
import glob
import io
import os
import sys
import tempfile
import warnings

warnings.filterwarnings("ignore", message="No ccache found")  # noise from importing paddle

from runtime import cpu_env_defaults  # noqa: E402

cpu_env_defaults()  # MKL/OpenMP settings, before paddle is imported

import numpy as np  # noqa: E402

import camera  # noqa: E402
from utils import ToolkitError, run_cli  # noqa: E402
OUTPUT_SUFFIXES = ("_disp", "_depth")


def _current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_current_umask()  # the outputs' mode, as a plain open() makes it (mkstemp uses 0600)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Depth prediction for single images or a folder.")
    p.add_argument("--image_path", type=str, required=True,
                   help="an image file or a folder of images")
    p.add_argument("--model_path", "--model_name", type=str, required=True, dest="model_path",
                   help="weights folder with encoder.pdparams and depth.pdparams, or a published model's "
                        "name (python tools/models.py list; downloaded once, then offline)")
    p.add_argument("--ext", type=str, default="jpg", help="image extension to look for in a folder")
    p.add_argument("--pred_metric_depth", action="store_true",
                   help="save metric depth (5.4 * depth) instead of disparity; stereo-trained models only")
    p.add_argument("--stereo_baseline", type=float, default=None,
                   help="stereo baseline of the training rig in metres (default: the checkpoint's, "
                        "else KITTI's 0.54)")
    p.add_argument("--intrinsics", nargs="+", type=str, default=None, metavar="FX_FY_CX_CY_OR_FILE",
                   help="normalised intrinsics of these images' camera (fx/W fy/H cx/W cy/H) or a file "
                        "of them, for --pred_metric_depth (default: the training camera's)")
    p.add_argument("--output_dir", type=str, default=None,
                   help="where to write the outputs (default: next to the images)")
    p.add_argument("--device", type=str, default="auto", choices=["auto", "cpu", "gpu"],
                   help="where to run: auto picks a GPU when Paddle sees one")
    p.add_argument("--num_layers", type=int, default=None,
                   help="ResNet depth (default: inferred from encoder.pdparams)")
    p.add_argument("--no_cuda", action="store_true", help="same as --device cpu")
    return p.parse_args(argv)


def is_own_output(path):
    """Whether ``path`` is a file this script wrote (``*_disp.png``, ``*_disp.npy``, ...)."""
    stem = os.path.splitext(os.path.basename(path))[0]
    return stem.endswith(OUTPUT_SUFFIXES)


def image_stem(path):
    """``<name>`` of an image ``<folder>/<name>.<ext>`` (its outputs are ``<name>_disp.png``, ...)."""
    return os.path.splitext(os.path.basename(path))[0]


def list_images(image_path, ext="jpg"):
    """(paths, default output folder) for a file or a folder (sorted, own outputs skipped)."""
    if os.path.isfile(image_path):
        return [image_path], os.path.dirname(os.path.abspath(image_path))
    if os.path.isdir(image_path):
        ext = ext.lstrip(".")
        paths = sorted(p for p in glob.glob(os.path.join(image_path, "*.{}".format(ext)))
                       if not is_own_output(p))
        if not paths:
            raise ToolkitError(f"no *.{ext} image in the folder (--image_path {image_path}): "
                               "pick the right --ext (e.g. --ext png)")
        return paths, image_path
    raise ToolkitError(f"image or folder not found (--image_path {image_path}): check the path")


def load_image(path, width, height):
    """Image -> (original (w, h), (1, 3, height, width) float32 in [0, 1], Lanczos resize).
    Read with ``image_io.load_image`` (RGB); an unreadable file is a one-line ToolkitError
    naming it (also tools/infer_exported.py's reader)."""
    import image_io
    img = image_io.load_image(path)
    orig = img.size
    img = img.resize((width, height), image_io.LANCZOS)
    arr = np.asarray(img, dtype=np.float32).transpose(2, 0, 1)[None] / 255.0
    return orig, arr


def png_bytes(rgb):
    """An (H, W, 3) uint8 RGB array encoded as PNG."""
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def npy_bytes(array):
    """``array`` as the bytes of a .npy file."""
    buf = io.BytesIO()
    np.save(buf, np.asarray(array))
    return buf.getvalue()


def write_error(exc, path, flag="--output_dir"):
    """The one-line ToolkitError for an OSError (a full disk, a read-only file system, no
    permission) while writing ``path``: it names the folder and ``flag`` (also the wording
    of evaluate_depth.py, evaluate_pose.py and export_gt_depth.py)."""
    folder = os.path.dirname(os.path.abspath(path))
    return ToolkitError(f"cannot write {os.path.basename(path)} into {folder} ({flag}): "
                        f"{exc.strerror or type(exc).__name__}; free space there, fix its permissions "
                        f"or choose another {flag}")


def write_together(files, flag="--output_dir"):
    """Write ``{path: bytes}`` all or none: each into a temp file beside it (the atomic
    writers' ``.<name>.<random>.tmp``, which fileio.clean_stale_temp_files removes after a
    kill), synced, then all renamed into place. An OSError is one line naming the folder
    and ``flag`` (:func:`write_error`), and leaves no temp file."""
    staged, path = [], None
    try:
        for path, data in files.items():
            fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)),
                                       prefix="." + os.path.basename(path) + ".", suffix=".tmp")
            staged.append(tmp)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, _FILE_MODE)
        for tmp, path in zip(staged, files):
            os.replace(tmp, path)
    except OSError as exc:
        raise write_error(exc, path, flag) from None
    finally:
        for tmp in staged:
            try:
                os.remove(tmp)
            except OSError:
                pass
    return list(files)


def output_names(name, npy_suffix):
    """The files written for an image ``<name>.<ext>``: ``<name>_disp.png`` and
    ``<name><npy_suffix>.npy``."""
    return [name + "_disp.png", name + npy_suffix + ".npy"]


def overwrite_warning(out_dir, names, npy_suffix, explicit):
    """One warning line when output files of ``names`` (image stems) exist in ``out_dir``
    before the run (they would be overwritten), else None. ``explicit``: --output_dir was
    given."""
    existing = [p for n in names for p in (os.path.join(out_dir, f) for f in output_names(n, npy_suffix))
                if os.path.lexists(p)]
    if not existing:
        return None
    fix = "choose another --output_dir" if explicit else "write elsewhere with --output_dir"
    return (f"warning: {len(existing)} existing output file(s) in {out_dir} will be overwritten (first: "
            f"{existing[0]}); {fix} to keep them")


def write_prediction(out_dir, name, disp, orig_size, npy_suffix, npy_array):
    """The files of one image: ``<name>_disp.png``, the disparity-like map ``disp`` (1, 1, h, w)
    resized bilinearly to the image's ``orig_size`` (w, h) and colour-mapped
    (``image_io.colormap_disp``), and ``<name><npy_suffix>.npy`` holding ``npy_array`` (float32).
    Both are encoded first and written together (:func:`write_together`). Returns the two
    paths (tools/infer_exported.py writes the same files)."""
    import paddle
    import paddle.nn.functional as F
    from image_io import colormap_disp
    if not isinstance(disp, paddle.Tensor):
        disp = paddle.to_tensor(np.asarray(disp, dtype=np.float32))
    w, h = orig_size
    resized = F.interpolate(disp, size=(h, w), mode="bilinear", align_corners=False)
    png, npy = (os.path.join(out_dir, f) for f in output_names(name, npy_suffix))
    return write_together({png: png_bytes(colormap_disp(resized.numpy()[0, 0])),
                           npy: npy_bytes(np.asarray(npy_array, dtype=np.float32))})


def unreadable_summary(failed, total):
    """The closing error line when ``failed`` of ``total`` images could not be read (also
    tools/infer_exported.py's)."""
    return "error: {} of {} image(s) could not be read (first: {}): fix or remove them".format(
        len(failed), total, failed[0])


def predict(encoder, decoder, image):
    """(1, 3, h, w) numpy -> network disparity (1, 1, h, w) paddle tensor (sigmoid output)."""
    import paddle
    with paddle.no_grad():
        return decoder(encoder(paddle.to_tensor(image)))[("disp", 0)]


def metric_depth_scale(meta, stereo_baseline=None, intrinsics=None):
    """Factor from network depth to metres (see the module docstring)."""
    if stereo_baseline is not None and stereo_baseline <= 0:
        raise ToolkitError(f"stereo baseline must be positive metres (--stereo_baseline {stereo_baseline}): "
                           "use e.g. 0.54")
    baseline = meta["stereo_baseline"] if stereo_baseline is None else stereo_baseline
    fx_train = meta["intrinsics"][0]
    K = camera.intrinsics_from_option(intrinsics)
    fx_images = fx_train if K is None else float(K[0, 0])
    return camera.stereo_scale_factor(baseline) * fx_images / fx_train


def run(args, err=None):
    """Process every image; returns ``(written files, unreadable images)``. An unreadable
    image is reported on ``err`` in one line and skipped."""
    from model_loader import load_depth_model
    from layers import disp_to_depth
    from networks import check_input_size
    from runtime import pick_device
    from fileio import check_output_dir, clean_stale_temp_files

    paths, default_out = list_images(args.image_path, args.ext)
    out_dir = check_output_dir(args.output_dir or default_out, "--output_dir")  # before any work
    device = pick_device("cpu" if args.no_cuda else args.device)
    encoder, decoder, meta = load_depth_model(args.model_path, args.num_layers, flag="--model_path")
    check_input_size(meta["height"], meta["width"], "--model_path", what="recorded training size",
                     fix="use weights trained at such a size, e.g. 640x192")
    if args.pred_metric_depth and not meta["use_stereo"]:
        raise ToolkitError(
            f"metric depth needs a stereo-trained model, but {args.model_path}/encoder.pdparams "
            "records use_stereo=False (--pred_metric_depth): drop the flag (mono models have "
            "no metric scale) or use a model trained with --use_stereo")
    metric_scale = metric_depth_scale(meta, args.stereo_baseline, args.intrinsics)
    out_dir = check_output_dir(out_dir, "--output_dir", create=True)
    clean_stale_temp_files(out_dir)
    print("-> Model {} ({}x{}) on {}; {} image(s) -> {}".format(
        args.model_path, meta["width"], meta["height"], device, len(paths), out_dir))

    err = sys.stderr if err is None else err
    npy_suffix = "_depth" if args.pred_metric_depth else "_disp"
    warning = overwrite_warning(out_dir, [image_stem(p) for p in paths], npy_suffix, args.output_dir is not None)
    if warning:
        print(warning, file=err, flush=True)
    written, failed = [], []
    from progress import ProgressLog
    # a bar on a terminal, else a plain status line (rate, ETA) every 30 s and at the end
    with ProgressLog(len(paths), "img", stream=err, desc="predict") as log:
        for path in paths:
            try:
                (orig_w, orig_h), image = load_image(path, meta["width"], meta["height"])
            except ToolkitError as exc:
                log.message("error: {}; skipped".format(exc))
                failed.append(path)
                log.update()
                continue
            disp = predict(encoder, decoder, image)
            scaled_disp, depth = disp_to_depth(disp, 0.1, 100)
            array = (metric_scale * depth).numpy() if args.pred_metric_depth else scaled_disp.numpy()
            written += write_prediction(out_dir, image_stem(path), disp, (orig_w, orig_h), npy_suffix, array)
            log.update()
    print("-> Done! Wrote {} files to {}".format(len(written), out_dir))
    if failed:
        print(unreadable_summary(failed, len(paths)), file=err)
    return written, failed


def main(argv=None):
    """CLI: 0 when every image was processed, 1 when some could not be read, 2 on a usage error."""
    args = parse_args(argv)
    return run_cli(lambda: 1 if run(args)[1] else 0)


if __name__ == "__main__":
    sys.exit(main())
