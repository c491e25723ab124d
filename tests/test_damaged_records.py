"""A checkpoint whose records are damaged (a height that is not a number, a NaN baseline, an
epoch that is not a count) is one line naming the file, not a traceback or NaN depth."""
import json
import pickle

import numpy as np
import pytest

import checkpoint
import model_loader
from utils import ToolkitError

GOOD = {"height": 64, "width": 192, "use_stereo": True, "intrinsics": [0.58, 1.92, 0.5, 0.5],
        "stereo_baseline": 0.54}


def test_good_meta_reads_back():
    assert model_loader.read_meta(dict(GOOD), "e.pdparams") == dict(GOOD, stereo_baseline=0.54)
    old = {"height": np.array(192), "width": np.array(640), "use_stereo": np.array(False)}  # converted Monodepth2
    meta = model_loader.read_meta(old, "e.pdparams")
    assert (meta["height"], meta["width"], meta["use_stereo"], meta["stereo_baseline"]) == (192, 640, False, 0.54)


@pytest.mark.parametrize("key,value", [("height", "abc"), ("width", None), ("height", float("nan")),
                                       ("stereo_baseline", float("nan")), ("stereo_baseline", -1.0),
                                       ("intrinsics", [0.5, "x", 1, 1]), ("intrinsics", [0.5, 0.5])])
def test_damaged_meta_is_one_line(key, value):
    with pytest.raises(ToolkitError) as err:
        model_loader.read_meta(dict(GOOD, **{key: value}), "/m/encoder.pdparams")
    assert "/m/encoder.pdparams" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("legacy", [False, True])
@pytest.mark.parametrize("key,value", [("epoch", "x"), ("step", -1), ("batch_in_epoch", 1.5), ("step", True)])
def test_damaged_trainer_state_is_one_line(tmp_path, key, value, legacy):
    state = dict({"epoch": 1, "batch_in_epoch": 0, "step": 5}, **{key: value})
    if legacy:  # an earlier release's pickle
        path = tmp_path / checkpoint.LEGACY_STATE_FILE
        path.write_bytes(pickle.dumps(state))
    else:
        path = tmp_path / checkpoint.STATE_FILE
        path.write_text(json.dumps(dict(state, format=checkpoint.STATE_FORMAT)))
    with pytest.raises(ToolkitError, match="records a bad {}".format(key)):
        checkpoint.load_trainer_state(str(path))
