"""ResNet encoder of Monodepth2 / Depth Hints (docs/METHOD.md, section 2).

The ResNet is a ``paddle.vision`` ResNet held as attribute ``encoder``, so parameter names
read ``encoder.conv1.weight``, ``encoder.bn1._mean``, ``encoder.layer1.0.conv1.weight``,
... exactly as in converted Monodepth2 checkpoints. The ImageNet classifier (``fc``) is not
built; ``encoder.fc.*`` entries in weight files are ignored when loading.
"""
import os
import sys

import numpy as np
import paddle
import paddle.nn as nn
import paddle.utils.download as paddle_download
from paddle.vision.models.resnet import BasicBlock, BottleneckBlock, ResNet, model_urls

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


# Paddle's own ImageNet ResNets, as paddle.vision.models.resnet lists them: {depth: (url, md5)}.
PADDLE_IMAGENET_WEIGHTS = {int(arch[len("resnet"):]): url_md5 for arch, url_md5 in model_urls.items()
                           if arch[len("resnet"):].isdigit()}

TORCHVISION_FILES = {18: "resnet18-f37072fd.pth", 34: "resnet34-b627a593.pth",
                     50: "resnet50-0676ba61.pth", 101: "resnet101-63fe2227.pth",
                     152: "resnet152-394f9c45.pth"}

# How long to wait for Paddle's weight server to answer before calling the machine offline.
REACH_TIMEOUT_S = 15


def local_pretrained_path(num_layers):
    """``<repo>/weights/resnet{N}.pdparams``: the first place ``pretrained`` looks."""
    return os.path.join(DEFAULT_WEIGHTS_DIR, f"resnet{num_layers}.pdparams")


def paddle_cache_path(num_layers):
    """Where Paddle's download utility keeps its ImageNet ResNet{N} file
    (``paddle.utils.download.WEIGHTS_HOME``, by default ~/.cache/paddle/hapi/weights)."""
    url = PADDLE_IMAGENET_WEIGHTS[num_layers][0]
    return os.path.join(paddle_download.WEIGHTS_HOME, url.rsplit("/", 1)[-1])


def _offline_error(num_layers, cache, reason):
    tv = TORCHVISION_FILES.get(num_layers, f"resnet{num_layers}-XXXXXXXX.pth")
    url = PADDLE_IMAGENET_WEIGHTS[num_layers][0]
    return ToolkitError(
        f"ImageNet weights for ResNet{num_layers} not found locally, and Paddle's could not "
        f"be downloaded ({cache}: {reason}): either put Paddle's file ({url}) at that path, or convert "
        f"torchvision's {tv} (the paper's exact initialisation) with `python "
        f"tools/convert_torch_weights.py --input {tv} --output "
        f"{local_pretrained_path(num_layers)}` (see weights/README.md); "
        "or train from random weights with --weights_init scratch")


def _server_reachable(url):
    """None if ``url``'s server answers (any HTTP status), else why not. Paddle's downloader
    waits without a timeout and retries, so an offline machine is detected here first."""
    import httpx  # Paddle's own HTTP client (paddle.utils.download uses it)
    try:
        httpx.head(url, timeout=REACH_TIMEOUT_S, follow_redirects=True)
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}".splitlines()[0] if str(exc) else type(exc).__name__
    return None


def download_paddle_imagenet(num_layers):
    """Path of Paddle's ImageNet ResNet{N} weights in Paddle's cache, downloading them with
    ``paddle.utils.download`` (md5-checked) if the file is not there yet.

    A file already at the cache path is used as it is, whatever its md5: it may be one the
    user put there (e.g. a converted torchvision file) and must not be replaced by, or fail
    over, a re-download. Only a freshly downloaded file is md5-checked (by Paddle).
    """
    cache = paddle_cache_path(num_layers)
    if os.path.isfile(cache):
        return cache
    url, md5 = PADDLE_IMAGENET_WEIGHTS[num_layers]
    reason = _server_reachable(url)
    if reason is not None:
        raise _offline_error(num_layers, cache, reason)
    print(f"downloading Paddle's ImageNet ResNet{num_layers} weights from {url} to {cache}",
          file=sys.stderr)
    try:
        path = paddle_download.get_weights_path_from_url(url, md5)
    except Exception as exc:  # download failed, retry limit, md5 mismatch
        msg = str(exc).splitlines()[0] if str(exc) else ""
        raise _offline_error(num_layers, cache, f"{type(exc).__name__}: {msg}") from exc
    return path


def resolve_pretrained_path(num_layers, pretrained):
    """Local path of the ImageNet weights for ``pretrained`` (True, a file or a folder).

    True: ``<repo>/weights/resnet{N}.pdparams`` if it exists, else Paddle's ImageNet ResNet{N}
    in Paddle's weight cache (downloaded there on first use). A folder is searched for
    ``resnet{N}.pdparams``. Raises a one-line ToolkitError when nothing can be found.
    """
    if num_layers not in RESNET_BLOCKS:
        raise ToolkitError(f"unsupported ResNet depth {num_layers} (--num_layers): "
                           f"use one of {sorted(RESNET_BLOCKS)}")
    if pretrained is True:
        path = local_pretrained_path(num_layers)
        if os.path.isfile(path):
            return path
        return download_paddle_imagenet(num_layers)
    path = os.path.expanduser(os.fspath(pretrained))
    if os.path.isdir(path):
        path = os.path.join(path, f"resnet{num_layers}.pdparams")
    if not os.path.isfile(path):
        raise ToolkitError(
            f"ImageNet weights for ResNet{num_layers} not found ({path}): pass a .pdparams "
            f"file or a folder holding resnet{num_layers}.pdparams (see weights/README.md), "
            "--weights_init pretrained, or --weights_init scratch")
    return path


def imagenet_state_for(state, num_input_images=1):
    """Turn a single-image ResNet state dict (keys with or without ``encoder.``) into one for
    the un-prefixed ResNet: ``fc`` dropped, ``conv1`` tiled N times on the input-channel
    axis and divided by N when ``num_input_images`` = N > 1 (Monodepth2's pose encoder)."""
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
    """Build a (multi-image) ResNet; ``pretrained`` False, True (ImageNet weights: the local
    file, else Paddle's, see resolve_pretrained_path) or a path to local weights."""
    model = ResNetMultiImageInput(num_layers, num_input_images)
    if pretrained:
        path = resolve_pretrained_path(num_layers, pretrained)
        try:
            state = load_weights_file(path, f"ImageNet ResNet{num_layers} weights")
        except ToolkitError as exc:
            if pretrained is True and os.path.abspath(path) == os.path.abspath(paddle_cache_path(num_layers)):
                raise ToolkitError(f"{exc} It lies in Paddle's weight cache: delete it and the next run "
                                   "downloads it again") from None
            raise
        state = imagenet_state_for(state, num_input_images)
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
