"""export_model.py: the static (paddle.jit.save) depth net gives the dynamic model's output."""
import os
import subprocess
import sys

import numpy as np
import paddle
import pytest

import export_model
import networks


@pytest.fixture(scope="module")
def weights_folder(tmp_path_factory):
    """A random ResNet18 model folder trained 'at' 128x64."""
    paddle.seed(5)
    folder = tmp_path_factory.mktemp("weights_0")
    enc = networks.ResnetEncoder(18, False)
    dec = networks.DepthDecoder(enc.num_ch_enc)
    state = dict(enc.state_dict())
    state.update(height=64, width=128, use_stereo=False)
    paddle.save(state, str(folder / "encoder.pdparams"))
    paddle.save(dec.state_dict(), str(folder / "depth.pdparams"))
    enc.eval()
    dec.eval()
    return folder, enc, dec


@pytest.mark.parametrize("batch", [None, 2])  # None: the default, 1
def test_export_round_trip_matches_dynamic_model(weights_folder, tmp_path, batch):
    folder, enc, dec = weights_folder
    prefix = str(tmp_path / "out" / "depth")
    extra = [] if batch is None else ["--batch_size", str(batch)]
    assert export_model.main(["--load_weights_folder", str(folder), "--output_path", prefix]
                             + extra) == 0
    names = sorted(os.listdir(tmp_path / "out"))
    assert "depth.pdiparams" in names and not any(n.startswith(".export_") for n in names)

    loaded = paddle.jit.load(prefix)
    loaded.eval()
    x = paddle.to_tensor(np.random.RandomState(0).rand(batch or 1, 3, 64, 128).astype(np.float32))
    with paddle.no_grad():
        want = dec(enc(x))[("disp", 0)].numpy()
        got = loaded(x)
    got = (got[0] if isinstance(got, (list, tuple)) else got).numpy()
    assert got.shape == (batch or 1, 1, 64, 128)
    assert want.std() > 1e-4
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_export_errors(weights_folder, tmp_path, capsys):
    folder, _, _ = weights_folder
    out = str(tmp_path / "x" / "depth")
    assert export_model.main(["--load_weights_folder", str(folder), "--output_path", out,
                              "--height", "100"]) == 2
    assert "not a multiple of 32" in capsys.readouterr().err
    assert export_model.main(["--load_weights_folder", str(folder), "--output_path", out,
                              "--num_layers", "34"]) == 2
    err = capsys.readouterr().err
    # one loading rule (checkpoint.py): the weights decide, a --num_layers naming another depth is refused
    assert err.startswith("error: encoder.pdparams holds a ResNet-18, not the ResNet-34") and "--num_layers" in err
    assert not os.path.exists(tmp_path / "x" / "depth.pdiparams")


def test_cli_missing_folder_exit_2(tmp_path, repo_root):
    res = subprocess.run([sys.executable, os.path.join(repo_root, "export_model.py"),
                          "--load_weights_folder", str(tmp_path / "nope"),
                          "--output_path", str(tmp_path / "o")],
                         capture_output=True, text=True, timeout=120, cwd=str(tmp_path))
    assert res.returncode == 2
    assert "error: weights folder not found" in res.stderr and "--load_weights_folder" in res.stderr


def test_dynamic_model_still_runs_after_export(weights_folder, tmp_path):
    """Tracing for export must leave no static values in shared caches (layers.py)."""
    folder, enc, dec = weights_folder
    export_model.export(str(folder), str(tmp_path / "depth"))
    x = paddle.rand([1, 3, 64, 128])
    with paddle.no_grad():
        out = dec(enc(x))[("disp", 0)]
    assert list(out.shape) == [1, 1, 64, 128]
