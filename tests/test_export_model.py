"""export_model.py: the exported model (Paddle Inference with its default config, ONNX
Runtime) takes any batch and size and returns what the dynamic model computes."""
import contextlib
import json
import os
import subprocess
import sys

import numpy as np
import paddle
import pytest

import export_model
from camera import STEREO_SCALE_FACTOR
from layers import disp_to_depth

# (batch, height, width): two batch sizes at the training size and at another one
SHAPES = [(1, 64, 128), (3, 64, 128), (1, 96, 160), (3, 96, 160)]


@pytest.fixture(scope="module")
def stereo_model(tmp_path_factory, save_untrained_depth_model):
    """A random stereo-trained ResNet18 model folder 'trained' at 128x64."""
    folder = tmp_path_factory.mktemp("weights_stereo")
    enc, dec = save_untrained_depth_model(str(folder), 64, 128, use_stereo=True, seed=5)
    return str(folder), enc, dec


@pytest.fixture(scope="module")
def mono_model(tmp_path_factory, save_untrained_depth_model):
    folder = tmp_path_factory.mktemp("weights_mono")
    save_untrained_depth_model(str(folder), 64, 128, use_stereo=False, seed=6)
    return str(folder)


def reference(enc, dec, images, kind):
    """What the dynamic model gives for ``kind``, from the networks themselves."""
    with paddle.no_grad():
        disp = dec(enc(paddle.to_tensor(images)))[("disp", 0)].numpy()
    if kind == "disp":
        return disp
    depth = disp_to_depth(disp, 0.1, 100)[1]
    return depth * STEREO_SCALE_FACTOR if kind == "metric" else depth


_EXPORTS = {}


@pytest.fixture(scope="module")
def exported(stereo_model, tmp_path_factory):
    """exported(fmt, kind) -> prefix; each export is done once per module."""
    folder = stereo_model[0]

    def get(fmt, kind):
        if (fmt, kind) not in _EXPORTS:
            prefix = str(tmp_path_factory.mktemp(f"export_{fmt}_{kind}") / "depth")
            assert export_model.main(["--load_weights_folder", folder, "--output_path", prefix,
                                      "--output", kind, "--format", fmt]) == 0
            _EXPORTS[fmt, kind] = prefix
        return _EXPORTS[fmt, kind]
    return get


def _images(batch, height, width, seed=0):
    return np.random.RandomState(seed).rand(batch, 3, height, width).astype(np.float32)


@pytest.mark.slow
def test_default_paddle_inference_config_runs_the_program(exported, stereo_model):
    """Users' deployments keep the defaults: oneDNN on (Paddle issue 79749 stops programs
    holding a double-array attribute such as interpolate's scale)."""
    import paddle.inference as paddle_infer
    prefix = exported("paddle", "disp")
    ops = json.load(open(prefix + ".json"))["program"]["regions"][0]["blocks"][0]["ops"]
    double_arrays = [(op["#"], attr["N"]) for op in ops if op["#"] != "p"  # p: parameters
                     for attr in op.get("A", []) if attr["AT"]["#"] == "0.a_array"
                     and any(e.get("#") == "0.a_f64" for e in attr["AT"]["D"])]
    assert double_arrays == []
    # the decoder is traced with export_ops' forms: no oneDNN pad3d, no interpolate
    assert not [op["#"] for op in ops if "pad3d" in op["#"] or "interp" in op["#"]]
    config = paddle_infer.Config(prefix + ".json", prefix + ".pdiparams")  # nothing changed
    assert config.mkldnn_enabled()
    predictor = paddle_infer.create_predictor(config)
    images = _images(1, 64, 128)
    handle = predictor.get_input_handle(predictor.get_input_names()[0])
    handle.reshape(list(images.shape))
    handle.copy_from_cpu(images)
    predictor.run()
    got = predictor.get_output_handle(predictor.get_output_names()[0]).copy_to_cpu()
    want = reference(stereo_model[1], stereo_model[2], images, "disp")
    assert want.std() > 1e-4  # not a comparison of constants
    np.testing.assert_allclose(got, want, atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["disp", "depth", "metric"])
def test_paddle_program_any_size_and_batch_equals_dynamic_model(exported, stereo_model, kind):
    prefix = exported("paddle", kind)
    info = json.load(open(prefix + "_export.json"))
    assert info["format"] == "paddle" and info["output"]["kind"] == kind
    assert info["output"]["scale"] == (STEREO_SCALE_FACTOR if kind == "metric" else 1.0)
    assert info["input"]["shape"] == ["batch", 3, "height", "width"]
    assert (info["input"]["height"], info["input"]["width"]) == (64, 128)
    assert info["checkpoint"]["folder"] == os.path.abspath(stereo_model[0])
    assert info["checkpoint"]["files"]["encoder.pdparams"].startswith("sha256:")
    assert sorted(info["files"]) == ["depth.json", "depth.pdiparams"]
    assert all(r["max_rel_diff"] < 1e-4 for r in info["check"]["runs"])

    run = export_model.ExportedRunner(prefix, "paddle")  # Paddle Inference, default config
    loaded = paddle.jit.load(prefix)  # the program itself, in Paddle's executor
    loaded.eval()
    for seed, (batch, height, width) in enumerate(SHAPES):
        images = _images(batch, height, width, seed)
        want = reference(stereo_model[1], stereo_model[2], images, kind)
        got = run(images)
        assert got.shape == (batch, 1, height, width)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
        with paddle.no_grad():
            out = loaded(paddle.to_tensor(images))
        out = (out[0] if isinstance(out, (list, tuple)) else out).numpy()
        np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["disp", "depth", "metric"])
def test_onnx_runtime_any_size_and_batch_equals_dynamic_model(exported, stereo_model, kind):
    pytest.importorskip("paddle2onnx")
    ort = pytest.importorskip("onnxruntime")
    prefix = exported("onnx", kind)
    info = json.load(open(prefix + "_export.json"))
    assert info["format"] == "onnx" and info["files"] == ["depth.onnx"]
    assert not os.path.exists(prefix + ".pdiparams")
    session = ort.InferenceSession(prefix + ".onnx", providers=["CPUExecutionProvider"])
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert inp.name == "image" and inp.shape == ["batch", 3, "height", "width"]
    assert out.name == kind == info["output"]["name"]
    for seed, (batch, height, width) in enumerate(SHAPES):
        images = _images(batch, height, width, seed)
        want = reference(stereo_model[1], stereo_model[2], images, kind)
        got = session.run(None, {"image": images})[0]
        assert got.shape == (batch, 1, height, width)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_traced_forms_equal_the_decoders_ops(stereo_model):
    """export_ops' forms give the values of layers' ops, inside traced_forms only."""
    import cpu_kernels
    import export_ops
    import layers
    x0 = np.random.RandomState(0).rand(2, 3, 4, 5).astype(np.float32)
    x = paddle.to_tensor(x0)
    padded = np.pad(x0, ((0, 0), (0, 0), (1, 1), (1, 1)), "reflect")
    np.testing.assert_array_equal(export_ops.pad1_by_concat(x).numpy(), padded)
    for kernels in (True, False):  # layers' CPU kernels and plain ops
        with (contextlib.nullcontext() if kernels else cpu_kernels.disabled()):
            np.testing.assert_array_equal(export_ops.pad1_by_concat(x).numpy(),
                                          layers.reflection_pad1(x).numpy())
            np.testing.assert_array_equal(export_ops.upsample_by_tile(x).numpy(), layers.upsample(x).numpy())
            np.testing.assert_array_equal(export_ops.upsample_pad1_by_tile(x).numpy(),
                                          layers.upsample_pad1(x).numpy())
    _, enc, dec = stereo_model
    images = _images(2, 64, 96)
    want = reference(enc, dec, images, "disp")
    with export_ops.traced_forms(dec):
        assert dec.reflection_pad1 is export_ops.pad1_by_concat
        assert dec.upsample_pad1 is export_ops.upsample_pad1_by_tile
        np.testing.assert_array_equal(reference(enc, dec, images, "disp"), want)
    assert dec.reflection_pad1 is layers.reflection_pad1 and dec.upsample_pad1 is layers.upsample_pad1


def test_metric_of_a_mono_model_is_refused(mono_model, tmp_path, capsys):
    out = str(tmp_path / "x" / "depth")
    assert export_model.main(["--load_weights_folder", mono_model, "--output_path", out,
                              "--output", "metric"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: metric depth needs a stereo-trained model")
    assert "--output metric" in err
    assert not os.path.exists(tmp_path / "x" / "depth.pdiparams")


@pytest.mark.slow
def test_export_errors(stereo_model, tmp_path, capsys):
    folder = stereo_model[0]
    out = str(tmp_path / "x" / "depth")
    for size in (["--height", "100"], ["--height", "32"]):
        assert export_model.main(["--load_weights_folder", folder, "--output_path", out] + size) == 2
        err = capsys.readouterr().err
        assert "not a multiple of 32 of at least 64x64" in err and "--height/--width" in err
    assert export_model.main(["--load_weights_folder", folder, "--output_path", out,
                              "--num_layers", "34"]) == 2
    err = capsys.readouterr().err
    # one loading rule (checkpoint.py): the weights decide, a --num_layers naming another depth is refused
    assert err.startswith("error: encoder.pdparams holds a ResNet-18, not the ResNet-34") and "--num_layers" in err
    assert not os.path.exists(tmp_path / "x" / "depth.pdiparams")


def test_onnx_without_paddle2onnx_says_what_to_install(stereo_model, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "paddle2onnx", None)  # import raises ImportError
    assert export_model.main(["--load_weights_folder", stereo_model[0], "--output_path",
                              str(tmp_path / "depth"), "--format", "onnx"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: paddle2onnx is not installed (--format onnx)")
    assert "requirements-deploy.txt" in err and err.count("\n") == 1


@pytest.mark.slow
def test_failed_conversion_is_one_line_and_leaves_nothing(stereo_model, tmp_path, capsys,
                                                          monkeypatch):
    """paddle2onnx aborts its process on an operator it cannot convert: the child's error
    line is reported and no file is moved into place."""
    pytest.importorskip("paddle2onnx")

    def aborted(cmd, **kwargs):
        return subprocess.CompletedProcess(cmd, -6, "[Paddle2ONNX] Start parsing\n\x1b[31m[ERROR]"
                                           "[Paddle2ONNX] Due to the unsupported operators, the "
                                           "conversion is aborted.\x1b[0m\n", "")
    monkeypatch.setattr(export_model.subprocess, "run", aborted)
    out_dir = tmp_path / "o"
    assert export_model.main(["--load_weights_folder", stereo_model[0], "--output_path",
                              str(out_dir / "depth"), "--format", "onnx"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "could not convert the Paddle program" in err
    assert "[ERROR][Paddle2ONNX] Due to the unsupported operators" in err and "--format paddle" in err
    assert not out_dir.exists()  # the folder the export made is gone again: nothing left


@pytest.mark.slow
def test_an_exported_model_that_differs_is_refused(stereo_model, tmp_path, capsys, monkeypatch):
    """A conversion that merely succeeds is not trusted: the outputs are compared."""
    real_call = export_model.ExportedRunner.__call__
    monkeypatch.setattr(export_model.ExportedRunner, "__call__",
                        lambda self, images: real_call(self, images) + 1e-2)
    out_dir = tmp_path / "o"
    assert export_model.main(["--load_weights_folder", stereo_model[0], "--output_path",
                              str(out_dir / "depth")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: the exported model differs from the dynamic model by")
    assert "do not deploy it" in err and err.count("\n") == 1
    assert not out_dir.exists()  # the folder the export made is gone again: nothing left


@pytest.mark.slow
def test_cli_missing_folder_exit_2(tmp_path, repo_root):
    res = subprocess.run([sys.executable, os.path.join(repo_root, "export_model.py"),
                          "--load_weights_folder", str(tmp_path / "nope"),
                          "--output_path", str(tmp_path / "o")],
                         capture_output=True, text=True, timeout=120, cwd=str(tmp_path))
    assert res.returncode == 2
    assert "error: weights folder not found" in res.stderr and "--load_weights_folder" in res.stderr


@pytest.mark.slow
def test_dynamic_model_still_runs_after_export(stereo_model, tmp_path):
    """Tracing for export must leave no static values in shared caches (layers.py)."""
    folder, enc, dec = stereo_model
    export_model.export(folder, str(tmp_path / "depth"), check=False)
    x = paddle.rand([1, 3, 64, 128])
    with paddle.no_grad():
        out = dec(enc(x))[("disp", 0)]
    assert list(out.shape) == [1, 1, 64, 128]


@pytest.mark.slow
def test_output_path_checked_first_and_no_silent_overwrite(stereo_model, tmp_path, capsys):
    folder = stereo_model[0]
    (tmp_path / "file").write_text("x")
    assert export_model.main(["--load_weights_folder", folder, "--output_path",
                              str(tmp_path / "file" / "depth")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--output_path" in err[0] and "is a file" in err[0]
    prefix = str(tmp_path / "out" / "depth")
    assert export_model.main(["--load_weights_folder", folder, "--output_path", prefix, "--no_check"]) == 0
    before = open(prefix + "_export.json").read()
    capsys.readouterr()
    assert export_model.main(["--load_weights_folder", folder, "--output_path", prefix, "--no_check"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--overwrite" in err[0] and "already there" in err[0]
    assert open(prefix + "_export.json").read() == before
    assert export_model.main(["--load_weights_folder", folder, "--output_path", prefix, "--no_check",
                              "--output", "depth", "--overwrite"]) == 0
    assert '"kind": "depth"' in open(prefix + "_export.json").read()


# ----------------------------------------------------------------------------- one export per output, nothing half-written


def _errors(err):
    return [ln for ln in err.splitlines() if ln.startswith("error:")]


@pytest.fixture
def sleeper():
    """A live process that is not an export (its PID stands for a running owner)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    yield proc
    proc.kill()
    proc.wait()


def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.slow
def test_second_export_into_the_same_output_names_the_first(stereo_model, tmp_path, capsys, repo_root):
    """A real concurrent export: the second one into the same --output_path gets one line
    naming the first's PID; one into another prefix of the same folder runs beside it and
    leaves the first's temp folder alone."""
    import time
    prefix = str(tmp_path / "out" / "depth")
    first = subprocess.Popen([sys.executable, os.path.join(repo_root, "export_model.py"),
                              "--load_weights_folder", stereo_model[0], "--output_path", prefix],
                             cwd=repo_root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        temp = []
        while time.time() < deadline and first.poll() is None:
            temp = [n for n in os.listdir(tmp_path / "out") if n.startswith(f".export_{first.pid}_")] \
                if (tmp_path / "out").is_dir() else []
            if temp:
                break
            time.sleep(0.02)
        assert temp, ("the first export never wrote its temp folder", first.communicate())
        assert os.path.isfile(export_model.lock_path(prefix))
        assert export_model.main(["--load_weights_folder", stereo_model[0], "--output_path", prefix,
                                  "--no_check"]) == 2
        (line,) = _errors(capsys.readouterr().err)
        assert f"process {first.pid}" in line and prefix in line and "--output_path" in line
        # another prefix in the same folder: not locked out, and the live temp folder stays
        if first.poll() is None:
            assert export_model.main(["--load_weights_folder", stereo_model[0], "--output_path",
                                      str(tmp_path / "out" / "other"), "--no_check"]) == 0
        out, err = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 0, err[-2000:]
    assert sorted(n for n in os.listdir(tmp_path / "out")) == [
        "depth.json", "depth.pdiparams", "depth_export.json",
        "other.json", "other.pdiparams", "other_export.json"]  # no lock, no temp folder left


def test_a_live_lock_is_one_line_a_dead_one_is_taken_over(stereo_model, tmp_path, capsys, sleeper):
    import socket
    prefix = str(tmp_path / "depth")
    lock = export_model.lock_path(prefix)
    assert lock == str(tmp_path / ".depth.export.lock")
    with open(lock, "w") as f:
        f.write(f"{sleeper.pid} {socket.gethostname()}\n")
    assert export_model.main(["--load_weights_folder", stereo_model[0], "--output_path", prefix,
                              "--no_check"]) == 2
    err = capsys.readouterr().err
    (line,) = _errors(err)
    assert err.count("\n") == 1 and f"process {sleeper.pid} on this host" in line and "--output_path" in line
    assert open(lock).read().split()[0] == str(sleeper.pid)  # the owner's lock is left alone
    assert not os.path.exists(prefix + ".pdiparams")
    dead = _dead_pid()
    with open(lock, "w") as f:
        f.write(f"{dead} {socket.gethostname()}\n")
    assert export_model.main(["--load_weights_folder", stereo_model[0], "--output_path", prefix,
                              "--no_check"]) == 0
    out = capsys.readouterr().out
    assert f"from process {dead}, which is no longer running" in out
    assert not os.path.exists(lock) and os.path.isfile(prefix + "_export.json")


def test_dead_temp_folders_are_removed_live_ones_kept(tmp_path, sleeper):
    """clean_dead_exports: by the PID recorded in the temp folder's name (and its owner
    file), never a live export's folder of another output."""
    import json as _json
    import time
    tag = export_model._host_tag()
    dead = _dead_pid()

    def make(name, output=None, age=0):
        path = tmp_path / name
        path.mkdir()
        (path / "depth.pdiparams").write_bytes(b"partial")
        if output is not None:
            (path / export_model.OWNER_FILE).write_text(_json.dumps({"pid": 0, "output": output}))
        if age:
            os.utime(path, (time.time() - age, time.time() - age))
        return path

    dead_other = make(f".export_{dead}_{tag}_a1", "other")             # killed export of another output
    dead_no_owner = make(f".export_{dead}_{tag}_a2")                   # killed before its owner file
    live_other = make(f".export_{sleeper.pid}_{tag}_b1", "other", age=3600)  # a live export elsewhere
    reused_ours = make(f".export_{sleeper.pid}_{tag}_b2", "depth", age=3600)  # ours, PID since reused
    live_ours_new = make(f".export_{sleeper.pid}_{tag}_b3", "depth")   # newer than this process
    other_host = make(f".export_{dead}_{'0' * 8 if tag != '0' * 8 else '1' * 8}_c1", "depth")
    legacy_old = make(".export_k2j3h4", age=2 * 86400)
    legacy_new = make(".export_x9y8z7")
    not_ours = make(".exports_of_mine", age=2 * 86400)
    lines = []
    removed = export_model.clean_dead_exports(str(tmp_path), "depth", log=lines.append)
    assert sorted(removed) == sorted(str(p) for p in (dead_other, dead_no_owner, reused_ours, legacy_old))
    for kept in (live_other, live_ours_new, other_host, legacy_new, not_ours):
        assert kept.is_dir(), kept
    assert len(lines) == 4 and all("left by an export that did not finish" in ln for ln in lines)
    assert any(f"process {dead}, no longer running" in ln for ln in lines)


@pytest.mark.slow
def test_export_of_a_killed_run_is_cleaned_up(stereo_model, tmp_path, repo_root):
    """kill -9 in the middle of an export: its temp folder is removed by the next export,
    its lock taken over, and nothing of it ever appears under the final name."""
    import signal
    import time
    prefix = str(tmp_path / "depth")
    proc = subprocess.Popen([sys.executable, os.path.join(repo_root, "export_model.py"),
                             "--load_weights_folder", stereo_model[0], "--output_path", prefix],
                            cwd=repo_root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    temp = []
    while time.time() < deadline and proc.poll() is None and not temp:
        temp = [n for n in os.listdir(tmp_path) if n.startswith(f".export_{proc.pid}_")]
        time.sleep(0.02)
    assert temp, "the export never wrote its temp folder"
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    left = sorted(os.listdir(tmp_path))
    assert not [n for n in left if not n.startswith(".")], left  # nothing under the final name
    r = subprocess.run([sys.executable, os.path.join(repo_root, "export_model.py"), "--load_weights_folder",
                        stereo_model[0], "--output_path", prefix, "--no_check"],
                       cwd=repo_root, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "left by an export that did not finish" in r.stdout
    assert sorted(os.listdir(tmp_path)) == ["depth.json", "depth.pdiparams", "depth_export.json"]


@contextlib.contextmanager
def _tmpfs(path, options):
    """A real tmpfs at ``path`` (skips the test where mounting is not allowed)."""
    os.makedirs(path, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({(r.stderr or r.stdout).strip()[:100]})")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


@pytest.mark.slow
@pytest.mark.parametrize("earlier", [False, True], ids=["new", "overwrite"])
def test_full_disk_is_one_line_and_nothing_half_written(stereo_model, tmp_path, capsys, earlier):
    """A real full disk (a 2 MB tmpfs; the model is 57 MB): Paddle's writer stops silently,
    the export notices, says so in one line naming the folder, exit 2; the folder holds what
    it held before (nothing, or the earlier export untouched with --overwrite)."""
    with _tmpfs(tmp_path / "disk", "size=2m") as disk:
        prefix = str(disk / "depth")
        before = {}
        if earlier:
            for ext in (".json", ".pdiparams", "_export.json"):
                with open(prefix + ext, "w") as f:
                    f.write(f"earlier {ext}")
                before[prefix + ext] = f"earlier {ext}"
        args = ["--load_weights_folder", stereo_model[0], "--output_path", prefix, "--no_check"]
        assert export_model.main(args + (["--overwrite"] if earlier else [])) == 2
        err = capsys.readouterr().err
        (line,) = _errors(err)
        assert err.count("\n") == 1
        assert line.startswith(f"error: cannot write the exported model into {disk} (")
        assert "depth.pdiparams stops inside parameter" in line and "MB free there" in line
        assert ("the earlier export there is unchanged" if earlier else "nothing was written there") in line
        assert sorted(os.listdir(disk)) == sorted(os.path.basename(p) for p in before)
        for path, text in before.items():
            assert open(path).read() == text
        # a subfolder the export had to make is removed again
        assert export_model.main(["--load_weights_folder", stereo_model[0], "--output_path",
                                  str(disk / "new" / "depth"), "--no_check"]) == 2
        assert not (disk / "new").exists()


def test_read_only_folder_is_one_line(stereo_model, tmp_path, capsys):
    if os.geteuid() == 0:  # root writes anywhere: a read-only filesystem it is
        ctx = _tmpfs(tmp_path / "ro", "size=1m,ro")
    else:
        (tmp_path / "ro").mkdir()
        os.chmod(tmp_path / "ro", 0o555)
        ctx = contextlib.nullcontext(tmp_path / "ro")
    with ctx as ro:
        assert export_model.main(["--load_weights_folder", stereo_model[0], "--output_path",
                                  str(ro / "depth"), "--no_check"]) == 2
        (line,) = _errors(capsys.readouterr().err)
        assert "--output_path" in line and str(ro) in line and "not writable" in line
        assert os.listdir(ro) == []


@pytest.mark.slow
@pytest.mark.parametrize("where", ["temp folder", "record", "fsync", "move"])
def test_write_errors_mid_export_leave_nothing(stereo_model, tmp_path, capsys, monkeypatch, where):
    """ENOSPC / EACCES wherever the export writes: one line naming the folder, exit 2, and
    with --overwrite the earlier export is whole again (the move is rolled back)."""
    import errno
    folder = tmp_path / "o"
    prefix = str(folder / "depth")
    assert export_model.main(["--load_weights_folder", stereo_model[0], "--output_path", prefix,
                              "--no_check", "--output", "depth"]) == 0
    before = {n: open(folder / n, "rb").read() for n in os.listdir(folder)}
    capsys.readouterr()
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    if where == "temp folder":
        monkeypatch.setattr(export_model.tempfile, "mkdtemp",
                            lambda **kw: (_ for _ in ()).throw(PermissionError(errno.EACCES, "Permission denied")))
    elif where == "record":
        monkeypatch.setattr(export_model, "atomic_write_text", lambda *a: (_ for _ in ()).throw(full))
    elif where == "fsync":
        monkeypatch.setattr(export_model, "_fsync", lambda path: (_ for _ in ()).throw(full))
    else:
        real, moved_in = os.replace, []

        def replace(src, dst):
            if os.path.basename(os.path.dirname(src)).startswith(".export_") and \
                    os.path.dirname(dst) == str(folder):
                moved_in.append(dst)
                if len(moved_in) == 2:  # earlier files aside, the first new one in, then the disk is full
                    raise full
            return real(src, dst)
        monkeypatch.setattr(export_model.os, "replace", replace)
    assert export_model.main(["--load_weights_folder", stereo_model[0], "--output_path", prefix,
                              "--no_check", "--overwrite"]) == 2
    err = capsys.readouterr().err
    (line,) = _errors(err)
    assert err.count("\n") == 1 and line.startswith(f"error: cannot write the exported model into {folder} (")
    assert ("Permission denied" if where == "temp folder" else "No space left on device") in line
    assert "the earlier export there is unchanged" in line
    assert {n: open(folder / n, "rb").read() for n in os.listdir(folder)} == before


@pytest.mark.slow
def test_overwrite_with_another_format_leaves_no_stale_files(stereo_model, tmp_path):
    """--overwrite replaces the whole earlier export: a paddle export overwritten by an ONNX
    one leaves no .json/.pdiparams beside the .onnx its record names."""
    pytest.importorskip("paddle2onnx")
    prefix = str(tmp_path / "depth")
    assert export_model.main(["--load_weights_folder", stereo_model[0], "--output_path", prefix,
                              "--no_check"]) == 0
    assert export_model.main(["--load_weights_folder", stereo_model[0], "--output_path", prefix,
                              "--no_check", "--format", "onnx", "--overwrite"]) == 0
    assert sorted(os.listdir(tmp_path)) == ["depth.onnx", "depth_export.json"]


def test_params_file_check_finds_a_file_cut_short(tmp_path):
    """check_params_file on a real paddle.jit.save output, whole and cut at every kind of place."""
    net = paddle.nn.Sequential(paddle.nn.Conv2D(3, 4, 3), paddle.nn.BatchNorm2D(4))
    net.eval()
    prefix = str(tmp_path / "m")
    paddle.jit.save(net, prefix, input_spec=[paddle.static.InputSpec([None, 3, 8, 8], "float32")])
    count = export_model._program_parameter_count(prefix + ".json")
    assert count == 6  # conv weight, bias; bn weight, bias, mean, variance
    assert export_model.check_params_file(prefix + ".pdiparams", count) == count
    export_model.check_paddle_program(prefix)
    data = open(prefix + ".pdiparams", "rb").read()
    for cut in (1, 12, 20, 30, len(data) // 2, len(data) - 1):
        open(prefix + ".pdiparams", "wb").write(data[:cut])
        with pytest.raises(export_model._Incomplete):
            export_model.check_params_file(prefix + ".pdiparams", count)
    # cut exactly after the first tensor (no LoD): only the program's parameter count tells
    desc_size = int.from_bytes(data[16:20], "little")
    first_end = 20 + desc_size + export_model._tensor_bytes(data[20:20 + desc_size])
    open(prefix + ".pdiparams", "wb").write(data[:first_end])
    assert export_model.check_params_file(prefix + ".pdiparams") == 1
    with pytest.raises(export_model._Incomplete, match=f"holds 1 of the program's {count} parameters"):
        export_model.check_params_file(prefix + ".pdiparams", count)
    json_text = open(prefix + ".json").read()
    open(prefix + ".json", "w").write(json_text[: len(json_text) // 2])
    with pytest.raises(export_model._Incomplete, match="m.json is cut short"):
        export_model.check_paddle_program(prefix)
