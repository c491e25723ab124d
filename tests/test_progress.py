"""progress.py: the lines a long job prints and logs when not on a terminal (rate, ETA,
messages), appended across runs; format_duration's known answers."""
import io
import re

from progress import ProgressLog, format_duration


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def test_format_duration():
    assert format_duration(4.4) == "4s"
    assert format_duration(184) == "3m04s"
    assert format_duration(2 * 3600 + 3 * 60 + 4) == "2h03m04s"
    assert format_duration(86400 + 2 * 3600 + 3 * 60) == "1d02h03m"


def test_lines_with_rate_and_eta_every_interval(tmp_path):
    clock, out, log = Clock(), io.StringIO(), tmp_path / "sub" / "job.log"
    with ProgressLog(100, "img", str(log), stream=out, interval=30, desc="hints", clock=clock) as prog:
        prog.message("start", log_only=True)
        clock.t += 10
        prog.update(4)           # 10 s < interval: nothing printed
        assert out.getvalue() == ""
        clock.t += 30
        prog.update(16)          # 20 images in 40 s
        prog.message("error: a.jpg: cannot decode image")
        clock.t += 20
        prog.update(80)          # the last item always gives a line
    lines = out.getvalue().splitlines()
    assert lines == ["hints 20/100 img (20.0 %) | 0.50 img/s | elapsed 40s | ETA 2m40s",
                     "error: a.jpg: cannot decode image",
                     "hints 100/100 img (100.0 %) | 1.67 img/s | elapsed 1m00s | ETA 0s"]
    logged = log.read_text().splitlines()
    assert [re.sub(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ", "", x) for x in logged] == ["start"] + lines
    # a second run (a resumed job) appends to the same log
    with ProgressLog(1, "img", str(log), stream=io.StringIO(), clock=clock) as prog:
        prog.message("resumed", log_only=True)
    assert log.read_text().splitlines()[:4] == logged and log.read_text().endswith("resumed\n")


def test_no_rate_yet_and_no_file():
    clock, out = Clock(), io.StringIO()
    prog = ProgressLog(10, "pair", None, stream=out, interval=0, clock=clock)
    assert prog.status() == "pair 0/10 pair (0.0 %) | 0.00 pair/s | elapsed 0s | ETA -"
    prog.update(0)
    prog.close()
    assert out.getvalue() == "pair 0/10 pair (0.0 %) | 0.00 pair/s | elapsed 0s | ETA -\n"
