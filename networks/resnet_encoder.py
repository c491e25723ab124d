"""ResNet encoder of Monodepth2 / Depth Hints (SPEC section 2).

The ResNet is a ``paddle.vision`` ResNet held as attribute ``encoder``, so parameter names
read ``encoder.conv1.weight``, ``encoder.bn1._mean``, ``encoder.layer1.0.conv1.weight``,
... exactly as in converted Monodepth2 checkpoints. The ImageNet classifier (``fc``) is not
built; ``encoder.fc.*`` entries in weight files are ignored when loading.
"""
import os

import numpy as np
import paddle
import paddle.nn as nn
from paddle.vision.models.resnet import BasicBlock, BottleneckBlock, ResNet

from utils import ToolkitError

from .initializers import init_resnet_torchvision
from .state_dict import load_state_dict_strict, load_weights_file

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_WEIGHTS_DIR = os.path.join(REPO_ROOT, "weights")

RESNET_BLOCKS = {18: BasicBlock, 34: BasicBlock, 50: BottleneckBlock,
                 101: BottleneckBlock, 152: BottleneckBlock}

FC_KEYS = ("fc.weight", "fc.bias")


class ResNetMultiImageInput(ResNet):
    """A paddle.vision ResNet without classifier whose ``conv1`` takes ``3 * num_input_images``
    channels (the pose encoder's stacked frames). Initialised like torchvision's ResNet."""

    def __init__(self, num_layers, num_input_images=1):
        if num_layers not in RESNET_BLOCKS:
            raise ToolkitError(f"unsupported ResNet depth {num_layers} (--num_layers): "
                               f"use one of {sorted(RESNET_BLOCKS)}")
        super().__init__(RESNET_BLOCKS[num_layers], depth=num_layers, num_classes=0,
                         with_pool=False)
        self.num_layers = num_layers
        self.num_input_images = num_input_images
        if num_input_images != 1:
            self.conv1 = nn.Conv2D(3 * num_input_images, 64, kernel_size=7, stride=2,
                                   padding=3, bias_attr=False)
        init_resnet_torchvision(self)


def resolve_pretrained_path(num_layers, pretrained):
    """Path of the local ImageNet weights for ``pretrained`` (True, a file or a folder).

    True looks for ``<repo>/weights/resnet{N}.pdparams``; a folder is searched for
    ``resnet{N}.pdparams``. There is no download: a missing file raises ToolkitError.
    """
    if pretrained is True:
        path = os.path.join(DEFAULT_WEIGHTS_DIR, f"resnet{num_layers}.pdparams")
    else:
        path = os.fspath(pretrained)
        if os.path.isdir(path):
            path = os.path.join(path, f"resnet{num_layers}.pdparams")
    if not os.path.isfile(path):
        raise ToolkitError(
            f"ImageNet weights for ResNet{num_layers} not found ({path}): this toolkit never "
            f"downloads; convert torchvision's resnet{num_layers}-*.pth with "
            f"`python tools/convert_torch_weights.py --input resnet{num_layers}-XXXX.pth "
            f"--output weights/resnet{num_layers}.pdparams` (see weights/README.md), "
            "or train from scratch (--weights_init scratch)")
    return path


def imagenet_state_for(state, num_input_images=1):
    """Turn a single-image ResNet state dict (keys with or without ``encoder.``) into one for
    the un-prefixed ResNet: ``fc`` dropped, ``conv1`` tiled N times on the input-channel
    axis and divided by N when ``num_input_images`` = N > 1 (SPEC section 2)."""
    out = {}
    for key, value in state.items():
        if not isinstance(key, str) or not hasattr(value, "shape"):
            continue  # metadata (height, width, use_stereo)
        name = key[len("encoder."):] if key.startswith("encoder.") else key
        if name in FC_KEYS:
            continue
        out[name] = value
    w = out.get("conv1.weight")
    if w is not None and num_input_images > 1 and int(w.shape[1]) == 3:
        w = w.numpy() if isinstance(w, paddle.Tensor) else np.asarray(w)
        out["conv1.weight"] = np.concatenate([w] * num_input_images, axis=1) / num_input_images
    return out


def resnet_multiimage_input(num_layers, pretrained=False, num_input_images=1):
    """Build a (multi-image) ResNet; ``pretrained`` False, True or a path to local weights."""
    model = ResNetMultiImageInput(num_layers, num_input_images)
    if pretrained:
        path = resolve_pretrained_path(num_layers, pretrained)
        state = imagenet_state_for(load_weights_file(path, f"ImageNet ResNet{num_layers} weights"),
                                   num_input_images)
        load_state_dict_strict(model, state, what=f"ImageNet ResNet{num_layers} weights ({path})")
    return model


class ResnetEncoder(nn.Layer):
    """ResNet feature pyramid: relu(bn1(conv1(x))), then layer1(maxpool(.)), layer2..4.

    Input in [0, 1], normalised inside as (x - 0.45) / 0.225. ``num_ch_enc`` lists the
    channels of the 5 features ([64, 64, 128, 256, 512], x4 after the first for 50+).
    """

    # Monodepth2 encoder checkpoints carry the ImageNet classifier; it is unused here.
    ignored_state_keys = tuple("encoder." + k for k in FC_KEYS)

    def __init__(self, num_layers, pretrained, num_input_images=1):
        super().__init__()
        self.num_ch_enc = np.array([64, 64, 128, 256, 512])
        if num_layers > 34:
            self.num_ch_enc[1:] *= 4
        self.num_layers = num_layers
        self.num_input_images = num_input_images
        self.encoder = resnet_multiimage_input(num_layers, pretrained, num_input_images)

    def forward(self, input_image):
        enc = self.encoder
        x = (input_image - 0.45) / 0.225
        x = enc.relu(enc.bn1(enc.conv1(x)))
        features = [x]
        features.append(enc.layer1(enc.maxpool(x)))
        features.append(enc.layer2(features[-1]))
        features.append(enc.layer3(features[-1]))
        features.append(enc.layer4(features[-1]))
        return features
