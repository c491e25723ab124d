"""Progress of a long job you can follow on a terminal, under nohup and afterwards.

:class:`ProgressLog` shows a tqdm bar (with rate and ETA) when its stream is a terminal;
elsewhere (nohup, a batch scheduler, a pipe) it prints a plain line every
``interval`` seconds instead of the bar's carriage returns. Every such line, each message
and the final summary also go, time-stamped, to a text log file that is appended to, so
a resumed job continues the same log. The one console/log-line writer of the toolkit:
precompute_depth_hints.py counts images with it, train_log.TrainLog writes the training
run's lines through it.
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
    """Counts ``total`` items of ``unit``; see the module docstring. ``log_path`` None: no file;
    ``total`` None: no count until :meth:`start`; ``interval`` None: status lines only when
    :meth:`update` is given one. Use as a context manager (or call :meth:`close`)."""

    def __init__(self, total=None, unit="item", log_path=None, stream=None, interval=30.0, desc=None,
                 clock=time.time):
        self.unit, self.desc = unit, desc or unit
        self.stream = stream or sys.stderr
        self.interval, self.clock = interval, clock
        self.file = self.bar = None
        if log_path is not None:
            os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
            self.file = open(log_path, "a", buffering=1)
        self.start(total)

    def start(self, total, initial=0):
        """Begin counting (again): the bar on a terminal, the clock for rate and ETA."""
        self.total, self.done, self.initial = total, initial, initial
        self.t0 = self._last = self.clock()
        if total is not None and getattr(self.stream, "isatty", lambda: False)():
            from tqdm import tqdm
            self.bar = tqdm(total=total, initial=min(initial, total), unit=self.unit, dynamic_ncols=True,
                            smoothing=0.1, file=self.stream)

    def _log(self, text):
        if self.file is not None:
            self.file.write("{} {}\n".format(time.strftime("%Y-%m-%d %H:%M:%S"), text))

    def timing(self):
        """``(elapsed seconds, ETA seconds or nan)`` of the items counted since :meth:`start`."""
        elapsed = self.clock() - self.t0
        rate = (self.done - self.initial) / elapsed if elapsed > 0 else 0.0
        return elapsed, ((self.total - self.done) / rate if rate > 0 else float("nan"))

    def status(self):
        """'12/100 img (12.0 %) | 0.93 img/s | elapsed 13s | ETA 1m35s'."""
        elapsed, eta = self.timing()
        rate = (self.done - self.initial) / elapsed if elapsed > 0 else 0.0
        pct = 100.0 * self.done / max(self.total, 1)
        return "{} {}/{} {} ({:.1f} %) | {:.2f} {}/s | elapsed {} | ETA {}".format(
            self.desc, self.done, self.total, self.unit, pct, rate, self.unit, format_duration(elapsed),
            format_duration(eta) if eta == eta else "-")

    def update(self, n=1, line=None, postfix=None):
        """``n`` more items done. A status ``line`` (given, or when ``interval`` has passed and at
        the end) goes to the log file, and to the stream when there is no bar."""
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            if postfix:
                self.bar.set_postfix(postfix)
        now = self.clock()
        if line is None and self.interval is not None and (now - self._last >= self.interval
                                                           or self.done >= self.total):
            line = self.status()
        if line is not None:
            self._last = now
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
