"""Networks of Monodepth2 / Depth Hints (docs/METHOD.md, section 2) and state-dict loading helpers. ImageNet weights
are fetched by ``networks.pretrained``, imported only when a ResNet is built with ``pretrained`` (so not here)."""
from .depth_decoder import DepthDecoder
from .depth_hints_model import DepthHintsModel, uses_pose_net
from utils import INPUT_SIZE_MULTIPLE, MIN_INPUT_SIZE, check_input_size  # the size rule (in utils: options uses it too)
from .pose_cnn import PoseCNN
from .pose_decoder import PoseDecoder
from .resnet_encoder import ResnetEncoder, ResNetMultiImageInput, resnet_multiimage_input
from .state_dict import (META_KEYS, imagenet_state_for, infer_num_layers, load_state_dict_strict,
                         load_weights_file, num_decoder_scales)
