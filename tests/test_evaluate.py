"""evaluate_depth.py: metrics, mask/crop, median scaling, post-processing, the CLI on
constructed predictions, and (slow) train -> export gt -> evaluate on synthetic KITTI."""
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

import evaluate_depth as ed
from layers import DepthErrors

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = sys.executable


# ----------------------------------------------------------------------------- pure parts


def _gt_pred_case():
    """gt and predicted depth for 4 valid pixels + 2 invalid ones (gt 0 and gt 90 > 80)."""
    gt = np.array([[2.0, 4.0, 5.0], [3.0, 0.0, 90.0]])
    pred = np.array([[1.0, 4.0, 10.0], [2.0, 7.0, 7.0]])
    return gt, pred


def test_metrics_hand_computed_no_crop_no_scaling():
    gt, pred = _gt_pred_case()
    res = ed.evaluate_predictions((1.0 / pred)[None], gt[None], eval_split="eigen_benchmark",
                                  disable_median_scaling=True)
    m = res["metrics"]
    # valid pixels: (gt, pred) = (2, 1), (4, 4), (5, 10), (3, 2)
    assert m["abs_rel"] == pytest.approx((1 / 2 + 0 + 5 / 5 + 1 / 3) / 4, rel=1e-6)
    assert m["sq_rel"] == pytest.approx((1 / 2 + 0 + 25 / 5 + 1 / 3) / 4, rel=1e-6)
    assert m["rmse"] == pytest.approx(math.sqrt((1 + 0 + 25 + 1) / 4), rel=1e-6)
    l2, l15 = math.log(2) ** 2, math.log(1.5) ** 2
    assert m["rmse_log"] == pytest.approx(math.sqrt((l2 + 0 + l2 + l15) / 4), rel=1e-6)
    # max ratios 2, 1, 2, 1.5: < 1.25 once; < 1.5625 twice; < 1.953 twice
    assert (m["a1"], m["a2"], m["a3"]) == pytest.approx((0.25, 0.5, 0.5))
    assert res["num_images"] == 1 and res["median_scaling"] is False
    assert "ratio_stats" not in res


def test_clamp_predictions_to_80():
    gt = np.full((2, 2), 40.0)
    pred_depth = np.full((2, 2), 200.0)  # clamped to 80 -> abs_rel = 1
    res = ed.evaluate_predictions((1.0 / pred_depth)[None], gt[None], eval_split="eigen_benchmark",
                                  disable_median_scaling=True)
    assert res["metrics"]["abs_rel"] == pytest.approx(1.0)
    assert res["metrics"]["rmse"] == pytest.approx(40.0)


def test_garg_crop_bounds_kitti_size():
    # Monodepth2's crop on the 375 x 1242 KITTI ground truth
    assert ed.garg_crop_bounds(375, 1242) == (153, 371, 44, 1197)
    assert ed.garg_crop_bounds(10, 100) == (4, 9, 3, 96)


def test_eval_mask_crop_and_range():
    gt = np.full((10, 100), 10.0)
    gt[5, 50] = 0.0      # invalid (<= 1e-3)
    gt[6, 50] = 80.0     # invalid (not < 80)
    m_eigen = ed.compute_eval_mask(gt, "eigen")
    m_bench = ed.compute_eval_mask(gt, "eigen_benchmark")
    assert m_bench.sum() == 1000 - 2
    assert m_eigen.sum() == (9 - 4) * (96 - 3) - 2
    assert m_eigen[4, 3] and m_eigen[8, 95]
    assert not m_eigen[3, 50] and not m_eigen[9, 50] and not m_eigen[5, 2] and not m_eigen[5, 96]


def test_crop_changes_metrics_only_outside_eigen():
    gt = np.full((10, 100), 10.0)
    pred_depth = np.full((10, 100), 10.0)
    pred_depth[0:4, :] = 20.0  # wrong only above the crop: 400 pixels of abs_rel 1
    disps = (1.0 / pred_depth)[None]
    eig = ed.evaluate_predictions(disps, gt[None], eval_split="eigen", disable_median_scaling=True)
    ben = ed.evaluate_predictions(disps, gt[None], eval_split="eigen_benchmark",
                                  disable_median_scaling=True)
    assert eig["metrics"]["abs_rel"] == pytest.approx(0.0, abs=1e-7)
    assert ben["metrics"]["abs_rel"] == pytest.approx(400 / 1000)
    assert ben["metrics"]["a1"] == pytest.approx(600 / 1000)


def test_resize_to_gt_size():
    # a 2x4 prediction of constant depth 5 is resized to the 6x12 ground truth
    gt = np.full((6, 12), 10.0)
    disps = np.full((1, 2, 4), 1.0 / 5.0)
    res = ed.evaluate_predictions(disps, gt[None], eval_split="eigen_benchmark",
                                  disable_median_scaling=True)
    assert res["metrics"]["abs_rel"] == pytest.approx(0.5, rel=1e-5)


def test_median_scaling_ratios():
    gt = np.stack([np.arange(1, 13, dtype=np.float64).reshape(3, 4)] * 2)
    pred_depth = np.stack([gt[0] / 2.0, gt[1] / 4.0])  # ratios 2 and 4
    res = ed.evaluate_predictions(1.0 / pred_depth, gt, eval_split="eigen_benchmark")
    assert res["median_scaling"] is True
    assert res["ratios"] == pytest.approx([2.0, 4.0])
    st = res["ratio_stats"]
    assert st["median"] == pytest.approx(3.0)
    assert st["std"] == pytest.approx(1.0 / 3.0)  # std of [2/3, 4/3]
    assert st["mean"] == pytest.approx(3.0)
    assert st["std_raw"] == pytest.approx(1.0)
    assert res["metrics"]["abs_rel"] == pytest.approx(0.0, abs=1e-6)
    assert res["metrics"]["a1"] == pytest.approx(1.0)


def test_median_ratio_uses_masked_pixels_and_scale_factor():
    gt = np.array([[1.0, 2.0, 3.0, 100.0]])        # 100 is masked out
    pred_depth = np.array([[1.0, 1.0, 1.0, 1.0]])
    res = ed.evaluate_predictions((1.0 / pred_depth)[None], gt[None], eval_split="eigen_benchmark",
                                  pred_depth_scale_factor=4.0)
    # pred * 4 = 4 everywhere; ratio = median(1,2,3) / 4 = 0.5 -> pred 2
    assert res["ratios"] == pytest.approx([0.5])
    assert res["metrics"]["abs_rel"] == pytest.approx((1 / 1 + 0 + 1 / 3) / 3)


def test_stereo_uses_5_4_and_no_median_scaling():
    gt = np.arange(1, 13, dtype=np.float64).reshape(1, 3, 4)
    pred_depth = gt / (2 * 5.4)
    res = ed.evaluate_predictions(1.0 / pred_depth, gt, eval_split="eigen_benchmark",
                                  eval_stereo=True, pred_depth_scale_factor=3.0)
    assert res["pred_depth_scale_factor"] == pytest.approx(5.4)
    assert res["median_scaling"] is False and "ratios" not in res
    assert res["metrics"]["abs_rel"] == pytest.approx(0.5, rel=1e-6)


def test_count_mismatch_is_clear_error():
    from utils import ToolkitError
    with pytest.raises(ToolkitError, match="2 predictions but 3 ground-truth"):
        ed.evaluate_predictions(np.ones((2, 3, 4)), np.ones((3, 3, 4)))


def test_post_process_blend_constructed_case():
    d = np.ones((2, 4, 41), dtype=np.float32)
    d_flip = np.full((2, 4, 41), 3.0, dtype=np.float32)
    out = ed.batch_post_process_disparity(d, d_flip)
    # x = linspace(0, 1, 41): l_mask = 1 for x <= 0.05 (cols 0-2), 0.5 at col 3, 0 from col 4
    row = out[1, 2]
    assert row[:3] == pytest.approx([3, 3, 3])
    assert row[3] == pytest.approx(2.5)
    assert row[4:37] == pytest.approx(np.full(33, 2.0))
    assert row[37] == pytest.approx(1.5)
    assert row[38:] == pytest.approx([1, 1, 1])
    assert out.shape == d.shape and out.dtype == np.float32


def test_metrics_table_format():
    metrics = dict(zip(DepthErrors.NAMES, [0.1234, 0.8, 4.96, 0.209, 0.864, 0.948, 0.975]))
    header, row = ed.format_metrics_table(metrics).split("\n")
    assert [h.strip() for h in header.split("|")][:7] == list(DepthErrors.NAMES)
    vals = [float(v) for v in row.replace("\\\\", "").split("&")[1:]]
    assert vals == [0.123, 0.8, 4.96, 0.209, 0.864, 0.948, 0.975]
    assert row.startswith("&   0.123  &")


def test_predict_disparities_post_process_flips_back(identity_encoder, ramp_decoder):
    """disp = the image's first channel (ramp_decoder), so a mirrored input gives a mirrored
    disparity: post-processing flips it back."""
    import paddle
    from layers import disp_to_depth
    ramp = np.tile(np.linspace(0.0, 1.0, 16, dtype=np.float32), (3, 8, 1))  # (3, 8, 16)
    batch = {("color", 0, 0): paddle.to_tensor(np.stack([ramp, ramp * 0.5]))}
    plain = ed.predict_disparities(identity_encoder, ramp_decoder, [batch], post_process=False,
                                   progress=False)
    pp = ed.predict_disparities(identity_encoder, ramp_decoder, [batch], post_process=True,
                                progress=False)
    expected, _ = disp_to_depth(np.stack([ramp[0], ramp[0] * 0.5]), 0.1, 100.0)
    assert plain.shape == (2, 8, 16)
    np.testing.assert_allclose(plain, expected, rtol=1e-5)
    np.testing.assert_allclose(pp, expected, rtol=1e-5)  # flipped back => same disparity


# ----------------------------------------------------------------------------- CLI


def _run(args, cwd=ROOT):
    return subprocess.run([PY, os.path.join(ROOT, "evaluate_depth.py")] + args, cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def _write_gt(splits_dir, split, gts):
    os.makedirs(os.path.join(splits_dir, split), exist_ok=True)
    data = np.empty(len(gts), dtype=object)
    for i, g in enumerate(gts):
        data[i] = g
    np.savez_compressed(os.path.join(splits_dir, split, "gt_depths.npz"), data=data)


@pytest.fixture
def constructed(tmp_path):
    """Two 20x40 gt maps and predictions whose depth is gt / (2 * 5.4) and gt / (4 * 5.4)."""
    rng = np.random.default_rng(0)
    gts = [rng.uniform(2.0, 60.0, size=(20, 40)) for _ in range(2)]
    preds = np.stack([gts[0] / (2 * 5.4), gts[1] / (4 * 5.4)])
    splits = tmp_path / "splits"
    _write_gt(str(splits), "eigen_benchmark", gts)
    npy = tmp_path / "disps.npy"
    np.save(npy, (1.0 / preds).astype(np.float32))
    return tmp_path, str(splits), str(npy)


@pytest.mark.slow
def test_cli_stereo_ext_disp(constructed):
    tmp, splits, npy = constructed
    out = tmp / "m.json"
    r = _run(["--ext_disp_to_eval", npy, "--eval_stereo", "--eval_split", "eigen_benchmark",
              "--splits_dir", splits, "--metrics_out", str(out)])
    assert r.returncode == 0, r.stderr
    assert "abs_rel |   sq_rel |     rmse | rmse_log |       a1 |       a2 |       a3" in r.stdout
    assert "Scaling ratios" not in r.stdout
    m = json.loads(out.read_text())
    assert m["mode"] == "stereo" and m["median_scaling"] is False
    assert m["pred_depth_scale_factor"] == pytest.approx(5.4)
    # pred = gt/2 and gt/4 after x5.4: abs_rel 0.5 and 0.75 -> 0.625
    assert m["metrics"]["abs_rel"] == pytest.approx(0.625, rel=1e-4)
    assert m["num_images"] == 2
    assert "&   0.625  &" in r.stdout


@pytest.mark.slow
def test_cli_mono_ext_disp_reports_ratios(constructed):
    tmp, splits, npy = constructed
    out = tmp / "m.json"
    r = _run(["--ext_disp_to_eval", npy, "--eval_mono", "--eval_split", "eigen_benchmark",
              "--splits_dir", splits, "--metrics_out", str(out)])
    assert r.returncode == 0, r.stderr
    assert " Scaling ratios | med: 16.200 | std: 0.333 | mean: 16.200" in r.stdout
    m = json.loads(out.read_text())
    assert m["mode"] == "mono" and m["median_scaling"] is True
    assert m["ratio_stats"]["median"] == pytest.approx(16.2, rel=1e-4)
    assert m["metrics"]["abs_rel"] == pytest.approx(0.0, abs=1e-5)
    assert m["metrics"]["a1"] == pytest.approx(1.0)


@pytest.mark.slow
def test_cli_mono_without_median_scaling_uses_factor(constructed):
    tmp, splits, npy = constructed
    out = tmp / "m.json"
    r = _run(["--ext_disp_to_eval", npy, "--eval_mono", "--disable_median_scaling",
              "--pred_depth_scale_factor", "10.8", "--eval_split", "eigen_benchmark",
              "--splits_dir", splits, "--metrics_out", str(out)])
    assert r.returncode == 0, r.stderr
    m = json.loads(out.read_text())
    # x10.8: image 0 exact, image 1 half the depth -> abs_rel (0 + 0.5) / 2
    assert m["metrics"]["abs_rel"] == pytest.approx(0.25, rel=1e-4)
    assert "ratio_stats" not in m


@pytest.mark.parametrize("args, needle", [
    (["--eval_split", "eigen_benchmark"], "exactly one evaluation mode"),
    (["--eval_mono", "--eval_stereo"], "exactly one evaluation mode"),
    (["--eval_mono", "--eval_split", "odom_9"], "evaluate_pose.py"),
])
@pytest.mark.slow
def test_cli_mode_errors(constructed, args, needle):
    _, splits, npy = constructed
    r = _run(["--ext_disp_to_eval", npy, "--splits_dir", splits] + args)
    assert r.returncode == 2
    assert needle in r.stderr and r.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "Traceback" not in r.stderr


@pytest.mark.slow
def test_cli_missing_gt_says_export(constructed, tmp_path):
    _, _, npy = constructed
    r = _run(["--ext_disp_to_eval", npy, "--eval_stereo", "--splits_dir", str(tmp_path / "none")])
    assert r.returncode == 2
    _one_error_line(r.stderr, "ground truth not found", "export_gt_depth.py", "gt_depths.npz",
                    f"--splits_dir {tmp_path / 'none'}", "point --splits_dir at the folder")


@pytest.mark.slow
def test_cli_count_mismatch(constructed):
    tmp, splits, _ = constructed
    npy = tmp / "three.npy"
    np.save(npy, np.ones((3, 5, 8), dtype=np.float32))
    r = _run(["--ext_disp_to_eval", str(npy), "--eval_stereo", "--eval_split", "eigen_benchmark",
              "--splits_dir", splits])
    assert r.returncode == 2 and "3 predictions but 2 ground-truth" in r.stderr


@pytest.mark.slow
def test_cli_missing_weights_folder(tmp_path):
    r = _run(["--load_weights_folder", str(tmp_path / "nope"), "--eval_stereo"])
    assert r.returncode == 2 and "weights folder not found" in r.stderr
    (tmp_path / "w").mkdir()
    r = _run(["--load_weights_folder", str(tmp_path / "w"), "--eval_stereo"])
    assert r.returncode == 2 and "encoder.pdparams missing" in r.stderr


@pytest.mark.slow
def test_cli_save_pred_disps_and_benchmark(tmp_path):
    npy = tmp_path / "d.npy"
    disps = np.stack([np.full((6, 20), 0.5), np.full((6, 20), 0.01)]).astype(np.float32)
    np.save(npy, disps)
    out_dir = tmp_path / "out"
    r = _run(["--ext_disp_to_eval", str(npy), "--eval_stereo", "--eval_split", "benchmark",
              "--save_pred_disps", "--eval_out_dir", str(out_dir)])
    assert r.returncode == 0, r.stderr
    np.testing.assert_array_equal(np.load(out_dir / "disps_benchmark_split.npy"), disps)
    import cv2
    pngs = [cv2.imread(str(out_dir / "benchmark_predictions" / f"000000000{i}.png"),
                       cv2.IMREAD_UNCHANGED) for i in range(2)]
    assert pngs[0].dtype == np.uint16 and pngs[0].shape == (352, 1216)
    # depth = 5.4 / disp, clipped to 80 m, times 256
    assert set(np.unique(pngs[0])) == {int(5.4 / np.float32(0.5) * 256)}
    assert set(np.unique(pngs[1])) == {80 * 256}


# ----------------------------------------------------------------------------- end to end


def _weights_folder(log_dir, model_name):
    models = os.path.join(log_dir, model_name, "models")
    names = sorted(os.listdir(models))
    if "weights_last" in names:
        return os.path.join(models, "weights_last")
    numbered = sorted((int(n.split("_")[1]), n) for n in names if n.split("_")[1].isdigit())
    return os.path.join(models, numbered[-1][1])


def _eval_cli(weights, data, splits, out_json, extra=()):
    r = _run(["--load_weights_folder", weights, "--data_path", data, "--splits_dir", splits,
              "--eval_split", "eigen", "--eval_stereo", "--batch_size", "4", "--num_workers", "0",
              "--device", "cpu", "--metrics_out", out_json] + list(extra))
    assert r.returncode == 0, r.stderr[-3000:]
    with open(out_json) as f:
        m = json.load(f)
    # the printed table row matches the JSON to 3 decimals
    row = [line for line in r.stdout.splitlines() if line.startswith("&")][-1]
    printed = [float(v) for v in row.replace("\\\\", "").split("&")[1:]]
    assert printed == pytest.approx([m["metrics"][k] for k in DepthErrors.NAMES], abs=6e-4)
    return m


@pytest.mark.slow
def test_end_to_end_train_export_evaluate(synthetic_kitti, save_untrained_depth_model, tmp_path):
    """The whole pipeline on synthetic KITTI: precompute fused SGM hints, train 60 steps with
    --use_depth_hints (stereo, 64x192), export the Eigen gt, evaluate with --eval_stereo: the
    metrics print and parse, and the trained model beats an untrained one on abs_rel and a1
    (about 1.5-2.5 minutes on 2 busy CPU cores).

    Without hints, 60 stereo steps from scratch fall into the photometric loss's local
    minimum (disparity saturates, abs_rel ~0.94), which is exactly what depth hints fix."""
    import shutil
    data = str(tmp_path / "data")
    shutil.copytree(synthetic_kitti, data, ignore=shutil.ignore_patterns("depth_hints", "gt_depths.npz"))
    splits = os.path.join(data, "splits")
    r = subprocess.run([PY, os.path.join(ROOT, "export_gt_depth.py"), "--data_path", data,
                        "--split", "eigen", "--splits_dir", splits],
                       capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    assert os.path.isfile(os.path.join(splits, "eigen", "gt_depths.npz"))

    train_split = os.path.join(splits, "synthetic")
    all_files = str(tmp_path / "all_files.txt")
    with open(all_files, "w") as f:
        for name in ("train_files.txt", "val_files.txt"):
            f.write(open(os.path.join(train_split, name)).read())
    r = subprocess.run([PY, os.path.join(ROOT, "precompute_depth_hints.py"), "--data_path", data,
                        "--filenames", all_files, "--height", "96", "--width", "320",
                        "--num_workers", "1"],
                       capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]

    log_dir = str(tmp_path / "logs")
    r = subprocess.run([PY, os.path.join(ROOT, "train.py"), "--data_path", data,
                        "--split", train_split, "--use_depth_hints",
                        "--height", "64", "--width", "192", "--use_stereo", "--frame_ids", "0",
                        "--batch_size", "4", "--max_steps", "60", "--num_workers", "0",
                        "--learning_rate", "5e-4", "--num_epochs", "100", "--save_frequency", "1000",
                        "--disparity_smoothness", "0", "--seed", "0",
                        "--log_dir", log_dir, "--model_name", "e2e", "--weights_init", "scratch",
                        "--device", "cpu", "--log_frequency", "1000"],
                       capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    trained = _weights_folder(log_dir, "e2e")
    untrained = str(tmp_path / "untrained")
    save_untrained_depth_model(untrained, 64, 192, use_stereo=True)

    m_trained = _eval_cli(trained, data, splits, str(tmp_path / "trained.json"))
    m_untrained = _eval_cli(untrained, data, splits, str(tmp_path / "untrained.json"))
    for m in (m_trained, m_untrained):
        assert m["num_images"] == 8 and m["mode"] == "stereo"
        assert m["pred_depth_scale_factor"] == pytest.approx(5.4)
        assert all(np.isfinite(v) for v in m["metrics"].values())
    t, u = m_trained["metrics"], m_untrained["metrics"]

    assert t["abs_rel"] < 0.8 * u["abs_rel"], (t, u)
    assert t["rmse"] < 0.8 * u["rmse"], (t, u)
    assert t["a1"] > 1.5 * u["a1"], (t, u)


# ----------------------------------------------------------------------------- refusals


PADDLE_BANNER = ("WARNING: OMP_NUM_THREADS set to", "PLEASE USE OMP_NUM_THREADS WISELY")


def _stderr_lines(text):
    """The non-empty stderr lines, without Paddle's import banner about OMP_NUM_THREADS."""
    return [ln for ln in text.splitlines() if ln.strip() and not ln.startswith(PADDLE_BANNER)]


def _one_error_line(err, *needles, status=None):
    """The one ``error:`` line that is all of stderr (besides Paddle's banner and, when
    ``status`` names the progress's desc, its status lines); holds every needle."""
    lines = [ln for ln in _stderr_lines(err) if not (status and ln.startswith(status + " "))]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def _payload(marker):
    """A protocol-0 pickle that runs ``touch marker`` when unpickled (os.system)."""
    return b"c" + os.system.__module__.encode() + b"\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR."


def _npy_with_payload(marker):
    """A .npy object array (shape (1,)) whose element list is the payload."""
    import io
    f = io.BytesIO()
    np.lib.format.write_array_header_1_0(f, {"descr": "|O", "fortran_order": False, "shape": (1,)})
    return f.getvalue() + _payload(marker)


def test_payload_is_live(tmp_path):
    """Sanity: the crafted .npy does run its command through np.load(allow_pickle=True)."""
    marker = tmp_path / "MARKER"
    path = tmp_path / "p.npy"
    path.write_bytes(_npy_with_payload(marker))
    try:
        np.load(path, allow_pickle=True)
    except Exception:  # noqa: BLE001 - os.system returns an int, not an object array: numpy may complain after
        pass
    assert marker.exists()


def test_payload_in_ext_disp_or_gt_runs_nothing(constructed, tmp_path, capsys):
    import zipfile
    tmp, splits, npy = constructed
    marker = tmp_path / "MARKER"
    bad = tmp_path / "disps_payload.npy"
    bad.write_bytes(_npy_with_payload(marker))
    args = ["--eval_stereo", "--eval_split", "eigen_benchmark", "--splits_dir", splits,
            "--metrics_out", str(tmp_path / "m.json")]
    assert ed.main(["--ext_disp_to_eval", str(bad)] + args) == 2
    cap = capsys.readouterr()
    _one_error_line(cap.err, f"refusing to load {bad}", "posix.system")
    assert not marker.exists() and "abs_rel" not in cap.out
    # the same payload as the data member of gt_depths.npz
    gt = os.path.join(splits, "eigen_benchmark", "gt_depths.npz")
    with zipfile.ZipFile(gt, "w") as zf:
        zf.writestr("data.npy", _npy_with_payload(marker))
    assert ed.main(["--ext_disp_to_eval", npy] + args) == 2
    cap = capsys.readouterr()
    _one_error_line(cap.err, f"refusing to load {gt}")
    assert not marker.exists() and "abs_rel" not in cap.out
    assert not os.path.exists(tmp_path / "m.json")


def test_gt_formats_published_and_plain(tmp_path):
    """The published object array (maps of different sizes) and a plain (N, H, W) array load;
    anything else is one line naming the file."""
    from utils import ToolkitError
    maps = [np.full((4, 6), 3.0, np.float32), np.full((5, 7), 4.0, np.float32)]
    _write_gt(str(tmp_path), "eigen", maps)
    got = ed.load_gt_depths("eigen", str(tmp_path))
    assert got.dtype == object and [m.shape for m in got] == [(4, 6), (5, 7)]
    np.savez(tmp_path / "eigen" / "gt_depths.npz", data=np.ones((3, 4, 6), np.float32))
    assert ed.load_gt_depths("eigen", str(tmp_path)).shape == (3, 4, 6)
    np.savez(tmp_path / "eigen" / "gt_depths.npz", data=np.array(["a", "b"], dtype=object))
    with pytest.raises(ToolkitError, match=r"ground truth is not a list of \(H, W\) depth maps .*gt_depths.npz"):
        ed.load_gt_depths("eigen", str(tmp_path))
    np.savez(tmp_path / "eigen" / "gt_depths.npz", other=np.ones(3))
    with pytest.raises(ToolkitError, match="holds no data"):
        ed.load_gt_depths("eigen", str(tmp_path))


def _nan_share(a):
    a = a.copy()
    a.reshape(-1)[: int(0.12 * a.size)] = np.nan
    return a


def _zero_image(a):
    a = a.copy()
    a[1] = 0
    return a


def _negative(a):
    a = a.copy()
    a[0, 0, :4] = -1.0
    return a


def _inf(a):
    a = a.copy()
    a[1, 3, 3] = np.inf
    return a


@pytest.mark.parametrize("spoil, needle", [
    (_nan_share, "12 % of the values (192 of 1600) are NaN"),
    (_inf, "of the values (1 of 1600) are infinite"),
    (_negative, "(4 of 1600) are negative"),
    (np.zeros_like, "all values are zero"),
    (_zero_image, "1 of 2 images have only zero values (first: image 1"),
])
def test_unusable_predictions_are_refused(constructed, tmp_path, capsys, spoil, needle):
    _, splits, npy = constructed
    bad = tmp_path / "bad.npy"
    np.save(bad, spoil(np.load(npy)))
    out = tmp_path / "out"
    rc = ed.main(["--ext_disp_to_eval", str(bad), "--eval_mono", "--eval_split", "eigen_benchmark",
                  "--splits_dir", splits, "--metrics_out", str(tmp_path / "m.json"), "--save_pred_disps",
                  "--eval_out_dir", str(out)])
    cap = capsys.readouterr()
    assert rc == 2, cap.err
    _one_error_line(cap.err, f"predicted disparities unusable (--ext_disp_to_eval {bad})", needle)
    assert "abs_rel" not in cap.out and "Scaling ratios" not in cap.out
    assert not os.path.exists(tmp_path / "m.json")
    assert not out.exists() or os.listdir(out) == []


def test_non_numeric_or_flat_ext_disp_is_one_line(constructed, tmp_path, capsys):
    _, splits, _ = constructed
    cases = {"object.npy": np.array([np.ones((2, 3)), np.ones((2, 3))], dtype=object),
             "flat.npy": np.ones((2, 40), np.float32)}
    for name, arr in cases.items():
        np.save(tmp_path / name, arr, allow_pickle=True)
        assert ed.main(["--ext_disp_to_eval", str(tmp_path / name), "--eval_stereo", "--eval_split",
                        "eigen_benchmark", "--splits_dir", splits]) == 2
        _one_error_line(capsys.readouterr().err, "(N, H, W) array of numbers", f"--ext_disp_to_eval {tmp_path / name}")


def test_ext_disp_count_checked_against_the_split_list(tmp_path, capsys):
    """No ground truth (benchmark split, --no_eval): the count is checked against test_files.txt."""
    splits = tmp_path / "splits"
    (splits / "benchmark").mkdir(parents=True)
    (splits / "benchmark" / "test_files.txt").write_text("a 1 l\na 2 l\na 3 l\n")
    npy = tmp_path / "d.npy"
    np.save(npy, np.full((2, 6, 20), 0.5, np.float32))
    out = tmp_path / "out"
    for extra in ([], ["--no_eval", "--save_pred_disps"]):
        assert ed.main(["--ext_disp_to_eval", str(npy), "--eval_stereo", "--eval_split", "benchmark",
                        "--splits_dir", str(splits), "--eval_out_dir", str(out)] + extra) == 2
        _one_error_line(capsys.readouterr().err, "2 predictions but the split lists 3 test images",
                        f"--ext_disp_to_eval {npy}")
        assert not os.path.exists(out / "benchmark_predictions") and not os.path.exists(
            out / "disps_benchmark_split.npy")


def test_metrics_json_is_strict(tmp_path):
    from utils import ToolkitError
    path = tmp_path / "m.json"
    ed.write_metrics(str(path), {"metrics": {"abs_rel": 0.1}, "mode": "mono"})

    def refuse(name):
        raise AssertionError(f"non-standard JSON constant {name}")
    assert json.loads(path.read_text(), parse_constant=refuse) == {"metrics": {"abs_rel": 0.1}, "mode": "mono"}
    path.unlink()
    with pytest.raises(ToolkitError, match=r"metrics are not finite \(rmse; --metrics_out"):
        ed.write_metrics(str(path), {"metrics": {"abs_rel": 0.1, "rmse": float("nan")}})
    assert not path.exists() and os.listdir(tmp_path) == []


def test_median_scaling_of_mostly_zero_disparity_is_one_line():
    from utils import ToolkitError
    disp = np.full((1, 4, 4), 0.1)
    disp[0, :3] = 0.0  # 12 of 16 pixels at infinite depth: the median is infinite
    with pytest.raises(ToolkitError, match="zero disparity .* on at least half of the evaluated pixels"):
        ed.evaluate_predictions(disp, np.full((1, 4, 4), 10.0), eval_split="eigen_benchmark")
    # stereo: no median, an infinite depth is clamped to 80 m
    res = ed.evaluate_predictions(disp, np.full((1, 4, 4), 10.0), eval_split="eigen_benchmark", eval_stereo=True)
    assert all(np.isfinite(v) for v in res["metrics"].values())


@pytest.mark.slow
def test_model_with_nan_weights_is_refused(depth_model, synthetic_kitti, eval_splits, tmp_path, capsys, rel_kit):
    import shutil
    import paddle
    import safe_load
    folder = tmp_path / "nan_model"
    shutil.copytree(depth_model, folder)
    state = safe_load.load_paddle(str(folder / "depth.pdparams"))
    paddle.save({k: paddle.to_tensor(np.full_like(v, np.nan)) for k, v in state.items()},
                str(folder / "depth.pdparams"))
    args = rel_kit.eval_args(str(folder), synthetic_kitti, eval_splits, "--metrics_out", str(tmp_path / "m.json"),
                             "--device", "cpu")
    assert ed.main(args) == 2
    cap = capsys.readouterr()
    line = _one_error_line(cap.err, f"predicted disparities unusable (model {folder}, --load_weights_folder)",
                           "all of the values", "are NaN", status="predict")
    assert "evaluate another checkpoint" in line
    assert "abs_rel" not in cap.out and not os.path.exists(tmp_path / "m.json")


@pytest.mark.slow
def test_progress_off_a_terminal_is_plain_lines(depth_model, synthetic_kitti, eval_splits, tmp_path, rel_kit):
    """stdout and stderr are pipes: no tqdm carriage returns, a status line with rate and ETA."""
    import re
    args = rel_kit.eval_args(depth_model, synthetic_kitti, eval_splits, "--device", "cpu", "--metrics_out",
                             str(tmp_path / "m.json"))
    r = rel_kit.run_script("evaluate_depth.py", args)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "\r" not in r.stdout and "\r" not in r.stderr
    assert re.search(r"^predict 2/2 batch \(100\.0 %\) \| [0-9.]+ batch/s \| elapsed \S+ \| ETA \S+$", r.stderr,
                     re.M), r.stderr
    json.loads((tmp_path / "m.json").read_text())
