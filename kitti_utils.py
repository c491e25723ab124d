"""The KITTI layout, split lines, calibration, LiDAR scans and LiDAR -> camera depth maps (docs/METHOD.md, sections 1, 5
and 6). Every path of the KITTI raw / depth / odometry layout and of the precomputed depth hints is built here, and only
here; the hint path ``<hint_root>/<folder>/image_0{2,3}/<frame:010d>.npy`` is the contract between
precompute_depth_hints.py and training. Split lines are ``<folder> <frame_index> <l|r>``, side ``l`` is camera 2, ``r``
camera 3. Only numpy and the standard library: no Paddle.
"""
import os

import numpy as np

from utils import MissingFileError, ToolkitError

SIDE_TO_CAM = {"l": 2, "r": 3}
CALIB_FILES = {"cam_to_cam": "calib_cam_to_cam.txt", "velo_to_cam": "calib_velo_to_cam.txt"}


def side_to_cam(side):
    """``"l"`` -> 2, ``"r"`` -> 3 (a camera number 2 / 3, or "2" / "3", is returned as it is)."""
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
    return os.path.join(os.fspath(data_path), "depth_hints")


def depth_hint_dir(hint_root, folder, side):
    """``<hint_root>/<folder>/image_0{2,3}``: the folder of one camera's hints."""
    return os.path.join(os.fspath(hint_root), folder, camera_dir(side))


def depth_hint_path(hint_root, folder, frame_index, side):
    """``<hint_root>/<folder>/image_0{2,3}/<frame:010d>.npy``."""
    return os.path.join(depth_hint_dir(hint_root, folder, side), f"{int(frame_index):010d}.npy")


def calib_dir(data_path, folder):
    """The date folder ``<data_path>/<date>`` holding the calibration of ``<date>/<drive>``."""
    return os.path.join(os.fspath(data_path), folder.split("/")[0])


def calib_files(data_path, folder):
    """``[calib_cam_to_cam.txt, calib_velo_to_cam.txt]`` of ``folder``'s date folder."""
    return [os.path.join(calib_dir(data_path, folder), name) for name in CALIB_FILES.values()]


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


def parse_split_line(line, lineno=None, source=None, side_required=True):
    """``(folder, frame_index, side)`` of one split line, or a ToolkitError naming it (and ``source``);
    ``side_required=False`` also takes ``<folder> <frame_index>`` (side None), as precompute_depth_hints.py does."""
    parts = str(line).split()
    where = "split line" + (f" {lineno}" if lineno is not None else "") + f" '{str(line).strip()}'"
    if source:
        where += f" of {source}"
    fmt = "'<folder> <frame_index> <l|r>'" if side_required else "'<folder> <frame_index> [<l|r>]'"
    if len(parts) != 3 and (side_required or len(parts) != 2):
        raise ToolkitError(f"malformed {where} ({len(parts)} fields): expected {fmt}; fix or regenerate the split file")
    folder, frame = parts[:2]
    side = parts[2] if len(parts) == 3 else None
    try:
        frame_index = int(frame)
    except ValueError:
        raise ToolkitError(f"malformed {where} (frame index '{frame}' is not an integer): expected {fmt}") from None
    if side is not None and side not in ("l", "r"):
        raise ToolkitError(f"malformed {where} (side '{side}' is not l or r): expected {fmt}")
    return folder, frame_index, side


def _parsed_split_lines(path, side_required):
    """``[(stripped line, (folder, frame_index, side))]`` of a split file's non-empty lines."""
    if not os.path.isfile(path):
        raise ToolkitError(f"split file not found ({path}): check --split / --splits_dir")
    try:
        with open(path, "r", encoding="utf-8") as f:
            return [(raw.strip(), parse_split_line(raw, k, path, side_required))
                    for k, raw in enumerate(f, 1) if raw.strip()]
    except UnicodeDecodeError as e:
        raise ToolkitError(f"split file is not UTF-8 text ({path}): {e.reason} at byte {e.start}; "
                           f"fix or regenerate the split file") from None


def read_split_file(path, side_required=True):
    """The validated, stripped non-empty lines of a UTF-8 split file (errors name the file and line)."""
    return [line for line, _ in _parsed_split_lines(path, side_required)]


def read_split_entries(path, side_required=True):
    """:func:`read_split_file`, parsed: ``[(folder, frame_index, side)]``."""
    return [entry for _, entry in _parsed_split_lines(path, side_required)]


def read_calib_file(path):
    """A KITTI calibration file's ``key: v1 v2 ...`` lines as ``{key: float64 array}`` (``calib_time`` skipped)."""
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
    """A velodyne .bin (float32 x, y, z, reflectance) as (N, 4) float32, the last column 1 (homogeneous)."""
    if not os.path.isfile(filename):
        raise ToolkitError(f"LiDAR file not found ({filename}): download the KITTI raw velodyne_points for this drive")
    raw = np.fromfile(filename, dtype=np.float32)
    if raw.size % 4:
        raise ToolkitError(f"corrupt LiDAR file ({filename}): size is not a multiple of 4 "
                           f"float32 values; re-download it")
    points = raw.reshape(-1, 4).copy()
    points[:, 3] = 1.0
    return points


def sub2ind(matrix_size, row_sub, col_sub):
    """Row-major 0-based linear index of (row, col); exact, unlike Monodepth2's ``row * (n - 1) + col - 1``
    where (r, n-1) and (r+1, 0) collide (first/last column, outside the Garg crop)."""
    _, n = matrix_size
    return np.asarray(row_sub).astype(np.int64) * int(n) + np.asarray(col_sub).astype(np.int64)


def velo_to_image_matrix(calib_folder, cam=2):
    """(3, 4) ``P_rect_0{cam} @ R_rect_00 @ [R|T]_velo_to_cam`` and (rows, cols) from ``S_rect_02``."""
    files = {which: os.path.join(os.fspath(calib_folder), name) for which, name in CALIB_FILES.items()}
    cam2cam, velo2cam = (read_calib_file(files[which]) for which in ("cam_to_cam", "velo_to_cam"))
    for key, which in (("R", "velo_to_cam"), ("T", "velo_to_cam"), ("S_rect_02", "cam_to_cam"),
                       ("R_rect_00", "cam_to_cam"), (f"P_rect_0{cam}", "cam_to_cam")):
        if key not in (velo2cam if which == "velo_to_cam" else cam2cam):
            raise ToolkitError(f"calibration entry '{key}' missing ({files[which]}): "
                               f"use the original KITTI calibration files")
    Tr = np.vstack([np.hstack([velo2cam["R"].reshape(3, 3), velo2cam["T"].reshape(3, 1)]), [0, 0, 0, 1.0]])
    R_rect = np.eye(4)
    R_rect[:3, :3] = cam2cam["R_rect_00"].reshape(3, 3)
    im_shape = cam2cam["S_rect_02"][::-1].astype(np.int32)
    return cam2cam[f"P_rect_0{cam}"].reshape(3, 4) @ R_rect @ Tr, (int(im_shape[0]), int(im_shape[1]))


def generate_depth_map(calib_folder, velo_filename, cam=2, vel_depth=False):
    """Sparse depth map (rows, cols) float64 of camera ``cam`` from one velodyne scan, 0 = no point, as the KITTI
    devkit / Monodepth2: points in front of the LiDAR (x >= 0) only, the nearest of several points on one pixel.
    ``vel_depth=True`` stores the LiDAR x (forward distance) instead of the camera z, as Monodepth2's Eigen export."""
    P_velo2im, (rows, cols) = velo_to_image_matrix(calib_folder, cam)
    velo = load_velodyne_points(velo_filename)
    velo = velo[velo[:, 0] >= 0, :]
    pts = (P_velo2im @ velo.T).T
    pts[:, :2] = pts[:, :2] / pts[:, 2][..., None]
    if vel_depth:
        pts[:, 2] = velo[:, 0]
    # round(u) - 1 reproduces the KITTI MATLAB devkit's 1-based pixel indices
    pts[:, :2] = np.round(pts[:, :2]) - 1
    pts = pts[(pts[:, 0] >= 0) & (pts[:, 1] >= 0) & (pts[:, 0] < cols) & (pts[:, 1] < rows)]
    depth = np.zeros((rows, cols))
    inds = sub2ind(depth.shape, pts[:, 1], pts[:, 0])
    # several points on one pixel: keep the nearest (smallest depth)
    order = np.lexsort((pts[:, 2], inds))
    inds, vals = inds[order], pts[order, 2]
    _, first = np.unique(inds, return_index=True)
    depth.flat[inds[first]] = vals[first]
    depth[depth < 0] = 0
    return depth


REPO_ROOT = os.path.dirname(os.path.abspath(__file__))


def resolve_split_dir(split, splits_dir=None):
    """Folder of a split: an existing folder path is used as is, else ``<splits_dir or <repo>/splits>/<split>``.
    Missing: :class:`MissingFileError` (a ``FileNotFoundError`` and a :class:`ToolkitError`) that says how to fix it."""
    if split is None or str(split) == "":
        raise MissingFileError("no split given (--split): name a split or a folder")
    split = os.fspath(split)
    if os.path.isdir(split):
        return split
    base = os.fspath(splits_dir) if splits_dir else os.path.join(REPO_ROOT, "splits")
    path = os.path.join(base, split)
    if os.path.isdir(path):
        return path
    raise MissingFileError(
        f"split '{split}' not found ({path}): put the split's *_files.txt lists there, "
        f"pass a folder path as the split, or set --splits_dir")
