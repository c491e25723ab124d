"""kitti_utils (the KITTI layout and split lines, calibration, LiDAR, generate_depth_map) and
export_gt_depth.py on the synthetic data: the exported ground truth is the generator's true
depth at the LiDAR pixels; every layout path is built by kitti_utils alone."""
import os
import shutil

import numpy as np
import pytest

import export_gt_depth
import kitti_utils
from utils import ToolkitError


def _test_lines(root, split):
    return [ln.split() for ln in open(os.path.join(root, "splits", split, "test_files.txt")).read().split("\n") if ln]


def _true(root, folder, frame, cam=2):
    return np.load(os.path.join(root, folder, "true_depth", f"image_0{cam}", f"{int(frame):010d}.npy"))


@pytest.fixture(scope="module")
def splits_copy(synthetic_kitti, tmp_path_factory):
    """A private copy of the synthetic split folders (the export writes into them)."""
    d = str(tmp_path_factory.mktemp("splits"))
    shutil.copytree(os.path.join(synthetic_kitti, "splits"), d, dirs_exist_ok=True)
    return d


def test_export_eigen_reproduces_true_depth(synthetic_kitti, splits_copy):
    out = export_gt_depth.export_gt_depths(synthetic_kitti, "eigen", splits_copy, progress=False)
    assert out == os.path.join(splits_copy, "eigen", "gt_depths.npz")
    assert not [f for f in os.listdir(os.path.dirname(out)) if f.endswith(".tmp")]
    data = np.load(out, allow_pickle=True)["data"]
    lines = _test_lines(synthetic_kitti, "eigen")
    assert data.dtype == object and len(data) == len(lines) == 8
    for gt, (folder, frame, side) in zip(data, lines):
        true = _true(synthetic_kitti, folder, frame)
        assert gt.dtype == np.float32 and gt.shape == true.shape == (96, 320)
        m = gt > 0
        # ~7% of the lower two thirds carry a LiDAR point, each on the pixel it was taken from
        assert 0.04 < m[32:].mean() < 0.10 and not m[:32].any()
        np.testing.assert_allclose(gt[m], true[m], rtol=1e-6)


def test_export_eigen_benchmark_reads_pngs(synthetic_kitti, splits_copy):
    out = export_gt_depth.export_gt_depths(synthetic_kitti, "eigen_benchmark", splits_copy, progress=False)
    data = np.load(out, allow_pickle=True)["data"]
    for gt, (folder, frame, side) in zip(data, _test_lines(synthetic_kitti, "eigen_benchmark")):
        true = _true(synthetic_kitti, folder, frame)
        m = gt > 0
        assert m[32:].mean() > 0.95 and not m[:32].any()
        assert np.abs(gt[m] - true[m]).max() <= 0.5 / 256 + 1e-6      # uint16 depth * 256


def test_export_cli_and_errors(synthetic_kitti, splits_copy, tmp_path, capsys):
    assert export_gt_depth.main(["--data_path", synthetic_kitti, "--split", "eigen",
                                 "--splits_dir", splits_copy]) == 0
    # missing data folder
    assert export_gt_depth.main(["--data_path", str(tmp_path / "none"), "--split", "eigen",
                                 "--splits_dir", splits_copy]) == 2
    assert "--data_path" in capsys.readouterr().err
    # missing split folder
    assert export_gt_depth.main(["--data_path", synthetic_kitti, "--split", "eigen",
                                 "--splits_dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: split 'eigen' not found") and "--splits_dir" in err
    # a split folder without its test list
    (tmp_path / "eigen_benchmark").mkdir()
    assert export_gt_depth.main(["--data_path", synthetic_kitti, "--split", "eigen_benchmark",
                                 "--splits_dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: test list not found") and "--splits_dir" in err
    # missing LiDAR / PNG files: listed up front with the count
    line = " ".join(_test_lines(synthetic_kitti, "eigen")[0])
    bad = tmp_path / "splits" / "eigen"
    bad.mkdir(parents=True)
    (bad / "test_files.txt").write_text(line + "\n" + line.replace("0000000000", "0000000099") + "\n")
    with pytest.raises(ToolkitError, match=r"1 ground-truth file\(s\) missing .*0000000099\.bin.*velodyne"):
        export_gt_depth.export_gt_depths(synthetic_kitti, "eigen", str(tmp_path / "splits"), progress=False)
    (bad / "test_files.txt").write_text(line + "\nonly_two 3\n")
    with pytest.raises(ToolkitError, match=r"malformed split line 2"):
        export_gt_depth.export_gt_depths(synthetic_kitti, "eigen", str(tmp_path / "splits"), progress=False)
    # missing calibration
    data = tmp_path / "data"
    folder = line.split()[0]
    shutil.copytree(os.path.join(synthetic_kitti, folder, "velodyne_points"),
                    data / folder / "velodyne_points")
    (bad / "test_files.txt").write_text(line + "\n")
    with pytest.raises(ToolkitError, match=r"calibration file\(s\) missing .*calib_cam_to_cam\.txt"):
        export_gt_depth.export_gt_depths(str(data), "eigen", str(tmp_path / "splits"), progress=False)
    with pytest.raises(ToolkitError, match="unknown split"):
        export_gt_depth.export_gt_depths(synthetic_kitti, "eigen_zhou", splits_copy)


def test_export_progress_off_a_terminal_is_plain_lines(synthetic_kitti, splits_copy):
    """stdout and stderr are pipes: no tqdm carriage returns, a status line with rate and ETA."""
    import re
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    r = subprocess.run([sys.executable, os.path.join(root, "export_gt_depth.py"), "--data_path", synthetic_kitti,
                        "--split", "eigen", "--splits_dir", splits_copy],
                       capture_output=True, text=True, timeout=300, cwd=root)
    assert r.returncode == 0, r.stderr
    assert "\r" not in r.stdout and "\r" not in r.stderr
    assert re.search(r"^export eigen gt 8/8 img \(100\.0 %\) \| [0-9.]+ img/s \| elapsed \S+ \| ETA \S+$",
                     r.stderr, re.M), r.stderr


# ----------------------------------------------------------------------------- kitti_utils


def _write_calib(d, P2, R_rect=np.eye(3), R=np.eye(3), T=np.zeros(3), size=(10, 6)):
    fmt = lambda a: " ".join(f"{x:.9e}" for x in np.ravel(a))
    (d / "calib_cam_to_cam.txt").write_text(
        "calib_time: 09-Jan-2012 13:57:47\ncorner_dist: 9.95e-02\n"
        f"S_rect_02: {fmt(size)}\nR_rect_00: {fmt(R_rect)}\nP_rect_02: {fmt(P2)}\n"
        f"P_rect_03: {fmt(P2)}\n")
    (d / "calib_velo_to_cam.txt").write_text(
        f"calib_time: 15-Mar-2012 11:37:16\nR: {fmt(R)}\nT: {fmt(T)}\ndelta_f: 0 0\n")


def test_read_calib_file(tmp_path):
    _write_calib(tmp_path, np.arange(12.0).reshape(3, 4))
    c = kitti_utils.read_calib_file(str(tmp_path / "calib_cam_to_cam.txt"))
    assert set(c) == {"corner_dist", "S_rect_02", "R_rect_00", "P_rect_02", "P_rect_03"}
    np.testing.assert_array_equal(c["P_rect_02"], np.arange(12.0))
    with pytest.raises(ToolkitError, match="calibration file not found"):
        kitti_utils.read_calib_file(str(tmp_path / "nope.txt"))


def test_load_velodyne_points(tmp_path):
    pts = np.array([[1, 2, 3, 0.5], [4, 5, 6, 0.25]], np.float32)
    pts.tofile(tmp_path / "a.bin")
    out = kitti_utils.load_velodyne_points(str(tmp_path / "a.bin"))
    np.testing.assert_array_equal(out[:, :3], pts[:, :3])
    np.testing.assert_array_equal(out[:, 3], [1, 1])              # homogeneous
    np.arange(5, dtype=np.float32).tofile(tmp_path / "b.bin")
    with pytest.raises(ToolkitError, match="corrupt LiDAR file"):
        kitti_utils.load_velodyne_points(str(tmp_path / "b.bin"))
    with pytest.raises(ToolkitError, match="LiDAR file not found"):
        kitti_utils.load_velodyne_points(str(tmp_path / "c.bin"))


def test_sub2ind():
    assert kitti_utils.sub2ind((4, 7), 2, 3) == 17
    np.testing.assert_array_equal(kitti_utils.sub2ind((4, 7), np.array([0, 3]), np.array([6, 0])), [6, 21])


def test_generate_depth_map_known_answer(tmp_path):
    """Velo x forward / y left / z up -> camera; pixel round(u) - 1; nearest duplicate wins;
    points behind (x < 0) and outside the image dropped; vel_depth picks LiDAR x."""
    f, cx, cy = 10.0, 5.0, 3.0
    P2 = np.array([[f, 0, cx, 0], [0, f, cy, 0], [0, 0, 1, 0]])
    R = np.array([[0, -1, 0], [0, 0, -1], [1, 0, 0]], float)
    T = np.array([0.0, 0.0, 0.5])                      # camera z = velo x + 0.5
    _write_calib(tmp_path, P2, R=R, T=T, size=(10, 6))
    # camera point (X, Y, Z) -> pixel u = f X / Z + cx, v = f Y / Z + cy
    def velo(X, Y, Z):                                   # inverse of cam = R v + T
        return [Z - 0.5, -X, -Y, 0.3]
    pts = np.array([
        velo(0.0, 0.0, 2.0),        # u = 5, v = 3 -> pixel (col 4, row 2), depth 2
        velo(0.0, 0.0, 4.0),        # same pixel, farther: dropped
        velo(0.24, 0.12, 3.0),      # u = 5.8 -> 6 -> col 5, v = 3.4 -> 3 -> row 2
        velo(-2.4, 0.0, 4.0),       # u = -1 -> col -2: outside
        [-1.0, 0.0, 0.0, 0.3],      # behind the LiDAR
    ], np.float32)
    pts.tofile(tmp_path / "v.bin")
    d = kitti_utils.generate_depth_map(str(tmp_path), str(tmp_path / "v.bin"), 2)
    assert d.shape == (6, 10)
    expected = np.zeros((6, 10))
    expected[2, 4] = 2.0
    expected[2, 5] = 3.0
    np.testing.assert_allclose(d, expected, atol=1e-5)
    dv = kitti_utils.generate_depth_map(str(tmp_path), str(tmp_path / "v.bin"), 2, vel_depth=True)
    expected[2, 4] = 1.5
    expected[2, 5] = 2.5
    np.testing.assert_allclose(dv, expected, atol=1e-5)


def test_generate_depth_map_synthetic_exact(synthetic_kitti):
    """Every synthetic LiDAR point lands on the pixel it was sampled from (both +1 px
    principal point and round(u) - 1 conventions agree)."""
    folder = _test_lines(synthetic_kitti, "eigen")[0][0]
    for frame in (0, 5):
        velo = os.path.join(synthetic_kitti, folder, "velodyne_points", "data", f"{frame:010d}.bin")
        for vel_depth in (False, True):
            d = kitti_utils.generate_depth_map(os.path.join(synthetic_kitti, folder.split("/")[0]), velo, 2, vel_depth)
            m = d > 0
            n_front = (np.fromfile(velo, np.float32).reshape(-1, 4)[:, 0] >= 0).sum()
            assert m.sum() == n_front                    # no point lost, no duplicates
            np.testing.assert_allclose(d[m], _true(synthetic_kitti, folder, frame)[m], rtol=1e-5)


# ----------------------------------------------------------------------------- layout (kitti_utils)


def test_kitti_layout_paths(tmp_path):
    import precompute_depth_hints as P
    from datasets import KITTIDepthDataset
    ku = kitti_utils
    f = "2011_09_26/2011_09_26_drive_0001_sync"
    assert ku.image_path("/d", f, 5, "l") == "/d/" + f + "/image_02/data/0000000005.jpg"
    assert ku.image_path("/d", f, "0000000005", "r", "png") == "/d/" + f + "/image_03/data/0000000005.png"
    assert ku.depth_hint_path("/h", f, 12, "r") == "/h/" + f + "/image_03/0000000012.npy"
    assert ku.depth_hint_dir("/h", f, "l") == "/h/" + f + "/image_02"
    assert ku.default_depth_hint_root("/d") == "/d/depth_hints"
    assert ku.calib_dir("/d", f) == "/d/2011_09_26"
    assert ku.calib_files("/d", f) == ["/d/2011_09_26/calib_cam_to_cam.txt", "/d/2011_09_26/calib_velo_to_cam.txt"]
    assert ku.velodyne_path("/d", f, 7) == "/d/" + f + "/velodyne_points/data/0000000007.bin"
    assert ku.gt_depth_path("/d", f, 7, "r") == "/d/" + f + "/proj_depth/groundtruth/image_03/0000000007.png"
    assert ku.odom_image_path("/d", "9", 3, "r", ".png") == "/d/sequences/09/image_3/000003.png"
    assert ku.odom_poses_path("/d", 10) == "/d/poses/10.txt"
    assert [ku.side_to_cam(s) for s in ("l", "r", "2", 3)] == [2, 3, 2, 3]
    with pytest.raises(ToolkitError, match="bad camera side 'x'"):
        ku.side_to_cam("x")
    with pytest.raises(ToolkitError, match="bad odometry sequence 'nine'"):
        ku.odom_image_path("/d", "nine", 0, "l")
    # the hint contract: the precompute writes where training reads, the dataset reads the layout
    assert P.hint_path is ku.depth_hint_path and P.image_path is ku.image_path
    ds = KITTIDepthDataset("/d", [f"{f} 5 r"], 64, 192, [0], 1, use_depth_hints=True, img_ext="png")
    assert ds.get_depth_hint_path(f, 5, "r") == ku.depth_hint_path("/d/depth_hints", f, 5, "r")
    assert ds.get_image_path(f, 5, "r") == ku.image_path("/d", f, 5, "r", ".png")
    assert ds.get_gt_path(f, 5, "r") == ku.gt_depth_path("/d", f, 5, "r")
    assert ds.get_velo_path(f, 5) == ku.velodyne_path("/d", f, 5)


def test_split_files_parse_once_utf8_and_side_optional(tmp_path):
    import datasets
    ku = kitti_utils
    p = tmp_path / "files.txt"
    p.write_text("2011_09_26/dr\u00eave_sync 0000000003 l\n\n  d/x 4 r  \n", encoding="utf-8")
    assert ku.read_split_file(str(p)) == ["2011_09_26/dr\u00eave_sync 0000000003 l", "d/x 4 r"]
    assert ku.read_split_entries(str(p)) == [("2011_09_26/dr\u00eave_sync", 3, "l"), ("d/x", 4, "r")]
    assert datasets.read_split_file is ku.read_split_file and datasets.parse_split_line is ku.parse_split_line
    p.write_text("d/x 3\nd/x 4 r\n")
    with pytest.raises(ToolkitError, match=r"split line 1 'd/x 3' of .*files\.txt \(2 fields\)"):
        ku.read_split_file(str(p))
    assert ku.read_split_entries(str(p), side_required=False) == [("d/x", 3, None), ("d/x", 4, "r")]
    with pytest.raises(ToolkitError, match="side 'q' is not l or r"):
        ku.parse_split_line("d/x 3 q", side_required=False)
    with pytest.raises(ToolkitError, match=r"\(1 fields\): expected '<folder> <frame_index> \[<l\|r>\]'"):
        ku.parse_split_line("d/x", side_required=False)
    p.write_bytes(b"d/x 3 l\nd/\xff 4 r\n")
    with pytest.raises(ToolkitError, match=r"split file is not UTF-8 text \(.*files\.txt\)") as e:
        ku.read_split_file(str(p))
    assert "\n" not in str(e.value)


def test_kitti_layout_is_built_only_in_kitti_utils(repo_root):
    """No module but kitti_utils.py joins the KITTI / depth-hint folder names into a path."""
    import ast
    import re
    names = {"depth_hints", "velodyne_points", "proj_depth", "groundtruth", "calib_cam_to_cam.txt",
             "calib_velo_to_cam.txt", "sequences", "poses"}

    def layout_name(text):
        return any(part in names or re.fullmatch(r"image_0?[0-9]?", part) for part in re.split(r"[/\\]", text))
    skip = {".venv", ".git", "tests", "docs", "__pycache__", "splits", "weights", "configs"}
    found = []
    for folder, dirs, files in os.walk(repo_root):
        dirs[:] = [d for d in dirs if d not in skip and not d.startswith(".")]
        for name in files:
            path = os.path.join(folder, name)
            if not name.endswith(".py") or os.path.relpath(path, repo_root) == "kitti_utils.py":
                continue
            for node in ast.walk(ast.parse(open(path, encoding="utf-8").read(), path)):
                if isinstance(node, ast.JoinedStr):      # f"image_0{cam}"-style pieces
                    parts = node.values
                    for a, b in zip(parts, parts[1:]):
                        if isinstance(a, ast.Constant) and isinstance(b, ast.FormattedValue) \
                                and str(a.value).endswith(("image_0", "image_")):
                            found.append((path, node.lineno))
                is_join = (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                           and node.func.attr == "join" and isinstance(node.func.value, ast.Attribute)
                           and node.func.value.attr == "path")
                if is_join:
                    for arg in node.args:
                        for sub in ast.walk(arg):
                            if isinstance(sub, ast.Constant) and isinstance(sub.value, str) \
                                    and layout_name(sub.value):
                                found.append((path, node.lineno))
    assert not found, found
