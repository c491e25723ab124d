"""A checkpoint folder of the previous release (its trainer state a pickle,
trainer_state.pdstate, read through the safe loader now) still resumes, and exactly as this
release's own checkpoint of the same state does."""
import os
import pickle
import random
import shutil

import numpy as np
import paddle
import pytest

import checkpoint


@pytest.mark.slow
def test_a_previous_release_checkpoint_resumes(run_data, rel_kit, make_trainer):
    a = make_trainer(rel_kit.train_args(run_data, "a", extra=["--num_epochs", "3", "--max_steps", "3"]))
    assert a.train() == 3
    models = os.path.join(run_data["logs"], "a", "models")
    shutil.copytree(models, os.path.join(run_data["logs"], "old", "models"))
    old = os.path.join(run_data["logs"], "old", "models", "weights_last")
    state = checkpoint.load_trainer_state(os.path.join(old, checkpoint.STATE_FILE))
    del state["format"]
    checkpoint.restore_rng_states(state)  # the RNG objects themselves, as the previous release pickled them
    state.update(paddle_rng=paddle.get_rng_state(), numpy_rng=np.random.get_state(), python_rng=random.getstate())
    with open(os.path.join(old, checkpoint.LEGACY_STATE_FILE), "wb") as f:
        pickle.dump(state, f)  # what the previous release wrote: a pickle of the same dict
    os.remove(os.path.join(old, checkpoint.STATE_FILE))
    finals = []
    for name in ("a", "old"):
        tr = make_trainer(rel_kit.train_args(run_data, name, extra=["--num_epochs", "3", "--resume"]))
        assert (tr.epoch, tr.batch_in_epoch, tr.step) == (1, 1, 3)
        assert tr.train() == 6
        finals.append({k: v.numpy() for k, v in tr.models["depth"].state_dict().items()})
    for k in finals[0]:
        np.testing.assert_array_equal(finals[0][k], finals[1][k], err_msg=k)
    # the resumed run writes this release's format
    assert os.path.isfile(os.path.join(run_data["logs"], "old", "models", "weights_2", checkpoint.STATE_FILE))
