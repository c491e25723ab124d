"""Small shared helpers: errors, file lists, atomic writes, output-path checks, .npy headers,
split folders, colour maps."""
import io
import os
import re
import sys
import tempfile
import time

import numpy as np

REPO_ROOT = os.path.dirname(os.path.abspath(__file__))
PROCESS_START = time.time()  # (about) when this process started: older temp files are stale
# the temp files of the atomic writers below: .<name>.<mkstemp's 8 random characters>.tmp
TEMP_FILE_RE = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")


def _current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_current_umask()  # mode of a normally created file (mkstemp uses 0600)

__all__ = [
    "ToolkitError", "MissingFileError", "run_cli", "readlines", "normalize_image",
    "atomic_write_bytes", "atomic_write_text", "atomic_save_npy", "atomic_save_npz",
    "atomic_paddle_save", "clean_stale_temp_files", "check_output_dir", "check_output_file",
    "read_npy_header", "resolve_split_dir", "colormap_disp",
    "MIN_DEPTH", "MAX_DEPTH", "GARG_CROP", "garg_crop_bounds",
    "INPUT_SIZE_MULTIPLE", "MIN_INPUT_SIZE", "MAX_INPUT_SIZE", "check_input_size",
]


# Evaluation constants (docs/METHOD.md, section 6), shared by evaluation, hint scoring and training metrics.
MIN_DEPTH = 1e-3
MAX_DEPTH = 80.0
# Garg/Eigen crop as fractions of the ground-truth height (rows) and width (cols).
GARG_CROP = (0.40810811, 0.99189189, 0.03594771, 0.96405229)


# The input sizes the depth network takes: multiples of 32 (the ResNet encoder halves the
# image five times and the decoder doubles it back) of at least 64 (the deepest, 1/32
# feature map then has two pixels, the least the decoder's reflection padding needs), and at
# most 4096 a side (a network of that size no longer fits in memory).
INPUT_SIZE_MULTIPLE = 32
MIN_INPUT_SIZE = 64
MAX_INPUT_SIZE = 4096


def check_input_size(height, width, flag="--height/--width", what="input size",
                     fix="use e.g. 640x192 or 1024x320"):
    """One-line ToolkitError naming ``flag`` unless ``height`` and ``width`` are multiples of
    32 from 64 to 4096; ``what`` names the size in the message, ``fix`` says what to do."""
    if (height % INPUT_SIZE_MULTIPLE or width % INPUT_SIZE_MULTIPLE or min(height, width) < MIN_INPUT_SIZE
            or max(height, width) > MAX_INPUT_SIZE):
        raise ToolkitError(f"{what} {width}x{height} is not a multiple of {INPUT_SIZE_MULTIPLE} of at least "
                           f"{MIN_INPUT_SIZE}x{MIN_INPUT_SIZE} and at most {MAX_INPUT_SIZE} a side ({flag}): {fix}")


def garg_crop_bounds(height, width):
    """(top, bottom, left, right) of the Garg crop for a ground-truth map of this size."""
    return tuple(int(f * n) for f, n in zip(GARG_CROP, (height, height, width, width)))


class ToolkitError(Exception):
    """A user-facing error. CLIs catch it, print one line on stderr and exit with code 2.

    The message should read ``<what> (<file or flag>): <how to fix>``.
    """


class MissingFileError(ToolkitError, FileNotFoundError):
    """A file or folder that does not exist (both a ToolkitError and a FileNotFoundError)."""


def run_cli(fn, *args, **kwargs):
    """Run a CLI's work: a ToolkitError becomes one `error: ...` line on stderr and exit code 2.

    Returns fn's result when it is an int (the exit code), else 0.
    """
    try:
        result = fn(*args, **kwargs)
    except ToolkitError as exc:
        print("error: {}".format(exc), file=sys.stderr)
        return 2
    return result if isinstance(result, int) else 0


def readlines(path):
    """Return the lines of a text file without trailing newlines (blank lines dropped).

    Raises :class:`MissingFileError` (a ToolkitError) naming the file when it is missing.
    """
    if not os.path.isfile(path):
        raise MissingFileError(f"file not found ({path}): check the path / split name")
    with open(path, "r") as f:
        return [line.rstrip("\r\n") for line in f.read().splitlines() if line.strip()]


def normalize_image(x):
    """Rescale an image (paddle tensor or numpy array) to [0, 1] by its min and max.

    A constant image is divided by 1e5 instead of 0 (Monodepth2 semantics).
    """
    ma = float(x.max())
    mi = float(x.min())
    d = ma - mi if ma != mi else 1e5
    return (x - mi) / d


# ----------------------------------------------------------------------------- atomic writes


def _atomic_write(path, write_fn, binary=True):
    """Write ``path`` via ``write_fn(fileobj)`` into a temp file in the same folder, then
    ``os.replace`` it into place: readers never see a partial file and a failure leaves
    no temp file behind."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".",
                               suffix=".tmp")
    try:
        with os.fdopen(fd, "wb" if binary else "w") as f:
            write_fn(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
    return path


def atomic_write_bytes(path, data):
    """Atomically write ``data`` (bytes) to ``path``."""
    return _atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path, text):
    """Atomically write ``text`` (str) to ``path``."""
    return _atomic_write(path, lambda f: f.write(text), binary=False)


def atomic_save_npy(path, array):
    """Atomically ``np.save`` ``array`` to exactly ``path`` (no '.npy' is appended)."""
    return _atomic_write(path, lambda f: np.save(f, np.asarray(array)))


def atomic_save_npz(path, **arrays):
    """Atomically ``np.savez_compressed`` the keyword arrays to exactly ``path``."""
    return _atomic_write(path, lambda f: np.savez_compressed(f, **arrays))


def atomic_paddle_save(obj, path):
    """Atomically ``paddle.save`` a state dict (or other object) to ``path``."""
    import paddle

    def write(f):
        buf = io.BytesIO()
        paddle.save(obj, buf)
        f.write(buf.getvalue())

    return _atomic_write(path, write)


def clean_stale_temp_files(folder, older_than=None):
    """Delete the temp files of the atomic writers (``.<name>.<random>.tmp``) that a killed
    process left in ``folder`` (not its subfolders): only names of that pattern, and only
    files last modified before ``older_than`` (default: this process's start), so another
    process's write in progress is left alone. Returns the deleted paths."""
    older_than = PROCESS_START if older_than is None else older_than
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        path = os.path.join(folder, name)
        try:
            if TEMP_FILE_RE.match(name) and os.path.isfile(path) and os.path.getmtime(path) < older_than:
                os.remove(path)
                removed.append(path)
        except OSError:
            pass
    return removed


# ----------------------------------------------------------------------------- output paths


def check_output_dir(path, flag, create=False):
    """The absolute ``path`` when it is, or can be created as, a writable folder; else a
    one-line ToolkitError naming ``flag``. ``create`` makes the folder."""
    given = path
    path = os.path.abspath(os.path.expanduser(os.fspath(path)))
    existing = path
    while not os.path.exists(existing) and os.path.dirname(existing) != existing:
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise ToolkitError(f"output folder cannot be created ({flag} {given}): {existing} is a file, "
                           f"not a folder; choose another {flag}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ToolkitError(f"output folder not writable ({flag} {given}): no write permission in "
                           f"{existing}; choose another {flag} or fix its permissions")
    if create:
        try:
            os.makedirs(path, exist_ok=True)
        except OSError as exc:
            raise ToolkitError(f"output folder cannot be created ({flag} {given}): {exc.strerror or exc}; "
                               f"choose another {flag}") from None
    return path


def check_output_file(path, flag):
    """The absolute ``path`` when a file can be written there (its folder is or can be made,
    it is not a folder, an existing file is writable); else a ToolkitError naming ``flag``."""
    given = path
    path = os.path.abspath(os.path.expanduser(os.fspath(path)))
    if os.path.isdir(path):
        raise ToolkitError(f"output file is a folder ({flag} {given}): give a file name, e.g. "
                           f"{os.path.join(given, 'metrics.json')}")
    check_output_dir(os.path.dirname(path), flag)
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise ToolkitError(f"output file not writable ({flag} {given}): fix its permissions or choose "
                           f"another {flag}")
    return path


# ----------------------------------------------------------------------------- misc


def read_npy_header(path):
    """``(shape, fortran_order, dtype, file_size, full_size)`` of a .npy file from its header
    alone (cheap enough for every file of a split); ``full_size`` is the size the header
    promises, so ``file_size < full_size`` means truncated. OSError / ValueError when the
    file is missing or not a .npy."""
    fmt = np.lib.format
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        major = fmt.read_magic(f)[0]
        if major not in (1, 2):  # a newer format: numpy reads the header (and maps the data)
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
            return arr.shape, np.isfortran(arr), arr.dtype, size, size
        shape, fortran, dtype = (fmt.read_array_header_1_0 if major == 1 else fmt.read_array_header_2_0)(f)
        return shape, fortran, dtype, size, f.tell() + int(np.prod(shape)) * dtype.itemsize


def resolve_split_dir(split, splits_dir=None):
    """Folder of a split: an existing folder path is used as is, else
    ``<splits_dir or <repo>/splits>/<split>``. Missing -> :class:`MissingFileError`
    (a ``FileNotFoundError`` and a :class:`ToolkitError`) that says how to fix it."""
    if split is None or str(split) == "":
        raise MissingFileError("no split given (--split): name a split or a folder")
    split = os.fspath(split)
    if os.path.isdir(split):
        return split
    base = os.fspath(splits_dir) if splits_dir else os.path.join(REPO_ROOT, "splits")
    path = os.path.join(base, split)
    if os.path.isdir(path):
        return path
    raise MissingFileError(
        f"split '{split}' not found ({path}): put the split's *_files.txt lists there, "
        f"pass a folder path as the split, or set --splits_dir")


def colormap_disp(disp, vmax_percentile=95):
    """Disparity (H,W) numpy array or tensor -> (H,W,3) uint8 RGB with the magma colour map.

    Normalised by [min, 95th percentile] as in Monodepth2's test_simple.
    """
    import matplotlib
    import matplotlib.cm as cm
    if hasattr(disp, "numpy"):
        disp = disp.numpy()
    d = np.squeeze(np.asarray(disp, dtype=np.float64))
    if d.ndim != 2:
        raise ValueError(f"colormap_disp expects an (H, W) disparity, got shape {d.shape}")
    vmin = float(d.min())
    vmax = float(np.percentile(d, vmax_percentile))
    if vmax <= vmin:
        vmax = vmin + 1e-8
    norm = matplotlib.colors.Normalize(vmin=vmin, vmax=vmax)
    mapper = cm.ScalarMappable(norm=norm, cmap="magma")
    return (mapper.to_rgba(d)[:, :, :3] * 255).astype(np.uint8)
