"""The hint precomputation with your own camera: ``--intrinsics`` and ``intrinsics.txt``
reach the warp and the depth conversion (docs/METHOD.md, sections 1 and 5).

Known answer: a candidate of disparity d moves every pixel by d whatever K is (cx, fy and
the depth cancel in the projection), so each pixel chooses the same candidate, and the
hint is fx * 0.1 / d: it scales with the normalised fx exactly."""
import os
import pytest
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAIR = "2011_09_26/2011_09_26_drive_0001_sync 2 l\n"


def _run(data, save, tmp_path, extra=()):
    files = tmp_path / "one_pair.txt"
    files.write_text(PAIR)
    r = subprocess.run([sys.executable, os.path.join(ROOT, "precompute_depth_hints.py"), "--data_path", data,
                        "--filenames", str(files), "--save_path", str(save), "--height", "96", "--width", "320",
                        "--num_workers", "1"] + list(extra), capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    folder = PAIR.split()[0]
    return [np.load(os.path.join(save, folder, cam, "0000000002.npy")) for cam in ("image_02", "image_03")]


@pytest.mark.slow
def test_custom_intrinsics_scale_the_hints_and_folder_file_wins(synthetic_kitti, tmp_path):
    date = PAIR.split("/")[0]
    assert os.path.isdir(os.path.join(synthetic_kitti, date)), os.listdir(synthetic_kitti)
    kitti = _run(synthetic_kitti, tmp_path / "kitti", tmp_path)
    custom = _run(synthetic_kitti, tmp_path / "custom", tmp_path, ["--intrinsics", "0.7", "2.1", "0.45", "0.52"])
    for k, c in zip(kitti, custom):
        assert (k > 0).mean() > 0.3
        # the grid differs by float rounding, which breaks a few near-ties the other way
        assert ((k > 0) == (c > 0)).mean() > 0.995
        both = (k > 0) & (c > 0)
        scaled = np.isclose(c[both], k[both] * (0.7 / 0.58), rtol=1e-5)
        assert scaled.mean() > 0.995, scaled.mean()
    # the same camera from an intrinsics.txt in the date folder
    path = os.path.join(synthetic_kitti, date, "intrinsics.txt")
    try:
        with open(path, "w") as f:
            f.write("0.7 2.1 0.45 0.52  # fx/W fy/H cx/W cy/H\n")
        from_file = _run(synthetic_kitti, tmp_path / "file", tmp_path)
    finally:
        os.remove(path)
    for c, f in zip(custom, from_file):
        np.testing.assert_array_equal(c, f)


def test_empty_split_file_is_an_error(synthetic_kitti, tmp_path):
    files = tmp_path / "empty.txt"
    files.write_text("\n")
    r = subprocess.run([sys.executable, os.path.join(ROOT, "precompute_depth_hints.py"), "--data_path",
                        synthetic_kitti, "--filenames", str(files), "--save_path", str(tmp_path / "h")],
                       capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: the split file lists no image pair"), r.stderr
    assert str(files) in lines[0] and "Traceback" not in r.stderr
