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
    assert os.listdir(out_dir) == []


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
    assert os.listdir(out_dir) == []


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
