"""Untrusted files through every entry point (issue "Trust", the "Must show").

``paddle.load``, ``np.load(allow_pickle=True)`` and ``torch.load(weights_only=False)`` are
``pickle.load``: a weights file, an optimizer or trainer state, a ground-truth ``.npz`` or a
``.npy`` of predictions can carry code that runs while it is read. Each file below carries a
payload whose unpickling would ``touch`` a marker file (raw pickle opcodes, as an attacker
writes them: ``os.system``, and two stealth forms that give a valid value back, a
``builtins.eval`` and a ``getattr(__import__('os'), 'system')`` chain), tucked into an
otherwise valid file. Every command-line entry point that reads such a file must refuse it:
exit code 2, one ``error:`` line naming the file, and the marker never appears.

``test_payloads_are_live`` shows the payloads do run under plain pickle, so a test that
passes here is not passing because its payload is broken.
"""
import io
import os
import pickle
import shutil
import struct
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import safe_load

pytestmark = pytest.mark.slow

SYSTEM_MODULE = os.system.__module__      # 'posix'
KINDS = ("os.system", "eval", "getattr")  # the last two are stealth: they return a valid value
REFUSED = {"os.system": f"{SYSTEM_MODULE}.system", "eval": "builtins.eval", "getattr": "builtins.getattr"}
NETS = ("encoder", "depth", "pose_encoder", "pose")
TIMEOUT = 300



# ----------------------------------------------------------------------------- payloads (raw pickle opcodes)


def _s(text):
    raw = text.encode("utf-8")
    return b"X" + struct.pack("<I", len(raw)) + raw                 # BINUNICODE


def _global(module, name):
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"   # GLOBAL


def _touch(marker):
    cmd = "touch " + str(marker)
    assert "'" not in cmd and "\n" not in cmd
    return cmd


def _literal(value):
    """A Python expression giving ``value`` back (what a stealth payload returns)."""
    if isinstance(value, np.ndarray):
        return f"__import__('numpy').zeros({tuple(value.shape)!r}, {value.dtype.str!r})"
    return repr(value)


def payload(kind, marker, value=0):
    """Opcodes (no STOP) of a call that touches ``marker``; the stealth kinds evaluate to
    ``value`` (``getattr``: to os.system's 0)."""
    cmd = _touch(marker)
    if kind == "os.system":   # the classic: b"cposix\nsystem\n(S'touch /tmp/x'\ntR"
        return _global(SYSTEM_MODULE, "system") + b"(S'" + cmd.encode() + b"'\ntR"
    if kind == "eval":
        expr = f"__import__('os').system({cmd!r}) or {_literal(value)}"
        return _global("builtins", "eval") + _s(expr) + b"\x85R"
    if kind == "getattr":     # getattr(__import__('os'), 'system')(cmd)
        imp = _global("builtins", "__import__") + _s("os") + b"\x85R"
        system = _global("builtins", "getattr") + imp + _s("system") + b"\x86R"
        return system + _s(cmd) + b"\x85R"
    raise ValueError(kind)


def dict_pickle(state, key=None, kind=None, marker=None):
    """A protocol-2 pickle of the dict ``state`` in which the value of ``key`` (its real
    value, or a new entry) is the payload ``kind``; ``kind`` None: the clean dict."""
    state = dict(state)
    if kind is None:
        return pickle.dumps(state, protocol=2)
    value = state.pop(key, 0)
    body = pickle.dumps(state, protocol=2)
    assert body.endswith(b"u."), "a non-empty dict pickle ends with SETITEMS, STOP"
    return body[:-2] + _s(key) + payload(kind, marker, value) + b"u."


def victim(state):
    """The entry a payload replaces: the first array of the state dict."""
    return next(k for k in sorted(state) if isinstance(state[k], np.ndarray))


def npy_bytes(data_pickle):
    """A .npy file of an object array whose data is ``data_pickle`` (how np.save writes them)."""
    f = io.BytesIO()
    np.lib.format.write_array_header_1_0(f, {"descr": "|O", "fortran_order": False, "shape": (8,)})
    return f.getvalue() + data_pickle


def gt_pickle(kind, marker):
    """The pickle inside gt_depths.npz's ``data.npy``: stealth forms return the 8 maps."""
    if kind == "os.system":
        return b"\x80\x02" + payload(kind, marker) + b"."
    if kind == "getattr":
        return b"\x80\x02" + payload(kind, marker) + b"."
    cmd = _touch(marker)
    maps = ("__import__('numpy').array([__import__('numpy').full((96, 320), 10.0, 'float32')] * 8 + [None], "
            "dtype=object)[:-1]")
    return b"\x80\x02" + _global("builtins", "eval") + _s(f"__import__('os').system({cmd!r}) or {maps}") + b"\x85R."


def zip_bytes(members):
    f = io.BytesIO()
    with zipfile.ZipFile(f, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return f.getvalue()


def torch_zip(data_pkl):
    """A PyTorch >= 1.6 .pth (a zip with archive/data.pkl), built by hand."""
    return zip_bytes({"archive/data.pkl": data_pkl, "archive/version": b"3\n", "archive/byteorder": b"little"})


def torch_legacy(main_pickle):
    """A PyTorch < 1.6 .pth: magic number, protocol, sys info, the object, the storage keys."""
    info = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}
    head = b"".join(pickle.dumps(x, protocol=2) for x in (0x1950a86a20f9469cfc6c, 1001, info))
    return head + main_pickle + pickle.dumps([], protocol=2)


TORCH_META = {"height": 192, "width": 640, "use_stereo": True}


# ----------------------------------------------------------------------------- running the entry points


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(script, args, env=None):
    """Run an entry point of the repository as a user does; the CompletedProcess."""
    env = dict(os.environ, PYTHONWARNINGS="ignore", **(env or {}))
    root = ROOT
    return subprocess.run([sys.executable, os.path.join(root, script)] + [str(a) for a in args], cwd=root,
                          env=env, capture_output=True, text=True, timeout=TIMEOUT)


def assert_refused(rel_kit, r, path, marker, *needles):
    """Exit 2, no traceback, one ``error:`` line naming ``path`` (and the needles), on a
    line of its own (nothing of the error on the lines after it), and no marker."""
    assert not os.path.exists(marker), ("the payload ran", r.stderr[-2000:])
    line = rel_kit.assert_one_line_error(r, str(path), *needles)
    after = r.stderr[r.stderr.index(line) + len(line):]
    assert not after.strip(), ("the error goes on after its line", after[:500])
    return line


# ----------------------------------------------------------------------------- valid files to spoil


@pytest.fixture(scope="module")
def trained(synthetic_kitti, hints_dir, tmp_path_factory, rel_kit, make_trainer):
    """One real training step with a pose network: ``models/weights_last`` holds
    encoder, depth, pose_encoder, pose .pdparams, adam.pdopt and trainer_state.json.
    Returns the run data dict and the checkpoint folder."""
    base = tmp_path_factory.mktemp("untrusted")
    split = base / "split"
    split.mkdir()
    (split / "train_files.txt").write_text("\n".join(rel_kit.TRAIN_LINES) + "\n")
    (split / "val_files.txt").write_text("\n".join(rel_kit.VAL_LINES) + "\n")
    d = {"data": synthetic_kitti, "hints": hints_dir, "split": str(split), "logs": str(base / "logs")}
    tr = make_trainer(rel_kit.train_args(d, "src", extra=["--frame_ids", "0", "-1", "1", "--max_steps", "1",
                                                         "--num_epochs", "1"]))
    assert tr.train() == 1
    ckpt = os.path.join(d["logs"], "src", "models", "weights_last")
    assert sorted(os.listdir(ckpt)) == ["adam.pdopt", "depth.pdparams", "encoder.pdparams", "pose.pdparams",
                                        "pose_encoder.pdparams", "trainer_state.json"]
    return d, ckpt


def spoiled_folder(src, dst, name, kind, marker, key=None):
    """A copy of the weights folder ``src`` at ``dst`` whose ``name`` carries payload ``kind``
    (in place of ``key``, default the first array); returns the spoiled file's path."""
    shutil.copytree(src, dst)
    path = os.path.join(dst, name)
    state = safe_load.load_paddle(path)
    with open(path, "wb") as f:
        f.write(dict_pickle(state, key or victim(state), kind, marker))
    return path


def train_run_args(rel_kit, d, logs, name, *extra):
    return rel_kit.train_args(dict(d, logs=str(logs)), name, extra=["--frame_ids", "0", "-1", "1",
                                                                    "--max_steps", "1", *extra])


# ----------------------------------------------------------------------------- the payloads are real


def test_payloads_are_live(tmp_path, trained):
    """Plain pickle runs every payload (the stealth ones returning their valid value); the
    same files without payload read through safe_load."""
    marker = tmp_path / "MARKER"
    enc = safe_load.load_paddle(os.path.join(trained[1], "encoder.pdparams"))
    key = victim(enc)
    for kind in KINDS:
        loaded = pickle.loads(dict_pickle(enc, key, kind, marker))
        assert marker.exists(), kind
        marker.unlink()
        if kind == "eval":
            assert loaded[key].shape == enc[key].shape and sorted(loaded) == sorted(enc)
        data = pickle.loads(gt_pickle(kind, marker))
        assert marker.exists(), kind
        marker.unlink()
        if kind == "eval":
            assert data.dtype == object and len(data) == 8 and data[0].shape == (96, 320)
    clean = tmp_path / "clean.pdparams"
    clean.write_bytes(dict_pickle(enc))
    got = safe_load.load_paddle(str(clean))
    assert sorted(got) == sorted(enc) and all(np.array_equal(np.asarray(got[k]), np.asarray(enc[k])) for k in enc)
    # np.load runs the payload of an .npz member / an .npy; torch.load(weights_only=False) that of a .pth
    npz = tmp_path / "gt_depths.npz"
    npz.write_bytes(zip_bytes({"data.npy": npy_bytes(gt_pickle("os.system", marker))}))
    np.load(str(npz), allow_pickle=True)["data"]
    assert marker.exists()
    marker.unlink()
    try:
        import torch
    except Exception:  # noqa: BLE001
        return
    for wrap in (torch_zip, torch_legacy):
        pth = tmp_path / "encoder.pth"
        pth.write_bytes(wrap(dict_pickle(TORCH_META, "height", "os.system", marker)))
        torch.load(str(pth), weights_only=False)
        assert marker.exists(), wrap.__name__
        marker.unlink()


# ----------------------------------------------------------------------------- weights folders


WEIGHT_CASES = [("encoder.pdparams", "os.system"), ("depth.pdparams", "os.system"),
                ("encoder.pdparams", "eval"), ("depth.pdparams", "getattr")]


@pytest.mark.parametrize("name,kind", WEIGHT_CASES)
def test_evaluate_depth_load_weights_folder(trained, tmp_path, rel_kit, eval_splits, synthetic_kitti, name, kind):
    marker = tmp_path / "MARKER"
    path = spoiled_folder(trained[1], tmp_path / "w", name, kind, marker)
    r = run("evaluate_depth.py", rel_kit.eval_args(str(tmp_path / "w"), synthetic_kitti, eval_splits))
    assert_refused(rel_kit, r, path, marker, "refusing to load", REFUSED[kind])


@pytest.mark.parametrize("name,kind", WEIGHT_CASES)
def test_test_simple_model_path(trained, tmp_path, rel_kit, synthetic_kitti, name, kind):
    marker = tmp_path / "MARKER"
    path = spoiled_folder(trained[1], tmp_path / "w", name, kind, marker)
    image = tmp_path / "in.jpg"
    shutil.copy(rel_kit.image({"data": synthetic_kitti}, rel_kit.D1, 2, 0), image)
    r = run("test_simple.py", ["--image_path", image, "--model_path", tmp_path / "w",
                               "--output_dir", tmp_path / "out", "--device", "cpu"])
    assert_refused(rel_kit, r, path, marker, "refusing to load", REFUSED[kind])
    assert not (tmp_path / "out").exists() or os.listdir(tmp_path / "out") == []


@pytest.mark.parametrize("name,kind", WEIGHT_CASES)
def test_export_model(trained, tmp_path, rel_kit, name, kind):
    marker = tmp_path / "MARKER"
    path = spoiled_folder(trained[1], tmp_path / "w", name, kind, marker)
    r = run("export_model.py", ["--load_weights_folder", tmp_path / "w", "--output_path", tmp_path / "x" / "depth"])
    assert_refused(rel_kit, r, path, marker, "refusing to load", REFUSED[kind])
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("name,kind", [(n + ".pdparams", "os.system") for n in NETS]
                         + [("adam.pdopt", "os.system"), ("adam.pdopt", "eval"), ("pose.pdparams", "getattr")])
def test_train_load_weights_folder(trained, tmp_path, rel_kit, name, kind):
    """Fine-tuning from a folder: every network's file and Adam's state are read safely."""
    marker = tmp_path / "MARKER"
    path = spoiled_folder(trained[1], tmp_path / "w", name, kind, marker)
    r = run("train.py", train_run_args(rel_kit, trained[0], tmp_path / "logs", "ft",
                                       "--load_weights_folder", tmp_path / "w"))
    assert_refused(rel_kit, r, path, marker, "refusing to load", REFUSED[kind])


def _resumable(trained, tmp_path):
    """A copy of the trained run's log folder (``logs/src``): train.py --resume scans it."""
    logs = tmp_path / "logs"
    shutil.copytree(os.path.join(trained[0]["logs"], "src"), logs / "src")
    return logs, str(logs / "src" / "models" / "weights_last")


@pytest.mark.parametrize("name,kind", [("encoder.pdparams", "os.system"), ("adam.pdopt", "os.system"),
                                       ("pose.pdparams", "eval")])
def test_train_resume_weights(trained, tmp_path, rel_kit, name, kind):
    marker = tmp_path / "MARKER"
    logs, ckpt = _resumable(trained, tmp_path)
    path = os.path.join(ckpt, name)
    state = safe_load.load_paddle(path)
    with open(path, "wb") as f:
        f.write(dict_pickle(state, victim(state), kind, marker))
    r = run("train.py", train_run_args(rel_kit, trained[0], logs, "src", "--resume"))
    assert_refused(rel_kit, r, path, marker, "refusing to load", REFUSED[kind])


@pytest.mark.parametrize("kind", KINDS + ("eval of a dict literal",))
def test_train_resume_previous_release_trainer_state(trained, tmp_path, rel_kit, kind):
    """The previous release's trainer_state.pdstate (a pickle), read when there is no
    trainer_state.json: the payload in one counter, or the whole state a builtins.eval of
    its dict literal."""
    import checkpoint
    marker = tmp_path / "MARKER"
    logs, ckpt = _resumable(trained, tmp_path)
    state = checkpoint.load_trainer_state(os.path.join(ckpt, checkpoint.STATE_FILE))
    os.remove(os.path.join(ckpt, checkpoint.STATE_FILE))
    path = os.path.join(ckpt, checkpoint.LEGACY_STATE_FILE)
    with open(path, "wb") as f:
        if kind == "eval of a dict literal":
            expr = f"__import__('os').system({_touch(marker)!r}) or {state!r}"
            # the literal gives the state back (checked with a harmless stand-in for os.system)
            assert eval(expr.replace("__import__('os').system", "(lambda cmd: 0)")) == state
            f.write(b"\x80\x02" + _global("builtins", "eval") + _s(expr) + b"\x85R.")
        else:
            f.write(dict_pickle(state, "step", kind, marker))
    r = run("train.py", train_run_args(rel_kit, trained[0], logs, "src", "--resume"))
    assert_refused(rel_kit, r, path, marker, "refusing to load",
                   REFUSED["eval" if kind.startswith("eval") else kind])


# ----------------------------------------------------------------------------- ImageNet weights (--weights_init)


@pytest.fixture(scope="module")
def imagenet_state():
    """A ResNet18 state dict as Paddle's ImageNet file holds it (numpy, with the fc)."""
    import paddle
    paddle.seed(0)
    return {k: v.numpy() for k, v in paddle.vision.models.resnet18().state_dict().items()}


@pytest.mark.parametrize("kind", KINDS)
def test_train_weights_init_file(trained, tmp_path, rel_kit, imagenet_state, kind):
    marker = tmp_path / "MARKER"
    path = tmp_path / "resnet18.pdparams"
    path.write_bytes(dict_pickle(imagenet_state, "conv1.weight", kind, marker))
    r = run("train.py", train_run_args(rel_kit, trained[0], tmp_path / "logs", "init", "--weights_init", path))
    assert_refused(rel_kit, r, path, marker, "refusing to load", REFUSED[kind])


def test_train_weights_init_folder(trained, tmp_path, rel_kit, imagenet_state):
    marker = tmp_path / "MARKER"
    (tmp_path / "imagenet").mkdir()
    path = tmp_path / "imagenet" / "resnet18.pdparams"
    path.write_bytes(dict_pickle(imagenet_state, "fc.weight", "os.system", marker))
    r = run("train.py", train_run_args(rel_kit, trained[0], tmp_path / "logs", "init",
                                       "--weights_init", tmp_path / "imagenet"))
    assert_refused(rel_kit, r, path, marker, "refusing to load", REFUSED["os.system"])


def test_train_weights_init_pretrained_from_paddles_cache(trained, tmp_path, rel_kit, imagenet_state):
    """--weights_init pretrained reads Paddle's cached ImageNet file (under $HOME)."""
    from networks import pretrained
    if os.path.isfile(pretrained.local_pretrained_path(18)):
        pytest.skip("weights/resnet18.pdparams exists: it is read before Paddle's cache")
    marker = tmp_path / "MARKER"
    home = tmp_path / "home"
    cache = home / ".cache" / "paddle" / "hapi" / "weights"
    cache.mkdir(parents=True)
    path = cache / os.path.basename(pretrained.paddle_cache_path(18))
    path.write_bytes(dict_pickle(imagenet_state, "bn1.weight", "eval", marker))
    args = [a for a in train_run_args(rel_kit, trained[0], tmp_path / "logs", "init")]
    args[args.index("--weights_init") + 1] = "pretrained"
    r = run("train.py", args, env={"HOME": str(home)})
    line = assert_refused(rel_kit, r, path, marker, "refusing to load", REFUSED["eval"])
    assert "Paddle's weight cache: delete it" in line


# ----------------------------------------------------------------------------- ground truth and predictions


@pytest.mark.parametrize("kind", ("os.system", "eval"))
def test_evaluate_depth_gt_depths_npz(trained, tmp_path, rel_kit, eval_splits, synthetic_kitti, kind):
    marker = tmp_path / "MARKER"
    path = os.path.join(eval_splits, "eigen", "gt_depths.npz")
    with open(path, "wb") as f:
        f.write(zip_bytes({"data.npy": npy_bytes(gt_pickle(kind, marker))}))
    shutil.copytree(trained[1], tmp_path / "w")
    r = run("evaluate_depth.py", rel_kit.eval_args(str(tmp_path / "w"), synthetic_kitti, eval_splits))
    assert_refused(rel_kit, r, path, marker)


@pytest.mark.parametrize("kind", ("os.system", "getattr"))
def test_evaluate_depth_ext_disp_npy(tmp_path, rel_kit, eval_splits, synthetic_kitti, kind):
    marker = tmp_path / "MARKER"
    path = tmp_path / "disps.npy"
    path.write_bytes(npy_bytes(gt_pickle(kind, marker)))
    r = run("evaluate_depth.py", ["--ext_disp_to_eval", path, "--eval_split", "eigen", "--splits_dir", eval_splits,
                                  "--eval_stereo", "--data_path", synthetic_kitti])
    assert_refused(rel_kit, r, path, marker)


# ----------------------------------------------------------------------------- PyTorch files (tools/convert_torch_weights.py)


@pytest.mark.parametrize("fmt,kind", [("zip", "os.system"), ("zip", "eval"), ("legacy", "os.system"),
                                      ("legacy", "getattr")])
def test_convert_torch_weights_folder(tmp_path, rel_kit, fmt, kind):
    """A Monodepth2 model folder of .pth files, zip (torch >= 1.6) or legacy format."""
    marker = tmp_path / "MARKER"
    src = tmp_path / "mono_640x192"
    src.mkdir()
    path = src / "encoder.pth"
    path.write_bytes((torch_zip if fmt == "zip" else torch_legacy)(dict_pickle(TORCH_META, "height", kind, marker)))
    r = run("tools/convert_torch_weights.py", ["--input", src, "--output", tmp_path / "out"])
    assert_refused(rel_kit, r, path, marker)
    assert not (tmp_path / "out").exists() or os.listdir(tmp_path / "out") == []
