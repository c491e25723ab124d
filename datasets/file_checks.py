"""What is inside one data file: the cheap checks (a hint's .npy header, shape, dtype and
size; an image non-empty and ending with its format's end marker, decoded only when it does
not) and the full ones (decode it), and which file of an item is to blame when the item
fails to load. Used by datasets/check.py (whole lists) and datasets/sampling.py (one failing
sample)."""
import os

from utils import ToolkitError, read_npy_header

TAIL_BYTES = 4096
FIXES = {"image": "re-extract or re-convert the bad images",
         "hint": "delete the bad hints and rerun precompute_depth_hints.py (it recomputes missing hints)",
         "depth": "re-download the bad ground-truth files"}


def item_paths(dataset, idx):
    """``[(kind, path)]`` of the files item ``idx`` reads; kind is 'image', 'hint' or 'depth'."""
    folder, frame_index, side = dataset.lines[idx]
    out = [("image", dataset.get_image_path(fo, fr, sd))
           for fo, fr, sd in dataset.frame_sources(folder, frame_index, side).values()]
    if dataset.use_depth_hints:
        out.append(("hint", dataset.get_depth_hint_path(folder, frame_index, side)))
    if dataset.load_depth and hasattr(dataset, "depth_paths"):
        out += [("depth", p) for p in dataset.depth_paths(folder, frame_index, side)]
    return out


def _decode_image(path):
    from PIL import Image
    try:
        with Image.open(path) as img:
            img.convert("RGB")
    except Exception as exc:  # noqa: BLE001 - PIL raises OSError, ValueError, SyntaxError...
        first = (str(exc).splitlines() or [""])[0]
        return "does not decode ({}: {})".format(type(exc).__name__, first)
    return None


def _check_image(path, full):
    try:
        size = os.path.getsize(path)
        if size == 0:
            return "empty file"
        if full:
            return _decode_image(path)
        with open(path, "rb") as f:
            head = f.read(8)
            f.seek(max(0, size - TAIL_BYTES))
            tail = f.read()
    except OSError as exc:
        return "cannot read ({})".format(exc.strerror or exc)
    if head.startswith(b"\xff\xd8"):
        ends = b"\xff\xd9" in tail
    elif head.startswith(b"\x89PNG"):
        ends = b"IEND" in tail
    else:
        return _decode_image(path)  # another format: decode it to be sure
    if ends:
        return None
    # no end marker: truncated, or data appended after it; the decoder decides
    reason = _decode_image(path)
    return None if reason is None else "truncated or corrupt: " + reason


def _hint_shape_reason(shape, dtype):
    if len(shape) != 3 or shape[0] != 1 or min(shape[1:]) < 1:
        return "shape {}, expected (1, H, W)".format(tuple(shape))
    if dtype.kind != "f":
        return "dtype {}, expected float".format(dtype)
    return None


def _check_hint_header(path):
    try:
        shape, _, dtype, size, expected = read_npy_header(path)
    except Exception as exc:  # noqa: BLE001 - not a .npy, truncated header
        first = (str(exc).splitlines() or [""])[0]
        return "not a readable .npy file ({}: {})".format(type(exc).__name__, first)
    reason = _hint_shape_reason(shape, dtype)
    if reason is not None:
        return reason
    if size < expected:
        return "truncated: {} bytes, its header needs {}".format(size, expected)
    return None


def _check_hint(path, full, dataset):
    reason = _check_hint_header(path)
    if reason is not None or not full:
        return reason
    from .mono_dataset import load_depth_hint
    try:
        load_depth_hint(path, dataset.height, dataset.width, False)
    except ToolkitError as exc:
        msg = str(exc)
        return "contains NaN or inf" if "NaN" in msg else msg.split("): ", 1)[-1].split(";")[0]
    return None


def _check_depth(path, full):
    try:
        size = os.path.getsize(path)
    except OSError as exc:
        return "cannot read ({})".format(exc.strerror or exc)
    if size == 0:
        return "empty file"
    if path.endswith(".bin"):
        if size % 16:
            return "truncated: {} bytes is not a whole number of LiDAR points (16 bytes each)".format(size)
        return None
    return _decode_image(path) if full else None


def check_file(kind, path, dataset, full=False):
    """Why ``path`` (a file of ``kind`` 'image', 'hint' or 'depth' read by ``dataset``) is
    bad, or None when it looks right (``full``: it decodes)."""
    if kind == "image":
        return _check_image(path, full)
    if kind == "hint":
        return _check_hint(path, full, dataset)
    return _check_depth(path, full)


def find_bad_file(dataset, idx):
    """One-line message naming the first file of item ``idx`` that does not decode, or None."""
    if not hasattr(dataset, "lines"):
        return None
    for kind, path in item_paths(dataset, idx):
        reason = check_file(kind, path, dataset, full=True) if os.path.exists(path) else "missing"
        if reason is not None:
            return "bad {} ({}): {}; {}".format(kind, path, reason, FIXES[kind])
    return None
