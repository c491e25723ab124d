#!/usr/bin/env python
"""Convert PyTorch weights to this toolkit's Paddle ``.pdparams`` files.

Two kinds of input:

* a Monodepth2 / Depth Hints model folder holding ``encoder.pth`` (with its ``height``,
  ``width``, ``use_stereo`` entries), ``depth.pth``, ``pose_encoder.pth``, ``pose.pth``
  (any subset): written as ``<dst>/{encoder,depth,pose_encoder,pose}.pdparams`` and
  checked by loading them into this toolkit's networks;
* a torchvision ImageNet ResNet file (``resnet18-f37072fd.pth`` ...): written as one
  ``.pdparams`` with the ``encoder.`` prefix (``dst`` may be a folder: then
  ``<dst>/resnet{N}.pdparams``, where ``ResnetEncoder(N, True)`` looks by default).

Mapping: BatchNorm ``running_mean``/``running_var`` -> ``_mean``/``_variance``,
``num_batches_tracked`` dropped, conv weights unchanged (both OIHW), Linear weights
transposed (PyTorch stores [out, in], Paddle [in, out]), a DataParallel ``module.``
prefix removed. The ``.pth`` files are read by ``safe_load.load_torch`` (both the zip format of
torch >= 1.6 and the legacy format of the 2019-2020 releases), without PyTorch and without
running anything a file asks for: a file with a pickle payload is refused (``UnsafeFileError``).

    python tools/convert_torch_weights.py --input mono+stereo_640x192 --output weights/mono+stereo_640x192
    python tools/convert_torch_weights.py --input resnet18-f37072fd.pth --output weights/resnet18.pdparams

(``--input``/``--output`` may also be given positionally: ``convert_torch_weights.py SRC DST``.)
"""
import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

import safe_load  # noqa: E402
from utils import ToolkitError, run_cli  # noqa: E402
from fileio import atomic_paddle_save  # noqa: E402

MODEL_FILES = ("encoder", "depth", "pose_encoder", "pose")


def load_torch_state(path):
    """Read a ``.pth`` file into a flat dict (numpy arrays and plain python values), through
    ``safe_load.load_torch`` (no PyTorch needed; payloads refused)."""
    if not os.path.isfile(path):
        raise ToolkitError(f"PyTorch weights not found ({path}): give an existing .pth file "
                           "or a Monodepth2 model folder")
    state = safe_load.load_torch(path)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ToolkitError(f"{path} does not hold a state dict: expected a file written by "
                           "torch.save(model.state_dict())")
    return state


def convert_state_dict(state, prefix=""):
    """Map a PyTorch state dict (numpy arrays from ``load_torch_state`` / python values) to
    Paddle names; floating arrays become float32 (as ``tensor.float()``)."""
    out = {}
    for key, value in state.items():
        key = str(key)
        if key.startswith("module."):
            key = key[len("module."):]
        if key.endswith(".num_batches_tracked"):
            continue
        if isinstance(value, np.ndarray):
            arr = value.astype(np.float32) if np.issubdtype(value.dtype, np.floating) else value
            if key.endswith(".weight") and arr.ndim == 2:  # nn.Linear: [out, in] -> [in, out]
                arr = np.ascontiguousarray(arr.T)
            if key.endswith(".running_mean"):
                key = key[: -len("running_mean")] + "_mean"
            elif key.endswith(".running_var"):
                key = key[: -len("running_var")] + "_variance"
            out[prefix + key] = arr
        else:
            out[key] = value  # height / width / use_stereo and other metadata
    return out


def is_torchvision_resnet(state):
    """True for a bare ImageNet ResNet state dict (``conv1.weight`` without ``encoder.``)."""
    keys = [k[len("module."):] if str(k).startswith("module.") else str(k) for k in state]
    return "conv1.weight" in keys and any(k.startswith("layer1.") for k in keys)


def check_model_folder(dst):
    """Load the converted files into this toolkit's networks (raises ToolkitError on mismatch)."""
    import networks

    def load(name):
        path = os.path.join(dst, name + ".pdparams")
        return networks.load_weights_file(path, name + ".pdparams") if os.path.isfile(path) else None

    checked = []
    enc_state = load("encoder")
    num_ch_enc = None
    if enc_state is not None:
        n = networks.infer_num_layers(enc_state)
        if n is None:
            raise ToolkitError(f"encoder.pdparams is not a ResNet encoder ({dst})")
        enc = networks.ResnetEncoder(n, False)
        networks.load_state_dict_strict(enc, enc_state, "encoder.pdparams")
        num_ch_enc = enc.num_ch_enc
        checked.append(f"encoder (ResNet{n})")
    depth_state = load("depth")
    if depth_state is not None:
        if num_ch_enc is None:
            raise ToolkitError(f"depth.pdparams without encoder.pdparams ({dst}): the decoder "
                               "is shaped by its encoder; convert the whole model folder")
        scales = range(networks.num_decoder_scales(depth_state))
        networks.load_state_dict_strict(networks.DepthDecoder(num_ch_enc, scales),
                                        depth_state, "depth.pdparams")
        checked.append("depth")
    pose_enc_state = load("pose_encoder")
    pose_ch_enc = num_ch_enc
    if pose_enc_state is not None:
        n = networks.infer_num_layers(pose_enc_state)
        images = int(pose_enc_state["encoder.conv1.weight"].shape[1]) // 3
        pose_enc = networks.ResnetEncoder(n, False, num_input_images=images)
        networks.load_state_dict_strict(pose_enc, pose_enc_state, "pose_encoder.pdparams")
        pose_ch_enc = pose_enc.num_ch_enc
        checked.append(f"pose_encoder (ResNet{n}, {images} images)")
    pose_state = load("pose")
    if pose_state is not None:
        if "pose_conv.weight" in pose_state:
            net = networks.PoseCNN(int(pose_state["net.0.weight"].shape[1]) // 3)
        else:
            if pose_ch_enc is None:
                raise ToolkitError(f"pose.pdparams without an encoder ({dst}): convert the folder")
            net = networks.PoseDecoder(pose_ch_enc,
                                       int(pose_state["net.1.weight"].shape[1]) // 256,
                                       int(pose_state["net.3.weight"].shape[0]) // 6)
        networks.load_state_dict_strict(net, pose_state, "pose.pdparams")
        checked.append(f"pose ({type(net).__name__})")
    return checked


def convert_model_folder(src, dst, check=True, log=print):
    """Convert a Monodepth2 model folder; returns the written paths (``log``: progress lines)."""
    found = [n for n in MODEL_FILES if os.path.isfile(os.path.join(src, n + ".pth"))]
    if not found:
        raise ToolkitError(f"no Monodepth2 weights in {src}: expected some of "
                           + ", ".join(n + ".pth" for n in MODEL_FILES))
    os.makedirs(dst, exist_ok=True)
    written = []
    for name in found:
        state = convert_state_dict(load_torch_state(os.path.join(src, name + ".pth")))
        out = os.path.join(dst, name + ".pdparams")
        atomic_paddle_save(state, out)
        written.append(out)
        log(f"-> {os.path.join(src, name + '.pth')} -> {out} ({len(state)} entries)")
    if os.path.isfile(os.path.join(src, "adam.pth")):
        log("-> skipped adam.pth (optimizer state is not converted; training restarts Adam)")
    if check:
        log("-> checked against this toolkit's networks: " + ", ".join(check_model_folder(dst)))
    return written


def convert_file(src, dst, check=True):
    """Convert one .pth: a torchvision ResNet (gets ``encoder.``) or one Monodepth2 file."""
    import networks
    torch_state = load_torch_state(src)
    torchvision = is_torchvision_resnet(torch_state)
    state = convert_state_dict(torch_state, prefix="encoder." if torchvision else "")
    if dst.endswith(os.sep) or os.path.isdir(dst):
        n = networks.infer_num_layers(state) if torchvision else None
        stem = f"resnet{n}" if n else os.path.splitext(os.path.basename(src))[0]
        dst = os.path.join(dst, stem + ".pdparams")
    if torchvision and check:
        n = networks.infer_num_layers(state)
        if n is None:
            raise ToolkitError(f"{src} looks like a ResNet but its depth is not 18/34/50/101/152")
        model = networks.ResNetMultiImageInput(n)
        networks.load_state_dict_strict(model, networks.imagenet_state_for(state),
                                        what=os.path.basename(src))
    atomic_paddle_save(state, dst)
    kind = "torchvision ResNet" if torchvision else "Monodepth2 weights"
    print(f"-> {src} ({kind}) -> {dst} ({len(state)} entries)")
    return [dst]


def convert(src, dst, check=True):
    """Convert a model folder or one file; returns the written paths."""
    if os.path.isdir(src):
        return convert_model_folder(src, dst, check)
    return convert_file(src, dst, check)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="See weights/README.md for the folder layouts.")
    p.add_argument("--input", help="Monodepth2/Depth Hints model folder (encoder.pth, depth.pth, ...) "
                                    "or one .pth file (e.g. torchvision resnet18-f37072fd.pth)")
    p.add_argument("--output", help="output folder (for a model folder, or a ResNet file: then "
                                     "resnet{N}.pdparams inside) or a .pdparams file")
    p.add_argument("src", nargs="?", help=argparse.SUPPRESS)
    p.add_argument("dst", nargs="?", help=argparse.SUPPRESS)
    p.add_argument("--no_check", action="store_true",
                   help="do not load the converted weights into the networks to check them")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    src, dst = args.input or args.src, args.output or args.dst
    if not src or not dst:
        return run_cli(_fail, "nothing to convert (--input/--output): give the PyTorch folder or "
                              ".pth file with --input and the destination with --output")
    return run_cli(convert, src, dst, check=not args.no_check)


def _fail(message):
    raise ToolkitError(message)


if __name__ == "__main__":
    sys.exit(main())
