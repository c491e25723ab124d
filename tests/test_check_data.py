"""Reliability (issue 13), bad data: no hang, no traceback. Each case is a line of
docs/TROUBLESHOOTING.md.

- a sample that fails to load during training or validation (0 or 2 loader workers) stops
  training with one line naming the file, after saving weights_last; --resume continues;
  the same in evaluate_depth; test_simple reports an unreadable image and does the rest;
- --check_data quick catches truncated / wrong-shape / wrong-dtype hints and empty or
  truncated images before training, --check_data full also NaN hints, hints that are not
  depths (negative, above the network's depth range) and corrupt JPEG data;
- check_training_data returns the (train, val) datasets it built, the trainer's datasets;
- the safe loading itself: SeededDataset never raises and leaves the global RNGs alone.

Runs that could hang (the bad-sample cases) run in a subprocess with a timeout.
"""
import os
import shutil
import time

import numpy as np
import pytest

import checkpoint
from utils import ToolkitError


# ----------------------------------------------------------------------------- bad samples


def _case_file(rel_kit, d, where, kind):
    if where == "train":
        return rel_kit.image(d, rel_kit.D1, 2, 2) if kind == "image" else rel_kit.hint(d, rel_kit.D1, 3, 1)
    return rel_kit.image(d, rel_kit.D2, 3, 4) if kind == "image" else rel_kit.hint(d, rel_kit.D2, 2, 3)


@pytest.mark.slow
@pytest.mark.parametrize("where,kind,workers", [("train", "image", 0), ("train", "hint", 2),
                                                ("val", "hint", 0), ("val", "image", 2)])
def test_bad_sample_stops_with_one_line_and_saves(run_data, where, kind, workers, rel_kit):
    """Used to hang forever (no worker: the error stayed in Paddle's reader thread; the
    validation loader never has workers) or to bury the message in tracebacks (workers)."""
    bad = _case_file(rel_kit, run_data, where, kind)
    backup = bad + ".good"
    shutil.copy(bad, backup)
    (rel_kit.write_garbage_jpeg if kind == "image" else rel_kit.write_nan_hint)(bad)
    args = rel_kit.train_args(run_data, workers=workers)
    r = rel_kit.run_script("train.py", args)
    line = rel_kit.assert_one_line_error(r, bad, "--resume", "weights_last")
    assert ("NaN" in line) if kind == "hint" else ("decode" in line or "cannot identify" in line), line
    state = os.path.join(run_data["logs"], "run", "models", "weights_last", checkpoint.STATE_FILE)
    st = checkpoint.load_trainer_state(state)
    assert st["step"] == 2 * st["epoch"] + st["batch_in_epoch"]  # whole steps only
    if (where, kind) == ("train", "image"):
        os.replace(backup, bad)  # fixed: --resume finishes the run
        r = rel_kit.run_script("train.py", args + ["--resume"])
        assert r.returncode == 0, r.stderr[-3000:]
        assert "Resuming from" in r.stdout
        st = checkpoint.load_trainer_state(os.path.join(run_data["logs"], "run", "models", "weights_1",
                                                        checkpoint.STATE_FILE))
        assert st["step"] == 4


# ----------------------------------------------------------------------------- --check_data


def test_check_data_quick_catches_broken_files(run_data, rel_kit):
    import datasets
    d = run_data
    datasets.check_training_data(rel_kit.train_opt(d))  # all good
    np.save(rel_kit.hint(d, rel_kit.D1, 2, 1), np.ones((64, 192), np.float32))        # (H, W): wrong shape
    np.save(rel_kit.hint(d, rel_kit.D1, 3, 1), np.ones((1, 64, 192), np.int32))       # wrong dtype
    p = rel_kit.hint(d, rel_kit.D1, 2, 2)
    data = open(p, "rb").read()
    open(p, "wb").write(data[: len(data) // 2])                                       # truncated hint
    p = rel_kit.image(d, rel_kit.D1, 3, 2)
    data = open(p, "rb").read()
    open(p, "wb").write(data[: len(data) // 2])                                       # truncated JPEG
    open(rel_kit.image(d, rel_kit.D2, 2, 1), "wb").close()                            # empty image
    rel_kit.write_nan_hint(rel_kit.hint(d, rel_kit.D2, 2, 2))                         # only full sees these two
    rel_kit.write_garbage_jpeg(rel_kit.image(d, rel_kit.D2, 2, 3))
    t0 = time.time()
    with pytest.raises(ToolkitError) as e:
        datasets.check_training_data(rel_kit.train_opt(d))
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("5 bad file(s) in the training data (2 image, 3 hint;")
    assert time.time() - t0 < 60  # generous; just not a decode of everything
    for needle in ("shape (64, 192), expected (1, H, W)", "dtype int32, expected float",
                   "truncated: ", "empty file", "precompute_depth_hints.py", "--check_data full"):
        assert needle in msg, (needle, msg)
    assert "0000000002.jpg (truncated or corrupt" in msg

    with pytest.raises(ToolkitError) as e:
        datasets.check_training_data(rel_kit.train_opt(d, ["--check_data", "full"]))
    msg = str(e.value)
    assert msg.startswith("7 bad file(s) in the training data (3 image, 4 hint; --check_data full)")
    assert "NaN" in msg and rel_kit.hint(d, rel_kit.D2, 2, 2) in msg and rel_kit.image(d, rel_kit.D2, 2, 3) in msg
    assert "more" not in msg  # every bad file listed


def test_check_data_full_reports_rate(run_data, capsys, rel_kit):
    import datasets
    datasets.check_training_data(rel_kit.train_opt(run_data, ["--check_data", "full"]))
    out = capsys.readouterr().out
    assert "images/s" in out and "0 bad" in out


def test_check_data_full_flags_hints_outside_the_depth_range(run_data, rel_kit):
    import datasets
    from datasets.check import HINT_MAX_DEPTH as MAX_DEPTH
    d, hint, D1, D2, _opt = run_data, rel_kit.hint, rel_kit.D1, rel_kit.D2, rel_kit.train_opt
    neg, big, empty = hint(d, D1, 2, 1), hint(d, D2, 2, 3), hint(d, D1, 3, 2)
    a = np.load(neg)
    a[0, 4, 6] = -0.25
    np.save(neg, a)
    a = np.load(big)
    a[0, 10, 20] = MAX_DEPTH + 1
    np.save(big, a)
    np.save(empty, np.zeros_like(np.load(empty)))                          # 0 = no hint: fine
    edge = hint(d, D2, 2, 4)
    a = np.load(edge)
    a[0, 0, 0] = MAX_DEPTH                                                  # the range's end: fine
    np.save(edge, a)
    datasets.check_training_data(_opt(d))                                   # quick reads headers only
    with pytest.raises(ToolkitError) as e:
        datasets.check_training_data(_opt(d, ["--check_data", "full"]))
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("2 bad file(s) in the training data (2 hint; --check_data full)")
    assert "{} (negative values (min -0.25)".format(neg) in msg
    assert "{} (values above the depth range (max 101 > 100)".format(big) in msg
    assert empty not in msg and edge not in msg and "precompute_depth_hints.py" in msg
    from datasets.check import check_file  # the values are looked at only by the full check
    assert check_file("hint", big, full=True).startswith("values above the depth range")
    assert check_file("hint", big) is None


def test_check_training_data_returns_the_trainers_datasets(run_data, rel_kit):
    """train.py may hand these to the trainer instead of reading the split files again."""
    import random

    import datasets
    opt = rel_kit.train_opt(run_data)
    train, val = datasets.check_training_data(opt)
    for ds, which, is_train in ((train, "train", True), (val, "val", False)):
        ref = datasets.build_dataset(opt, which, is_train=is_train)
        assert type(ds) is type(ref) and ds.is_train is is_train
        for attr in ("data_path", "filenames", "lines", "height", "width", "frame_idxs", "num_scales",
                     "img_ext", "use_depth_hints", "depth_hint_path", "split_file", "load_depth"):
            assert getattr(ds, attr) == getattr(ref, attr), attr
        a, b = ds.get_item(1, random.Random(5)), ref.get_item(1, random.Random(5))
        assert set(a) == set(b)
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])


@pytest.mark.slow
def test_check_data_cli_reports_truncated_hint(run_data, rel_kit):
    p = rel_kit.hint(run_data, rel_kit.D2, 2, 4)
    data = open(p, "rb").read()
    open(p, "wb").write(data[: len(data) // 2])
    r = rel_kit.run_script("train.py", rel_kit.train_args(run_data))
    rel_kit.assert_one_line_error(r, p, "truncated", "precompute_depth_hints.py")
    assert not os.path.isdir(os.path.join(run_data["logs"], "run", "models"))


@pytest.mark.slow
@pytest.mark.parametrize("workers", [0, 2])
def test_evaluate_depth_corrupt_image_is_one_line(depth_model, synthetic_kitti, eval_splits, tmp_path, workers,
                                                  rel_kit):
    data = str(tmp_path / "data")
    shutil.copytree(synthetic_kitti, data)
    bad = rel_kit.image({"data": data}, rel_kit.D2, 2, 5)
    rel_kit.write_garbage_jpeg(bad)
    args = rel_kit.eval_args(depth_model, data, eval_splits, "--metrics_out", str(tmp_path / "m.json"))
    args[args.index("--num_workers") + 1] = str(workers)
    r = rel_kit.run_script("evaluate_depth.py", args)
    rel_kit.assert_one_line_error(r, bad)
    assert not os.path.exists(tmp_path / "m.json")


@pytest.mark.slow
def test_test_simple_reports_unreadable_image_and_does_the_rest(depth_model, synthetic_kitti, tmp_path, capsys,
                                                                 rel_kit):
    import test_simple
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        shutil.copy(rel_kit.image({"data": synthetic_kitti}, rel_kit.D1, 2, i), folder / f"{i}.jpg")
    rel_kit.write_garbage_jpeg(str(folder / "1.jpg"))
    out = tmp_path / "out"
    rc = test_simple.main(["--image_path", str(folder), "--model_path", depth_model,
                           "--output_dir", str(out), "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 1, err
    assert sorted(os.listdir(out)) == ["0_disp.npy", "0_disp.png", "2_disp.npy", "2_disp.png"]
    lines = rel_kit.error_lines(err)
    assert any(str(folder / "1.jpg") in ln and "skipped" in ln for ln in lines), err
    assert "Traceback" not in err


# ----------------------------------------------------------------------------- sampling


def test_seeded_dataset_leaves_global_rng_alone_and_never_raises(run_data, rel_kit):
    import random

    import datasets
    opt = rel_kit.train_opt(run_data)
    ds = datasets.SeededDataset(datasets.build_dataset(opt, "train", is_train=True), 3)
    py, npy = random.getstate(), np.random.get_state()
    a = ds[5]
    assert random.getstate() == py and np.array_equal(np.random.get_state()[1], npy[1])
    np.testing.assert_array_equal(a[("color_aug", 0, 0)], ds[5][("color_aug", 0, 0)])
    rel_kit.write_nan_hint(rel_kit.hint(run_data, rel_kit.D1, 3, 1))
    marker = ds[1]  # key 1 = item 1 = "D1 1 r"
    batch = datasets.collate([a, marker])
    with pytest.raises(datasets.DataLoadError, match="NaN"):
        list(datasets.checked_batches([batch]))
    os.remove(rel_kit.image(run_data, rel_kit.D1, 2, 2))
    with pytest.raises(datasets.DataLoadError, match="image not found"):
        datasets.safe_loading.raise_if_load_error(ds[2])


def test_loader_failures_become_one_line():
    """Paddle's errors when a loader worker process dies (read from the queue, or raised by its
    SIGCHLD handler anywhere, even wrapped in a backward error) become one-line DataLoadErrors."""
    import datasets

    class Broken:
        def __iter__(self):
            yield {"x": np.ones(2)}
            raise SystemError("(Fatal) Blocking queue is killed because the data reader raises an exception.\n"
                              "  [Hint: ...]")

    it = datasets.checked_batches(Broken(), 2)
    assert "x" in next(it)
    with pytest.raises(datasets.DataLoadError, match=r"loader worker may have died .*--num_workers 2\)") as e:
        next(it)
    assert "\n" not in str(e.value)
    wrapped = OSError("(External) \n{\n  SystemError: (Fatal) DataLoader process (pid 7) exited is killed by "
                      "signal: Killed. (at data_loader.cc:185)\n}")
    err = datasets.worker_died(wrapped, 2, "continue with --resume")
    assert isinstance(err, datasets.DataLoadError) and "\n" not in str(err)
    assert "DataLoader process (pid 7) exited is killed" in str(err) and "--resume" in str(err)
    other = RuntimeError("something else")
    assert datasets.worker_died(other, 2) is other
