"""The camera model of the method (docs/METHOD.md, section 1): normalised intrinsics and
the stereo baseline. No Paddle import, so light processes (the hint precompute's parent,
file checks) can use it.

Intrinsics are *normalised* as in Monodepth2: row 0 of K is divided by the image width
and row 1 by the height, so one K serves every resolution; :func:`scale_intrinsics` turns
it into pixel units for a given size.
"""
import numpy as np

__all__ = ["KITTI_K", "NETWORK_BASELINE", "KITTI_BASELINE_M", "STEREO_SCALE_FACTOR",
           "scale_intrinsics", "stereo_scale_factor", "normalised_K", "intrinsics_vector",
           "read_intrinsics_file", "intrinsics_from_option", "IntrinsicsLookup", "INTRINSICS_FILE"]

# KITTI's normalised intrinsics (Godard et al. 2019): fx = 0.58 W, fy = 1.92 H, principal
# point at the image centre.
KITTI_K = np.array([[0.58, 0, 0.5, 0],
                    [0, 1.92, 0.5, 0],
                    [0, 0, 1, 0],
                    [0, 0, 0, 1]], dtype=np.float32)

NETWORK_BASELINE = 0.1   # stereo baseline in the network's units (stereo_T[0, 3] = +-0.1)
KITTI_BASELINE_M = 0.54  # KITTI's real stereo baseline in metres
STEREO_SCALE_FACTOR = 5.4  # KITTI_BASELINE_M / NETWORK_BASELINE: network depth -> metres


def stereo_scale_factor(baseline_m=KITTI_BASELINE_M):
    """Factor from the network's depth to metres for a rig with ``baseline_m`` metres."""
    return float(baseline_m) / NETWORK_BASELINE


def scale_intrinsics(K, width, height, dtype=np.float64):
    """Normalised 4x4 ``K`` -> pixel intrinsics for a ``width`` x ``height`` image
    (row 0 times width, row 1 times height)."""
    K = np.array(K, dtype=dtype)
    K[0, :] *= width
    K[1, :] *= height
    return K


# ----------------------------------------------------------------------------- your own camera

INTRINSICS_FILE = "intrinsics.txt"


def normalised_K(fx, fy, cx, cy):
    """4x4 normalised intrinsics from fx/W, fy/H, cx/W, cy/H."""
    K = np.eye(4, dtype=np.float32)
    K[0, 0], K[1, 1], K[0, 2], K[1, 2] = fx, fy, cx, cy
    return K


def intrinsics_vector(K=None):
    """``[fx, fy, cx, cy]`` of a normalised K (default KITTI's), as checkpoints record them."""
    K = KITTI_K if K is None else K
    return [float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2])]


def _parse_four(values, where):
    from utils import ToolkitError
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
    from utils import ToolkitError
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
    import os
    if len(values) == 1 and os.path.isfile(values[0]):
        return read_intrinsics_file(values[0])
    if len(values) == 1:
        from utils import ToolkitError
        raise ToolkitError("intrinsics file not found (--intrinsics {}): give four numbers fx fy cx cy "
                           "(normalised) or an existing file".format(values[0]))
    return _parse_four(values, "--intrinsics " + " ".join(values))


class IntrinsicsLookup:
    """Normalised K per split folder: ``<data_path>/<folder>/intrinsics.txt``, else
    ``<data_path>/<first part of folder>/intrinsics.txt`` (a KITTI date folder), else
    ``default`` (the ``--intrinsics`` value, or KITTI's)."""

    def __init__(self, data_path, default=None):
        self.data_path = data_path
        self.default = KITTI_K if default is None else np.asarray(default, np.float32)
        self._cache = {}

    def __call__(self, folder):
        import os
        K = self._cache.get(folder)
        if K is None:
            K = self.default
            parts = str(folder).replace("\\", "/").split("/")
            for sub in ("/".join(parts), parts[0]):
                path = os.path.join(self.data_path, sub, INTRINSICS_FILE)
                if os.path.isfile(path):
                    K = read_intrinsics_file(path)
                    break
            self._cache[folder] = K
        return K
