"""Networks of Monodepth2 / Depth Hints (SPEC section 2) and checkpoint loading helpers."""
from .depth_decoder import DepthDecoder
from .pose_cnn import PoseCNN
from .pose_decoder import PoseDecoder
from .resnet_encoder import ResnetEncoder, ResNetMultiImageInput, resnet_multiimage_input
from .state_dict import (META_KEYS, infer_num_layers, load_state_dict_strict, load_weights_file,
                         num_decoder_scales)

__all__ = [
    "ResnetEncoder", "ResNetMultiImageInput", "resnet_multiimage_input", "DepthDecoder",
    "PoseDecoder", "PoseCNN", "load_state_dict_strict", "load_weights_file",
    "infer_num_layers", "num_decoder_scales", "META_KEYS",
]
