"""Loading weight files into the networks with clear errors: ``load_weights_file`` is the one reader of ``.pdparams``
files (checkpoints, ImageNet and PaddleMono weights); ``load_state_dict_strict`` names anything missing, unexpected or
of the wrong shape in one :class:`utils.ToolkitError` instead of skipping it (Paddle's ``set_state_dict`` only warns).
"""
import os
import re

import numpy as np
import paddle

from utils import ToolkitError

# Non-tensor entries stored beside the encoder's parameters: Monodepth2's training size and
# stereo flag, and this toolkit's camera (normalised fx fy cx cy) and stereo baseline (metres).
META_KEYS = ("height", "width", "use_stereo", "intrinsics", "stereo_baseline")

# The ImageNet classifier of a ResNet file: not built in the encoders, ignored when loading.
FC_KEYS = ("fc.weight", "fc.bias")

_MAX_LISTED = 6


def load_weights_file(path, what=None):
    """A ``.pdparams`` file's state dict as ``paddle.load(path, return_numpy=True)`` gives it, read by
    ``safe_load.load_paddle`` (``paddle.load`` is ``pickle.load``: PaddlePaddle issue 77735); a bad file: one line."""
    import safe_load  # only when a file is read: a --weights_init scratch run never needs it

    what = what or os.path.basename(str(path))
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ToolkitError(
            f"{what} not found ({path}): check the weights folder "
            "(see weights/README.md; PyTorch .pth files need tools/convert_torch_weights.py)")
    try:
        state = safe_load.load_paddle(path)
    except safe_load.UnsafeFileError:
        raise  # one line naming the file and the refused object; never retried or skipped
    except ToolkitError as exc:  # damaged, truncated, not a paddle file (UnreadableFileError)
        shown = safe_load.printable(path, 300)
        reason = str(exc).removeprefix(f"cannot read {shown}: ")
        raise type(exc)(f"{what} could not be read ({shown}): {reason}") from None
    if not isinstance(state, dict):
        raise ToolkitError(f"{what} does not hold a state dict ({path}): "
                           "expected a .pdparams file of parameters")
    return state


def _shape(value):
    """A tensor's shape as a list, a non-tensor's type name."""
    shape = getattr(value, "shape", None)
    return type(value).__name__ if shape is None else [int(s) for s in shape]


def _listed(items):
    head = ", ".join(items[:_MAX_LISTED])
    more = f", ... (+{len(items) - _MAX_LISTED} more)" if len(items) > _MAX_LISTED else ""
    return f"[{head}{more}]"


def _to_numpy(value, like):
    arr = value.numpy() if isinstance(value, paddle.Tensor) else np.asarray(value)
    return arr.astype(np.float32, copy=False) if like.dtype == paddle.float32 else arr


def load_state_dict_strict(model, state, what="encoder.pdparams"):
    """Load ``state`` (a dict, or a path to a ``.pdparams`` file) into ``model`` by name; returns the model.
    ``META_KEYS`` and the model's ``ignored_state_keys`` (a ResNet encoder's unused ImageNet ``fc``) are skipped;
    any missing, unexpected or shape-mismatched key raises one :class:`utils.ToolkitError` listing them."""
    if isinstance(state, (str, os.PathLike)):
        state = load_weights_file(state, what)
    ignore = set(META_KEYS) | set(getattr(model, "ignored_state_keys", ()))
    tensors = {k: v for k, v in state.items() if k not in ignore}
    own = model.state_dict()
    missing = [k for k in own if k not in tensors]
    unexpected = [k for k in tensors if k not in own]
    mismatched = [f"{k}: file {_shape(tensors[k])} vs model {list(param.shape)}"
                  for k, param in own.items() if k in tensors and _shape(tensors[k]) != list(param.shape)]
    problems = (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", mismatched))
    parts = [f"{len(keys)} {kind} {_listed(keys)}" for kind, keys in problems if keys]
    if parts:
        raise ToolkitError(
            f"{what} does not match the {type(model).__name__} it is loaded into ({'; '.join(parts)}): "
            "check --num_layers (and the other network options) against the run that wrote "
            "these weights, or convert PyTorch weights with tools/convert_torch_weights.py")
    model.set_state_dict({k: _to_numpy(tensors[k], own[k]) for k in own})
    return model


def imagenet_state_for(state, num_input_images=1):
    """A single-image ResNet state dict (keys with or without ``encoder.``) for the un-prefixed ResNet: ``fc`` and
    metadata dropped, ``conv1`` tiled N times on its inputs and divided by N if ``num_input_images`` = N > 1."""
    tensors = {k.removeprefix("encoder."): v for k, v in state.items() if isinstance(k, str) and hasattr(v, "shape")}
    out = {k: v for k, v in tensors.items() if k not in FC_KEYS}
    w = out.get("conv1.weight")
    if w is not None and num_input_images > 1 and int(w.shape[1]) == 3:
        w = w.numpy() if isinstance(w, paddle.Tensor) else np.asarray(w)
        out["conv1.weight"] = np.concatenate([w] * num_input_images, axis=1) / num_input_images
    return out


_BLOCKS_TO_LAYERS = {
    ("basic", 2, 2): 18, ("basic", 4, 6): 34,
    ("bottleneck", 4, 6): 50, ("bottleneck", 4, 23): 101, ("bottleneck", 8, 36): 152,
}


def infer_num_layers(state):
    """ResNet depth (18/34/50/101/152) of an encoder state dict (keys with ``encoder.``, as in checkpoints, or
    without, as in ImageNet files), or None if it is not one: the blocks of layer2/3 and a bottleneck ``conv3``."""
    blocks = {2: set(), 3: set()}
    bottleneck = False
    pat = re.compile(r"^(?:encoder\.)?layer([23])\.(\d+)\.(conv\d)\.")
    for key in state:
        m = pat.match(str(key))
        if m:
            blocks[int(m.group(1))].add(int(m.group(2)))
            bottleneck |= m.group(3) == "conv3"
    sig = ("bottleneck" if bottleneck else "basic", len(blocks[2]), len(blocks[3]))
    return _BLOCKS_TO_LAYERS.get(sig)


def num_decoder_scales(state):
    """How many disparity convs a DepthDecoder state dict holds (4 for scales 0..3): build with ``scales=range(n)``."""
    return sum(1 for k in state if re.match(r"^decoder\.\d+\.conv\.weight$", str(k)))
