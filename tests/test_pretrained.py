"""ImageNet initialisation (`--weights_init pretrained`): the local weights/ file first, then
Paddle's own ImageNet ResNets through paddle.utils.download, cached in its WEIGHTS_HOME.

Nothing here needs the internet: "offline" is a dead local proxy, the "Paddle file" is a
randomly initialised paddle.vision ResNet saved with paddle.save at the cache path, and the
download path is exercised against a local HTTP server.
"""
import functools
import hashlib
import http.server
import os
import subprocess
import sys
import threading

import numpy as np
import paddle
import paddle.utils.download as paddle_download
import pytest

import networks
from networks import pretrained as pt_mod
from utils import ToolkitError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE_SUBDIR = os.path.join(".cache", "paddle", "hapi", "weights")  # WEIGHTS_HOME under $HOME
DEAD_PROXY = "http://127.0.0.1:9"  # the discard port: nothing listens, connections are refused
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


def _save_vision_resnet(depth, path, seed):
    paddle.seed(seed)
    model = getattr(paddle.vision.models, f"resnet{depth}")()
    state = model.state_dict()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    paddle.save(state, path)
    return {k: v.numpy() for k, v in state.items()}


@pytest.fixture(scope="module")
def vision_files(tmp_path_factory):
    """Random paddle.vision resnet18/resnet50 state dicts saved as Paddle names its files."""
    d = tmp_path_factory.mktemp("vision_resnets")
    return {depth: (str(d / f"resnet{depth}.pdparams"),
                    _save_vision_resnet(depth, str(d / f"resnet{depth}.pdparams"), seed=depth))
            for depth in (18, 50)}


@pytest.fixture
def empty_home(tmp_path, monkeypatch):
    """Paddle's cache and the repo's weights/ folder pointed at empty temp folders, offline."""
    cache = tmp_path / "home" / CACHE_SUBDIR
    monkeypatch.setattr(paddle_download, "WEIGHTS_HOME", str(cache))
    monkeypatch.setattr(pt_mod, "DEFAULT_WEIGHTS_DIR", str(tmp_path / "repo_weights"))
    for var in PROXY_VARS:
        monkeypatch.setenv(var, DEAD_PROXY)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    return cache


def _link(src, dst):
    os.makedirs(os.path.dirname(str(dst)), exist_ok=True)
    os.symlink(src, str(dst))


def test_cache_path_is_paddles(empty_home):
    url, md5 = paddle.vision.models.resnet.model_urls["resnet50"]
    assert pt_mod.PADDLE_IMAGENET_WEIGHTS[50] == (url, md5)
    assert sorted(pt_mod.PADDLE_IMAGENET_WEIGHTS) == [18, 34, 50, 101, 152]
    assert pt_mod.paddle_cache_path(50) == os.path.join(str(empty_home), "resnet50.pdparams")
    # the default WEIGHTS_HOME is ~/.cache/paddle/hapi/weights
    assert paddle_download.WEIGHTS_HOME.endswith(CACHE_SUBDIR)


def test_scratch_weights_do_not_import_the_downloader(repo_root):
    """Building the networks without ImageNet weights never imports networks.pretrained."""
    code = ("import sys, networks; networks.ResnetEncoder(18, False, num_input_images=2); "
            "assert 'networks.pretrained' not in sys.modules, 'imported'; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], cwd=repo_root, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-3000:]


def test_offline_error_in_process(empty_home):
    with pytest.raises(ToolkitError) as err:
        pt_mod.resolve_pretrained_path(18, True)
    msg = str(err.value)
    assert "\n" not in msg
    assert os.path.join(str(empty_home), "resnet18.pdparams") in msg
    assert "tools/convert_torch_weights.py" in msg and "resnet18-f37072fd.pth" in msg
    assert "torchvision" in msg and "exact initialisation" in msg
    assert "--weights_init scratch" in msg
    assert not os.path.exists(str(empty_home / "resnet18.pdparams"))


@pytest.mark.slow
@pytest.mark.parametrize("depth", [18, 50])
def test_cached_vision_file_loads_with_pose_tiling(empty_home, vision_files, depth):
    src, want = vision_files[depth]
    # a file at the cache path is used although its md5 is not Paddle's (no re-download)
    _link(src, empty_home / f"resnet{depth}.pdparams")
    assert pt_mod.resolve_pretrained_path(depth, True) == str(empty_home / f"resnet{depth}.pdparams")

    enc = networks.ResnetEncoder(depth, True)
    got = {k: v.numpy() for k, v in enc.state_dict().items()}
    assert "encoder.fc.weight" not in got
    for k, v in want.items():
        if not k.startswith("fc."):
            np.testing.assert_array_equal(got["encoder." + k], v, err_msg=k)

    pose = networks.ResnetEncoder(depth, True, num_input_images=2)
    w = want["conv1.weight"]
    pose_w = pose.encoder.conv1.weight.numpy()
    assert pose_w.shape == (64, 6, 7, 7)
    np.testing.assert_allclose(pose_w, np.tile(w, (1, 2, 1, 1)) / 2, rtol=1e-6, atol=0)
    np.testing.assert_allclose(pose_w[:, :3] + pose_w[:, 3:], w, rtol=1e-5, atol=1e-7)
    last = "layer4.1.bn2._mean" if depth == 18 else "layer4.2.bn3._variance"
    np.testing.assert_array_equal(pose.encoder.state_dict()[last].numpy(), want[last])


def test_local_weights_file_comes_first(empty_home, vision_files, tmp_path):
    src, _ = vision_files[18]
    _link(src, empty_home / "resnet18.pdparams")
    local = tmp_path / "repo_weights" / "resnet18.pdparams"
    _link(src, local)
    assert pt_mod.resolve_pretrained_path(18, True) == str(local)


def test_corrupt_cached_file_says_to_delete_it(empty_home, vision_files):
    src, _ = vision_files[18]
    cached = empty_home / "resnet18.pdparams"
    os.makedirs(str(empty_home), exist_ok=True)
    cached.write_bytes(open(src, "rb").read()[:1000])  # an interrupted copy
    with pytest.raises(ToolkitError) as err:
        networks.ResnetEncoder(18, True)
    msg = str(err.value)
    assert "\n" not in msg and str(cached) in msg and "could not be read" in msg
    assert msg.endswith("It lies in Paddle's weight cache: delete it and the next run downloads it again")
    # a damaged file the user named is reported without that advice
    with pytest.raises(ToolkitError) as err:
        networks.ResnetEncoder(18, str(cached))
    assert "weight cache" not in str(err.value)


def test_explicit_path_missing_is_one_line(empty_home, tmp_path):
    with pytest.raises(ToolkitError) as err:
        pt_mod.resolve_pretrained_path(18, str(tmp_path))
    assert "\n" not in str(err.value) and str(tmp_path / "resnet18.pdparams") in str(err.value)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def local_server(vision_files):
    folder = os.path.dirname(vision_files[18][0])
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             functools.partial(_Quiet, directory=folder))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield "http://127.0.0.1:%d" % server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.mark.slow
def test_download_through_paddle_utility(empty_home, vision_files, local_server, monkeypatch):
    src, want = vision_files[18]
    md5 = hashlib.md5(open(src, "rb").read()).hexdigest()
    for var in PROXY_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setitem(pt_mod.PADDLE_IMAGENET_WEIGHTS, 18, (local_server + "/resnet18.pdparams", md5))
    path = pt_mod.resolve_pretrained_path(18, True)
    assert path == str(empty_home / "resnet18.pdparams") and os.path.isfile(path)
    assert not os.path.islink(path)
    enc = networks.ResnetEncoder(18, True)
    np.testing.assert_array_equal(enc.encoder.conv1.weight.numpy(), want["conv1.weight"])


def _cli_env(home):
    env = dict(os.environ, HOME=str(home))
    for var in PROXY_VARS:
        env[var] = DEAD_PROXY
    env.pop("NO_PROXY", None)
    env.pop("no_proxy", None)
    return env


def _train_args(data, log_dir):
    return [sys.executable, os.path.join(ROOT, "train.py"), "--data_path", data,
            "--split", os.path.join(data, "splits", "synthetic"), "--height", "64", "--width", "192",
            "--batch_size", "2", "--use_stereo", "--frame_ids", "0", "--num_workers", "0",
            "--max_steps", "1", "--device", "cpu", "--log_dir", str(log_dir), "--model_name", "pt",
            "--log_frequency", "1000", "--weights_init", "pretrained"]


def _skip_if_local_weights(depth=18):
    if os.path.isfile(os.path.join(ROOT, "weights", f"resnet{depth}.pdparams")):
        pytest.skip(f"weights/resnet{depth}.pdparams exists, so nothing would be looked up in the cache")


@pytest.mark.slow
def test_cli_offline_error(synthetic_kitti, tmp_path):
    _skip_if_local_weights()
    home = tmp_path / "home"
    home.mkdir()
    out = subprocess.run(_train_args(synthetic_kitti, tmp_path / "logs"), cwd=ROOT, env=_cli_env(home),
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 2, out.stderr[-3000:]
    assert "Traceback" not in out.stderr
    lines = [l for l in out.stderr.splitlines() if l.startswith("error:")]
    assert len(lines) == 1, out.stderr
    line = lines[0]
    assert str(home / CACHE_SUBDIR / "resnet18.pdparams") in line
    assert "tools/convert_torch_weights.py" in line and "torchvision" in line
    assert "exact initialisation" in line
    assert not (tmp_path / "logs" / "pt" / "models").exists()


@pytest.mark.slow
def test_cli_trains_from_cached_paddle_file(synthetic_kitti, tmp_path):
    _skip_if_local_weights()
    home = tmp_path / "home"
    _save_vision_resnet(18, str(home / CACHE_SUBDIR / "resnet18.pdparams"), seed=1)
    out = subprocess.run(_train_args(synthetic_kitti, tmp_path / "logs"), cwd=ROOT, env=_cli_env(home),
                         capture_output=True, text=True, timeout=1200)
    assert out.returncode == 0, out.stderr[-3000:]
    assert os.listdir(str(tmp_path / "logs" / "pt" / "models"))


def _with_payload(src, dst, key, marker):
    """``src`` (a paddle.save state dict) re-pickled with ``os.system("touch <marker>")`` as ``key``."""
    import pickle
    import safe_load
    state = {k: v for k, v in safe_load.load_paddle(src).items() if k != key}
    body = pickle.dumps(state, protocol=2)
    call = b"c" + os.system.__module__.encode() + b"\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR"
    os.makedirs(os.path.dirname(str(dst)), exist_ok=True)
    with open(str(dst), "wb") as f:
        f.write(body[:-2] + b"X" + len(key).to_bytes(4, "little") + key.encode() + call + b"u.")


@pytest.mark.slow
def test_imagenet_files_with_code_are_refused_wherever_they_lie(empty_home, vision_files, tmp_path):
    """Paddle's cache, the repo's weights/ file and a --weights_init file or folder are all
    read through safe_load: refused in one line (UnsafeFileError), nothing run."""
    import safe_load
    src, _ = vision_files[18]
    marker = tmp_path / "MARKER"
    cached = empty_home / "resnet18.pdparams"
    _with_payload(src, cached, "conv1.weight", marker)
    with pytest.raises(safe_load.UnsafeFileError) as err:
        networks.ResnetEncoder(18, True)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"refusing to load {cached}: it asks to")
    assert msg.endswith("It lies in Paddle's weight cache: delete it and the next run downloads it again")
    local = tmp_path / "repo_weights" / "resnet18.pdparams"
    _with_payload(src, local, "fc.bias", marker)
    named = tmp_path / "mine" / "resnet18.pdparams"
    _with_payload(src, named, "layer1.0.bn1._mean", marker)
    for pretrained, path in ((True, local), (str(named), named), (str(named.parent), named)):
        with pytest.raises(safe_load.UnsafeFileError) as err:
            networks.ResnetEncoder(18, pretrained, num_input_images=2)
        msg = str(err.value)
        assert "\n" not in msg and msg.startswith(f"refusing to load {path}: it asks to")
        assert "weight cache" not in msg
    assert not marker.exists()
