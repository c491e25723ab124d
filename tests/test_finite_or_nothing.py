"""Finite or nothing: a checkpoint whose weights are not all finite is never written, and the
non-finite-loss line names the newest checkpoint that exists, or says there is none."""
import os

import numpy as np
import paddle
import pytest

import checkpoint
from utils import ToolkitError


def test_save_checkpoint_refuses_non_finite_weights(tmp_path):
    net = paddle.nn.Linear(3, 2)
    folder = str(tmp_path / "weights_0")
    checkpoint.save_checkpoint(folder, {"depth": net})
    good = open(os.path.join(folder, "depth.pdparams"), "rb").read()
    net.weight.set_value(np.array([[1, 2], [np.nan, 0], [0, 0]], dtype="float32"))
    with pytest.raises(ToolkitError, match=r"refusing to save checkpoint .*weights_0: depth\.weight holds NaN"):
        checkpoint.save_checkpoint(folder, {"depth": net})
    assert open(os.path.join(folder, "depth.pdparams"), "rb").read() == good  # the old one, untouched
    assert sorted(os.listdir(tmp_path)) == ["weights_0"]  # no .partial left


@pytest.mark.slow
def test_a_first_step_nan_saves_nothing_and_says_so(run_data, rel_kit, make_trainer):
    tr = make_trainer(rel_kit.train_args(run_data, "nan0", extra=["--max_steps", "1"]))
    orig = tr.loss

    def poisoned(inputs, outputs):
        losses = orig(inputs, outputs)
        losses["loss"] = losses["loss"] * float("nan")
        return losses
    poisoned.warp_sources = orig.warp_sources
    tr.loss = poisoned
    with pytest.raises(ToolkitError, match="non-finite loss nan at step 0 .*no checkpoint was saved"):
        tr.train()
    models = os.path.join(run_data["logs"], "nan0", "models")
    assert checkpoint.list_checkpoints(models) == []
