"""The PyTorch default initialisations Monodepth2 trains from (Paddle's differ, and the published recipes were tuned
with PyTorch's): the networks apply them after construction."""
import math

import paddle.nn as nn
from paddle.nn import initializer as I


def _fan(weight, axis):
    """fan_in (``axis=1``) or fan_out (``axis=0``) of a convolution weight, as PyTorch counts them."""
    return int(weight.shape[axis]) * int(math.prod(weight.shape[2:]))


def init_conv_torch_default(layer):
    """PyTorch's default Conv2d init of every Conv2D under ``layer``: weight, bias ~ U(+-1/sqrt(fan_in))."""
    for sub in layer.sublayers(include_self=True):
        if isinstance(sub, nn.Conv2D):
            bound = 1.0 / math.sqrt(_fan(sub.weight, 1))
            I.Uniform(-bound, bound)(sub.weight)
            if sub.bias is not None:
                I.Uniform(-bound, bound)(sub.bias)


def init_resnet_torchvision(layer):
    """torchvision's ResNet init: Kaiming-normal (fan_out, ReLU) convs, BN weight 1 / bias 0."""
    for sub in layer.sublayers(include_self=True):
        if isinstance(sub, nn.Conv2D):
            std = math.sqrt(2.0 / _fan(sub.weight, 0))
            I.Normal(0.0, std)(sub.weight)
            if sub.bias is not None:
                I.Constant(0.0)(sub.bias)
        elif isinstance(sub, (nn.BatchNorm2D, nn.BatchNorm)):
            I.Constant(1.0)(sub.weight)
            I.Constant(0.0)(sub.bias)
