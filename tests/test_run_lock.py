"""One run per folder: a second training into the same --log_dir/--model_name gets one line
naming the first run's PID (and leaves it alone); a lock left by a dead process is taken
over with a line."""
import os
import subprocess
import sys
import time

import pytest

from run_lock import RunLock
from utils import ToolkitError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def dead_pid():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_lock_release_and_stale_takeover(tmp_path):
    lines = []
    with RunLock(str(tmp_path), "--x", log=lines.append):
        assert (tmp_path / ".lock").read_text().split()[0] == str(os.getpid())
    assert not (tmp_path / ".lock").exists()
    import socket
    (tmp_path / ".lock").write_text("{} {}\n".format(dead_pid(), socket.gethostname()))
    with RunLock(str(tmp_path), "--x", log=lines.append):
        pass
    assert len(lines) == 1 and "which is no longer running" in lines[0]
    (tmp_path / ".lock").write_text("1 some-other-host\n")
    with pytest.raises(ToolkitError, match=r"in use by process 1 on host some-other-host .*--x.*delete the lock"):
        RunLock(str(tmp_path), "--x").acquire()


@pytest.mark.slow
def test_a_second_training_into_the_same_folder_is_refused(run_data, rel_kit):
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    args = rel_kit.train_args(run_data, extra=["--num_epochs", "6"])
    first = subprocess.Popen([sys.executable, os.path.join(ROOT, "train.py")] + args, cwd=ROOT, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = os.path.join(run_data["logs"], "run", "train.log")
    deadline = time.time() + 120
    while time.time() < deadline and not (os.path.isfile(log) and "step 1/" in open(log).read()):
        time.sleep(0.1)
    second = subprocess.run([sys.executable, os.path.join(ROOT, "train.py")] + args + ["--resume"], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=120)
    out, err = first.communicate(timeout=300)
    assert second.returncode == 2, second.stderr[-2000:]
    lines = rel_kit.error_lines(second.stderr)
    assert len(lines) == 1 and "in use by another run (process {} on this host".format(first.pid) in lines[0]
    assert first.returncode == 0, err[-2000:]  # the first run finished as if alone
    models = os.path.join(run_data["logs"], "run", "models")
    assert sorted(os.listdir(models)) == ["opt.json"] + ["weights_{}".format(i) for i in range(6)]
    assert not os.path.exists(os.path.join(run_data["logs"], "run", ".lock"))
