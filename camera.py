"""The camera model (docs/METHOD.md, section 1): intrinsics normalised as in Monodepth2 (K's row 0
divided by the image width, row 1 by the height, so one K serves every resolution) and the stereo
baseline. No Paddle import: light processes (the hint precompute's parent, file checks) use it.
"""
import os

import numpy as np

from utils import ToolkitError


def normalised_K(fx, fy, cx, cy):
    """4x4 normalised intrinsics from fx/W, fy/H, cx/W, cy/H."""
    K = np.eye(4, dtype=np.float32)
    K[0, 0], K[1, 1], K[0, 2], K[1, 2] = fx, fy, cx, cy
    return K


KITTI_K = normalised_K(0.58, 1.92, 0.5, 0.5)  # Godard et al. 2019: principal point at the image centre
NETWORK_BASELINE = 0.1   # stereo baseline in the network's units (stereo_T[0, 3] = +-0.1)
KITTI_BASELINE_M = 0.54  # KITTI's real stereo baseline in metres
STEREO_SCALE_FACTOR = 5.4  # KITTI_BASELINE_M / NETWORK_BASELINE: network depth -> metres
INTRINSICS_FILE = "intrinsics.txt"  # a data folder's own camera (IntrinsicsLookup)


def stereo_scale_factor(baseline_m=KITTI_BASELINE_M):
    """Factor from the network's depth to metres for a rig with ``baseline_m`` metres."""
    return float(baseline_m) / NETWORK_BASELINE


def scale_intrinsics(K, width, height, dtype=np.float64):
    """Normalised 4x4 ``K`` -> pixel intrinsics for a ``width`` x ``height`` image."""
    K = np.array(K, dtype=dtype)
    K[0, :] *= width
    K[1, :] *= height
    return K


def intrinsics_vector(K=None):
    """``[fx, fy, cx, cy]`` of a normalised K (default KITTI's), as checkpoints record them."""
    K = KITTI_K if K is None else K
    return [float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2])]


def _parse_four(values, where):
    try:
        nums = [float(v) for v in values]
    except ValueError:
        nums = []
    if len(nums) != 4 or not all(np.isfinite(nums)) or nums[0] <= 0 or nums[1] <= 0:
        raise ToolkitError("intrinsics must be four numbers fx fy cx cy normalised by the image size, e.g. "
                           "0.58 1.92 0.5 0.5 for KITTI ({}): divide fx and cx by the width, fy and cy by "
                           "the height".format(where))
    return normalised_K(*nums)


def read_intrinsics_file(path):
    """Normalised K from a text file holding ``fx fy cx cy`` (normalised; '#' starts a comment)."""
    try:
        with open(path) as f:
            text = " ".join(line.split("#", 1)[0] for line in f)
    except OSError as exc:
        raise ToolkitError("cannot read intrinsics file ({}): {}".format(path, exc)) from None
    return _parse_four(text.replace(",", " ").split(), path)


def intrinsics_from_option(values):
    """``--intrinsics`` (four numbers, or one path to a file of them) -> normalised K; None -> None."""
    if values is None:
        return None
    if len(values) == 1 and os.path.isfile(values[0]):
        return read_intrinsics_file(values[0])
    if len(values) == 1:
        raise ToolkitError("intrinsics file not found (--intrinsics {}): give four numbers fx fy cx cy "
                           "(normalised) or an existing file".format(values[0]))
    return _parse_four(values, "--intrinsics " + " ".join(values))


class IntrinsicsLookup:
    """Normalised K per split folder: ``<data_path>/<folder>/intrinsics.txt``, else that of the folder's first
    part (a KITTI date folder), else ``default`` (the ``--intrinsics`` value, or KITTI's)."""

    def __init__(self, data_path, default=None):
        self.data_path = data_path
        self.default = KITTI_K if default is None else np.asarray(default, np.float32)
        self._cache = {}

    def __call__(self, folder):
        if folder not in self._cache:
            parts = str(folder).replace("\\", "/").split("/")
            paths = [os.path.join(self.data_path, sub, INTRINSICS_FILE) for sub in ("/".join(parts), parts[0])]
            path = next((p for p in paths if os.path.isfile(p)), None)
            self._cache[folder] = self.default if path is None else read_intrinsics_file(path)
        return self._cache[folder]
