"""published_models.py and tools/models.py, offline: a local HTTP server on 127.0.0.1 serves
model zips built here (Monodepth2-layout folders of .pth files, written in both of torch's
formats by a small writer below, so no PyTorch is needed), with the faults of real networks:
a connection that drops before Content-Length, a server without Range support, no server.

Checked: a fetch downloads, checks (md5 / the converter's load-into-network check), caches and
gives the weights tools/convert_torch_weights.py gives; a second fetch makes no request; every
failure is one ToolkitError line and leaves no model folder and no unchecked file under its
final name; an interrupted download resumes with a Range request; a zip placed by hand at the
path the error names is used; zip-slip members and .pth payloads are refused.
"""
import collections
import hashlib
import http.server
import io
import json
import os
import pickle
import re
import socket
import struct
import subprocess
import sys
import threading
import zipfile
from dataclasses import replace

import numpy as np
import pytest

import downloads
import published_models as pm
import safe_load
from tools import convert_torch_weights as ctw
from utils import ToolkitError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS_CLI = os.path.join(ROOT, "tools", "models.py")


# ----------------------------------------------------------------------------- a tiny torch.save


class _Global:
    """A pickled reference to ``module.name`` (GLOBAL opcode), never imported here."""

    def __init__(self, module, name):
        self.module, self.name = module, name

    def __call__(self):  # pickle wants the callable of a reduce to be callable
        raise AssertionError


class _Storage:
    TYPES = {np.dtype("float32"): "FloatStorage", np.dtype("int64"): "LongStorage"}

    def __init__(self, key, array):
        self.key, self.array = key, np.ascontiguousarray(array)


class _Reduce:
    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _tensor(storage):
    shape = storage.array.shape
    strides = tuple(int(np.prod(shape[i + 1:])) for i in range(len(shape)))
    return _Reduce(_Global("torch._utils", "_rebuild_tensor_v2"),
                   (storage, 0, shape, strides, False, collections.OrderedDict()))


class _TorchPickler(pickle._Pickler):
    def __init__(self, f, legacy):
        super().__init__(f, protocol=2)
        self.legacy = legacy

    def persistent_id(self, obj):
        if not isinstance(obj, _Storage):
            return None
        pid = ("storage", _Global("torch", _Storage.TYPES[obj.array.dtype]), obj.key, "cpu", obj.array.size)
        return pid + (None,) if self.legacy else pid

    def save(self, obj, save_persistent_id=True):
        if isinstance(obj, _Global):
            self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
            return
        super().save(obj, save_persistent_id)


def torch_save(state, legacy=False):
    """The bytes torch.save(state) writes (zip format, or legacy with ``legacy``); numpy arrays
    become tensors, a :class:`_Reduce` value is written as it is (a payload)."""
    storages, out = [], collections.OrderedDict()
    for key, value in state.items():
        if isinstance(value, np.ndarray):
            storages.append(_Storage(str(len(storages)), value))
            value = _tensor(storages[-1])
        out[key] = value
    main = io.BytesIO()
    _TorchPickler(main, legacy).dump(out)
    buf = io.BytesIO()
    if legacy:
        for obj in (0x1950a86a20f9469cfc6c, 1001,  # torch's magic number, protocol, sys info
                    {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}):
            pickle.dump(obj, buf, protocol=2)
        buf.write(main.getvalue())
        pickle.dump([s.key for s in storages], buf, protocol=2)
        for s in storages:
            buf.write(struct.pack("<q", s.array.size) + s.array.astype(s.array.dtype.newbyteorder("<")).tobytes())
        return buf.getvalue()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("archive/data.pkl", main.getvalue())
        zf.writestr("archive/byteorder", "little")
        for s in storages:
            zf.writestr(f"archive/data/{s.key}", s.array.astype("<" + s.array.dtype.str[1:]).tobytes())
        zf.writestr("archive/version", "3\n")
    return buf.getvalue()


# ----------------------------------------------------------------------------- Monodepth2-like models


def _torch_names(paddle_state, rng, fc=False):
    """A Monodepth2 state dict (torch names, random values) with the shapes of a Paddle one."""
    out = collections.OrderedDict()
    for key, value in paddle_state.items():
        shape = tuple(value.shape)
        arr = (rng.standard_normal(shape) * 0.05).astype(np.float32)
        if key.endswith("._variance"):
            out[key[:-len("_variance")] + "running_var"] = np.abs(arr) + 0.5
            out[key[:-len("._variance")] + ".num_batches_tracked"] = np.array(7, dtype=np.int64)
        elif key.endswith("._mean"):
            out[key[:-len("_mean")] + "running_mean"] = arr
        else:
            out[key] = arr
    if fc:
        out["encoder.fc.weight"] = (rng.standard_normal((1000, 512)) * 0.01).astype(np.float32)
        out["encoder.fc.bias"] = np.zeros(1000, np.float32)
    return out


def model_states(pose=False, seed=0):
    """{stem: state}: encoder (ResNet-18, 128x64, stereo), depth and optionally the pose nets."""
    import networks
    rng = np.random.default_rng(seed)
    enc = networks.ResnetEncoder(18, False)
    states = {"encoder": _torch_names(enc.state_dict(), rng, fc=True),
              "depth": _torch_names(networks.DepthDecoder(enc.num_ch_enc).state_dict(), rng)}
    states["encoder"].update(height=64, width=128, use_stereo=True)
    if pose:
        penc = networks.ResnetEncoder(18, False, num_input_images=2)
        states["pose_encoder"] = _torch_names(penc.state_dict(), rng, fc=True)
        states["pose"] = _torch_names(networks.PoseDecoder(penc.num_ch_enc, 1, 2).state_dict(), rng)
    return states


def make_zip(files, prefix="", compression=zipfile.ZIP_DEFLATED):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression, compresslevel=1 if compression == zipfile.ZIP_DEFLATED else None) as zf:
        for name, data in files.items():
            zf.writestr(prefix + name, data)
    return buf.getvalue()


def write_folder(folder, files):
    os.makedirs(folder, exist_ok=True)
    for name, data in files.items():
        with open(os.path.join(folder, name), "wb") as f:
            f.write(data)
    return str(folder)


@pytest.fixture(scope="module")
def pth_sets(tmp_path_factory):
    """Two Monodepth2 folders of .pth files: zip format (encoder, depth) and legacy format
    (with pose_encoder, pose), each with the converter's output for it as the reference."""
    out = {}
    for kind, legacy, pose in (("zip", False, False), ("legacy", True, True)):
        states = model_states(pose)
        files = {stem + ".pth": torch_save(state, legacy) for stem, state in states.items()}
        base = tmp_path_factory.mktemp(kind)
        src = write_folder(base / "pth", files)
        ctw.convert_model_folder(src, str(base / "ref"), log=lambda *_: None)
        out[kind] = dict(files=files, src=src, ref=str(base / "ref"), states=states)
    return out


def assert_same_folder(got, ref):
    names = sorted(f for f in os.listdir(ref) if f.endswith(".pdparams"))
    assert sorted(f for f in os.listdir(got) if f.endswith(".pdparams")) == names
    for name in names:
        a, b = safe_load.load_paddle(os.path.join(got, name)), safe_load.load_paddle(os.path.join(ref, name))
        assert list(a) == list(b), name
        for key in b:
            np.testing.assert_array_equal(np.asarray(a[key]), np.asarray(b[key]), err_msg=f"{name} {key}")


# ----------------------------------------------------------------------------- the server


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        st = self.server.state
        st["requests"].append((self.path, self.headers.get("Range")))
        data = st["files"].get(self.path)
        if data is None:
            self.send_error(404)
            return
        start, rng = 0, self.headers.get("Range")
        if rng and st["ranges"]:
            start = int(re.fullmatch(r"bytes=(\d+)-", rng).group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        cut = st.pop("truncate", None)
        self.wfile.write(body if cut is None else body[:cut])  # then the connection closes


@pytest.fixture(scope="module")
def server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.state = {}
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def srv(server):
    server.state.clear()
    server.state.update(files={}, requests=[], ranges=True)
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    return server


def closed_port_url(path="/m.zip"):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}{path}"


def entry(url, data=None, name="mono_640x192", md5=True, eigen_url=None):
    """A one-model table: the published entry ``name`` pointed at ``url`` (md5 of ``data``)."""
    m = replace(pm.get(name), url=url, md5=hashlib.md5(data).hexdigest() if md5 and data else None,
                eigen_url=eigen_url)
    return {name: m}


def files_under(folder):
    return sorted(os.path.relpath(os.path.join(d, f), folder) for d, _, fs in os.walk(folder) for f in fs)


# ----------------------------------------------------------------------------- fetch


@pytest.mark.slow
def test_fetch_checks_converts_caches_and_then_needs_no_network(srv, pth_sets, tmp_path, capsys):
    data = make_zip(pth_sets["zip"]["files"])
    srv.state["files"]["/mono.zip"] = data
    table, cache, lines = entry(srv.url + "/mono.zip", data), str(tmp_path / "cache"), []
    folder = pm.fetch("mono_640x192", cache, log=lines.append, table=table)
    assert folder == os.path.join(cache, "models", "mono_640x192")
    assert_same_folder(folder, pth_sets["zip"]["ref"])
    enc, src = safe_load.load_paddle(os.path.join(folder, "encoder.pdparams")), pth_sets["zip"]["states"]["encoder"]
    np.testing.assert_array_equal(enc["encoder.layer2.0.downsample.1._variance"],
                                  src["encoder.layer2.0.downsample.1.running_var"])
    np.testing.assert_array_equal(enc["encoder.fc.weight"], src["encoder.fc.weight"].T)
    assert (enc["height"], enc["width"], enc["use_stereo"]) == (64, 128, True)
    assert not any("num_batches_tracked" in k for k in enc)
    assert files_under(cache) == ["downloads/mono_640x192.zip", "models/mono_640x192/SOURCE.json",
                                  "models/mono_640x192/depth.pdparams", "models/mono_640x192/encoder.pdparams"]
    record = json.load(open(os.path.join(folder, "SOURCE.json")))
    assert record["sha256"] == hashlib.sha256(data).hexdigest() and record["md5"] == table["mono_640x192"].md5
    assert record["url"] == srv.url + "/mono.zip" and record["date"] and record["resnet_layers"] == 18
    err = capsys.readouterr().err
    assert f"{len(data)}/{len(data)} B (100.0 %)" in err and "B/s" in err and "ETA" in err
    assert any("checked against this toolkit's networks" in line for line in lines)

    # later calls: the cached folder, no request (even with the server gone)
    n = len(srv.state["requests"])
    dead = entry(closed_port_url(), data)
    assert pm.fetch("mono_640x192", cache, log=lines.append, table=dead) == folder
    assert pm.resolve_weights("mono_640x192", cache, table=dead) == folder
    assert pm.resolve_weights(folder) == folder
    assert len(srv.state["requests"]) == n == 1
    with pytest.raises(ToolkitError) as exc:
        pm.resolve_weights("mono_640x19", cache, flag="--load_weights_folder")
    msg = str(exc.value)
    assert "--load_weights_folder mono_640x19" in msg and "mono_640x192" in msg and pm.LIST_HINT in msg

    # the CLI sees it (the real table: the cache is the same folder layout)
    res = subprocess.run([sys.executable, MODELS_CLI, "list", "--cache", cache], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    rows = {line.split()[0]: line.split() for line in res.stdout.splitlines()[1:-1]}
    assert len(rows) == 14 and rows["mono_640x192"][-1] == "yes" and rows["DH-Resnet50"][-1] == "no"
    assert rows["DH-Resnet50"][1:7] == ["depth-hints", "stereo", "640x192", "50", "0.102", "0.880"]
    res = subprocess.run([sys.executable, MODELS_CLI, "path", "mono_640x192", "--cache", cache],
                         capture_output=True, text=True, timeout=120)
    assert (res.returncode, res.stdout) == (0, folder + "\n")
    res = subprocess.run([sys.executable, MODELS_CLI, "--cache", cache, "path", "stereo_640x192"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and res.stdout == "" and len(res.stderr.splitlines()) == 1
    assert "not fetched" in res.stderr and "tools/models.py fetch stereo_640x192" in res.stderr


@pytest.mark.slow
def test_interrupted_download_resumes_with_a_range_request(srv, pth_sets, tmp_path):
    data = make_zip(pth_sets["zip"]["files"], compression=zipfile.ZIP_STORED)
    srv.state["files"]["/m.zip"] = data
    srv.state["truncate"] = cut = len(data) // 3
    table, cache = entry(srv.url + "/m.zip", data), str(tmp_path / "cache")
    with pytest.raises(ToolkitError) as exc:
        pm.fetch("mono_640x192", cache, log=lambda *_: None, table=table)
    msg = str(exc.value)
    assert "\n" not in msg and f"interrupted at {cut} of {len(data)} bytes" in msg and "run the same command again" in msg
    assert files_under(cache) == ["downloads/mono_640x192.zip.part"]
    assert os.path.getsize(os.path.join(cache, "downloads", "mono_640x192.zip.part")) == cut
    lines = []
    folder = pm.fetch("mono_640x192", cache, log=lines.append, table=table)
    assert srv.state["requests"][-1] == ("/m.zip", f"bytes={cut}-")
    assert any("resuming" in line and f"at byte {cut}" in line for line in lines)
    assert_same_folder(folder, pth_sets["zip"]["ref"])
    assert json.load(open(os.path.join(folder, "SOURCE.json")))["sha256"] == hashlib.sha256(data).hexdigest()


def test_wrong_checksum_is_one_line_and_leaves_nothing(srv, tmp_path):
    data = make_zip({"encoder.pth": b"x", "depth.pth": b"y"})
    srv.state["files"]["/m.zip"] = data
    table = entry(srv.url + "/m.zip", data)
    table["mono_640x192"] = replace(table["mono_640x192"], md5="0" * 32)
    cache = str(tmp_path / "cache")
    with pytest.raises(ToolkitError) as exc:
        pm.fetch("mono_640x192", cache, log=lambda *_: None, table=table)
    msg = str(exc.value)
    assert "\n" not in msg and f"expected md5 {'0' * 32}, got {hashlib.md5(data).hexdigest()}" in msg
    assert "deleted it" in msg
    assert files_under(cache) == []


@pytest.mark.slow
def test_no_network_names_the_manual_path_and_a_zip_put_there_is_used(pth_sets, tmp_path, monkeypatch):
    cache = str(tmp_path / "cache")
    url = closed_port_url("/depth-hints/DH-Resnet50/models.zip")
    table = entry(url, name="DH-Resnet50", md5=False)
    with pytest.raises(ToolkitError) as exc:
        pm.fetch("DH-Resnet50", cache, log=lambda *_: None, table=table)
    manual = os.path.join(cache, "downloads", "DH-Resnet50.zip")
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith(f"cannot download DH-Resnet50 from {url} (")
    assert msg.endswith(f"download it by hand and put it at {manual}, or pass a weights folder")
    assert files_under(cache) == []

    # a server that accepts and never answers: the socket timeout, not a hang
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)
    monkeypatch.setattr(downloads, "TIMEOUT_S", 0.5)
    slow = entry(f"http://127.0.0.1:{silent.getsockname()[1]}/m.zip", name="DH-Resnet50", md5=False)
    with pytest.raises(ToolkitError, match=r"cannot download DH-Resnet50 .*timed out"):
        pm.fetch("DH-Resnet50", cache, log=lambda *_: None, table=slow)
    silent.close()

    # by hand: the Depth Hints layout (files in a folder inside the zip), legacy .pth, pose nets
    os.makedirs(os.path.dirname(manual))
    with open(manual, "wb") as f:
        f.write(make_zip(pth_sets["legacy"]["files"], prefix="models/"))
    lines = []
    folder = pm.fetch("DH-Resnet50", cache, log=lines.append, table=table)
    assert_same_folder(folder, pth_sets["legacy"]["ref"])
    assert {"pose_encoder.pdparams", "pose.pdparams"} <= set(os.listdir(folder))
    assert json.load(open(os.path.join(folder, "SOURCE.json")))["source"] == f"placed by hand at {manual}"
    assert any("ResNet18 at 128x64 (the table says ResNet50 at 640x192)" in line for line in lines)


@pytest.mark.slow
def test_cli_fetch_from_a_mirror_prints_the_folder(srv, pth_sets, tmp_path):
    srv.state["files"]["/depth-hints/DH-HR-Mono%2BStereo/models.zip"] = make_zip(pth_sets["legacy"]["files"])
    cache = str(tmp_path / "cache")
    env = dict(os.environ, DEPTH_HINTS_MODELS_URL=srv.url, DEPTH_HINTS_CACHE=cache)
    res = subprocess.run([sys.executable, MODELS_CLI, "fetch", "DH-HR-Mono+Stereo"], capture_output=True,
                         text=True, timeout=600, env=env)
    assert res.returncode == 0, res.stderr
    folder = os.path.join(cache, "models", "DH-HR-Mono+Stereo")
    assert res.stdout == folder + "\n" and "downloading DH-HR-Mono+Stereo" in res.stderr
    assert_same_folder(folder, pth_sets["legacy"]["ref"])
    assert pm.cached("DH-HR-Mono+Stereo", cache) == folder


def _bad_zips(marker):
    ok = torch_save({"a": np.zeros(2, np.float32)})
    payload = torch_save({"encoder.conv1.weight": np.zeros((2, 3), np.float32),
                          "x": _Reduce(_Global(os.system.__module__, "system"), (f"touch {marker}",))})
    return {
        "dotdot": ({"encoder.pth": ok, "depth.pth": ok, "../evil.pth": ok}, "unsafe path"),
        "absolute": ({"encoder.pth": ok, "depth.pth": ok, "/tmp/evil.pth": ok}, "unsafe path"),
        "no depth": ({"encoder.pth": ok}, "no depth.pth beside encoder.pth"),
        "not a model": ({"encoder.pth": ok, "depth.pth": ok}, "does not match the ResnetEncoder"),
        "payload": ({"encoder.pth": payload, "depth.pth": ok}, "refusing to load"),
    }


@pytest.mark.parametrize("case", ["dotdot", "absolute", "no depth", "not a model", "payload", "not a zip"])
def test_bad_zips_are_refused_and_deleted(srv, tmp_path, case):
    marker = tmp_path / "pwned"
    files, expect = _bad_zips(marker).get(case, (None, "not a zip file"))
    data = make_zip(files) if files else b"PK\x03\x04 not really a zip"
    srv.state["files"]["/m.zip"] = data
    cache = str(tmp_path / "cache")
    with pytest.raises(ToolkitError) as exc:
        pm.fetch("mono_640x192", cache, log=lambda *_: None, table=entry(srv.url + "/m.zip", data))
    msg = str(exc.value)
    assert "\n" not in msg and expect in msg and "deleted it" in msg, msg
    if case == "payload":
        assert isinstance(exc.value, safe_load.UnsafeFileError) and "system" in msg
    assert not marker.exists() and not (tmp_path / "evil.pth").exists()
    assert files_under(cache) == []


# ----------------------------------------------------------------------------- predictions, names, cache


def _npy(arr):
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def test_fetch_predictions_restarts_without_range_support(srv, tmp_path):
    arr = np.random.default_rng(0).random((3, 8, 16)).astype(np.float32)
    data = _npy(arr)
    srv.state.update(ranges=False, truncate=100)
    srv.state["files"]["/p.npy"] = data
    table, cache = entry(srv.url + "/m.zip", eigen_url=srv.url + "/p.npy"), str(tmp_path / "cache")
    with pytest.raises(ToolkitError, match="run the same command again to resume"):
        pm.fetch_predictions("mono_640x192", cache, log=lambda *_: None, table=table)
    lines = []
    path = pm.fetch_predictions("mono_640x192", cache, log=lines.append, table=table)
    assert any("does not resume downloads, starting again" in line for line in lines)
    assert path == os.path.join(cache, "predictions", "mono_640x192_eigen.npy")
    np.testing.assert_array_equal(safe_load.load_npy(path), arr)
    assert files_under(cache) == ["predictions/mono_640x192_eigen.json", "predictions/mono_640x192_eigen.npy"]
    n = len(srv.state["requests"])
    assert pm.fetch_predictions("mono_640x192", cache, table=table) == path and len(srv.state["requests"]) == n

    srv.state["files"]["/bad.npy"] = _npy(np.zeros((4, 5), np.float32))
    bad = entry(srv.url + "/m.zip", name="stereo_640x192", eigen_url=srv.url + "/bad.npy")
    with pytest.raises(ToolkitError, match=r"expected a float array .*got float32 \(4, 5\); deleted it"):
        pm.fetch_predictions("stereo_640x192", cache, log=lambda *_: None, table=bad)
    assert not os.path.exists(pm.predictions_path("stereo_640x192", cache))
    with pytest.raises(ToolkitError, match="no published Eigen predictions for mono_no_pt_640x192"):
        pm.fetch_predictions("mono_no_pt_640x192", cache)


def test_names_and_cache_location(tmp_path, monkeypatch):
    assert [m.name for m in pm.list_models()][:2] == ["DH-Resnet50", "DH-Resnet50-nopt"]
    assert len(pm.list_models()) == 14 and sum(m.md5 is not None for m in pm.list_models()) == 9
    m = pm.get("mono+stereo_640x192")
    assert (m.width, m.height, m.resnet_layers, m.md5) == (640, 192, 18, "c024d69012485ed05d7eaa9617a96b81")
    assert m.url.endswith("/monodepth2/mono%2Bstereo_640x192.zip") and m.eigen_url.endswith("_640x192_eigen.npy")
    with pytest.raises(ToolkitError) as exc:
        pm.get("dh-resnet50")
    assert "did you mean DH-Resnet50?" in str(exc.value) and "mono+stereo_1024x320" in str(exc.value)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv(pm.ENV_CACHE, raising=False)
    assert pm.cache_dir() == str(tmp_path / ".cache" / "depth_hints_paddle")
    monkeypatch.setenv(pm.ENV_CACHE, str(tmp_path / "env"))
    assert pm.cache_dir() == str(tmp_path / "env") and pm.cache_dir(str(tmp_path / "flag")) == str(tmp_path / "flag")
    monkeypatch.setenv(pm.ENV_URL, "http://mirror.example/x/")
    assert pm.source_url(m.url) == "http://mirror.example/x/monodepth2/mono%2Bstereo_640x192.zip"
    with pytest.raises(ToolkitError, match=r"not a folder or a published model name \(--weights nope\)"):
        pm.resolve_weights("nope", flag="--weights")


@pytest.mark.slow
def test_converter_runs_with_torch_blocked(pth_sets, tmp_path):
    out = str(tmp_path / "out")
    script = os.path.join(ROOT, "tools", "convert_torch_weights.py")
    driver = "\n".join([
        "import runpy, sys",
        "sys.modules['torch'] = None  # import torch now raises ImportError",
        f"sys.argv = [{script!r}, '--input', {pth_sets['legacy']['src']!r}, '--output', {out!r}]",
        "try:",
        "    runpy.run_path(sys.argv[0], run_name='__main__')",
        "except SystemExit as exc:",
        "    assert sys.modules['torch'] is None",
        "    sys.exit(exc.code)"])
    res = subprocess.run([sys.executable, "-c", driver], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    assert "checked against this toolkit's networks" in res.stdout
    assert_same_folder(out, pth_sets["legacy"]["ref"])
