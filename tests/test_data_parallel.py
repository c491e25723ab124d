"""Data-parallel training (paddle.distributed.launch, 2 CPU processes over gloo): a sample
that fails to load on one rank, or a stop signal to one rank, stops every rank at the same
step with weights_last saved, one error line each and no hang (the other rank used to wait
forever in the next gradient all-reduce, or be killed mid-save by the launcher)."""
import os
import re
import signal
import subprocess
import sys
import time

import pytest

import checkpoint
import run_guard
from utils import ToolkitError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TIMEOUT = 240


def _launch(rel_kit, d, cwd, extra=()):
    cmd = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2",
           os.path.join(ROOT, "train.py")] + rel_kit.train_args(d, extra=list(extra))
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.Popen(cmd, cwd=str(cwd), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)


def _wait(proc):
    try:
        out, _ = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"data-parallel run still running after {TIMEOUT} s (a rank hangs)")
    return proc.returncode, out


def _worker_logs(cwd):
    return [open(os.path.join(str(cwd), "log", f"workerlog.{r}")).read() for r in (0, 1)]


@pytest.mark.slow
def test_a_bad_sample_on_one_rank_stops_both(run_data, tmp_path, rel_kit):
    bad = rel_kit.hint(run_data, rel_kit.D1, 3, 1)  # the hint of one training line: only one rank loads it
    rel_kit.write_nan_hint(bad)
    rc, out = _wait(_launch(rel_kit, run_data, tmp_path))
    assert rc != 0, out[-3000:]
    logs = _worker_logs(tmp_path)
    errors = [rel_kit.error_lines(log) for log in logs]
    assert [len(e) for e in errors] == [1, 1], [log[-3000:] for log in logs] + [out[-2000:]]
    assert all("Traceback" not in log for log in logs)
    failing = [r for r in (0, 1) if bad in errors[r][0]]
    assert len(failing) == 1, errors
    other = 1 - failing[0]
    assert f"rank {failing[0]} of 2 could not load a sample" in errors[other][0]
    models = os.path.join(run_data["logs"], "run", "models")
    for e in errors:
        assert "training stopped at step" in e[0] and os.path.join(models, "weights_last") in e[0]
    assert checkpoint.find_resume_checkpoint(models) == os.path.join(models, "weights_last")


@pytest.mark.slow
def test_a_signal_to_one_rank_stops_both_and_saves(run_data, tmp_path, rel_kit):
    proc = _launch(rel_kit, run_data, tmp_path, extra=["--num_epochs", "200"])
    log0 = os.path.join(str(tmp_path), "log", "workerlog.0")
    deadline = time.time() + TIMEOUT
    while time.time() < deadline and proc.poll() is None:
        if os.path.isfile(log0) and "step 2/" in open(log0).read():
            break
        time.sleep(0.5)
    rank1 = [p for p in os.listdir("/proc") if p.isdigit() and _is_rank(int(p), 1, run_data["logs"])]
    assert len(rank1) == 1, "rank 1 not found"
    os.kill(int(rank1[0]), signal.SIGTERM)
    rc, out = _wait(proc)
    logs = _worker_logs(tmp_path)
    assert all("Traceback" not in log for log in logs), logs
    assert "Stopping on signal 15 at step" in logs[0]
    stops = [re.findall(r"Stopping on signal 15 at step (\d+)", log) for log in logs]
    assert len(stops[0]) == len(stops[1]) == 1 and stops[0] == stops[1], stops  # the same step on both ranks
    models = os.path.join(run_data["logs"], "run", "models")
    assert checkpoint.find_resume_checkpoint(models) == os.path.join(models, "weights_last")
    step = checkpoint.load_trainer_state(os.path.join(models, "weights_last", checkpoint.STATE_FILE))["step"]
    assert 2 <= step < 200, step  # 1 step per epoch: 4 lines, 2 ranks, batch 2


def _is_rank(pid, rank, log_dir):
    """Whether ``pid`` is a train.py process of this test's launch with PADDLE_TRAINER_ID ``rank``."""
    try:
        cmdline = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
        env = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
    except OSError:
        return False
    return (any(a.endswith(b"train.py") for a in cmdline) and b"PADDLE_TRAINER_ID=%d" % rank in env
            and log_dir.encode() in cmdline)


GLOO_TIMEOUT = ("[/paddle/third_party/gloo/gloo/transport/tcp/pair.cc:584] TIMEOUT self_rank = 0 "
                "pair_rank = 1 peer_str = [127.0.0.1]:46981")


def test_lost_rank_message():
    assert run_guard.lost_rank(RuntimeError(GLOO_TIMEOUT), 1, "m") is None  # one process: not ours
    assert run_guard.lost_rank(RuntimeError("DataLoader process (pid 7) exited"), 2, "m") is None
    err = run_guard.lost_rank(RuntimeError("C++ Traceback\n" + GLOO_TIMEOUT), 2, "logs/run/models")
    msg = str(err)
    assert "\n" not in msg and msg.startswith("data-parallel communication failed ([/paddle/third_party/gloo")
    assert "another rank probably stopped or died" in msg and msg.endswith("last checkpoint in logs/run/models")


@pytest.mark.slow
def test_a_failed_collective_is_one_line(run_data, monkeypatch, rel_kit, make_trainer):
    tr = make_trainer(rel_kit.train_args(run_data))
    tr.world_size = 2  # as in a data-parallel run whose other rank has gone

    def run_epoch():
        raise RuntimeError(GLOO_TIMEOUT)
    monkeypatch.setattr(tr, "run_epoch", run_epoch)
    with pytest.raises(ToolkitError, match=r"^data-parallel communication failed .*--resume"):
        tr.train()
