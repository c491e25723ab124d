"""KITTI datasets: raw (Eigen splits), odometry sequences, and the depth benchmark's improved
ground truth (docs/METHOD.md, section 1). Paths and depth handling follow Monodepth2."""
import os

import numpy as np
from PIL import Image

from utils import ToolkitError

from .mono_dataset import MonoDataset

NEAREST = getattr(Image, "Resampling", Image).NEAREST


def resize_nearest(depth, shape):
    """Nearest-neighbour resize of a 2-D map to ``shape`` (rows, cols): output pixel i takes
    source pixel floor((i + 0.5) * in / out) (pixel-centre mapping, as PIL's NEAREST and
    Monodepth2's skimage resize; exact integer arithmetic, so ties are deterministic)."""
    rows, cols = depth.shape
    out_r, out_c = int(shape[0]), int(shape[1])
    if (rows, cols) == (out_r, out_c):
        return depth
    ri = ((2 * np.arange(out_r) + 1) * rows) // (2 * out_r)
    ci = ((2 * np.arange(out_c) + 1) * cols) // (2 * out_c)
    return depth[ri][:, ci]


class KITTIDataset(MonoDataset):
    """Common KITTI behaviour: the raw-data folder layout and LiDAR ground truth."""

    def get_image_path(self, folder, frame_index, side):
        """``<data_path>/<folder>/image_0{2,3}/data/<frame:010d><ext>``."""
        return os.path.join(self.data_path, folder, f"image_0{self.side_map[side]}", "data",
                            f"{int(frame_index):010d}{self.img_ext}")

    def get_velo_path(self, folder, frame_index):
        return os.path.join(self.data_path, folder, "velodyne_points", "data", f"{int(frame_index):010d}.bin")

    def check_depth(self):
        """Ground truth is loaded when the LiDAR scan of the first split line exists."""
        if not self.lines:
            return False
        folder, frame_index, _ = self.lines[0]
        return os.path.isfile(self.get_velo_path(folder, frame_index))

    def depth_paths(self, folder, frame_index, side):
        """Files ``get_depth`` reads (for :func:`datasets.check_split`)."""
        return [self.get_velo_path(folder, frame_index)]


class KITTIRAWDataset(KITTIDataset):
    """KITTI raw data (Eigen splits): ``depth_gt`` is the LiDAR scan projected into the target
    camera (``kitti_utils.generate_depth_map``), resized to 375 x 1242 (nearest)."""

    def get_depth(self, folder, frame_index, side, do_flip):
        from kitti_utils import generate_depth_map
        calib_path = os.path.join(self.data_path, folder.split("/")[0])
        depth_gt = generate_depth_map(calib_path, self.get_velo_path(folder, frame_index),
                                      self.side_map[side])
        depth_gt = resize_nearest(depth_gt, self.full_res_shape[::-1])
        if do_flip:
            depth_gt = np.fliplr(depth_gt)
        return depth_gt


class KITTIOdomDataset(KITTIDataset):
    """KITTI odometry: ``<data_path>/sequences/<seq:02d>/image_{2,3}/<frame:06d><ext>``; split
    lines are ``<sequence> <frame> <side>``. No depth ground truth."""

    def get_image_path(self, folder, frame_index, side):
        try:
            seq = int(folder)
        except ValueError:
            raise ToolkitError(f"bad odometry sequence '{folder}' (split line): odometry split "
                               f"lines are '<sequence> <frame> <l|r>'") from None
        return os.path.join(self.data_path, "sequences", f"{seq:02d}", f"image_{self.side_map[side]}",
                            f"{int(frame_index):06d}{self.img_ext}")

    def check_depth(self):
        return False

    def depth_paths(self, folder, frame_index, side):
        return []


class KITTIDepthDataset(KITTIDataset):
    """KITTI depth benchmark: ``depth_gt`` from the improved ground truth
    ``<data_path>/<folder>/proj_depth/groundtruth/image_0{2,3}/<frame:010d>.png`` (uint16 / 256),
    resized to 375 x 1242 (nearest)."""

    def get_gt_path(self, folder, frame_index, side):
        return os.path.join(self.data_path, folder, "proj_depth", "groundtruth",
                            f"image_0{self.side_map[side]}", f"{int(frame_index):010d}.png")

    def check_depth(self):
        if not self.lines:
            return False
        folder, frame_index, side = self.lines[0]
        return os.path.isfile(self.get_gt_path(folder, frame_index, side))

    def depth_paths(self, folder, frame_index, side):
        return [self.get_gt_path(folder, frame_index, side)]

    def get_depth(self, folder, frame_index, side, do_flip):
        path = self.get_gt_path(folder, frame_index, side)
        if not os.path.isfile(path):
            raise ToolkitError(f"ground-truth depth not found ({path}): download KITTI's "
                               f"data_depth_annotated into --data_path")
        with Image.open(path) as img:
            img = img.resize(self.full_res_shape, NEAREST)
            depth_gt = np.asarray(img).astype(np.float32) / 256.0
        if do_flip:
            depth_gt = np.fliplr(depth_gt)
        return depth_gt
