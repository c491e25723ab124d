"""The KITTI file layout, split lines, calibration parsing, LiDAR loading and LiDAR -> camera
depth maps (docs/METHOD.md, sections 1, 5 and 6). Every path of the KITTI raw / depth /
odometry layout and of the precomputed depth hints is built here, and only here:

- images: ``<data_path>/<folder>/image_0{2,3}/data/<frame:010d><ext>`` (:func:`image_path`);
- depth hints: ``<hint_root>/<folder>/image_0{2,3}/<frame:010d>.npy`` (:func:`depth_hint_path`),
  the contract between precompute_depth_hints.py and training; default root
  ``<data_path>/depth_hints`` (:func:`default_depth_hint_root`);
- calibration: ``<data_path>/<date>/calib_{cam_to_cam,velo_to_cam}.txt`` (:func:`calib_dir`,
  :func:`calib_file`);
- LiDAR: ``<data_path>/<folder>/velodyne_points/data/<frame:010d>.bin`` (:func:`velodyne_path`);
- improved ground truth: ``<data_path>/<folder>/proj_depth/groundtruth/image_0{2,3}/<frame:010d>.png``
  (:func:`gt_depth_path`);
- odometry: ``<data_path>/sequences/<seq:02d>/image_{2,3}/<frame:06d><ext>`` and
  ``<data_path>/poses/<seq:02d>.txt`` (:func:`odom_image_path`, :func:`odom_poses_path`);
- split lines ``<folder> <frame_index> <l|r>`` (:func:`parse_split_line`, :func:`read_split_file`,
  :func:`read_split_entries`); side ``l`` is camera 2, ``r`` camera 3 (:func:`side_to_cam`).

``generate_depth_map`` follows the KITTI devkit / Monodepth2 semantics exactly: points in
front of the LiDAR (x >= 0) are projected with ``P_rect_0{cam} @ R_rect_00 @ [R|T]_velo_to_cam``,
the pixel is ``round(u) - 1, round(v) - 1`` (MATLAB 1-based convention), the image size comes
from ``S_rect_02``, and where several points land on one pixel the nearest one is kept.

Only numpy and the standard library (and utils' error type): no Paddle.
"""
import os

import numpy as np

from utils import ToolkitError

# ----------------------------------------------------------------------------- layout

SIDE_TO_CAM = {"l": 2, "r": 3}
DEPTH_HINTS_DIR = "depth_hints"
CALIB_FILES = {"cam_to_cam": "calib_cam_to_cam.txt", "velo_to_cam": "calib_velo_to_cam.txt"}
SPLIT_LINE_FORMAT = "'<folder> <frame_index> <l|r>'"
SPLIT_LINE_FORMAT_SIDE_OPTIONAL = "'<folder> <frame_index> [<l|r>]'"


def side_to_cam(side):
    """KITTI camera number of a split line's side: ``"l"`` -> 2, ``"r"`` -> 3 (a camera number
    2 / 3, or "2" / "3", is returned as it is). ToolkitError otherwise."""
    if side in SIDE_TO_CAM:
        return SIDE_TO_CAM[side]
    if str(side) in ("2", "3"):
        return int(side)
    raise ToolkitError(f"bad camera side {side!r} (split line): use l (camera 2) or r (camera 3)")


def camera_dir(side):
    """``image_02`` / ``image_03``: the folder of a side's camera in the KITTI raw layout."""
    return f"image_0{side_to_cam(side)}"


def image_path(data_path, folder, frame_index, side, ext=".jpg"):
    """``<data_path>/<folder>/image_0{2,3}/data/<frame:010d><ext>``."""
    ext = ext if ext.startswith(".") else "." + ext
    return os.path.join(os.fspath(data_path), folder, camera_dir(side), "data", f"{int(frame_index):010d}{ext}")


def default_depth_hint_root(data_path):
    """Where hints are by default: ``<data_path>/depth_hints``."""
    return os.path.join(os.fspath(data_path), DEPTH_HINTS_DIR)


def depth_hint_dir(hint_root, folder, side):
    """``<hint_root>/<folder>/image_0{2,3}``: the folder of one camera's hints."""
    return os.path.join(os.fspath(hint_root), folder, camera_dir(side))


def depth_hint_path(hint_root, folder, frame_index, side):
    """``<hint_root>/<folder>/image_0{2,3}/<frame:010d>.npy`` (written by
    precompute_depth_hints.py, read by training)."""
    return os.path.join(depth_hint_dir(hint_root, folder, side), f"{int(frame_index):010d}.npy")


def calib_dir(data_path, folder):
    """The date folder ``<data_path>/<date>`` holding the calibration of ``<date>/<drive>``."""
    return os.path.join(os.fspath(data_path), folder.split("/")[0])


def calib_file(calib_folder, which):
    """``<calib_folder>/calib_cam_to_cam.txt`` (``which="cam_to_cam"``) or
    ``calib_velo_to_cam.txt`` (``"velo_to_cam"``)."""
    return os.path.join(os.fspath(calib_folder), CALIB_FILES[which])


def calib_files(data_path, folder):
    """Both calibration files of ``folder``'s date, in :data:`CALIB_FILES` order."""
    return [calib_file(calib_dir(data_path, folder), which) for which in CALIB_FILES]


def velodyne_path(data_path, folder, frame_index):
    """``<data_path>/<folder>/velodyne_points/data/<frame:010d>.bin``."""
    return os.path.join(os.fspath(data_path), folder, "velodyne_points", "data", f"{int(frame_index):010d}.bin")


def gt_depth_path(data_path, folder, frame_index, side):
    """KITTI's improved ground truth (data_depth_annotated, uint16 depth * 256):
    ``<data_path>/<folder>/proj_depth/groundtruth/image_0{2,3}/<frame:010d>.png``."""
    return os.path.join(os.fspath(data_path), folder, "proj_depth", "groundtruth", camera_dir(side),
                        f"{int(frame_index):010d}.png")


def odom_sequence(folder):
    """The sequence number of an odometry split line's folder field (``"9"``, ``"09"``)."""
    try:
        return int(folder)
    except ValueError:
        raise ToolkitError(f"bad odometry sequence '{folder}' (split line): odometry split "
                           f"lines are '<sequence> <frame> <l|r>'") from None


def odom_image_path(data_path, sequence, frame_index, side, ext=".jpg"):
    """KITTI odometry: ``<data_path>/sequences/<seq:02d>/image_{2,3}/<frame:06d><ext>``."""
    ext = ext if ext.startswith(".") else "." + ext
    return os.path.join(os.fspath(data_path), "sequences", f"{odom_sequence(sequence):02d}",
                        f"image_{side_to_cam(side)}", f"{int(frame_index):06d}{ext}")


def odom_poses_path(data_path, sequence):
    """KITTI odometry ground-truth poses: ``<data_path>/poses/<seq:02d>.txt``."""
    return os.path.join(os.fspath(data_path), "poses", f"{odom_sequence(sequence):02d}.txt")


# ----------------------------------------------------------------------------- split lines


def parse_split_line(line, lineno=None, source=None, side_required=True):
    """Parse one split line ``<folder> <frame_index> <side>`` into ``(folder, int, side)``.

    Raises :class:`ToolkitError` naming the line (and its file, when given) if it does not
    have three fields, the frame index is not an integer, or the side is not ``l``/``r``.
    With ``side_required=False`` a two-field line ``<folder> <frame_index>`` is accepted too
    (its side is None), as precompute_depth_hints.py does (it computes both sides).
    """
    parts = str(line).split()
    where = "split line" + (f" {lineno}" if lineno is not None else "") + f" '{str(line).strip()}'"
    if source:
        where += f" of {source}"
    fmt = SPLIT_LINE_FORMAT if side_required else SPLIT_LINE_FORMAT_SIDE_OPTIONAL
    if len(parts) != 3 and (side_required or len(parts) != 2):
        raise ToolkitError(f"malformed {where} ({len(parts)} fields): expected {fmt}; "
                           f"fix or regenerate the split file")
    folder, frame = parts[:2]
    side = parts[2] if len(parts) == 3 else None
    try:
        frame_index = int(frame)
    except ValueError:
        raise ToolkitError(f"malformed {where} (frame index '{frame}' is not an integer): "
                           f"expected {fmt}") from None
    if side is not None and side not in ("l", "r"):
        raise ToolkitError(f"malformed {where} (side '{side}' is not l or r): "
                           f"expected {fmt}")
    return folder, frame_index, side


def _parsed_split_lines(path, side_required):
    """``[(stripped line, (folder, frame_index, side))]`` of a split file's non-empty lines."""
    if not os.path.isfile(path):
        raise ToolkitError(f"split file not found ({path}): check --split / --splits_dir")
    out = []
    try:
        with open(path, "r", encoding="utf-8") as f:
            for k, raw in enumerate(f, 1):
                if raw.strip():
                    out.append((raw.strip(), parse_split_line(raw, k, path, side_required)))
    except UnicodeDecodeError as e:
        raise ToolkitError(f"split file is not UTF-8 text ({path}): {e.reason} at byte {e.start}; "
                           f"fix or regenerate the split file") from None
    return out


def read_split_file(path, side_required=True):
    """Read and validate a split file (UTF-8); returns its non-empty lines (stripped).

    Errors name the file and the 1-based line number of the first malformed line.
    """
    return [line for line, _ in _parsed_split_lines(path, side_required)]


def read_split_entries(path, side_required=True):
    """:func:`read_split_file`, parsed: ``[(folder, frame_index, side)]``."""
    return [entry for _, entry in _parsed_split_lines(path, side_required)]


# ----------------------------------------------------------------------------- calibration and LiDAR


def read_calib_file(path):
    """Parse a KITTI calibration text file into ``{key: float64 array}``.

    Lines are ``key: v1 v2 ...``; lines whose values are not numbers (e.g. ``calib_time``)
    are skipped. Raises :class:`ToolkitError` when the file is missing.
    """
    if not os.path.isfile(path):
        raise ToolkitError(f"calibration file not found ({path}): the KITTI raw data needs "
                           f"calib_cam_to_cam.txt and calib_velo_to_cam.txt in each date folder")
    data = {}
    with open(path, "r") as f:
        for line in f:
            if ":" not in line:
                continue
            key, value = line.split(":", 1)
            try:
                data[key.strip()] = np.array([float(x) for x in value.split()])
            except ValueError:
                pass
    return data


def load_velodyne_points(filename):
    """Load a velodyne .bin (float32 x, y, z, reflectance) as (N, 4) float32 with the last
    column set to 1 (homogeneous coordinates)."""
    if not os.path.isfile(filename):
        raise ToolkitError(f"LiDAR file not found ({filename}): download the KITTI raw "
                           f"velodyne_points for this drive")
    raw = np.fromfile(filename, dtype=np.float32)
    if raw.size % 4:
        raise ToolkitError(f"corrupt LiDAR file ({filename}): size is not a multiple of 4 "
                           f"float32 values; re-download it")
    points = raw.reshape(-1, 4).copy()
    points[:, 3] = 1.0
    return points


def sub2ind(matrix_size, row_sub, col_sub):
    """Row-major linear index of (row, col) in an array of shape ``matrix_size`` (0-based).

    Monodepth2's version computes ``row * (n - 1) + col - 1``, which makes pixel (r, n-1)
    collide with (r+1, 0); that only touches the first/last column (outside the Garg crop),
    and here the exact index is used so duplicates are only true duplicates.
    """
    _, n = matrix_size
    return np.asarray(row_sub).astype(np.int64) * int(n) + np.asarray(col_sub).astype(np.int64)


def velo_to_image_matrix(calib_folder, cam=2):
    """(3, 4) matrix ``P_rect_0{cam} @ R_rect_00 @ [R|T]_velo_to_cam`` and the image shape
    (rows, cols) from ``S_rect_02``."""
    files = {which: calib_file(calib_folder, which) for which in CALIB_FILES}
    cam2cam, velo2cam = (read_calib_file(files[which]) for which in ("cam_to_cam", "velo_to_cam"))
    for key, which in (("R", "velo_to_cam"), ("T", "velo_to_cam"), ("S_rect_02", "cam_to_cam"),
                       ("R_rect_00", "cam_to_cam"), (f"P_rect_0{cam}", "cam_to_cam")):
        if key not in (velo2cam if which == "velo_to_cam" else cam2cam):
            raise ToolkitError(f"calibration entry '{key}' missing ({files[which]}): "
                               f"use the original KITTI calibration files")
    Tr = np.eye(4)
    Tr[:3, :3] = velo2cam["R"].reshape(3, 3)
    Tr[:3, 3] = velo2cam["T"]
    R_rect = np.eye(4)
    R_rect[:3, :3] = cam2cam["R_rect_00"].reshape(3, 3)
    P_rect = cam2cam[f"P_rect_0{cam}"].reshape(3, 4)
    im_shape = cam2cam["S_rect_02"][::-1].astype(np.int32)
    return P_rect @ R_rect @ Tr, (int(im_shape[0]), int(im_shape[1]))


def generate_depth_map(calib_folder, velo_filename, cam=2, vel_depth=False):
    """Sparse depth map (rows, cols) float64 of camera ``cam`` from one velodyne scan.

    ``vel_depth=True`` stores the LiDAR x (forward distance) instead of the camera z, as
    Monodepth2's export of the Eigen ground truth does. 0 = no point.
    """
    P_velo2im, (rows, cols) = velo_to_image_matrix(calib_folder, cam)
    velo = load_velodyne_points(velo_filename)
    velo = velo[velo[:, 0] >= 0, :]

    pts = (P_velo2im @ velo.T).T
    pts[:, :2] = pts[:, :2] / pts[:, 2][..., None]
    if vel_depth:
        pts[:, 2] = velo[:, 0]

    # round(u) - 1 reproduces the KITTI MATLAB devkit's 1-based pixel indices
    pts[:, 0] = np.round(pts[:, 0]) - 1
    pts[:, 1] = np.round(pts[:, 1]) - 1
    ok = (pts[:, 0] >= 0) & (pts[:, 1] >= 0) & (pts[:, 0] < cols) & (pts[:, 1] < rows)
    pts = pts[ok]

    depth = np.zeros((rows, cols))
    inds = sub2ind(depth.shape, pts[:, 1], pts[:, 0])
    # several points on one pixel: keep the nearest (smallest depth)
    order = np.lexsort((pts[:, 2], inds))
    inds, vals = inds[order], pts[order, 2]
    first = np.ones(len(inds), bool)
    first[1:] = inds[1:] != inds[:-1]
    depth.flat[inds[first]] = vals[first]
    depth[depth < 0] = 0
    return depth
