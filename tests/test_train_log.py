"""A run you can follow: the start-up summary and train.log (a line every --log_frequency
steps and per checkpoint), printed plainly when stdout is not a terminal."""
import re

import pytest


@pytest.mark.slow
def test_summary_and_train_log(synthetic_kitti, hints_dir, base_args, make_trainer, tmp_path, capsys):
    tr = make_trainer(base_args(synthetic_kitti, hints_dir, tmp_path, "logged",
                                extra=["--max_steps", "4", "--log_frequency", "2"]))
    assert tr.train() == 4
    out = capsys.readouterr().out
    log = open(tmp_path / "logged" / "train.log").read()
    lines = log.splitlines()
    assert all(re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ", line) for line in lines), log
    text = "\n".join(line[20:] for line in lines)
    assert re.search(r"^command: python train.py --data_path \S+ .*--max_steps 4 --log_frequency 2$", text, re.M), text
    assert re.search(r"^device: cpu \(.+\), 1 process\(es\); Paddle 3\.\S+, (no CUDA|CUDA)", text, re.M), text
    assert re.search(r"^data: 11 training samples, \d+ validation samples from ", text, re.M), text
    assert re.search(r"^schedule: --max_steps 4 of 5 steps per epoch x 20 epochs = 100 steps \(batch 2 per process\), "
                     r"from step 0$",
                     text, re.M), text
    assert "output: {}".format(tmp_path / "logged") in text
    steps = re.findall(r"^step (\d+)/4 \| epoch (\d+) \| loss (\S+) \| hint won (\S+) \| (\S+) images/s \| "
                       r"elapsed (\S+) \| ETA (\S+)$", text, re.M)
    assert [s[0] for s in steps] == ["2", "4"], text
    for _, epoch, loss, won, rate, _, _ in steps:
        assert epoch == "0" and float(loss) > 0 and 0 < float(won) < 1 and float(rate) > 0
    assert steps[-1][-1] == "0s"  # nothing left
    assert re.search(r"^step 4: checkpoint .*weights_last$", text, re.M), text
    # pytest's stdout is not a terminal: no progress bar, the same lines are printed
    assert "\r" not in out and "step 2/4 | epoch 0" in out and "device: cpu" in out
