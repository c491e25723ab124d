"""One run per folder: ``<folder>/.lock`` holds the PID and host of the process that owns a training run folder,
so a second run gets one line naming the owner instead of deleting the first run's partial checkpoints. Released
when the owner ends (also at exit); a dead process's lock on this host is taken over with a line."""
import atexit
import contextlib
import os
import socket

from utils import ToolkitError


def pid_alive(pid):
    """Whether process ``pid`` of this host is running."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


class RunLock:
    """``with RunLock(folder, flag):`` (or :meth:`acquire` / :meth:`release`); ``log`` gets the stale-lock line."""

    def __init__(self, folder, flag, log=print):
        self.folder, self.flag, self.log = folder, flag, log
        self.path, self.held = os.path.join(folder, ".lock"), False
        self.owner = "{} {}".format(os.getpid(), socket.gethostname())

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
                if pid is not None and host and host != socket.gethostname():
                    raise ToolkitError("{} is in use by process {} on host {} ({}; lock {}): wait for that run to "
                                       "end or choose another folder; if it is gone, delete the lock file".format(
                                           self.folder, pid, host, self.flag, self.path))
                if pid is not None and pid != os.getpid() and pid_alive(pid):
                    raise ToolkitError("{} is in use by another run (process {} on this host; {}): wait for it "
                                       "to end, or choose another folder".format(self.folder, pid, self.flag))
                if pid != os.getpid():
                    self.log("taking over the lock of {} from process {}, which is no longer running".format(
                        self.folder, pid if pid is not None else "?"))
                with contextlib.suppress(FileNotFoundError):
                    os.remove(self.path)
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
        held, self.held = self.held, False
        if held and "{} {}".format(*self._read()) == self.owner:  # the lock file is still ours
            with contextlib.suppress(OSError):
                os.remove(self.path)

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
