"""safe_load reads the toolkit's real files like paddle.load / np.load / torch.load (issue "Trust").

paddle.save state dicts (a model's, one with Monodepth2's height/width/use_stereo extras,
Adam's with its LR_Scheduler entry, a plain dict, a single Tensor, protocol 2), a folder
written by checkpoint.save_checkpoint with the trainer_state.pdstate pickle earlier
releases wrote, Monodepth2's gt_depths.npz object array and
PyTorch .pth files of both formats must load to the same keys, types, dtypes and values,
and the RNG states must restore the same random numbers. Crafted and damaged files are in
test_safe_load_payloads.py.

The PyTorch fixtures in tests/fixtures/ were written by ``python tools/make_torch_fixtures.py``
(torch 2.13.0+cpu); with torch installed the tests also write fresh ones and compare
against torch.load.
"""
import collections
import os
import pickle
import random

import numpy as np
import pytest

import safe_load
from utils import ToolkitError

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")


def _torch():
    try:
        import torch
    except Exception:  # noqa: BLE001  (not installed, or a broken install)
        pytest.skip("torch not importable")
    return torch


# ----------------------------------------------------------------------------- comparing


def assert_same(got, ref, where="root"):
    """Equal structure, types, keys (in order), dtypes, shapes and values."""
    import paddle
    if isinstance(ref, paddle.Tensor):
        assert isinstance(got, paddle.Tensor), (where, type(got))
        assert got.dtype == ref.dtype, where
        if not ref.name.startswith("generated_tensor"):   # paddle's own counter otherwise
            assert got.name == ref.name, (where, got.name, ref.name)
        got, ref = got.numpy(), ref.numpy()
    if isinstance(ref, np.ndarray):
        assert isinstance(got, np.ndarray), (where, type(got))
        assert got.dtype == ref.dtype and got.shape == ref.shape, (where, got.dtype, ref.dtype, got.shape, ref.shape)
        if ref.dtype.hasobject:
            for a, b in zip(got.flat, ref.flat):
                assert_same(a, b, where + "[]")
        else:
            assert np.array_equal(got, ref, equal_nan=ref.dtype.kind in "fc"), where
        return
    assert type(got) is type(ref), (where, type(got), type(ref))
    if isinstance(ref, dict):
        assert list(got) == list(ref), where
        for k in ref:
            assert_same(got[k], ref[k], f"{where}.{k}")
    elif isinstance(ref, (list, tuple)):
        assert len(got) == len(ref), where
        for i, (a, b) in enumerate(zip(got, ref)):
            assert_same(a, b, f"{where}[{i}]")
    else:
        assert got == ref, (where, got, ref)


# ----------------------------------------------------------------------------- paddle files


def _tiny_resnet():
    import paddle
    from paddle.vision.models.resnet import BasicBlock

    class Tiny(paddle.nn.Layer):
        def __init__(self):
            super().__init__()
            self.conv1 = paddle.nn.Conv2D(3, 8, 3, padding=1, bias_attr=False)
            self.bn1 = paddle.nn.BatchNorm2D(8)
            self.layer1 = paddle.nn.Sequential(BasicBlock(8, 8), BasicBlock(8, 8))
            self.fc = paddle.nn.Linear(8, 4)

        def forward(self, x):
            x = self.layer1(paddle.nn.functional.relu(self.bn1(self.conv1(x))))
            return self.fc(x.mean(axis=[2, 3]))

    return Tiny()


def _train_two_steps(model):
    import paddle
    sched = paddle.optimizer.lr.StepDecay(1e-3, step_size=1, gamma=0.5)
    opt = paddle.optimizer.Adam(learning_rate=sched, parameters=model.parameters())
    for _ in range(2):
        loss = model(paddle.rand([2, 3, 8, 8])).mean()
        loss.backward()
        opt.step()
        opt.clear_grad()
        sched.step()
    return opt, sched


@pytest.fixture(scope="module")
def paddle_files(tmp_path_factory):
    import paddle
    paddle.seed(0)
    folder = tmp_path_factory.mktemp("paddle_files")
    model = _tiny_resnet()
    opt, sched = _train_two_steps(model)
    files = {}
    files["model"] = str(folder / "model.pdparams")
    paddle.save(model.state_dict(), files["model"])                      # name-table state dict
    files["adam"] = str(folder / "adam.pdopt")
    paddle.save(opt.state_dict(), files["adam"])                         # with LR_Scheduler
    files["sched"] = str(folder / "sched.pdparams")
    paddle.save(sched.state_dict(), files["sched"])
    files["encoder_meta"] = str(folder / "encoder.pdparams")             # Tensors + ints: (name, ndarray)
    state = dict(model.state_dict())
    state.update(height=192, width=640, use_stereo=True, intrinsics=[0.58, 1.92, 0.5, 0.5], stereo_baseline=0.54)
    paddle.save(state, files["encoder_meta"])
    files["plain"] = str(folder / "plain.pdparams")
    paddle.save({"i": 3, "f": 2.5, "s": "text", "b": False, "none": None, "list": [1, (2, "x"), [3.5]],
                 "arr": np.arange(6, dtype=np.float64).reshape(2, 3), "int8": np.array([-1, 2], dtype=np.int8),
                 "np_scalar": np.int64(7), "nested": {"a": np.ones(2, dtype=np.float32), "b": "y"}}, files["plain"])
    files["tensor"] = str(folder / "tensor.pdtensor")
    paddle.save(paddle.to_tensor([[1.0, 2.0]]), files["tensor"])
    files["protocol2"] = str(folder / "protocol2.pdparams")
    paddle.save(model.state_dict(), files["protocol2"], protocol=2)
    return files, model, opt


@pytest.mark.parametrize("name", ["model", "adam", "sched", "encoder_meta", "plain", "tensor", "protocol2"])
def test_load_paddle_equals_paddle_load(paddle_files, name):
    import paddle
    path = paddle_files[0][name]
    # numpy (the default) is what paddle.load(return_numpy=True) gives
    assert_same(safe_load.load_paddle(path), paddle.load(path, return_numpy=True))
    # Tensors exactly where paddle.load puts them, with the same names and values
    assert_same(safe_load.load_paddle(path, return_numpy=False), paddle.load(path))


def test_load_paddle_state_dicts_are_numpy_and_keep_their_extras(paddle_files):
    files = paddle_files[0]
    enc = safe_load.load_paddle(files["encoder_meta"])
    assert isinstance(enc["conv1.weight"], np.ndarray) and enc["conv1.weight"].dtype == np.float32
    assert enc["height"] == 192 and enc["use_stereo"] is True and enc["intrinsics"] == [0.58, 1.92, 0.5, 0.5]
    adam = safe_load.load_paddle(files["adam"])
    assert adam["LR_Scheduler"] == {"last_epoch": 2, "last_lr": 0.00025}
    assert all(isinstance(v, np.ndarray) for k, v in adam.items() if k != "LR_Scheduler")


def test_numpy_state_dicts_load_into_models_and_adam(paddle_files):
    """What the callers (networks.load_weights_file -> set_state_dict, checkpoint.load_adam)
    do with the result works with numpy: same parameters, and the same next Adam step."""
    import paddle
    files, model, opt = paddle_files
    import networks
    fresh = _tiny_resnet()
    networks.load_state_dict_strict(fresh, safe_load.load_paddle(files["model"]), "model.pdparams")
    for (k, a), b in zip(model.state_dict().items(), fresh.state_dict().values()):
        assert np.array_equal(a.numpy(), b.numpy()), k

    def next_step(state):
        paddle.seed(3)
        m = _tiny_resnet()
        m.set_state_dict(paddle.load(files["model"]))
        sched = paddle.optimizer.lr.StepDecay(1e-3, step_size=1, gamma=0.5)
        o = paddle.optimizer.Adam(learning_rate=sched, parameters=m.parameters())
        # the accumulators are named after this process's parameters: rename the saved ones
        renamed = {}
        for (_, p_old), (_, p_new) in zip(model.named_parameters(), m.named_parameters()):
            for k, v in state.items():
                if k.startswith(p_old.name + "_"):
                    renamed[p_new.name + k[len(p_old.name):]] = v
        renamed["LR_Scheduler"] = state["LR_Scheduler"]
        o.set_state_dict(renamed)
        m(paddle.rand([2, 3, 8, 8])).mean().backward()
        o.step()
        return [p.numpy() for p in m.parameters()]

    for a, b in zip(next_step(paddle.load(files["adam"])), next_step(safe_load.load_paddle(files["adam"]))):
        assert np.array_equal(a, b)


def _trainer_state_like_trainer(step=10):
    """The dict Trainer.trainer_state() returns (trainer.py), for a run in progress."""
    import paddle
    import checkpoint
    sched = paddle.optimizer.lr.StepDecay(1e-4, step_size=15, gamma=0.1)
    opt = {"height": 192, "width": 640, "num_layers": 18, "frame_ids": [0, -1, 1], "scales": [0, 1, 2, 3],
           "use_stereo": False, "pose_model_type": "separate_resnet", "pose_model_input": "pairs",
           "predictive_mask": False, "batch_size": 12}
    assert set(opt) == set(checkpoint.RESUME_MUST_MATCH + ("batch_size",))
    return {"epoch": 1, "batch_in_epoch": 3, "step": step, "scheduler": sched.state_dict(),
            "paddle_rng": paddle.get_rng_state(), "numpy_rng": np.random.get_state(),
            "python_rng": random.getstate(), "val_position": (1, 1), "world_size": 1, "opt": opt}


@pytest.fixture
def keep_global_rngs():
    import paddle
    saved = paddle.get_rng_state(), np.random.get_state(), random.getstate()
    yield
    paddle.set_rng_state(saved[0])
    np.random.set_state(saved[1])
    random.setstate(saved[2])


def _draws():
    import paddle
    return paddle.rand([4]).numpy(), np.random.rand(4), [random.random() for _ in range(4)]


def _assert_draws(a, b):
    for x, y in zip(a, b):
        assert np.array_equal(np.asarray(x), np.asarray(y))


def test_checkpoint_folder_loads_safely(tmp_path, keep_global_rngs):
    """A folder written by checkpoint.save_checkpoint, as train.py writes it: every
    .pdparams / .pdopt equals paddle.load, the trainer state equals pickle.load and its RNG
    states restore the same random numbers."""
    import paddle
    import checkpoint
    paddle.seed(11)
    np.random.seed(12)
    random.seed(13)
    models = {"encoder": _tiny_resnet(), "depth": _tiny_resnet()}
    params = models["encoder"].parameters() + models["depth"].parameters()
    sched = paddle.optimizer.lr.StepDecay(1e-3, step_size=1, gamma=0.5)
    optimizer = paddle.optimizer.Adam(learning_rate=sched, parameters=params)
    for _ in range(2):
        loss = models["encoder"](paddle.rand([1, 3, 8, 8])).mean() + models["depth"](paddle.rand([1, 3, 8, 8])).mean()
        loss.backward()
        optimizer.step()
        optimizer.clear_grad()
        sched.step()
    meta = {"height": 192, "width": 640, "use_stereo": True, "intrinsics": [0.58, 1.92, 0.5, 0.5],
            "stereo_baseline": 0.54}
    state = _trainer_state_like_trainer()  # with the RNG objects, as the previous release pickled them
    folder = checkpoint.save_checkpoint(str(tmp_path / "weights_0"), models, optimizer, state, meta)
    expected = _draws()  # what follows the capture (this release records the RNG states at the save: the same)
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if name.endswith((".pdparams", ".pdopt")):
            assert_same(safe_load.load_paddle(path), paddle.load(path, return_numpy=True))
            assert_same(safe_load.load_paddle(path, return_numpy=False), paddle.load(path))
    new = checkpoint.load_trainer_state(os.path.join(folder, checkpoint.STATE_FILE))  # this release's JSON
    path = os.path.join(folder, checkpoint.LEGACY_STATE_FILE)  # as the previous release wrote it
    with open(path, "wb") as f:
        pickle.dump(state, f)
    with open(path, "rb") as f:
        ref = pickle.load(f)
    got = safe_load.load_legacy_trainer_state(path)
    assert checkpoint.load_trainer_state(path).keys() == got.keys() and set(new) == set(got) | {"format"}
    assert list(got) == list(ref)
    for k in ref:
        if k != "paddle_rng":
            assert_same(got[k], ref[k], k)
    assert [g.__getstate__() for g in got["paddle_rng"]] == [g.__getstate__() for g in ref["paddle_rng"]]
    data = safe_load.load_legacy_trainer_state(path, paddle_rng="data")
    assert all(isinstance(g, safe_load.PaddleGeneratorState) for g in data["paddle_rng"])
    for restored in (got, new):  # both formats restore the same random numbers
        paddle.seed(99)
        np.random.seed(98)
        random.seed(97)
        checkpoint.restore_rng_states(restored)
        _assert_draws(_draws(), expected)


# ----------------------------------------------------------------------------- numpy files


def _gt_depths_npz(path, seed=0):
    """As Monodepth2's export_gt_depth.py writes it: an object array of per-image maps."""
    rng = np.random.default_rng(seed)
    maps = [rng.random((5 + i, 7 + 2 * i)).astype(np.float32) for i in range(4)]
    np.savez_compressed(path, data=np.array(maps, dtype=object))
    return maps


def test_load_npz_gt_depths_object_array(tmp_path):
    path = str(tmp_path / "gt_depths.npz")
    maps = _gt_depths_npz(path)
    got = safe_load.load_npz(path)
    ref = np.load(path, allow_pickle=True)
    assert list(got) == list(ref.files) == ["data"]
    assert_same(got["data"], ref["data"])
    assert [m.shape for m in got["data"]] == [m.shape for m in maps]
    assert list(safe_load.load_npz(path, keys="data")) == ["data"]
    with pytest.raises(ToolkitError, match="holds no nothere"):
        safe_load.load_npz(path, keys=["nothere"])


def test_load_npz_and_npy_plain_and_object(tmp_path):
    plain = str(tmp_path / "plain.npz")
    np.savez(plain, a=np.arange(5, dtype=np.int16), b=np.asfortranarray(np.eye(3)), c=np.array(["ab", "c"]))
    assert_same(safe_load.load_npz(plain), dict(np.load(plain, allow_pickle=False)))
    obj = np.empty((2, 2), dtype=object)
    obj[0, 0], obj[0, 1], obj[1, 0], obj[1, 1] = np.zeros(3), "s", None, {"k": [1, 2]}
    for i, arr in enumerate([np.arange(12.0).reshape(3, 4), obj, np.asfortranarray(obj), np.array(5, dtype=">i4")]):
        p = str(tmp_path / f"a{i}.npy")
        np.save(p, arr)
        assert_same(safe_load.load_npy(p), np.load(p, allow_pickle=True))


# ----------------------------------------------------------------------------- torch files


def _expected_torch():
    return dict(np.load(os.path.join(FIXTURES, "torch_expected.npz"), allow_pickle=False))


def _check_fixture_values(got, expected):
    assert isinstance(got, collections.OrderedDict)
    assert (got["height"], got["width"], got["use_stereo"]) == (192, 640, False)
    assert type(got["height"]) is int and type(got["use_stereo"]) is bool
    assert got["nested"]["steps"] == [1, 2, 3] and got["nested"]["flag"] is True
    assert getattr(got["bn"], "_metadata") == collections.OrderedDict([("", {"version": 2})])
    flat = {}

    def walk(d, prefix=""):
        for k, v in d.items():
            if isinstance(v, np.ndarray):
                flat[prefix + k] = v
            elif isinstance(v, dict):
                walk(v, prefix + k + "/")
    walk(got)
    assert sorted(flat) == sorted(expected)
    for k, ref in expected.items():
        assert flat[k].dtype == ref.dtype and flat[k].shape == ref.shape and np.array_equal(flat[k], ref), k
        assert flat[k].flags.c_contiguous and flat[k].flags.writeable, k
    assert flat["scalar"].shape == () and flat["encoder.bn1.num_batches_tracked"].dtype == np.int64
    arrays = list(flat.values())   # base, view and transposed share one torch storage: not one buffer here
    assert not any(np.shares_memory(a, b) for i, a in enumerate(arrays) for b in arrays[i + 1:])


@pytest.mark.parametrize("name", ["torch_zip.pth", "torch_legacy.pth"])
def test_load_torch_fixtures_without_torch(name):
    _check_fixture_values(safe_load.load_torch(os.path.join(FIXTURES, name)), _expected_torch())


def _assert_equals_torch_load(got, ref, torch, where="root"):
    if isinstance(ref, torch.Tensor):
        ref = ref.detach()
        exp = (ref.float() if ref.dtype == torch.bfloat16 else ref).numpy()
        assert isinstance(got, np.ndarray) and got.dtype == exp.dtype and got.shape == exp.shape, where
        assert np.array_equal(got, exp), where
        return
    assert type(got) is type(ref), (where, type(got), type(ref))
    if isinstance(ref, dict):
        assert list(got) == list(ref), where
        assert getattr(got, "_metadata", None) == getattr(ref, "_metadata", None), where
        for k in ref:
            _assert_equals_torch_load(got[k], ref[k], torch, f"{where}.{k}")
    elif isinstance(ref, (list, tuple)):
        for i, (a, b) in enumerate(zip(got, ref)):
            _assert_equals_torch_load(a, b, torch, f"{where}[{i}]")
    else:
        assert got == ref, where


def test_load_torch_equals_torch_load(tmp_path):
    torch = _torch()
    from tools.make_torch_fixtures import make_fixtures
    zip_path, legacy_path, expected_path = make_fixtures(str(tmp_path))
    expected = dict(np.load(expected_path))
    for path in (zip_path, legacy_path):
        got = safe_load.load_torch(path)
        _assert_equals_torch_load(got, torch.load(path, weights_only=False), torch)
        _check_fixture_values(got, expected)
    # a real module's state dict (conv + bn, like Monodepth2's networks), both formats
    torch.manual_seed(1)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Linear(2, 2))
    for legacy in (False, True):
        p = str(tmp_path / f"net_{legacy}.pth")
        torch.save(net.state_dict(), p, _use_new_zipfile_serialization=not legacy)
        _assert_equals_torch_load(safe_load.load_torch(p), torch.load(p, weights_only=True), torch)
    # dtypes only the v3 rebuild carries (an untyped storage plus a torch dtype), and dtype values
    p = str(tmp_path / "v3.pth")
    torch.save({"u16": torch.tensor([1, 2, 60000], dtype=torch.uint16), "dtype": torch.float32}, p)
    got = safe_load.load_torch(p)
    assert got["u16"].dtype == np.uint16 and got["u16"].tolist() == [1, 2, 60000] and got["dtype"] == "torch.float32"


def test_big_parameter_slices_are_joined(tmp_path):
    """paddle.save with protocol 2/3 cuts parameters over 1 GiB into slices listed under
    UnpackBigParamInfor@@; paddle.load joins them, and so does load_paddle."""
    import paddle
    import pickle
    w = np.arange(12, dtype=np.float32).reshape(3, 4)
    flat = w.reshape(-1)
    saved = {"w@@.0": flat[:5], "w@@.1": flat[5:], "b": np.ones(2, np.float32),
             "UnpackBigParamInfor@@": {"w": {"OriginShape": (3, 4), "slices": ["w@@.0", "w@@.1"]}},
             "StructuredToParameterName@@": {"w": "linear_0.w_0", "b": "linear_0.b_0"}}
    path = str(tmp_path / "big.pdparams")
    with open(path, "wb") as f:
        pickle.dump(saved, f, protocol=2)
    got = safe_load.load_paddle(path)
    assert_same(got, paddle.load(path, return_numpy=True))
    assert list(got) == ["b", "w"] and np.array_equal(got["w"], w)
    assert_same(safe_load.load_paddle(path, return_numpy=False), paddle.load(path))
