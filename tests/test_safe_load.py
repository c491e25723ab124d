"""safe_load: the loaders that cannot run code (issue "Trust").

Real files of every kind the toolkit reads (paddle.save state dicts, Adam state with its
LR_Scheduler entry, checkpoint.save_checkpoint folders, the trainer_state.pdstate pickle,
Monodepth2's gt_depths.npz object array, PyTorch .pth files of both formats) must load to
the same values as paddle.load / np.load / torch.load; crafted files whose unpickling would
create a marker file (os.system, eval, getattr/__import__ chains, functools.partial, or
abuse of the allowed reconstructors) must be refused with one-line UnsafeFileError naming
the file and the global, and the marker must never appear. Damaged files only ever raise
a ToolkitError.

The PyTorch fixtures in tests/fixtures/ were written by ``python tools/make_torch_fixtures.py``
(torch 2.13.0+cpu); with torch installed the tests also write fresh ones and compare
against torch.load.
"""
import collections
import io
import os
import pickle
import random
import shlex
import struct
import zipfile

import numpy as np
import pytest

import safe_load
from safe_load import UnreadableFileError, UnsafeFileError
from utils import MissingFileError, ToolkitError

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
SYSTEM_MODULE = os.system.__module__          # 'posix' (or 'nt')


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
        (models["encoder"](paddle.rand([1, 3, 8, 8])).mean() + models["depth"](paddle.rand([1, 3, 8, 8])).mean()).backward()
        optimizer.step()
        optimizer.clear_grad()
        sched.step()
    meta = {"height": 192, "width": 640, "use_stereo": True, "intrinsics": [0.58, 1.92, 0.5, 0.5],
            "stereo_baseline": 0.54}
    state = _trainer_state_like_trainer()
    expected = _draws()
    folder = checkpoint.save_checkpoint(str(tmp_path / "weights_0"), models, optimizer, state, meta)
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if name.endswith((".pdparams", ".pdopt")):
            assert_same(safe_load.load_paddle(path), paddle.load(path, return_numpy=True))
            assert_same(safe_load.load_paddle(path, return_numpy=False), paddle.load(path))
    path = os.path.join(folder, checkpoint.STATE_FILE)
    ref = checkpoint.load_trainer_state(path)
    got = safe_load.load_legacy_trainer_state(path)
    assert list(got) == list(ref)
    for k in ref:
        if k != "paddle_rng":
            assert_same(got[k], ref[k], k)
    assert [g.__getstate__() for g in got["paddle_rng"]] == [g.__getstate__() for g in ref["paddle_rng"]]
    data = safe_load.load_legacy_trainer_state(path, paddle_rng="data")
    assert all(isinstance(g, safe_load.PaddleGeneratorState) for g in data["paddle_rng"])
    paddle.seed(99)
    np.random.seed(98)
    random.seed(97)
    paddle.set_rng_state(got["paddle_rng"])
    np.random.set_state(got["numpy_rng"])
    random.setstate(got["python_rng"])
    _assert_draws(_draws(), expected)


# ----------------------------------------------------------------------------- plain-data state


def test_save_state_roundtrip_restores_rngs(tmp_path, keep_global_rngs):
    import paddle
    paddle.seed(21)
    np.random.seed(22)
    random.seed(23)
    state = _trainer_state_like_trainer()
    state.update(odd={1: "int key", "__tuple__": "tag-like key"}, od=collections.OrderedDict(b=1, a=2),
                 floats=[float("inf"), -float("inf"), 0.1], raw=b"\x00\xff", np_scalars=[np.float32(0.5), np.int64(-4)],
                 tensor=paddle.to_tensor([1.5, 2.5]))
    expected = _draws()
    json_path = safe_load.save_state(str(tmp_path / "trainer_state"), state)
    assert json_path.endswith("trainer_state.json") and os.path.isfile(str(tmp_path / "trainer_state.npz"))
    paddle.seed(1)
    got = safe_load.load_state(str(tmp_path / "trainer_state"))
    for k in ("epoch", "batch_in_epoch", "step", "scheduler", "numpy_rng", "python_rng", "val_position",
              "world_size", "opt", "odd", "od", "floats", "raw", "np_scalars"):
        assert_same(got[k], state[k], k)
    assert np.array_equal(got["tensor"], np.array([1.5, 2.5], dtype=np.float32))
    assert [g.__getstate__() for g in got["paddle_rng"]] == [g.__getstate__() for g in state["paddle_rng"]]
    paddle.set_rng_state(got["paddle_rng"])
    np.random.set_state(got["numpy_rng"])
    random.setstate(got["python_rng"])
    _assert_draws(_draws(), expected)
    assert isinstance(safe_load.load_state(json_path, paddle_rng="data")["paddle_rng"][0],
                      safe_load.PaddleGeneratorState)
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


def test_save_state_refuses_objects_and_a_mixed_pair(tmp_path):
    with pytest.raises(TypeError):
        safe_load.save_state(str(tmp_path / "s"), {"x": object()})
    with pytest.raises(TypeError):
        safe_load.save_state(str(tmp_path / "s"), {"x": np.array([None], dtype=object)})
    safe_load.save_state(str(tmp_path / "s"), {"a": np.arange(3)})
    json_text = open(tmp_path / "s.json").read()
    safe_load.save_state(str(tmp_path / "s"), {"a": np.arange(4)})
    open(tmp_path / "s.json", "w").write(json_text)          # the JSON of the first save, the npz of the second
    with pytest.raises(UnreadableFileError, match="belongs to another save"):
        safe_load.load_state(str(tmp_path / "s.json"))
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(UnreadableFileError):
        safe_load.load_state(str(tmp_path / "bad.json"))


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


@pytest.mark.parametrize("name", ["torch_zip.pth", "torch_legacy.pth"])
def test_load_torch_fixtures_without_torch(name):
    _check_fixture_values(safe_load.load_torch(os.path.join(FIXTURES, name)), _expected_torch())


def test_fixtures_are_small():
    assert sum(os.path.getsize(os.path.join(FIXTURES, f)) for f in os.listdir(FIXTURES)) < 50_000


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


def test_whole_torch_module_is_refused(tmp_path):
    torch = _torch()
    p = str(tmp_path / "model.pth")
    torch.save(torch.nn.Linear(2, 2), p)
    with pytest.raises(UnsafeFileError, match=r"torch\.nn\.modules\.linear\.Linear") as info:
        safe_load.load_torch(p)
    assert "\n" not in str(info.value) and p in str(info.value)


# ----------------------------------------------------------------------------- crafted payloads
#
# Payloads are raw pickle opcodes (no helper classes): what an attacker writes.


def _s(text):
    raw = text.encode("utf-8")
    return b"X" + struct.pack("<I", len(raw)) + raw                 # BINUNICODE


def _global2(module, name):
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"   # GLOBAL (protocol 0-3)


def _global4(module, name):
    return _s(module) + _s(name) + b"\x93"                          # STACK_GLOBAL (protocol 4+)


def _call(callee, *args):
    """``callee(*args)`` where args are opcode strings (1 to 3 of them)."""
    return callee + b"".join(args) + {1: b"\x85", 2: b"\x86", 3: b"\x87"}[len(args)] + b"R"


def _payloads(marker):
    cmd = "touch " + shlex.quote(str(marker))
    eval_expr = f"__import__('os').system({cmd!r}) and None or {{'a': 1}}"
    return {
        # refused global -> the name the message must show
        "os.system": (b"\x80\x02" + _call(_global2(SYSTEM_MODULE, "system"), _s(cmd)) + b".",
                      f"{SYSTEM_MODULE}.system"),
        "os.system (protocol 4)": (b"\x80\x04" + _call(_global4(SYSTEM_MODULE, "system"), _s(cmd)) + b".",
                                   f"{SYSTEM_MODULE}.system"),
        "subprocess": (b"\x80\x02" + _call(_global2("subprocess", "check_call"),
                                           b"]" + _s("touch") + b"a" + _s(str(marker)) + b"a") + b".",
                       "subprocess.check_call"),
        # stealth: unpickles to a valid-looking value ({'a': 1}) and touches the marker
        "eval": (b"\x80\x02" + _call(_global2("builtins", "eval"), _s(eval_expr)) + b".", "builtins.eval"),
        "getattr(__import__('os'), 'system')": (
            b"\x80\x02" + _call(_call(_global2("builtins", "getattr"),
                                      _call(_global2("builtins", "__import__"), _s("os")), _s("system")), _s(cmd))
            + b".", "builtins.getattr"),
        # partial(os.system, cmd)(): EMPTY_TUPLE + REDUCE calls the partial
        "functools.partial": (b"\x80\x02" + _call(_global2("functools", "partial"),
                                                  _global2(SYSTEM_MODULE, "system"), _s(cmd)) + b")R.",
                              "functools.partial"),
        "python 2 __builtin__.eval": (b"\x80\x02" + _call(_global2("__builtin__", "eval"), _s(eval_expr)) + b".",
                                      "builtins.eval"),
        "copyreg._reconstructor": (b"\x80\x02" + _call(_global2("copyreg", "_reconstructor"),
                                                       _global2(SYSTEM_MODULE, "system"),
                                                       _global2("builtins", "object"), _s(cmd)) + b".",
                                   "copyreg._reconstructor"),
        "operator.methodcaller": (b"\x80\x02" + _call(_global2("operator", "methodcaller"), _s("system")) + b".",
                                  "operator.methodcaller"),
        # a real-looking state dict with the call tucked into one value
        "inside a state dict": (b"\x80\x02}(" + _s("conv1.weight") + pickle.dumps(np.ones(3, np.float32), 2)[2:-1]
                                + _s("height") + _call(_global2(SYSTEM_MODULE, "system"), _s(cmd)) + b"u.",
                                f"{SYSTEM_MODULE}.system"),
        # an allowed reconstructor handed a class it must not build
        "numpy _reconstruct of another class": (
            b"\x80\x02" + _call(_global2("numpy._core.multiarray", "_reconstruct"),
                                _global2("collections", "OrderedDict"), b"K\x00\x85", b"C\x01b") + b".",
            "numpy array of class"),
    }


def test_payloads_are_live(tmp_path):
    """Sanity: plain pickle.loads of these bytes does run the command."""
    marker = tmp_path / "MARKER"
    payloads = _payloads(marker)
    for key in ("os.system", "eval", "getattr(__import__('os'), 'system')", "functools.partial"):
        result = pickle.loads(payloads[key][0])
        assert marker.exists(), key
        marker.unlink()
        if key == "eval":
            assert result == {"a": 1}


def _npy_with_pickle(payload, shape=(2,)):
    f = io.BytesIO()
    np.lib.format.write_array_header_1_0(f, {"descr": "|O", "fortran_order": False, "shape": shape})
    return f.getvalue() + payload


def _zip(members):
    f = io.BytesIO()
    with zipfile.ZipFile(f, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return f.getvalue()


def _torch_legacy_bytes(main_pickle):
    head = b"".join(pickle.dumps(x, protocol=2) for x in
                    (0x1950a86a20f9469cfc6c, 1001,
                     {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}))
    return head + main_pickle + pickle.dumps([], protocol=2)


# format -> (file name, wrap payload into a file, loader)
FORMATS = {
    "paddle": ("weights.pdparams", lambda p: p, safe_load.load_paddle),
    "trainer_state": ("trainer_state.pdstate", lambda p: p, safe_load.load_legacy_trainer_state),
    "npy": ("depth.npy", _npy_with_pickle, safe_load.load_npy),
    "npz": ("gt_depths.npz", lambda p: _zip({"data.npy": _npy_with_pickle(p)}), safe_load.load_npz),
    "torch_zip": ("encoder.pth", lambda p: _zip({"archive/data.pkl": p, "archive/version": b"3\n",
                                                 "archive/byteorder": b"little"}), safe_load.load_torch),
    "torch_legacy": ("encoder.pth", _torch_legacy_bytes, safe_load.load_torch),
}


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_crafted_files_are_refused_and_run_nothing(tmp_path, fmt):
    fname, wrap, loader = FORMATS[fmt]
    marker = tmp_path / "MARKER"
    for key, (payload, refused) in _payloads(marker).items():
        path = tmp_path / fname
        path.write_bytes(wrap(payload))
        with pytest.raises(UnsafeFileError) as info:
            loader(str(path))
        msg = str(info.value)
        assert "\n" not in msg, (fmt, key, msg)
        assert msg.startswith(f"refusing to load {path}: it asks to "), (fmt, key, msg)
        assert refused in msg and "sources you trust" in msg, (fmt, key, msg)
        assert not marker.exists(), (fmt, key)


def test_torch_payloads_through_the_torch_names(tmp_path):
    """Abuse of what load_torch allows: the persistent id of a whole module, a tensor
    rebuilt from a non-storage, a tensor subclass rebuilt through an arbitrary function."""
    marker = tmp_path / "MARKER"
    cmd = "touch " + shlex.quote(str(marker))
    cases = {
        "module persistent id": (b"\x80\x02(" + _s("module") + _global2(SYSTEM_MODULE, "system") + _s("f.py")
                                 + _s("src") + b"tQ.", f"{SYSTEM_MODULE}.system"),
        "module pid, allowed type": (b"\x80\x02(" + _s("module") + _global2("collections", "OrderedDict")
                                     + _s("f.py") + _s("src") + b"tQ.", "whole torch module"),
        "rebuild from non-storage": (b"\x80\x02" + _global2("torch._utils", "_rebuild_tensor_v2")
                                     + b"(" + _s(cmd) + b"K\x00)K\x00\x85\x89N" + b"tR.",
                                     "from something other than a storage"),
        "rebuild_from_type_v2": (b"\x80\x02" + _call(_global2("torch._tensor", "_rebuild_from_type_v2"),
                                                     _global2(SYSTEM_MODULE, "system"),
                                                     _global2("torch", "Tensor"), _s(cmd)) + b".",
                                 "torch._tensor._rebuild_from_type_v2"),
        "torch.load inside": (b"\x80\x02" + _call(_global2("torch.serialization", "load"), _s("/etc/x")) + b".",
                              "torch.serialization.load"),
    }
    for fmt in ("torch_zip", "torch_legacy"):
        fname, wrap, loader = FORMATS[fmt]
        for key, (payload, refused) in cases.items():
            path = tmp_path / fname
            path.write_bytes(wrap(payload))
            with pytest.raises(UnsafeFileError) as info:
                loader(str(path))
            msg = str(info.value)
            assert "\n" not in msg and str(path) in msg and refused in msg, (fmt, key, msg)
            assert not marker.exists()


def test_paddle_rng_class_cannot_be_abused(tmp_path):
    """GeneratorState is allowed in trainer states, rebuilt as checked data only."""
    gs = _global2("paddle.base.libpaddle", "GeneratorState")
    cases = [
        gs + b")\x81" + _s("touch x") + b"b.",                          # NEWOBJ + BUILD with a string
        gs + b")\x81}" + _s("__class__") + _global2("builtins", "object") + b"sb.",   # BUILD a dict
        gs + b")\x81(J\xff\xff\xff\xffK\x01K\x00]K\x01atb(J\xff\xff\xff\xffK\x01K\x00tb.",  # two states
        _call(gs, _s("x")) + b".",                                        # called with junk
    ]
    for i, body in enumerate(cases):
        path = tmp_path / f"s{i}.pdstate"
        path.write_bytes(b"\x80\x02" + body)
        with pytest.raises(ToolkitError) as info:
            safe_load.load_legacy_trainer_state(str(path))
        assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_numpy_reconstruction_is_checked_before_numpy_sees_it(tmp_path):
    """numpy's ndarray.__setstate__ reads past an object array's element list when the
    list is shorter than the shape (it crashes the interpreter: np.load(allow_pickle=True)
    of such a file segfaults); the loader refuses such states itself."""
    rec = _global2("numpy._core.multiarray", "_reconstruct")
    new_array = _call(rec, _global2("numpy", "ndarray"), b"K\x00\x85", b"C\x01b")
    odtype = _call(_global2("numpy", "dtype"), _s("O8"), b"\x89", b"\x88")
    fdtype = _call(_global2("numpy", "dtype"), _s("f4"), b"\x89", b"\x88")
    cases = {
        "short object list": new_array + b"(K\x01J\xa0\x86\x01\x00\x85" + odtype + b"\x89]K\x01atb.",
        "short raw data": new_array + b"(K\x01J\xa0\x86\x01\x00\x85" + fdtype + b"\x89C\x04abcdtb.",
        "negative shape": new_array + b"(K\x01J\xff\xff\xff\xff\x85" + fdtype + b"\x89C\x04abcdtb.",
        "two states": new_array + b"(K\x01K\x01\x85" + fdtype + b"\x89C\x04abcdtb(K\x01K\x01\x85" + odtype
                      + b"\x89]K\x01atb.",
        "BUILD on a real array": _call(_global2("numpy._core.numeric", "_frombuffer"), b"C\x04abcd", fdtype,
                                       b"K\x01\x85") + b"b.",
        "structured dtype": _call(_global2("numpy", "dtype"), _s("f4,i4"), b"\x89", b"\x88") + b".",
        "object scalar": _call(_global2("numpy._core.multiarray", "scalar"), odtype, _s("x")) + b".",
    }
    for key, body in cases.items():
        path = tmp_path / "x.pdparams"
        path.write_bytes(b"\x80\x02" + body)
        with pytest.raises(ToolkitError) as info:
            safe_load.load_paddle(str(path))
        assert "\n" not in str(info.value) and str(path) in str(info.value), key


def test_absurd_and_corrupt_pickles(tmp_path):
    deep = []
    for _ in range(300):
        deep = [deep]
    loop = []
    loop.append(loop)
    cases = {
        "memo index": (b"\x80\x04Nr\xff\xff\xff\x7f.", "absurd"),
        "huge BINBYTES8": (b"\x80\x04\x8e" + struct.pack("<Q", 1 << 60) + b"x.", "does not fit"),
        "huge FRAME": (b"\x80\x04\x95" + struct.pack("<Q", 1 << 50) + b"N.", "longer than the file"),
        "no STOP": (b"\x80\x02}q\x00", "truncated"),
        "not a pickle": (b"\xff\xfe not a pickle at all", "not a pickle opcode"),
        "a zip": (b"PK\x03\x04 rest of a zip", "zip archive"),
        "empty": (b"", "truncated"),
        "deep": (pickle.dumps(deep, protocol=2), "nested deeper"),
        "self reference": (pickle.dumps(loop, protocol=2), "contains itself"),
        "persistent id": (b"\x80\x02" + _s("x") + b"Q.", "persistent id"),
    }
    for key, (data, why) in cases.items():
        path = tmp_path / "w.pdparams"
        path.write_bytes(data)
        with pytest.raises(UnreadableFileError) as info:
            safe_load.load_paddle(str(path))
        msg = str(info.value)
        assert "\n" not in msg and msg.startswith(f"cannot read {path}: ") and why in msg, (key, msg)


def test_missing_folder_and_truncated_real_files(tmp_path, paddle_files):
    with pytest.raises(MissingFileError):
        safe_load.load_paddle(str(tmp_path / "nothere.pdparams"))
    with pytest.raises(UnreadableFileError, match="folder"):
        safe_load.load_paddle(str(tmp_path))
    gt = str(tmp_path / "gt.npz")
    _gt_depths_npz(gt)
    sources = {"model.pdparams": (paddle_files[0]["model"], safe_load.load_paddle),
               "gt.npz": (gt, safe_load.load_npz),
               "zip.pth": (os.path.join(FIXTURES, "torch_zip.pth"), safe_load.load_torch),
               "legacy.pth": (os.path.join(FIXTURES, "torch_legacy.pth"), safe_load.load_torch)}
    for name, (src, loader) in sources.items():
        data = open(src, "rb").read()
        for cut in (len(data) // 3, len(data) // 2, len(data) - 3):
            path = tmp_path / name
            path.write_bytes(data[:cut])
            with pytest.raises(UnreadableFileError) as info:
                loader(str(path))
            assert "\n" not in str(info.value) and str(path) in str(info.value), (name, cut)


def test_damaged_files_only_raise_toolkit_errors(tmp_path):
    """Random byte damage to real files: a value or a one-line ToolkitError, nothing else."""
    import paddle
    paddle.seed(0)
    small = str(tmp_path / "small.pdparams")
    state = dict(paddle.nn.Linear(3, 2).state_dict())
    state.update(height=192, use_stereo=False, intrinsics=[0.5, 0.5])
    paddle.save(state, small)
    gt = str(tmp_path / "gt.npy")
    np.save(gt, np.array([np.zeros((2, 3), np.float32), np.ones((1, 2), np.float32)], dtype=object))
    sources = [(small, safe_load.load_paddle), (gt, safe_load.load_npy),
               (os.path.join(FIXTURES, "torch_legacy.pth"), safe_load.load_torch),
               (os.path.join(FIXTURES, "torch_zip.pth"), safe_load.load_torch)]
    rng = random.Random(0)
    for src, loader in sources:
        data = open(src, "rb").read()
        for i in range(120):
            damaged = bytearray(data)
            for _ in range(rng.randint(1, 4)):
                damaged[rng.randrange(len(damaged))] = rng.randrange(256)
            path = tmp_path / ("d_" + os.path.basename(src))
            path.write_bytes(bytes(damaged))
            try:
                loader(str(path))
            except ToolkitError as exc:
                assert "\n" not in str(exc), str(exc)


def test_ordered_dict_attributes_cannot_shadow_its_methods(tmp_path):
    """BUILD on an OrderedDict sets attributes; one named like a method (items, keys, ...)
    would be called by whoever uses the dict: refused. torch's _metadata is kept."""
    od = _global2("collections", "OrderedDict") + b")R"
    bad = b"\x80\x02" + od + b"}" + _s("items") + _global2("builtins", "tuple") + b"sb."
    path = tmp_path / "od.pdparams"
    path.write_bytes(bad)
    with pytest.raises(UnsafeFileError, match="set attribute items of an OrderedDict"):
        safe_load.load_paddle(str(path))
    good = b"\x80\x02" + od + b"}" + _s("_metadata") + b"}" + _s("") + b"K\x01ssb" + b"(" + _s("w") + b"K\x02u."
    path.write_bytes(good)
    got = safe_load.load_paddle(str(path))
    assert got == collections.OrderedDict(w=2) and got._metadata == {"": 1}
