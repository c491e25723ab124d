"""Monodepth2-style monocular/stereo dataset base class (docs/METHOD.md, section 1; the item keys: docs/ARCHITECTURE.md,
"Data items"), its colour jitter and the depth-hint files. Augmentation (``is_train``) is drawn from ``self.rng``: the
global ``random`` for plain ``ds[i]`` (as Monodepth2), or the ``random.Random`` seeded by (seed, epoch, index) that
:class:`datasets.SeededDataset` passes to :meth:`MonoDataset.get_item`, so a batch does not depend on the worker that
loads it and a resumed run sees the same batches.
"""
import os
import random

import numpy as np
import paddle
from PIL import Image

import kitti_utils
from camera import KITTI_K, scale_intrinsics
from image_io import LANCZOS, load_image
from kitti_utils import parse_split_line
from utils import ToolkitError

FLIP = getattr(Image, "Transpose", Image).FLIP_LEFT_RIGHT
MISSING_IMAGE_FIX = ("check --data_path, the split file, and --png if the images are PNG (KITTI raw "
                     "is usually converted to .jpg)")


def pil_loader(path):
    """Training's image read: :func:`image_io.load_image` (an RGB PIL image), a missing file naming --data_path / --png.
    A module-level name looked up on every read, so a test can wrap it (tests/test_loader_watchdog.py)."""
    return load_image(path, missing_fix=MISSING_IMAGE_FIX)


def to_array(img):
    """PIL RGB image -> (3, H, W) float32 in [0, 1]."""
    return np.ascontiguousarray(np.asarray(img, dtype=np.float32).transpose(2, 0, 1) / 255.0)


def _gray(x):
    """ITU-R 601-2 luma (as PIL's 'L' conversion) of a (3, H, W) array -> (H, W)."""
    return 0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2]


def rgb_to_hsv(x):
    """(3, H, W) RGB in [0, 1] -> (3, H, W) HSV with hue in [0, 1)."""
    r, g, b = x
    maxc, minc = x.max(0), x.min(0)
    delta = maxc - minc
    s = np.where(maxc > 0, delta / np.where(maxc > 0, maxc, 1), 0)
    d = np.where(delta > 0, delta, 1)
    rc, gc, bc = (maxc - r) / d, (maxc - g) / d, (maxc - b) / d
    h = np.where(r == maxc, bc - gc, np.where(g == maxc, 2.0 + rc - bc, 4.0 + gc - rc))
    h = np.where(delta > 0, (h / 6.0) % 1.0, 0.0)
    return np.stack([h, s, maxc]).astype(np.float32)


def hsv_to_rgb(x):
    """(3, H, W) HSV (hue in [0, 1)) -> (3, H, W) RGB (closed form, no per-sector branches)."""
    h, s, v = x
    ks = [(n + h * 6.0) % 6.0 for n in (5.0, 3.0, 1.0)]
    return np.stack([v - v * s * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0) for k in ks]).astype(np.float32)


class ColorJitter:
    """One colour-jitter draw (torchvision ColorJitter semantics) for (3, H, W) float arrays in [0, 1]: brightness,
    contrast, saturation factors and a hue shift, in the drawn order (``ColorJitter.draw(rng)``)."""

    def __init__(self, brightness=1.0, contrast=1.0, saturation=1.0, hue=0.0, order=(0, 1, 2, 3)):
        self.brightness, self.contrast, self.saturation, self.hue = brightness, contrast, saturation, hue
        self.order = tuple(order)

    @classmethod
    def draw(cls, rng=random, brightness=(0.8, 1.2), contrast=(0.8, 1.2),
             saturation=(0.8, 1.2), hue=(-0.1, 0.1)):
        order = [0, 1, 2, 3]
        rng.shuffle(order)
        return cls(rng.uniform(*brightness), rng.uniform(*contrast), rng.uniform(*saturation),
                   rng.uniform(*hue), order)

    def __call__(self, x):
        x = np.asarray(x, dtype=np.float32)
        for op in self.order:
            if op == 0:
                x = np.clip(x * self.brightness, 0, 1)
            elif op == 1:
                m = float(_gray(x).mean())
                x = np.clip(m + self.contrast * (x - m), 0, 1)
            elif op == 2:
                g = _gray(x)[None]
                x = np.clip(g + self.saturation * (x - g), 0, 1)
            elif op == 3 and self.hue != 0.0:
                hsv = rgb_to_hsv(x)
                hsv[0] = (hsv[0] + self.hue) % 1.0
                x = np.clip(hsv_to_rgb(hsv), 0, 1)
        return np.ascontiguousarray(x, dtype=np.float32)


class DepthHintError(ToolkitError):
    """A depth-hint file that cannot be used; ``reason`` says why without the file name and fix."""

    def __init__(self, message, path, reason):
        super().__init__(message)
        self.path, self.reason = path, reason


_HINT_FIX = "delete it and rerun precompute_depth_hints.py (it recomputes missing hints)"


def read_depth_hint(path):
    """A precomputed hint ``.npy`` (float, (1, Hh, Wh), 0 = no hint) as (Hh, Wh) float32; every failure (missing,
    unreadable or truncated, wrong shape or dtype, NaN or inf) is a :class:`DepthHintError` naming the file."""
    if not os.path.isfile(path):
        raise DepthHintError(f"depth hint not found ({path}): run precompute_depth_hints.py for "
                             f"this split, or point --depth_hint_path at the saved hints", path, "missing")
    try:
        hint = np.load(path, allow_pickle=False)
    except Exception as e:  # truncated / corrupt files raise ValueError, EOFError, OSError...
        raise DepthHintError(f"unreadable depth hint ({path}): {type(e).__name__}: {e}; {_HINT_FIX}", path,
                             f"not a readable .npy file ({type(e).__name__}: {e})") from None
    if hint.ndim != 3 or hint.shape[0] != 1 or min(hint.shape[1:]) < 1 or hint.dtype.kind != "f":
        raise DepthHintError(f"bad depth hint ({path}): shape {hint.shape} dtype {hint.dtype}, expected "
                             f"float (1, H, W); {_HINT_FIX}", path,
                             f"shape {hint.shape} dtype {hint.dtype}, expected float (1, H, W)")
    hint = hint[0].astype(np.float32)
    if not np.isfinite(hint).all():
        raise DepthHintError(f"bad depth hint ({path}): contains NaN or inf; {_HINT_FIX}", path,
                             "contains NaN or inf")
    return hint


def load_depth_hint(path, height, width, do_flip):
    """:func:`read_depth_hint`, flipped with the sample, nearest-resized to (height, width): (1, H, W) float32."""
    import cv2
    hint = read_depth_hint(path)
    if do_flip:
        hint = np.fliplr(hint)
    hint = cv2.resize(np.ascontiguousarray(hint), (width, height), interpolation=cv2.INTER_NEAREST)
    return hint[None].astype(np.float32)


class MonoDataset(paddle.io.Dataset):
    """Base class of the KITTI datasets (docs/METHOD.md, section 1); subclasses give the paths. Args: ``data_path``;
    ``filenames`` (split lines ``<folder> <frame> <l|r>``); ``height``, ``width`` (multiples of 32); ``frame_idxs``
    (e.g. [0, -1, 1, "s"]); ``num_scales``; ``is_train`` (enables flips and colour jitter); ``img_ext`` ('.jpg' or
    '.png'); ``use_depth_hints``; ``depth_hint_path`` (default ``<data_path>/depth_hints``); ``split_file`` (only
    named in error messages); ``intrinsics``: a normalised 4x4 K, or a callable folder -> K such as
    ``camera.IntrinsicsLookup`` (default: KITTI's)."""

    K = KITTI_K
    full_res_shape = (1242, 375)

    def __init__(self, data_path, filenames, height, width, frame_idxs, num_scales,
                 is_train=False, img_ext=".jpg", use_depth_hints=False, depth_hint_path=None,
                 split_file=None, intrinsics=None):
        super().__init__()
        if height % 32 or width % 32 or height <= 0 or width <= 0:
            raise ToolkitError(f"image size {height}x{width} (--height/--width): both must be "
                               f"positive multiples of 32")
        self.data_path = os.fspath(data_path)
        self.filenames = list(filenames)
        self.height, self.width = int(height), int(width)
        self.frame_idxs = list(frame_idxs)
        self.num_scales = int(num_scales)
        self.is_train = bool(is_train)
        self.img_ext = img_ext if img_ext.startswith(".") else "." + img_ext
        self.use_depth_hints = bool(use_depth_hints)
        self.depth_hint_path = (os.fspath(depth_hint_path) if depth_hint_path
                                else kitti_utils.default_depth_hint_root(self.data_path))
        self.split_file = split_file
        self.intrinsics = intrinsics
        for f in self.frame_idxs:
            if f != "s" and not isinstance(f, (int, np.integer)):
                raise ToolkitError(f"bad frame id {f!r} (--frame_ids): use integers and 's'")
        self.lines = [parse_split_line(ln, k + 1, split_file) for k, ln in enumerate(self.filenames)]
        self.brightness, self.contrast, self.saturation = (0.8, 1.2), (0.8, 1.2), (0.8, 1.2)
        self.hue = (-0.1, 0.1)
        self.load_depth = self.check_depth()

    def get_image_path(self, folder, frame_index, side):
        raise NotImplementedError

    def check_depth(self):
        return False

    def get_depth(self, folder, frame_index, side, do_flip):
        raise NotImplementedError

    def get_depth_hint_path(self, folder, frame_index, side):
        """:func:`kitti_utils.depth_hint_path` under ``depth_hint_path``."""
        return kitti_utils.depth_hint_path(self.depth_hint_path, folder, frame_index, side)

    def __len__(self):
        return len(self.filenames)

    def get_color(self, folder, frame_index, side, do_flip):
        color = pil_loader(self.get_image_path(folder, frame_index, side))
        if do_flip:
            color = color.transpose(FLIP)
        return color

    def frame_sources(self, folder, frame_index, side):
        """``{frame_id: (folder, frame_index, side)}`` of the images an item needs."""
        stereo = (folder, frame_index, {"l": "r", "r": "l"}[side])
        return {i: stereo if i == "s" else (folder, frame_index + int(i), side) for i in self.frame_idxs}

    def normalised_K(self, folder, do_flip=False):
        """``folder``'s normalised K; mirrored images mirror the principal point (cx -> 1 - cx; KITTI's 0.5 stays)."""
        K = self.intrinsics(folder) if callable(self.intrinsics) else self.intrinsics
        K = np.array(self.K if K is None else K, dtype=np.float32)
        if do_flip:
            K[0, 2] = 1.0 - K[0, 2]
        return K

    def scaled_K(self, scale, K=None):
        """(K, inv_K) float32 at ``scale``: the normalised ``K`` (default: the dataset's) in pixels of that scale."""
        K = scale_intrinsics(self.K if K is None else K, self.width // (2 ** scale), self.height // (2 ** scale),
                             np.float32)
        return K, np.linalg.pinv(K).astype(np.float32)

    rng = random  # where augmentation is drawn from (get_item sets it per item)

    def sample_augmentation(self):
        """``(do_flip, jitter: ColorJitter or None)`` drawn with ``self.rng``; in training each with chance 0.5."""
        do_color_aug = self.is_train and self.rng.random() > 0.5
        do_flip = self.is_train and self.rng.random() > 0.5
        jitter = (ColorJitter.draw(self.rng, self.brightness, self.contrast, self.saturation, self.hue)
                  if do_color_aug else None)
        return do_flip, jitter

    def __getitem__(self, index):
        return self.get_item(index)

    def get_item(self, index, rng=random):
        """Item ``index`` with its augmentation drawn from ``rng`` (default: the global ``random``, as
        Monodepth2; :class:`datasets.SeededDataset` passes its own, so loading never touches the global state)."""
        self.rng = rng
        try:
            do_flip, jitter = self.sample_augmentation()
        finally:
            self.__dict__.pop("rng", None)  # back to the class default (and picklable)
        folder, frame_index, side = self.lines[index]
        inputs = {}

        for i, (fo, fr, sd) in self.frame_sources(folder, frame_index, side).items():
            native = self.get_color(fo, fr, sd, do_flip)
            for s in range(self.num_scales):
                size = (self.width // (2 ** s), self.height // (2 ** s))
                img = to_array(native if native.size == size else native.resize(size, LANCZOS))
                inputs[("color", i, s)] = img
                inputs[("color_aug", i, s)] = jitter(img) if jitter else img.copy()

        K = self.normalised_K(folder, do_flip)
        for s in range(self.num_scales):
            inputs[("K", s)], inputs[("inv_K", s)] = self.scaled_K(s, K)

        if self.load_depth:
            depth_gt = self.get_depth(folder, frame_index, side, do_flip)
            inputs["depth_gt"] = np.ascontiguousarray(depth_gt[None], dtype=np.float32)

        if "s" in self.frame_idxs:
            stereo_T = np.eye(4, dtype=np.float32)
            stereo_T[0, 3] = (-1 if side == "l" else 1) * (-1 if do_flip else 1) * 0.1  # side sign, baseline sign
            inputs["stereo_T"] = stereo_T

        if self.use_depth_hints:
            path = self.get_depth_hint_path(folder, frame_index, side)
            hint = load_depth_hint(path, self.height, self.width, do_flip)
            inputs["depth_hint"] = hint
            inputs["depth_hint_mask"] = (hint > 0).astype(np.float32)
        return inputs
