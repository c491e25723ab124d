"""run_guard.LoaderWatchdog and --loader_timeout: a read that never returns (here the
training images replaced by named pipes that nobody writes to, mid-run) stops training
with weights_last saved, one error line and exit code 2, with 0 or 2 loader workers and
no loader process left behind; a batch that arrives in time is never touched."""
import io
import os
import subprocess
import sys
import time

import pytest

import checkpoint
from run_guard import LoaderWatchdog

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _exit(code):
    raise SystemExit(code)


def test_fires_only_after_the_timeout_of_one_wait():
    out, calls, codes = io.StringIO(), [], []
    wd = LoaderWatchdog(0.4, "training", on_timeout=lambda: calls.append(1) or "; saved X",
                        stream=out, exit=codes.append)
    for _ in range(4):  # batches that arrive in time, 0.2 s each
        wd.waiting()
        time.sleep(0.2)
        wd.done()
    assert not wd.fired and calls == []
    wd.waiting()  # a batch that never arrives
    deadline = time.time() + 10
    while not codes and time.time() < deadline:
        time.sleep(0.05)
    wd.close()
    assert codes == [2] and calls == [1] and wd.fired
    line = out.getvalue()
    assert line.count("\n") == 1 and line.startswith("error: no training batch arrived in 0 s")
    assert "; saved X; fix the data source, then continue with --resume" in line


class _StaleFirstRead(LoaderWatchdog):
    """The watcher's first read of the wait start sees an old wait (one that has just ended, as when it reads
    between the main thread's done() and the next waiting())."""

    reads = 0

    @property
    def _since(self):
        self.reads += 1
        return self._real - 100.0 if self.reads == 1 and self._real is not None else self._real

    @_since.setter
    def _since(self, value):
        self._real = value


def test_a_new_wait_is_not_timed_out_for_the_one_before():
    codes = []
    wd = _StaleFirstRead(2.0, stream=io.StringIO(), exit=codes.append)  # checks every 0.5 s
    wd.waiting()
    time.sleep(0.8)  # the first check reads a stale start 100 s ago; the wait itself is 0.5 s old
    wd.done()
    wd.close()
    assert wd.reads >= 2 and not wd.fired and codes == []


def test_zero_timeout_watches_nothing():
    wd = LoaderWatchdog(0, exit=_exit)
    wd.waiting()
    time.sleep(0.3)
    wd.done()
    wd.close()
    assert not wd.fired


def test_evaluation_stops_on_a_batch_that_never_arrives(monkeypatch, capsys, identity_encoder, ramp_decoder):
    import threading

    import numpy as np
    import paddle

    import evaluate_depth as ed
    unblock, codes = threading.Event(), []

    def fake_exit(code):  # os._exit would end pytest: record it and let the loader go on
        codes.append(code)
        unblock.set()
    monkeypatch.setattr(os, "_exit", fake_exit)

    class Loader:  # one batch, then a wait for the next that ends only when the watchdog fires
        def __len__(self):
            return 2

        def __iter__(self):
            yield {("color", 0, 0): paddle.to_tensor(np.ones((1, 3, 8, 16), np.float32))}
            unblock.wait(30)

    preds = ed.predict_disparities(identity_encoder, ramp_decoder, Loader(), progress=False, loader_timeout=0.5)
    assert preds.shape == (1, 8, 16) and codes == [2]
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: no evaluation batch arrived in 0 s")
    assert "then run it again (--loader_timeout 0 waits forever)" in err


# train.py with one change for the test: once MARKER exists, every image read waits forever
# (what a read from a dead network mount does), in the main process and in forked loader workers
DRIVER = """
import os, sys, threading
sys.path.insert(0, {root!r})
import datasets.mono_dataset as m
real = m.pil_loader
def stuck_when_marked(path):
    if os.path.exists({marker!r}):
        threading.Event().wait()
    return real(path)
m.pil_loader = stuck_when_marked
import train
sys.exit(train.main(sys.argv[1:]))
"""


@pytest.mark.slow
@pytest.mark.parametrize("workers", [0, 2])
def test_a_read_that_never_returns_stops_training_and_saves(run_data, tmp_path, workers, rel_kit):
    args = rel_kit.train_args(run_data, workers=workers, extra=["--num_epochs", "100", "--loader_timeout", "5"])
    marker = str(tmp_path / "reads_hang_now")
    code = DRIVER.format(root=ROOT, marker=marker)
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    log_dir = run_data["logs"]
    proc = subprocess.Popen([sys.executable, "-c", code] + args, cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    train_log = os.path.join(log_dir, "run", "train.log")
    deadline = time.time() + 120
    while time.time() < deadline and not (os.path.isfile(train_log) and "step 1/" in open(train_log).read()):
        time.sleep(0.05)
    open(marker, "w").close()
    try:
        out, err = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail("training still waits for its data after 180 s")
    assert proc.returncode == 2, err[-3000:]
    lines = rel_kit.error_lines(err)
    assert len(lines) == 1 and "Traceback" not in err, err[-3000:]
    models = os.path.join(log_dir, "run", "models")
    assert lines[0].startswith("error: no training batch arrived in 5 s: a read may never return")
    assert "saved to {}".format(os.path.join(models, "weights_last")) in lines[0]
    assert checkpoint.find_resume_checkpoint(models) == os.path.join(models, "weights_last")
    step = checkpoint.load_trainer_state(os.path.join(models, "weights_last", checkpoint.STATE_FILE))["step"]
    assert step >= 1
    # no loader worker is left waiting
    left = subprocess.run(["pgrep", "-f", log_dir], capture_output=True, text=True).stdout.split()
    assert left == [], left
