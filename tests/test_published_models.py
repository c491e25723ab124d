"""published_models.py and tools/models.py offline: a local HTTP server serves model zips built
here (Monodepth2 folders of .pth files in both torch formats, by the writer below: no PyTorch),
with a dropped connection, no Range support or no server. A fetch checks, converts (as
tools/convert_torch_weights.py does) and caches, then needs no network; each failure is one
line and leaves no model folder nor an unchecked file under its final name; a download resumes
with a Range request; a zip placed by hand is used; zip-slip and .pth payloads are refused."""
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
import time
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


# ----------------------------------------------------------------------------- a torch.save without torch


class Global(collections.namedtuple("Global", "module name")):
    """A pickled reference to ``module.name`` (a GLOBAL opcode), never imported here."""
    def __call__(self):  # pickle wants the callable of a reduce to be callable
        raise AssertionError


class Reduce(collections.namedtuple("Reduce", "func args")):
    def __reduce__(self):
        return self.func, self.args


Storage = collections.namedtuple("Storage", "key array")
STORAGE_TYPES = {np.dtype("float32"): "FloatStorage", np.dtype("int64"): "LongStorage"}


class TorchPickler(pickle._Pickler):
    def __init__(self, f, legacy):
        super().__init__(f, protocol=2)
        self.legacy = legacy

    def persistent_id(self, obj):
        if type(obj) is not Storage:
            return None
        pid = ("storage", Global("torch", STORAGE_TYPES[obj.array.dtype]), obj.key, "cpu", obj.array.size)
        return pid + (None,) if self.legacy else pid

    def save(self, obj, save_persistent_id=True):
        if isinstance(obj, Global):
            return self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
        super().save(obj, save_persistent_id)


def torch_save(state, legacy=False):
    """The bytes ``torch.save(state)`` writes: the zip format of torch >= 1.6 (``archive/data.pkl``
    and one raw ``archive/data/<key>`` per storage) or, ``legacy``, the stream of torch < 1.6 (magic
    number, protocol, sys info, the main pickle, the storage keys, then each storage's int64 element
    count and bytes: safe_load/torch_files.py). numpy arrays become tensors (``_rebuild_tensor_v2``
    of a ``FloatStorage`` / ``LongStorage``); a :class:`Reduce` value is written as it is."""
    storages, out = [], collections.OrderedDict()
    for key, value in state.items():
        if isinstance(value, np.ndarray):
            storages.append(Storage(str(len(storages)), np.ascontiguousarray(value)))
            shape = value.shape
            strides = tuple(int(np.prod(shape[i + 1:])) for i in range(len(shape)))
            value = Reduce(Global("torch._utils", "_rebuild_tensor_v2"),
                           (storages[-1], 0, shape, strides, False, collections.OrderedDict()))
        out[key] = value
    main, buf = io.BytesIO(), io.BytesIO()
    TorchPickler(main, legacy).dump(out)
    if legacy:
        for obj in (0x1950a86a20f9469cfc6c, 1001, {"protocol_version": 1001, "little_endian": True,
                                                   "type_sizes": {"short": 2, "int": 4, "long": 4}}):
            pickle.dump(obj, buf, protocol=2)
        buf.write(main.getvalue())
        pickle.dump([s.key for s in storages], buf, protocol=2)
        for s in storages:
            buf.write(struct.pack("<q", s.array.size) + s.array.tobytes())  # little-endian machine
        return buf.getvalue()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("archive/data.pkl", main.getvalue())
        zf.writestr("archive/byteorder", "little")
        for s in storages:
            zf.writestr(f"archive/data/{s.key}", s.array.tobytes())
        zf.writestr("archive/version", "3\n")
    return buf.getvalue()


def test_the_writer_writes_what_torch_reads():
    torch = pytest.importorskip("torch")
    state = collections.OrderedDict(w=np.arange(24, dtype=np.float32).reshape(2, 3, 4),
                                    n=np.array(7, dtype=np.int64), height=64, use_stereo=True)
    for legacy in (False, True):
        got = torch.load(io.BytesIO(torch_save(state, legacy)), weights_only=True)
        assert list(got) == list(state) and got["height"] == 64 and got["use_stereo"] is True
        np.testing.assert_array_equal(got["w"].numpy(), state["w"])
        assert got["n"].dtype == torch.int64 and int(got["n"]) == 7


def monodepth2_state(paddle_layer, rng, fc=False):
    """A Monodepth2 state dict (torch names, random values) shaped like a Paddle network's."""
    out = collections.OrderedDict()
    for key, value in paddle_layer.state_dict().items():
        arr = (rng.standard_normal(tuple(value.shape)) * 0.05).astype(np.float32)
        if key.endswith("._variance"):
            out[key[:-len("_variance")] + "running_var"] = np.abs(arr) + 0.5
            out[key[:-len("_variance")] + "num_batches_tracked"] = np.array(7, dtype=np.int64)
        else:
            out[key[:-len("_mean")] + "running_mean" if key.endswith("._mean") else key] = arr
    if fc:
        out["encoder.fc.weight"] = (rng.standard_normal((1000, 512)) * 0.01).astype(np.float32)
        out["encoder.fc.bias"] = np.zeros(1000, np.float32)
    return out


def model_states(pose=False):
    """{stem: state}: encoder (ResNet-18, 128x64, stereo), depth and optionally the pose nets."""
    import networks
    rng, enc = np.random.default_rng(0), networks.ResnetEncoder(18, False)
    states = {"encoder": monodepth2_state(enc, rng, fc=True),
              "depth": monodepth2_state(networks.DepthDecoder(enc.num_ch_enc), rng)}
    states["encoder"].update(height=64, width=128, use_stereo=True)
    if pose:
        penc = networks.ResnetEncoder(18, False, num_input_images=2)
        states["pose_encoder"] = monodepth2_state(penc, rng, fc=True)
        states["pose"] = monodepth2_state(networks.PoseDecoder(penc.num_ch_enc, 1, 2), rng)
    return states


def make_zip(files, prefix="", compression=zipfile.ZIP_DEFLATED):
    with zipfile.ZipFile(buf := io.BytesIO(), "w", compression, compresslevel=1) as zf:
        for name, data in files.items():
            zf.writestr(prefix + name, data)
    return buf.getvalue()


@pytest.fixture(scope="module")
def pth_sets(tmp_path_factory):
    """Two Monodepth2 folders of .pth files: zip format (encoder, depth) and legacy format
    (with pose_encoder, pose), each with the converter's output for it as the reference."""
    out = {}
    for kind, legacy, pose in (("zip", False, False), ("legacy", True, True)):
        states = model_states(pose)
        files = {stem + ".pth": torch_save(state, legacy) for stem, state in states.items()}
        base = tmp_path_factory.mktemp(kind)
        src = str(base / "pth")
        os.makedirs(src)
        for name, data in files.items():
            (base / "pth" / name).write_bytes(data)
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
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        cut = st.pop("truncate", None)
        self.wfile.write(body if cut is None else body[:cut])
        self.wfile.flush()
        time.sleep(st.pop("stall", 0))  # then the connection closes


@pytest.fixture
def srv():
    """A server on 127.0.0.1: ``state["files"]`` {path: bytes}, ``requests`` [(path, Range)], ``ranges``
    (answer Range requests), ``truncate`` / ``stall`` (send only that many bytes of the next answer /
    then wait that many seconds)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.state, server.url = dict(files={}, requests=[], ranges=True), f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def closed_port_url(path="/m.zip"):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}{path}"


def entry(url, data=None, name="mono_640x192", md5=True, eigen_url=None):
    """A one-model table: the published entry ``name`` pointed at ``url`` (md5 of ``data``)."""
    m = replace(pm.get(name), url=url, md5=hashlib.md5(data).hexdigest() if md5 and data else None,
                eigen_url=eigen_url)
    return {name: m}


def files_under(folder):
    return sorted(os.path.relpath(os.path.join(d, f), folder) for d, _, fs in os.walk(folder) for f in fs)


def error_of(fn, *args, **kwargs):
    """The one-line ToolkitError ``fn(*args, **kwargs)`` raises (as a string; ``.exc``: the error)."""
    with pytest.raises(ToolkitError) as exc:
        fn(*args, **({"log": lambda *_: None} | kwargs))
    assert "\n" not in str(exc.value)
    return type("Msg", (str,), {"exc": exc.value})(str(exc.value))


def cli(*args, env=None):
    return subprocess.run([sys.executable, MODELS_CLI, *args], capture_output=True, text=True, timeout=600, env=env)


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
    msg = error_of(pm.resolve_weights, "mono_640x19", cache, flag="--load_weights_folder")
    assert "--load_weights_folder mono_640x19" in msg and "mono_640x192" in msg and pm.LIST_HINT in msg

    # the CLI sees it (the real table: the cache is the same folder layout)
    res = cli("list", "--cache", cache)
    assert res.returncode == 0, res.stderr
    rows = {line.split()[0]: line.split() for line in res.stdout.splitlines()[1:-1]}
    assert len(rows) == 14 and rows["mono_640x192"][-1] == "yes" and rows["DH-Resnet50"][-1] == "no"
    assert rows["DH-Resnet50"][1:7] == ["depth-hints", "stereo", "640x192", "50", "0.102", "0.880"]
    res = cli("path", "mono_640x192", "--cache", cache)
    assert (res.returncode, res.stdout) == (0, folder + "\n")
    res = cli("--cache", cache, "path", "stereo_640x192")
    assert res.returncode == 2 and res.stdout == "" and len(res.stderr.splitlines()) == 1
    assert "not fetched" in res.stderr and "tools/models.py fetch stereo_640x192" in res.stderr


@pytest.mark.slow
def test_interrupted_download_resumes_with_a_range_request(srv, pth_sets, tmp_path):
    data = make_zip(pth_sets["zip"]["files"], compression=zipfile.ZIP_STORED)
    srv.state["files"]["/m.zip"] = data
    srv.state["truncate"] = cut = len(data) // 3
    table, cache = entry(srv.url + "/m.zip", data), str(tmp_path / "cache")
    msg = error_of(pm.fetch, "mono_640x192", cache, table=table)
    assert f"interrupted at {cut} of {len(data)} bytes" in msg and "run the same command again" in msg
    assert files_under(cache) == ["downloads/mono_640x192.zip.part"]
    assert os.path.getsize(os.path.join(cache, "downloads", "mono_640x192.zip.part")) == cut
    lines = []
    folder = pm.fetch("mono_640x192", cache, log=lines.append, table=table)
    assert srv.state["requests"][-1] == ("/m.zip", f"bytes={cut}-")
    assert any("resuming" in line and f"at byte {cut}" in line for line in lines)
    assert_same_folder(folder, pth_sets["zip"]["ref"])
    assert json.load(open(os.path.join(folder, "SOURCE.json")))["sha256"] == hashlib.sha256(data).hexdigest()


@pytest.mark.slow
def test_no_network_names_the_manual_path_and_a_zip_put_there_is_used(pth_sets, tmp_path, monkeypatch):
    cache = str(tmp_path / "cache")
    url = closed_port_url("/depth-hints/DH-Resnet50/models.zip")
    table = entry(url, name="DH-Resnet50", md5=False)
    msg, manual = error_of(pm.fetch, "DH-Resnet50", cache, table=table), os.path.join(cache, "downloads", "DH-Resnet50.zip")
    assert msg.startswith(f"cannot download DH-Resnet50 from {url} (")
    assert msg.endswith(f"download it by hand and put it at {manual}, or pass a weights folder")
    assert files_under(cache) == []

    # a server that accepts and never answers: the socket timeout, not a hang
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)
    monkeypatch.setattr(downloads, "TIMEOUT_S", 0.5)
    slow = entry(f"http://127.0.0.1:{silent.getsockname()[1]}/m.zip", name="DH-Resnet50", md5=False)
    assert re.match(r"cannot download DH-Resnet50 .*timed out", error_of(pm.fetch, "DH-Resnet50", cache, table=slow))
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
def test_cli_fetch_from_a_mirror_without_torch_prints_the_folder(srv, pth_sets, tmp_path):
    srv.state["files"]["/depth-hints/DH-HR-Mono%2BStereo/models.zip"] = make_zip(pth_sets["legacy"]["files"])
    cache = str(tmp_path / "cache")
    env = dict(os.environ, DEPTH_HINTS_MODELS_URL=srv.url, DEPTH_HINTS_CACHE=cache)
    driver = ("import runpy, sys; sys.modules['torch'] = None; "  # PyTorch blocked: any `import torch` fails
              f"sys.argv = [{MODELS_CLI!r}, 'fetch', 'DH-HR-Mono+Stereo']; runpy.run_path(sys.argv[0], run_name='__main__')")
    res = subprocess.run([sys.executable, "-c", driver], capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode == 0, res.stderr
    folder = os.path.join(cache, "models", "DH-HR-Mono+Stereo")
    assert res.stdout == folder + "\n" and "downloading DH-HR-Mono+Stereo" in res.stderr
    assert_same_folder(folder, pth_sets["legacy"]["ref"])
    assert pm.cached("DH-HR-Mono+Stereo", cache) == folder


def _bad_zips(marker):
    ok = torch_save({"a": np.zeros(2, np.float32)})
    payload = torch_save({"encoder.conv1.weight": np.zeros((2, 3), np.float32),
                          "x": Reduce(Global(os.system.__module__, "system"), (f"touch {marker}",))})
    return {
        "dotdot": ({"encoder.pth": ok, "depth.pth": ok, "../evil.pth": ok}, "unsafe path"),
        "absolute": ({"encoder.pth": ok, "depth.pth": ok, "/tmp/evil.pth": ok}, "unsafe path"),
        "no depth": ({"encoder.pth": ok}, "no depth.pth beside encoder.pth"),
        "not a model": ({"encoder.pth": ok, "depth.pth": ok}, "encoder.pdparams is not a ResNet encoder"),
        "payload": ({"encoder.pth": payload, "depth.pth": ok}, "refusing to load"),
        "wrong md5": ({"encoder.pth": ok, "depth.pth": ok}, f"wrong checksum, expected md5 {'0' * 32}, got "),
    }


@pytest.mark.parametrize("case", ["wrong md5", "dotdot", "absolute", "no depth", "not a model", "payload", "not a zip"])
def test_bad_zips_are_refused_and_deleted(srv, tmp_path, case):
    """One line (md5: expected and got), the file deleted, nothing left in the cache, nothing run."""
    marker = tmp_path / "pwned"
    files, expect = _bad_zips(marker).get(case, (None, "not a zip file"))
    data = make_zip(files) if files else b"PK\x03\x04 not really a zip"
    srv.state["files"]["/m.zip"] = data
    cache = str(tmp_path / "cache")
    table = entry(srv.url + "/m.zip", data)
    if case == "wrong md5":
        table["mono_640x192"] = replace(table["mono_640x192"], md5="0" * 32)
        expect += hashlib.md5(data).hexdigest()
    msg = error_of(pm.fetch, "mono_640x192", cache, table=table)
    assert expect in msg and "deleted it" in msg, msg
    if case == "payload":
        assert isinstance(msg.exc, safe_load.UnsafeFileError) and "system" in msg
    assert not marker.exists() and not (tmp_path / "evil.pth").exists()
    assert files_under(cache) == []


# ----------------------------------------------------------------------------- predictions, names, cache


def test_fetch_predictions_restarts_without_range_support(srv, tmp_path, monkeypatch):
    arr = np.random.default_rng(0).random((3, 8, 16)).astype(np.float32)
    np.save(buf := io.BytesIO(), arr)
    data = buf.getvalue()
    srv.state.update(ranges=False, truncate=100, stall=3)  # the transfer stalls: the socket timeout
    monkeypatch.setattr(downloads, "TIMEOUT_S", 0.5)
    srv.state["files"]["/p.npy"] = data
    table, cache = entry(srv.url + "/m.zip", eigen_url=srv.url + "/p.npy"), str(tmp_path / "cache")
    msg = error_of(pm.fetch_predictions, "mono_640x192", cache, table=table)
    assert f"interrupted at 100 of {len(data)} bytes (TimeoutError: timed out): run the same command again" in msg
    lines = []
    path = pm.fetch_predictions("mono_640x192", cache, log=lines.append, table=table)
    assert any("does not resume downloads, starting again" in line for line in lines)
    assert path == os.path.join(cache, "predictions", "mono_640x192_eigen.npy")
    np.testing.assert_array_equal(safe_load.load_npy(path), arr)
    assert files_under(cache) == ["predictions/mono_640x192_eigen.json", "predictions/mono_640x192_eigen.npy"]
    n = len(srv.state["requests"])
    assert pm.fetch_predictions("mono_640x192", cache, table=table) == path and len(srv.state["requests"]) == n

    np.save(buf := io.BytesIO(), np.zeros((4, 5), np.float32))
    srv.state["files"]["/bad.npy"] = buf.getvalue()
    bad = entry(srv.url + "/m.zip", name="stereo_640x192", eigen_url=srv.url + "/bad.npy")
    assert re.search(r"expected a float array .*got float32 \(4, 5\); deleted it",
                     error_of(pm.fetch_predictions, "stereo_640x192", cache, table=bad))
    assert not os.path.exists(pm.predictions_path("stereo_640x192", cache))
    with pytest.raises(ToolkitError, match="no published Eigen predictions for mono_no_pt_640x192"):
        pm.fetch_predictions("mono_no_pt_640x192", cache)


def test_names_and_cache_location(tmp_path, monkeypatch):
    assert len(pm.list_models()) == 14 and sum(m.md5 is not None for m in pm.list_models()) == 9
    m = pm.get("mono+stereo_640x192")
    assert (m.width, m.height, m.resnet_layers, m.md5) == (640, 192, 18, "c024d69012485ed05d7eaa9617a96b81")
    assert m.url.endswith("/monodepth2/mono%2Bstereo_640x192.zip") and m.eigen_url.endswith("_640x192_eigen.npy")
    msg = error_of(lambda name, log: pm.get(name), "dh-resnet50")
    assert "did you mean DH-Resnet50?" in msg and "mono+stereo_1024x320" in msg
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
def test_tools_take_a_published_name_where_they_take_a_weights_folder(srv, pth_sets, tmp_path):
    """test_simple.py --model_path <name>: downloaded, checked and cached the first time, then
    offline; the depth equals that of the same weights converted by tools/convert_torch_weights.py."""
    import numpy as np
    from PIL import Image
    srv.state["files"]["/depth-hints/DH-HR-Mono%2BStereo/models.zip"] = make_zip(pth_sets["zip"]["files"])
    cache = str(tmp_path / "cache")
    img = tmp_path / "img.png"
    Image.fromarray((np.random.default_rng(0).random((50, 90, 3)) * 255).astype(np.uint8)).save(img)
    env = dict(os.environ, DEPTH_HINTS_MODELS_URL=srv.url, DEPTH_HINTS_CACHE=cache, PYTHONWARNINGS="ignore")
    outs = []
    for flag, model, out in (("--model_name", "DH-HR-Mono+Stereo", "by_name"),
                             ("--model_path", pth_sets["zip"]["ref"], "by_folder")):
        res = subprocess.run([sys.executable, os.path.join(ROOT, "test_simple.py"), "--image_path", str(img),
                              flag, model, "--output_dir", str(tmp_path / out), "--device", "cpu"],
                             capture_output=True, text=True, timeout=600, env=env)
        assert res.returncode == 0, res.stderr[-2000:]
        outs.append(np.load(str(tmp_path / out / "img_disp.npy")))
    np.testing.assert_array_equal(outs[0], outs[1])
    assert len(srv.state["requests"]) == 1
    res = subprocess.run([sys.executable, os.path.join(ROOT, "test_simple.py"), "--image_path", str(img),
                          "--model_path", "DH-HR-Mono+Stereo", "--output_dir", str(tmp_path / "again"),
                          "--device", "cpu"], capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode == 0 and len(srv.state["requests"]) == 1  # the second use needs no network


def test_ext_disp_to_eval_takes_a_published_name(srv, tmp_path, monkeypatch):
    """evaluate_depth.py --ext_disp_to_eval <name>: the model's published Eigen predictions,
    fetched once (then offline) and read safely."""
    import io as _io
    import numpy as np
    import evaluate_depth
    disps = np.random.default_rng(1).random((3, 6, 20)).astype(np.float32)
    buf = _io.BytesIO()
    np.save(buf, disps)
    srv.state["files"]["/depth-hints/DH-Resnet50/disps_eigen_split.npy"] = buf.getvalue()
    monkeypatch.setenv("DEPTH_HINTS_MODELS_URL", srv.url)
    monkeypatch.setenv("DEPTH_HINTS_CACHE", str(tmp_path / "cache"))
    np.testing.assert_array_equal(evaluate_depth.load_ext_disps("DH-Resnet50"), disps)
    np.testing.assert_array_equal(evaluate_depth.load_ext_disps("DH-Resnet50"), disps)
    assert len(srv.state["requests"]) == 1
    with pytest.raises(ToolkitError, match="predictions file not found .*published model's name"):
        evaluate_depth.load_ext_disps("DH-Resnet5O")
