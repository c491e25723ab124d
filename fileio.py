"""Reading and writing files safely: text lines, atomic writes (a temp file renamed into
place, so a kill or a full disk never leaves a partial file), the clean-up of a killed
process's temp files, output paths checked before any work, .npy headers read cheaply."""
import contextlib
import io
import os
import re
import tempfile
import time

import numpy as np

from utils import MissingFileError, ToolkitError

PROCESS_START = time.time()  # (about) when this process started: older temp files are stale
# the temp files of the atomic writers below: .<name>.<mkstemp's 8 random characters>.tmp
TEMP_FILE_RE = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")

_UMASK = os.umask(0)  # the umask can only be read by setting it: put it back at once
os.umask(_UMASK)
_FILE_MODE = 0o666 & ~_UMASK  # mode of a normally created file (mkstemp uses 0600)


def readlines(path):
    """A text file's lines without newlines, blank ones dropped; :class:`MissingFileError` naming a missing file."""
    if not os.path.isfile(path):
        raise MissingFileError(f"file not found ({path}): check the path / split name")
    with open(path, "r") as f:
        return [line for line in f.read().splitlines() if line.strip()]


def _atomic_write(path, write_fn, binary=True):
    """Write ``path`` via ``write_fn(fileobj)`` into a temp file in the same folder, then ``os.replace`` it into place:
    readers never see a partial file and a failure leaves no temp file behind."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb" if binary else "w") as f:
            write_fn(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    return path


def atomic_write_bytes(path, data):
    return _atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path, text):
    return _atomic_write(path, lambda f: f.write(text), binary=False)


def atomic_save_npy(path, array):
    """Atomically ``np.save`` ``array`` to exactly ``path`` (no '.npy' is appended)."""
    return _atomic_write(path, lambda f: np.save(f, np.asarray(array)))


def atomic_save_npz(path, **arrays):
    """Atomically ``np.savez_compressed`` the keyword arrays to exactly ``path``."""
    return _atomic_write(path, lambda f: np.savez_compressed(f, **arrays))


def atomic_paddle_save(obj, path):
    """Atomically ``paddle.save`` ``obj`` to ``path`` (through a BytesIO: paddle.save takes a path or a BytesIO)."""
    import paddle
    buf = io.BytesIO()
    paddle.save(obj, buf)
    return atomic_write_bytes(path, buf.getvalue())


def clean_stale_temp_files(folder, older_than=PROCESS_START):
    """Delete the atomic writers' temp files (``.<name>.<random>.tmp``) a killed process left in ``folder`` (not below)
    and last modified before ``older_than`` (default: this process's start, sparing others' writes); returns them."""
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    removed = []
    for name in names:
        path = os.path.join(folder, name)
        with contextlib.suppress(OSError):
            if TEMP_FILE_RE.match(name) and os.path.isfile(path) and os.path.getmtime(path) < older_than:
                os.remove(path)
                removed.append(path)
    return removed


def check_output_dir(path, flag, create=False):
    """Absolute ``path`` if it is or can be a writable folder (``create``: made), else ToolkitError naming ``flag``."""
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


def read_npy_header(path):
    """``(shape, fortran_order, dtype, file_size, full_size)`` of a .npy file from its header alone (cheap for a whole
    split); ``file_size < full_size`` (what the header promises) means truncated. OSError / ValueError if not a .npy."""
    fmt = np.lib.format
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        major = fmt.read_magic(f)[0]
        if major not in (1, 2):  # a newer format: numpy reads the header (and maps the data)
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
            return arr.shape, np.isfortran(arr), arr.dtype, size, size
        shape, fortran, dtype = (fmt.read_array_header_1_0 if major == 1 else fmt.read_array_header_2_0)(f)
        return shape, fortran, dtype, size, f.tell() + int(np.prod(shape)) * dtype.itemsize
