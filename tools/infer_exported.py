#!/usr/bin/env python
"""Run a model written by export_model.py on an image or a folder of images.

    python tools/infer_exported.py --model exported/depth --image_path assets/test_image.jpg
    python tools/infer_exported.py --model exported/depth --image_path my_folder --ext png --batch_size 4

``--model`` is the ``--output_path`` prefix given to export_model.py; its
``<prefix>_export.json`` says what the files are: a Paddle program, run with Paddle Inference
(``paddle.inference.Config`` + ``create_predictor``, the default CPU config: oneDNN on), or an
ONNX model, run with ONNX Runtime. Both use ``--threads`` CPU threads (default: all cores).

Images are resized (Lanczos) to the exported default size, the training size unless the
export chose another, or to ``--height``/``--width`` (multiples of 32, at least 64). For each
image ``<name>.<ext>`` it writes the same files as test_simple.py, next to the image or into
``--output_dir``:

* ``<name>_disp.png``: the disparity resized to the image size, magma colour map
  (``image_io.colormap_disp``);
* a ``disp`` model: ``<name>_disp.npy``, the scaled disparity
  (``disp_to_depth(disp, min_depth, max_depth)[0]``), shape (1, 1, H, W);
* a ``depth`` or ``metric`` model: ``<name>_depth.npy``, the model's depth (in metres for
  ``metric``, as test_simple.py --pred_metric_depth), shape (1, 1, H, W).

Prints the images per second, end to end and in the model alone. As test_simple.py: an
image that cannot be read (missing, not decodable, fewer than 2 pixels on a side) is one
line on stderr and skipped (a closing ``N of M image(s) could not be read`` line, exit code
1); the two files of an image are written together after its prediction (never a ``.npy``
without its ``.png``); a full or read-only ``--output_dir`` is one line naming it, exit
code 2; output files that exist before the run (e.g. test_simple.py's, which go to the
same place) and would be overwritten are announced in one warning line.
"""
import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from runtime import cpu_env_defaults, quiet_paddle_notices  # noqa: E402

cpu_env_defaults()  # MKL/OpenMP settings, before paddle is imported

import numpy as np  # noqa: E402

from utils import ToolkitError, run_cli  # noqa: E402
from fileio import check_output_dir, clean_stale_temp_files  # noqa: E402

MODEL_SUFFIXES = ("_export.json", ".json", ".pdiparams", ".onnx")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True,
                   help="prefix of the exported files (export_model.py --output_path), e.g. "
                        "exported/depth")
    p.add_argument("--image_path", required=True, help="an image file or a folder of images")
    p.add_argument("--ext", default="jpg", help="image extension to look for in a folder")
    p.add_argument("--output_dir", default=None,
                   help="where to write the outputs (default: next to the images)")
    p.add_argument("--height", type=int, default=None,
                   help="network input height (default: the exported default size)")
    p.add_argument("--width", type=int, default=None,
                   help="network input width (default: the exported default size)")
    p.add_argument("--batch_size", type=int, default=1, help="images per model call")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads of the runtime (default: all cores)")
    return p.parse_args(argv)


def model_prefix(path):
    """``exported/depth`` from that prefix or from one of its files."""
    for suffix in MODEL_SUFFIXES:
        if path.endswith(suffix) and not os.path.isfile(path + "_export.json"):
            return path[:-len(suffix)]
    return path


def write_outputs(name, out, kind, info, orig_size, out_dir):
    """Write test_simple.py's ``<name>_disp.png`` and .npy for one image's model output
    (1, H, W); returns the two paths."""
    from layers import disp_to_depth
    from test_simple import write_prediction

    out = out[None].astype(np.float32)
    if kind == "disp":
        array = disp_to_depth(out, info["output"]["min_depth"], info["output"]["max_depth"])[0]
        return write_prediction(out_dir, name, out, orig_size, "_disp", array)
    # 1/depth is an affine map of the sigmoid disparity: the same colour-mapped image
    # (the colour map is normalised by min and 95th percentile)
    return write_prediction(out_dir, name, 1.0 / out, orig_size, "_depth", out)


def run(args):
    """Process every image; returns ``(written files, unreadable images)``. An unreadable
    image is reported on stderr in one line and skipped (exit status 1 at the end)."""
    from export_model import ExportedRunner, read_info
    from test_simple import image_stem, list_images, load_image, overwrite_warning, unreadable_summary

    quiet_paddle_notices()
    prefix = model_prefix(args.model)
    info = read_info(prefix)
    fmt, kind = info.get("format"), info.get("output", {}).get("kind")
    if fmt not in ("paddle", "onnx") or kind not in ("disp", "depth", "metric"):
        raise ToolkitError(f"{prefix}_export.json names format {fmt!r}, output {kind!r} "
                           "(--model): export the model again with this toolkit's export_model.py")
    height = int(args.height or info["input"]["height"])
    width = int(args.width or info["input"]["width"])
    from networks import check_input_size  # imports paddle: after quiet_paddle_notices
    check_input_size(height, width)
    if args.batch_size < 1:
        raise ToolkitError(f"bad batch size {args.batch_size} (--batch_size): use 1 or more")
    if args.threads is not None and args.threads < 1:
        raise ToolkitError(f"bad thread count {args.threads} (--threads): use 1 or more")
    paths, default_out = list_images(args.image_path, args.ext)
    out_dir = check_output_dir(args.output_dir or default_out, "--output_dir", create=True)  # before any work
    clean_stale_temp_files(out_dir)
    runtime = "ONNX Runtime" if fmt == "onnx" else "Paddle Inference"
    try:
        runner = ExportedRunner(prefix, fmt, args.threads)
    except ToolkitError:
        raise
    except Exception as exc:  # a damaged or foreign model file
        msg = str(exc).strip().splitlines()
        raise ToolkitError(f"{runtime} cannot load {prefix} (--model): "
                           f"{msg[-1] if msg else type(exc).__name__}; export the model again") from exc
    threads = args.threads or os.cpu_count() or 1
    print(f"-> {runtime} model {prefix} ({kind}, {width}x{height}, {threads} threads); "
          f"{len(paths)} image(s) -> {out_dir}")
    warning = overwrite_warning(out_dir, [image_stem(p) for p in paths], "_disp" if kind == "disp" else "_depth",
                                args.output_dir is not None)
    if warning:
        print(warning, file=sys.stderr, flush=True)

    written, failed, model_times = [], [], []
    start = time.perf_counter()
    for first in range(0, len(paths), args.batch_size):
        batch_paths, loaded = [], []
        for path in paths[first:first + args.batch_size]:
            try:
                loaded.append(load_image(path, width, height))
                batch_paths.append(path)
            except ToolkitError as exc:  # reported and skipped, as by test_simple.py
                print(f"error: {exc}; skipped", file=sys.stderr, flush=True)
                failed.append(path)
        if not loaded:
            continue
        images = np.concatenate([arr for _, arr in loaded], axis=0)
        t0 = time.perf_counter()
        outputs = runner(images)
        model_times.append((time.perf_counter() - t0, len(batch_paths)))
        for path, (orig, _), out in zip(batch_paths, loaded, outputs):
            written += write_outputs(image_stem(path), out, kind, info, orig, out_dir)
    total = time.perf_counter() - start
    if model_times:
        # the first call also sets the runtime up for this input shape: left out when there are more
        steady = model_times[1:] or model_times
        model_rate = sum(n for _, n in steady) / max(sum(t for t, _ in steady), 1e-9)
        done = len(paths) - len(failed)
        print(f"-> {done} image(s) in {total:.2f} s: {done / total:.2f} images/s end to "
              f"end, {model_rate:.2f} images/s in the model (batch {args.batch_size}, first call "
              f"{model_times[0][0] * 1000:.0f} ms)")
    print("-> Done! Wrote {} files to {}".format(len(written), out_dir))
    if failed:
        print(unreadable_summary(failed, len(paths)), file=sys.stderr)
    return written, failed


def main(argv=None):
    """CLI: 0 when every image was processed, 1 when some could not be read, 2 on a usage error."""
    args = parse_args(argv)
    return run_cli(lambda: 1 if run(args)[1] else 0)


if __name__ == "__main__":
    sys.exit(main())
