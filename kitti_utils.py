"""KITTI calibration parsing, LiDAR loading and LiDAR -> camera depth maps (docs/METHOD.md, section 6).

``generate_depth_map`` follows the KITTI devkit / Monodepth2 semantics exactly: points in
front of the LiDAR (x >= 0) are projected with ``P_rect_0{cam} @ R_rect_00 @ [R|T]_velo_to_cam``,
the pixel is ``round(u) - 1, round(v) - 1`` (MATLAB 1-based convention), the image size comes
from ``S_rect_02``, and where several points land on one pixel the nearest one is kept.
"""
import os

import numpy as np

from utils import ToolkitError


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


def velo_to_image_matrix(calib_dir, cam=2):
    """(3, 4) matrix ``P_rect_0{cam} @ R_rect_00 @ [R|T]_velo_to_cam`` and the image shape
    (rows, cols) from ``S_rect_02``."""
    cam2cam = read_calib_file(os.path.join(calib_dir, "calib_cam_to_cam.txt"))
    velo2cam = read_calib_file(os.path.join(calib_dir, "calib_velo_to_cam.txt"))
    for key, d, name in (("R", velo2cam, "calib_velo_to_cam.txt"), ("T", velo2cam, "calib_velo_to_cam.txt"),
                         ("S_rect_02", cam2cam, "calib_cam_to_cam.txt"),
                         ("R_rect_00", cam2cam, "calib_cam_to_cam.txt"),
                         (f"P_rect_0{cam}", cam2cam, "calib_cam_to_cam.txt")):
        if key not in d:
            raise ToolkitError(f"calibration entry '{key}' missing ({os.path.join(calib_dir, name)}): "
                               f"use the original KITTI calibration files")
    Tr = np.eye(4)
    Tr[:3, :3] = velo2cam["R"].reshape(3, 3)
    Tr[:3, 3] = velo2cam["T"]
    R_rect = np.eye(4)
    R_rect[:3, :3] = cam2cam["R_rect_00"].reshape(3, 3)
    P_rect = cam2cam[f"P_rect_0{cam}"].reshape(3, 4)
    im_shape = cam2cam["S_rect_02"][::-1].astype(np.int32)
    return P_rect @ R_rect @ Tr, (int(im_shape[0]), int(im_shape[1]))


def generate_depth_map(calib_dir, velo_filename, cam=2, vel_depth=False):
    """Sparse depth map (rows, cols) float64 of camera ``cam`` from one velodyne scan.

    ``vel_depth=True`` stores the LiDAR x (forward distance) instead of the camera z, as
    Monodepth2's export of the Eigen ground truth does. 0 = no point.
    """
    P_velo2im, (rows, cols) = velo_to_image_matrix(calib_dir, cam)
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
