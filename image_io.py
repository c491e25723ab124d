"""The one image reader of the toolkit, :func:`load_image` (so an image decodes the same way everywhere), and the
disparity colour map. A read error is a one-line :class:`ImageReadError` (a ToolkitError) with ``path`` and
``reason`` attributes, so a caller can word its own line (the precompute prints ``<path>: <reason>``)."""
import os

import numpy as np
from PIL import Image

from utils import MissingFileError, ToolkitError

LANCZOS = getattr(Image, "Resampling", Image).LANCZOS
MIN_SIDE = 2                     # pixels: a smaller image cannot be resized or matched
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
DEFAULT_FIX = "re-extract, re-convert or remove it"


class ImageReadError(ToolkitError):
    """An image that cannot be used; ``path`` names it, ``reason`` says why (no path)."""

    def __init__(self, message, path, reason):
        super().__init__(message)
        self.path, self.reason = path, reason


class MissingImageError(ImageReadError, MissingFileError):
    """The image file does not exist (also a FileNotFoundError)."""


class ImageDecodeError(ImageReadError):
    """The file is not an image PIL can decode (corrupt, truncated, another format)."""


class DegenerateImageError(ImageReadError):
    """The image decodes but has fewer than :data:`MIN_SIDE` pixels on a side."""


def _to_rgb(img):
    """A decoded PIL image of any mode -> 8-bit RGB (alpha dropped). 16-bit greyscale (``I;16*``, ``I``) is scaled
    by ``round(v * 255 / 65535)``, so ``x * 257`` becomes ``x``, as PIL's own decoding of 16-bit RGB(A) PNGs maps it."""
    if img.mode in SIXTEEN_BIT_MODES:
        v = np.clip(np.asarray(img, dtype=np.int64), 0, 65535)
        v8 = ((v * 255 * 2 + 65535) // (2 * 65535)).astype(np.uint8)   # round(v * 255 / 65535)
        return Image.fromarray(v8, "L").convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")  # a palette with transparency: PIL warns on a direct RGB conversion
    return img.convert("RGB")  # a copy when it is RGB already


def load_image(path, missing_fix="check the path"):
    """The image at ``path`` as an RGB PIL image (:func:`_to_rgb`), else :class:`MissingImageError` (its fix:
    ``missing_fix``), :class:`ImageDecodeError` or :class:`DegenerateImageError` (under :data:`MIN_SIDE` pixels)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise MissingImageError(f"image not found ({path}): {missing_fix}", path, "file not found")
    try:
        with Image.open(path) as img:
            w, h = img.size
            if w < MIN_SIDE or h < MIN_SIDE:
                reason = f"degenerate image ({w}x{h} pixels, needs at least {MIN_SIDE} on each side)"
                raise DegenerateImageError(f"degenerate image ({path}): {w}x{h} pixels, needs at least "
                                           f"{MIN_SIDE} on each side; {DEFAULT_FIX}", path, reason)
            img.load()
            return _to_rgb(img)
    except ImageReadError:
        raise
    except Exception as exc:  # noqa: BLE001 - PIL raises OSError, ValueError, SyntaxError, ...
        first = (str(exc).strip().splitlines() or [""])[0]
        detail = first.replace(repr(path), "").replace(path, "").strip()  # PIL may name the file
        what = f"{type(exc).__name__}: {detail}"
        raise ImageDecodeError(f"cannot decode image ({path}): {what}; {DEFAULT_FIX}", path,
                               f"cannot decode image ({what})") from None


def normalize_image(x):
    """An image (tensor or array) rescaled to [0, 1] by its min and max (a constant one: / 1e5, as Monodepth2)."""
    ma = float(x.max())
    mi = float(x.min())
    d = ma - mi if ma != mi else 1e5
    return (x - mi) / d


def colormap_disp(disp, vmax_percentile=95):
    """Disparity (H,W) -> (H,W,3) uint8 magma RGB normalised by [min, 95th percentile], as Monodepth2's test_simple."""
    import matplotlib.cm
    d = np.squeeze(np.asarray(disp, dtype=np.float64))
    if d.ndim != 2:
        raise ValueError(f"colormap_disp expects an (H, W) disparity, got shape {d.shape}")
    vmin = float(d.min())
    vmax = float(np.percentile(d, vmax_percentile))
    if vmax <= vmin:
        vmax = vmin + 1e-8
    mapper = matplotlib.cm.ScalarMappable(norm=matplotlib.colors.Normalize(vmin=vmin, vmax=vmax), cmap="magma")
    return (mapper.to_rgba(d)[:, :, :3] * 255).astype(np.uint8)
