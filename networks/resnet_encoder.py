"""ResNet encoder of Monodepth2 / Depth Hints (docs/METHOD.md, section 2): a ``paddle.vision`` ResNet held as
attribute ``encoder``, so parameter names (``encoder.conv1.weight``, ``encoder.bn1._mean``, ...) are those of
converted Monodepth2 checkpoints. The ImageNet classifier is not built (``encoder.fc.*`` entries are ignored when
loading); ImageNet weights: ``networks.pretrained``."""
import numpy as np
import paddle.nn as nn
from paddle.vision.models.resnet import BasicBlock, BottleneckBlock, ResNet

from utils import ToolkitError

from .initializers import init_resnet_torchvision
from .state_dict import FC_KEYS

RESNET_BLOCKS = {18: BasicBlock, 34: BasicBlock, 50: BottleneckBlock, 101: BottleneckBlock, 152: BottleneckBlock}


class ResNetMultiImageInput(ResNet):
    """A paddle.vision ResNet without classifier whose ``conv1`` takes ``3 * num_input_images``
    channels (the pose encoder's stacked frames). Initialised like torchvision's ResNet."""

    def __init__(self, num_layers, num_input_images=1):
        if num_layers not in RESNET_BLOCKS:
            raise ToolkitError(f"unsupported ResNet depth {num_layers} (--num_layers): "
                               f"use one of {sorted(RESNET_BLOCKS)}")
        super().__init__(RESNET_BLOCKS[num_layers], depth=num_layers, num_classes=0, with_pool=False)
        self.num_input_images = num_input_images  # networks.pretrained tiles conv1 by it
        if num_input_images != 1:
            self.conv1 = nn.Conv2D(3 * num_input_images, 64, kernel_size=7, stride=2, padding=3, bias_attr=False)
        init_resnet_torchvision(self)


def resnet_multiimage_input(num_layers, pretrained=False, num_input_images=1):
    """A (multi-image) ResNet; ``pretrained``: False, True (ImageNet) or a path to weights (networks.pretrained)."""
    model = ResNetMultiImageInput(num_layers, num_input_images)
    if pretrained:
        from .pretrained import load_imagenet_weights  # the downloader, only when asked for
        load_imagenet_weights(model, num_layers, pretrained)
    return model


class ResnetEncoder(nn.Layer):
    """ResNet feature pyramid: relu(bn1(conv1(x))), then layer1(maxpool(.)), layer2..4, of an input in
    [0, 1] normalised as (x - 0.45) / 0.225. ``num_ch_enc``: the 5 features' channels."""

    ignored_state_keys = tuple("encoder." + k for k in FC_KEYS)

    def __init__(self, num_layers, pretrained, num_input_images=1):
        super().__init__()
        self.num_ch_enc = np.array([64, 64, 128, 256, 512])
        if num_layers > 34:
            self.num_ch_enc[1:] *= 4
        self.encoder = resnet_multiimage_input(num_layers, pretrained, num_input_images)

    def forward(self, input_image):
        enc = self.encoder
        x = enc.relu(enc.bn1(enc.conv1((input_image - 0.45) / 0.225)))
        features = [x, enc.layer1(enc.maxpool(x))]
        for layer in (enc.layer2, enc.layer3, enc.layer4):
            features.append(layer(features[-1]))
        return features
