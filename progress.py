"""Progress of a long job you can follow on a terminal, under nohup and afterwards.

:class:`ProgressLog` shows a tqdm bar (with rate and ETA) when its stream is a terminal;
elsewhere (nohup, a batch scheduler, a pipe) it prints a plain line every
``interval`` seconds instead of the bar's carriage returns. Every such line, each message
and the final summary also go, time-stamped, to a text log file that is appended to, so
a resumed job continues the same log. Used by precompute_depth_hints.py; the trainer's
train_log.TrainLog does the same for training steps.
"""
import os
import sys
import time


def format_duration(seconds):
    """Seconds -> '1d02h03m', '2h03m04s', '3m04s' or '4s'."""
    s = int(max(0, round(seconds)))
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    if d:
        return "{}d{:02d}h{:02d}m".format(d, h, m)
    if h:
        return "{}h{:02d}m{:02d}s".format(h, m, s)
    return "{}m{:02d}s".format(m, s) if m else "{}s".format(s)


class ProgressLog:
    """Counts ``total`` items of ``unit``; see the module docstring. ``log_path`` None: no file.
    Use as a context manager (or call :meth:`close`)."""

    def __init__(self, total, unit, log_path=None, stream=None, interval=30.0, desc=None, clock=time.time):
        self.total, self.unit, self.desc = total, unit, desc or unit
        self.stream = stream or sys.stderr
        self.interval, self.clock = interval, clock
        self.done = 0
        self.t0 = self._last = clock()
        self.file = None
        if log_path is not None:
            os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
            self.file = open(log_path, "a", buffering=1)
        self.bar = None
        if getattr(self.stream, "isatty", lambda: False)():
            from tqdm import tqdm
            self.bar = tqdm(total=total, unit=unit, dynamic_ncols=True, smoothing=0.1, file=self.stream)

    def _log(self, text):
        if self.file is not None:
            self.file.write("{} {}\n".format(time.strftime("%Y-%m-%d %H:%M:%S"), text))

    def status(self):
        """'12/100 img (12.0 %) | 0.93 img/s | elapsed 13s | ETA 1m35s'."""
        elapsed = self.clock() - self.t0
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else float("nan")
        pct = 100.0 * self.done / max(self.total, 1)
        return "{} {}/{} {} ({:.1f} %) | {:.2f} {}/s | elapsed {} | ETA {}".format(
            self.desc, self.done, self.total, self.unit, pct, rate, self.unit, format_duration(elapsed),
            format_duration(eta) if eta == eta else "-")

    def update(self, n=1):
        """``n`` more items done; a status line when ``interval`` has passed (and at the end)."""
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        now = self.clock()
        if now - self._last >= self.interval or self.done >= self.total:
            self._last = now
            line = self.status()
            self._log(line)
            if self.bar is None:
                print(line, file=self.stream, flush=True)

    def message(self, text, log_only=False):
        """One line (an error, the summary) to the log file and, unless ``log_only``, the stream."""
        self._log(text)
        if log_only:
            return
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.file is not None:
            self.file.close()
            self.file = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
