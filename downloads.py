"""Downloads that survive bad networks, and zip members that cannot escape their folder.

``download(url, dest, ...)`` fetches ``url`` into ``dest + '.part'`` with a socket timeout and a
progress line (bytes, rate, ETA: :class:`progress.ProgressLog`); an interrupted download is
resumed with an HTTP Range request when the server takes one (else started again), and a
short one (fewer bytes than Content-Length, a dropped connection) stays as ``.part`` with one
ToolkitError line saying to run again. The caller checks the file and moves it into place.
``file_lock`` makes processes take turns; ``unsafe_member`` / ``extract_member`` keep zip
extraction inside its folder and within the sizes a member declares. Used by
published_models.py.
"""
import contextlib
import hashlib
import http.client
import os
import re
import urllib.error
import urllib.request

from utils import ToolkitError

TIMEOUT_S = 60                  # socket timeout: nothing waits forever
MAX_DOWNLOAD = 4 << 30          # bytes: the largest published file is about 0.9 GB
CHUNK = 1 << 20


def reason(exc):
    """One line saying why a request failed."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        exc = exc.reason
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def hashes(path):
    """``(md5, sha256)`` hex digests of a file."""
    md5, sha = hashlib.md5(), hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            md5.update(block)
            sha.update(block)
    return md5.hexdigest(), sha.hexdigest()


def remove(path):
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)


def _open(url, offset):
    headers = {"User-Agent": "depth-hints-paddle"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=TIMEOUT_S)


def download(url, dest, what, manual_hint, log=print):
    """Download ``url`` to ``dest + '.part'`` (resumed from an existing .part when the server
    takes a Range request, else started again) and return that .part path, complete."""
    part = dest + ".part"
    for _attempt in range(3):
        offset = os.path.getsize(part) if os.path.isfile(part) else 0
        try:
            resp = _open(url, offset)
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code == 416 and offset:  # the .part is complete or longer than the file now is
                remove(part)
                continue
            raise ToolkitError(f"cannot download {what} from {url} ({reason(exc)}): {manual_hint}") from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            raise ToolkitError(f"cannot download {what} from {url} ({reason(exc)}): {manual_hint}") from None
        with resp:
            length = resp.headers.get("Content-Length")
            length = int(length) if length and length.isdigit() else None
            total = None if length is None else offset + length
            if offset:
                m = re.match(r"bytes (\d+)-\d+/(\d+|\*)", resp.headers.get("Content-Range", ""))
                if resp.status != 206 or not m or int(m.group(1)) != offset:
                    if resp.status == 206:  # a range we did not ask for: start again
                        remove(part)
                        continue
                    log(f"{what}: the server does not resume downloads, starting again")
                    offset, total = 0, length
                elif m.group(2) != "*":
                    total = int(m.group(2))
            if total is not None and total > MAX_DOWNLOAD:
                raise ToolkitError(f"refusing to download {what} from {url}: it is {total} bytes, more than "
                                   f"the {MAX_DOWNLOAD} a published file can be")
            log(f"{'resuming' if offset else 'downloading'} {what} from {url}"
                + (f" at byte {offset}" if offset else "") + (f" ({total} bytes)" if total else "")
                + f" to {part}")
            _copy(resp, part, offset, total, what)
            return part
    raise ToolkitError(f"cannot download {what} from {url} (the server answers every resume with a bad "
                       f"range): {manual_hint}")


def _copy(resp, part, offset, total, what):
    from progress import ProgressLog
    os.makedirs(os.path.dirname(part), exist_ok=True)
    done = offset
    with open(part, "ab" if offset else "wb") as f, \
            ProgressLog(None, "B", interval=10.0 if total else None, desc=what) as bar:
        bar.start(total, initial=offset)
        read = getattr(resp, "read1", resp.read)  # what has arrived: a stall loses nothing
        try:
            while True:
                block = read(CHUNK)
                if not block:
                    break
                f.write(block)
                done += len(block)
                if done > MAX_DOWNLOAD:
                    f.close()
                    remove(part)
                    raise ToolkitError(f"refusing to download {what}: more than {MAX_DOWNLOAD} bytes")
                bar.update(len(block))
        except (OSError, ValueError, http.client.HTTPException) as exc:  # reset, timeout, IncompleteRead
            why = reason(exc)
        else:
            why = None if total is None or done == total else "the connection closed early"
    if why:
        raise ToolkitError(f"download of {what} interrupted at {done} of {total or '?'} bytes ({why}): "
                           f"run the same command again to resume it from {part}")


@contextlib.contextmanager
def file_lock(path, what, log):
    """One fetch of a model at a time (several processes of a data-parallel run may ask)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"waiting for another process that is fetching {what} ({path})")
            fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)   # the holder removed the lock file: take the new one
    try:
        yield
    finally:
        remove(path)
        os.close(fd)


def unsafe_member(name):
    """True for a zip member name that is absolute or climbs out with '..' (zip-slip)."""
    parts = re.split(r"[\\/]", name)
    return (name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) is not None or ".." in parts
            or "\0" in name)


def extract_member(zf, info, out):
    """Copy one member to ``out``, never more bytes than it declares (CRC checked by zipfile)."""
    done = 0
    with zf.open(info) as src, open(out, "wb") as dst:
        for block in iter(lambda: src.read(CHUNK), b""):
            done += len(block)
            if done > info.file_size:
                raise ValueError(f"member '{info.filename}' is longer than it declares")
            dst.write(block)
