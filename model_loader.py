"""The one loader of trained models that the tools use (evaluate_depth, evaluate_pose,
test_simple, export_model): a weights folder -> networks in eval mode and what the encoder
recorded of its training. The weights decide: the ResNet depth is read from them (a
``--num_layers`` that names another depth is refused), the resolution, stereo flag, camera
and baseline from ``encoder.pdparams`` (checkpoint.encoder_meta writes them).
"""
import os

import numpy as np

import networks
import utils
from camera import KITTI_BASELINE_M, intrinsics_vector
from checkpoint import check_weights_folder, resnet_depth
from utils import ToolkitError


def read_meta(state, path):
    """``{"height", "width", "use_stereo", "intrinsics", "stereo_baseline"}`` recorded in an
    encoder state dict (checkpoints without the last two, e.g. converted Monodepth2 ones,
    were trained on KITTI: its intrinsics and 0.54 m). A damaged record is one line."""
    def number(key, default, kind=float):
        val = state.get(key, default)
        try:
            val = [kind(v) for v in np.asarray(val).reshape(-1)]
        except (TypeError, ValueError):
            val = None
        if not val or not all(np.isfinite(val)):
            raise ToolkitError(f"encoder.pdparams records a bad {key} ({state.get(key)!r:.60}; {path}): the "
                               "checkpoint is damaged or not a depth encoder of this toolkit")
        return val
    meta = {}
    for key in ("height", "width"):
        if key not in state:
            raise ToolkitError(f"encoder.pdparams does not record the training {key} ({path}): "
                               "use weights saved by train.py or tools/convert_torch_weights.py")
        meta[key] = number(key, None, int)[0]
    utils.check_input_size(meta["height"], meta["width"], path, "recorded training size",
                           "the checkpoint is damaged or not a depth encoder")
    meta["use_stereo"] = bool(number("use_stereo", False)[0])
    meta["intrinsics"] = number("intrinsics", intrinsics_vector())
    meta["stereo_baseline"] = number("stereo_baseline", KITTI_BASELINE_M)[0]
    if len(meta["intrinsics"]) != 4 or meta["stereo_baseline"] <= 0:
        raise ToolkitError(f"encoder.pdparams records bad intrinsics or stereo baseline ({path}): the checkpoint "
                           "is damaged")
    return meta


def load_depth_model(folder, num_layers=None, flag="--load_weights_folder"):
    """ResnetEncoder + DepthDecoder of a weights folder, in eval mode.

    Returns ``(encoder, decoder, meta)``; ``meta`` holds the recorded ``height``, ``width``,
    ``use_stereo`` and the ``num_layers`` of the weights."""
    folder = check_weights_folder(folder, flag=flag)
    enc_path = os.path.join(folder, "encoder.pdparams")
    enc_state = networks.load_weights_file(enc_path, "encoder.pdparams")
    meta = read_meta(enc_state, enc_path)
    meta["num_layers"] = resnet_depth(enc_state, num_layers, enc_path)
    encoder = networks.ResnetEncoder(meta["num_layers"], False)
    networks.load_state_dict_strict(encoder, enc_state, "encoder.pdparams")
    dec_state = networks.load_weights_file(os.path.join(folder, "depth.pdparams"), "depth.pdparams")
    # a decoder trained with --scales 0 holds fewer disparity convs than the default 4
    decoder = networks.DepthDecoder(encoder.num_ch_enc, scales=range(max(1, networks.num_decoder_scales(dec_state))))
    networks.load_state_dict_strict(decoder, dec_state, "depth.pdparams")
    encoder.eval()
    decoder.eval()
    return encoder, decoder, meta


def load_pose_model(folder, num_layers=None, flag="--load_weights_folder"):
    """Separate-ResNet pose encoder (2 images) + PoseDecoder of a weights folder, in eval mode."""
    folder = check_weights_folder(folder, ("pose_encoder.pdparams", "pose.pdparams"), flag)
    path = os.path.join(folder, "pose_encoder.pdparams")
    enc_state = networks.load_weights_file(path, "pose_encoder.pdparams")
    encoder = networks.ResnetEncoder(resnet_depth(enc_state, num_layers, path), False, 2)
    networks.load_state_dict_strict(encoder, enc_state, "pose_encoder.pdparams")
    decoder = networks.PoseDecoder(encoder.num_ch_enc, 1, 2)
    networks.load_state_dict_strict(decoder, os.path.join(folder, "pose.pdparams"), "pose.pdparams")
    encoder.eval()
    decoder.eval()
    return encoder, decoder
