"""A full disk where the tools write: evaluate_depth (--metrics_out, --eval_out_dir),
export_gt_depth (--splits_dir), test_simple and tools/infer_exported.py (--output_dir) stop
with one ``error:`` line naming the folder and the flag, exit code 2, and leave no file
behind (no temp file, never a ``.npy`` without its PNG).

The full disk is a real one when this process may mount a small tmpfs (root); elsewhere
every sync of a file in the folder fails with ENOSPC (os.fsync patched), which is where a
full disk shows at the latest."""
import errno
import os
import shutil
import subprocess
import types

import numpy as np
import pytest

H, W = 64, 96  # network resolution of the test model
ENOSPC_TEXT = os.strerror(errno.ENOSPC)  # "No space left on device"
PADDLE_BANNER = ("WARNING: OMP_NUM_THREADS set to", "PLEASE USE OMP_NUM_THREADS WISELY")


def _fill(folder):
    """Write zeros into ``folder/filler`` until its file system has no space left."""
    fd = os.open(os.path.join(folder, "filler"), os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC, exc
    finally:
        os.close(fd)


@pytest.fixture
def full_disk(tmp_path, monkeypatch):
    """``.path``, a folder that ``.fill()`` makes full (create what the test needs there
    first); ``.real`` says whether it is a real full file system (a 256 KiB tmpfs)."""
    path = tmp_path / "full"
    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k,mode=0777", "tmpfs", str(path)],
                             capture_output=True).returncode == 0

    def fill():
        if mounted:
            _fill(str(path))
            return
        real_fsync = os.fsync

        def fsync(fd):
            if os.path.realpath(os.readlink(f"/proc/self/fd/{fd}")).startswith(str(path) + os.sep):
                raise OSError(errno.ENOSPC, ENOSPC_TEXT)
            return real_fsync(fd)
        monkeypatch.setattr(os, "fsync", fsync)

    try:
        yield types.SimpleNamespace(path=path, real=mounted, fill=fill)
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)


def _files(folder):
    """What is in ``folder`` besides the filler, recursively (relative paths)."""
    out = []
    for root, _, names in os.walk(folder):
        out += [os.path.relpath(os.path.join(root, n), folder) for n in names if n != "filler"]
    return sorted(out)


def _one_error_line(err, *needles):
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith(PADDLE_BANNER)]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def test_the_full_disk_is_full(full_disk):
    full_disk.fill()
    with pytest.raises(OSError) as info:
        with open(full_disk.path / "x", "wb") as f:
            f.write(b"x" * 65536)
            f.flush()
            os.fsync(f.fileno())
    assert info.value.errno == errno.ENOSPC


# ----------------------------------------------------------------------------- evaluate_depth


@pytest.fixture
def eval_case(tmp_path):
    """A split folder with two 20x40 ground-truth maps and matching predictions."""
    rng = np.random.default_rng(0)
    splits = tmp_path / "splits"
    (splits / "eigen_benchmark").mkdir(parents=True)
    gt = np.empty(2, dtype=object)
    for i in range(2):
        gt[i] = rng.uniform(2.0, 60.0, size=(20, 40)).astype(np.float32)
    np.savez_compressed(splits / "eigen_benchmark" / "gt_depths.npz", data=gt)
    npy = tmp_path / "disps.npy"
    np.save(npy, np.stack([5.4 / g for g in gt]).astype(np.float32))
    return ["--ext_disp_to_eval", str(npy), "--eval_stereo", "--eval_split", "eigen_benchmark",
            "--splits_dir", str(splits)]


def test_evaluate_metrics_out_on_a_full_disk(full_disk, eval_case, capsys):
    import evaluate_depth
    full_disk.fill()
    assert evaluate_depth.main(eval_case + ["--metrics_out", str(full_disk.path / "m.json")]) == 2
    cap = capsys.readouterr()
    _one_error_line(cap.err, f"cannot write m.json into {full_disk.path} (--metrics_out)", ENOSPC_TEXT,
                    "choose another --metrics_out")
    assert _files(full_disk.path) == []


def test_evaluate_saved_predictions_on_a_full_disk(full_disk, eval_case, capsys):
    import evaluate_depth
    full_disk.fill()
    assert evaluate_depth.main(eval_case + ["--save_pred_disps", "--eval_out_dir", str(full_disk.path)]) == 2
    cap = capsys.readouterr()
    _one_error_line(cap.err, f"into {full_disk.path} (--eval_out_dir)", ENOSPC_TEXT)
    assert "abs_rel" not in cap.out and _files(full_disk.path) == []


# ----------------------------------------------------------------------------- export_gt_depth


def test_export_gt_on_a_full_disk(full_disk, synthetic_kitti, capsys):
    import export_gt_depth
    shutil.copytree(os.path.join(synthetic_kitti, "splits", "eigen"), full_disk.path / "eigen")
    before = _files(full_disk.path)
    full_disk.fill()
    assert export_gt_depth.main(["--data_path", synthetic_kitti, "--split", "eigen", "--splits_dir",
                                 str(full_disk.path)]) == 2
    err = "\n".join(ln for ln in capsys.readouterr().err.splitlines() if not ln.startswith("export eigen gt "))
    _one_error_line(err, f"cannot write gt_depths.npz into {full_disk.path / 'eigen'} (--splits_dir)", ENOSPC_TEXT)
    assert _files(full_disk.path) == before


# ----------------------------------------------------------------------------- test_simple, infer_exported


@pytest.fixture(scope="module")
def model(tmp_path_factory, save_untrained_depth_model):
    folder = str(tmp_path_factory.mktemp("model"))
    save_untrained_depth_model(folder, H, W, use_stereo=True)
    return folder


def _images(folder):
    from PIL import Image
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        Image.fromarray(rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)).save(folder / f"{name}.png")


@pytest.mark.slow
@pytest.mark.parametrize("where", ["--output_dir", "next to the images"])
def test_test_simple_on_a_full_disk(full_disk, model, tmp_path, capsys, where):
    import test_simple
    if where == "--output_dir":
        images, out = tmp_path / "imgs", full_disk.path
        images.mkdir()
        extra = ["--output_dir", str(out)]
    else:
        images = out = full_disk.path
        extra = []
    _images(images)
    before = _files(full_disk.path)
    full_disk.fill()
    assert test_simple.main(["--image_path", str(images), "--ext", "png", "--model_path", model,
                             "--device", "cpu"] + extra) == 2
    _one_error_line(capsys.readouterr().err, f"cannot write a_disp.png into {out} (--output_dir)", ENOSPC_TEXT)
    assert _files(full_disk.path) == before  # no temp file, no .npy without its PNG


@pytest.mark.slow
def test_infer_exported_on_a_full_disk(full_disk, model, tmp_path, capsys):
    import export_model
    from tools import infer_exported
    prefix = str(tmp_path / "exported" / "depth")
    assert export_model.main(["--load_weights_folder", model, "--output_path", prefix, "--output", "disp",
                              "--format", "paddle"]) == 0
    images = tmp_path / "imgs"
    images.mkdir()
    _images(images)
    full_disk.fill()
    capsys.readouterr()
    assert infer_exported.main(["--model", prefix, "--image_path", str(images), "--ext", "png",
                                "--output_dir", str(full_disk.path)]) == 2
    _one_error_line(capsys.readouterr().err, f"into {full_disk.path} (--output_dir)", ENOSPC_TEXT)
    assert _files(full_disk.path) == []
