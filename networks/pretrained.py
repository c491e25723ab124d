"""ImageNet weights for the ResNet encoders (``--weights_init pretrained`` or a path).

Where they come from, in order: ``<repo>/weights/resnet{N}.pdparams``, then Paddle's own
ImageNet ResNet{N} in Paddle's weight cache, downloaded there with ``paddle.utils.download``
(md5-checked) on first use after a quick probe of the server, so an offline machine gets a
one-line error instead of Paddle's endless retries. ``load_imagenet_weights`` puts them into
a ResNet built by ``networks.resnet_encoder``; that module imports this one only when
weights are asked for, so ``--weights_init scratch`` never loads the downloader.

Every file is read with ``state_dict.load_weights_file`` (``safe_load``, never
``paddle.load``): a weights file with code in it, in the cache, in weights/ or given with
``--weights_init <file or folder>``, is refused in one line before anything in it runs.
"""
import os
import sys

import paddle.utils.download as paddle_download
from paddle.vision.models.resnet import model_urls

from utils import ToolkitError

from .state_dict import imagenet_state_for, load_state_dict_strict, load_weights_file

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_WEIGHTS_DIR = os.path.join(REPO_ROOT, "weights")

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
    if num_layers not in PADDLE_IMAGENET_WEIGHTS:
        raise ToolkitError(f"unsupported ResNet depth {num_layers} (--num_layers): "
                           f"use one of {sorted(PADDLE_IMAGENET_WEIGHTS)}")
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


def load_imagenet_weights(model, num_layers, pretrained=True):
    """Load ImageNet ResNet{N} weights into ``model``, a (multi-image) ResNet without
    classifier (``networks.ResNetMultiImageInput``); ``pretrained`` is True (the local file,
    else Paddle's, see resolve_pretrained_path) or a path to local weights. With
    ``model.num_input_images`` = N > 1 conv1 is tiled N times and divided by N
    (``state_dict.imagenet_state_for``). Returns the model."""
    path = resolve_pretrained_path(num_layers, pretrained)
    try:
        state = load_weights_file(path, f"ImageNet ResNet{num_layers} weights")
    except ToolkitError as exc:  # unreadable, or refused by safe_load (UnsafeFileError: kept as such)
        if pretrained is True and os.path.abspath(path) == os.path.abspath(paddle_cache_path(num_layers)):
            raise type(exc)(f"{exc} It lies in Paddle's weight cache: delete it and the next run "
                            "downloads it again") from None
        raise
    state = imagenet_state_for(state, getattr(model, "num_input_images", 1))
    return load_state_dict_strict(model, state, what=f"ImageNet ResNet{num_layers} weights ({path})")
