#!/usr/bin/env python
"""Export a trained depth network as a Paddle static inference model.

Saves encoder + decoder (disparity at scale 0) with ``paddle.jit.save`` for one fixed input
size, by default the training resolution recorded in ``encoder.pdparams``:

    python export_model.py --load_weights_folder log/mono_model/models/weights_19 \\
        --output_path exported/depth

writes ``exported/depth.json`` (or ``.pdmodel`` on older Paddle) and
``exported/depth.pdiparams``. The exported program takes an RGB batch in [0, 1], shape
(batch_size, 3, height, width), float32, input name ``image``, and returns the sigmoid disparity
(batch_size, 1, height, width); ``layers.disp_to_depth(disp, 0.1, 100)`` turns it into depth (times
5.4 for metres with stereo-trained models). Load it with ``paddle.jit.load(output_path)`` or
``paddle.inference``.
"""
import argparse
import os
import shutil
import sys
import tempfile

from runtime import cpu_env_defaults  # noqa: E402

cpu_env_defaults()  # MKL/OpenMP settings, before paddle is imported

from utils import ToolkitError, run_cli


def build_depth_net(weights_folder, num_layers=None):
    """Encoder + decoder from ``<folder>/{encoder,depth}.pdparams``; returns (layer, meta).

    The layer maps (B,3,H,W) in [0,1] to the scale-0 disparity. ``meta`` holds the
    ``height``/``width``/``use_stereo`` recorded in the encoder file and ``num_layers``.
    """
    import paddle.nn as nn

    from checkpoint import load_depth_model

    if not os.path.isdir(weights_folder):
        raise ToolkitError(f"weights folder not found ({weights_folder}) (--load_weights_folder): "
                           "give a models/weights_N folder holding encoder.pdparams and depth.pdparams")
    encoder, decoder, meta = load_depth_model(weights_folder, num_layers)
    decoder.scales = [0]  # only the full-resolution disparity is computed and exported

    class _DepthNet(nn.Layer):
        def __init__(self):
            super().__init__()
            self.encoder = encoder
            self.decoder = decoder

        def forward(self, image):
            return self.decoder(self.encoder(image))[("disp", 0)]

    net = _DepthNet()
    net.eval()
    return net, meta


def export(weights_folder, output_path, height=None, width=None, num_layers=None, batch_size=1):
    """Export; returns the list of files written (``<output_path>.*``)."""
    import paddle

    net, meta = build_depth_net(weights_folder, num_layers)
    height = int(height or meta.get("height") or 0)
    width = int(width or meta.get("width") or 0)
    if height <= 0 or width <= 0:
        raise ToolkitError("no input size (--height/--width): encoder.pdparams does not record "
                           "one, so pass --height and --width")
    if height % 32 or width % 32:
        raise ToolkitError(f"input size {width}x{height} is not a multiple of 32 "
                           "(--height/--width): use e.g. 640x192 or 1024x320")
    if batch_size < 1:
        raise ToolkitError(f"bad batch size {batch_size} (--batch_size): the exported program "
                           "has a fixed input size; use a positive batch size")
    spec = [paddle.static.InputSpec([batch_size, 3, height, width], "float32", name="image")]
    out_dir = os.path.dirname(os.path.abspath(output_path))
    os.makedirs(out_dir, exist_ok=True)
    prefix = os.path.basename(output_path)
    if not prefix:
        raise ToolkitError(f"--output_path {output_path!r} names a folder: give a file prefix, "
                           "e.g. exported/depth")
    tmp = tempfile.mkdtemp(prefix=".export_", dir=out_dir)
    try:
        # layers.py never uses its eager index caches while tracing, so nothing leaks either way
        paddle.jit.save(net, os.path.join(tmp, prefix), input_spec=spec)
        written = []
        for name in sorted(os.listdir(tmp)):  # move into place file by file (os.replace)
            dst = os.path.join(out_dir, name)
            os.replace(os.path.join(tmp, name), dst)
            written.append(dst)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"-> exported ResNet{meta['num_layers']} depth net for input "
          f"[{batch_size}, 3, {height}, {width}] to:")
    for path in written:
        print(f"   {path}")
    return written


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--load_weights_folder", required=True,
                   help="folder with encoder.pdparams and depth.pdparams (models/weights_N)")
    p.add_argument("--output_path", required=True,
                   help="path prefix of the exported files, e.g. exported/depth")
    p.add_argument("--height", type=int, default=None,
                   help="input height (default: the one recorded in encoder.pdparams)")
    p.add_argument("--width", type=int, default=None,
                   help="input width (default: the one recorded in encoder.pdparams)")
    p.add_argument("--num_layers", type=int, default=None, choices=[18, 34, 50, 101, 152],
                   help="ResNet depth (default: inferred from encoder.pdparams)")
    p.add_argument("--batch_size", type=int, default=1,
                   help="fixed batch size of the exported program (default 1)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    return run_cli(export, args.load_weights_folder, args.output_path, args.height, args.width,
                   args.num_layers, args.batch_size)


if __name__ == "__main__":
    sys.exit(main())
