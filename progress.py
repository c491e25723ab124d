"""The toolkit's one console/log-line writer, for a long job you can follow on a terminal, under nohup and afterwards:
a tqdm bar (rate, ETA) on a terminal, else a plain status line every ``interval`` seconds; every such line, each
message and the summary also go, time-stamped, to a text log that is appended to (a resumed job continues it)."""
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
    """Counts ``total`` items of ``unit`` (None: not until :meth:`start`); ``log_path`` None: no file; ``interval``
    None: status lines only when :meth:`update` is given one. A context manager (or call :meth:`close`)."""

    def __init__(self, total=None, unit="item", log_path=None, stream=None, interval=30.0, desc=None,
                 clock=time.time):
        self.unit, self.desc, self.stream = unit, desc or unit, stream or sys.stderr
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
        """``(elapsed seconds, items per second, ETA seconds or nan)`` of the items counted since :meth:`start`."""
        elapsed = self.clock() - self.t0
        rate = (self.done - self.initial) / elapsed if elapsed > 0 else 0.0
        return elapsed, rate, ((self.total - self.done) / rate if rate > 0 else float("nan"))

    def status(self):
        """'12/100 img (12.0 %) | 0.93 img/s | elapsed 13s | ETA 1m35s'."""
        elapsed, rate, eta = self.timing()
        return "{} {}/{} {} ({:.1f} %) | {:.2f} {}/s | elapsed {} | ETA {}".format(
            self.desc, self.done, self.total, self.unit, 100.0 * self.done / max(self.total, 1), rate, self.unit,
            format_duration(elapsed), format_duration(eta) if eta == eta else "-")

    def update(self, n=1, line=None, postfix=None):
        """``n`` more items done; a status ``line`` (given, due by ``interval``, or the last) goes to the log (and the
        stream if there is no bar)."""
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
        if self.bar is not None and not log_only:
            self.bar.write(text, file=self.stream)
        elif not log_only:
            print(text, file=self.stream, flush=True)

    def close(self):
        for handle in (self.bar, self.file):
            if handle is not None:
                handle.close()
        self.bar = self.file = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
