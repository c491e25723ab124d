"""One run per folder: a lock file holding the PID and host of the process that owns a training
run folder (or an export's output path).

A second run into the same folder gets one line naming the owner instead of deleting the
first run's partial checkpoints. The lock is released when the owner ends (also on an
exception, and at exit); a lock left by a process that died (kill -9, a crash) on this host
is detected and taken over with a line. A lock from another host cannot be checked: the line
says which host holds it and that the file may be deleted if that run is gone.
"""
import atexit
import os
import socket

from utils import ToolkitError

LOCK_NAME = ".lock"


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


class RunLock:
    """``with RunLock(folder, flag):`` (or :meth:`acquire` / :meth:`release`). ``log`` gets the
    line about a stale lock taken over."""

    def __init__(self, folder, flag, log=print):
        self.folder, self.flag, self.log = folder, flag, log
        self.path = os.path.join(folder, LOCK_NAME)
        self.owner = "{} {}".format(os.getpid(), socket.gethostname())
        self.held = False

    def _read(self):
        try:
            with open(self.path, encoding="utf-8", errors="replace") as f:
                pid, _, host = f.read(200).strip().partition(" ")
            return int(pid), host
        except (OSError, ValueError):
            return None, None  # being written, or garbage: treated as stale below

    def acquire(self):
        os.makedirs(self.folder, exist_ok=True)
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                pid, host = self._read()
                here = host == socket.gethostname()
                if pid is not None and host and not here:
                    raise ToolkitError("{} is in use by process {} on host {} ({}; lock {}): wait for that run to "
                                       "end or choose another folder; if it is gone, delete the lock file".format(
                                           self.folder, pid, host, self.flag, self.path))
                if pid is not None and pid != os.getpid() and _alive(pid):
                    raise ToolkitError("{} is in use by another run (process {} on this host; {}): wait for it "
                                       "to end, or choose another folder".format(self.folder, pid, self.flag))
                if pid != os.getpid():
                    self.log("taking over the lock of {} from process {}, which is no longer running".format(
                        self.folder, pid if pid is not None else "?"))
                try:
                    os.remove(self.path)
                except FileNotFoundError:
                    pass
                continue
            except OSError as exc:
                raise ToolkitError("cannot create {} ({}; {}): check that the folder is writable".format(
                    self.path, exc.strerror or exc, self.flag)) from None
            with os.fdopen(fd, "w") as f:
                f.write(self.owner + "\n")
            self.held = True
            atexit.register(self.release)
            return self
        raise ToolkitError("cannot take the lock {} ({}): another run keeps taking it; wait for it to end".format(
            self.path, self.flag))

    def release(self):
        if not self.held:
            return
        self.held = False
        try:
            with open(self.path, encoding="utf-8", errors="replace") as f:
                mine = f.read(200).strip() == self.owner
            if mine:
                os.remove(self.path)
        except OSError:
            pass

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
        return False
