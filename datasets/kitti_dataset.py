"""KITTI datasets: raw (Eigen splits), odometry sequences, and the depth benchmark's improved ground truth
(docs/METHOD.md, section 1), and the datasets of a run built from its options. Paths come from kitti_utils."""
import os

import numpy as np
from PIL import Image

import kitti_utils
from utils import ToolkitError
from kitti_utils import resolve_split_dir

from .mono_dataset import MonoDataset

NEAREST = getattr(Image, "Resampling", Image).NEAREST


def resize_nearest(depth, shape):
    """Nearest-neighbour resize of a 2-D map to ``shape`` (rows, cols): output pixel i takes source pixel
    floor((i + 0.5) * in / out), as PIL's NEAREST and Monodepth2's skimage resize, in exact integers (no ties)."""
    rows, cols = depth.shape
    out_r, out_c = int(shape[0]), int(shape[1])
    if (rows, cols) == (out_r, out_c):
        return depth
    ri = ((2 * np.arange(out_r) + 1) * rows) // (2 * out_r)
    ci = ((2 * np.arange(out_c) + 1) * cols) // (2 * out_c)
    return depth[ri][:, ci]


class KITTIDataset(MonoDataset):
    """Common KITTI behaviour: the raw-data folder layout (kitti_utils) and LiDAR ground truth."""

    def get_image_path(self, folder, frame_index, side):
        return kitti_utils.image_path(self.data_path, folder, frame_index, side, self.img_ext)

    def get_velo_path(self, folder, frame_index):
        return kitti_utils.velodyne_path(self.data_path, folder, frame_index)

    def check_depth(self):
        """Ground truth is loaded when the first split line's ground-truth file exists."""
        paths = self.depth_paths(*self.lines[0]) if self.lines else []
        return bool(paths) and os.path.isfile(paths[0])

    def depth_paths(self, folder, frame_index, side):
        """Files ``get_depth`` reads (for :func:`datasets.check_split`)."""
        return [self.get_velo_path(folder, frame_index)]


class KITTIRAWDataset(KITTIDataset):
    """KITTI raw (Eigen splits): ``depth_gt`` is the LiDAR scan projected into the camera, resized to 375 x 1242."""

    def get_depth(self, folder, frame_index, side, do_flip):
        depth_gt = kitti_utils.generate_depth_map(kitti_utils.calib_dir(self.data_path, folder),
                                                  self.get_velo_path(folder, frame_index),
                                                  kitti_utils.side_to_cam(side))
        depth_gt = resize_nearest(depth_gt, self.full_res_shape[::-1])
        if do_flip:
            depth_gt = np.fliplr(depth_gt)
        return depth_gt


class KITTIOdomDataset(KITTIDataset):
    """KITTI odometry (:func:`kitti_utils.odom_image_path`; split lines ``<sequence> <frame> <side>``): no depth."""

    def get_image_path(self, folder, frame_index, side):
        """:func:`kitti_utils.odom_image_path` (ToolkitError for a folder that is no number)."""
        return kitti_utils.odom_image_path(self.data_path, folder, frame_index, side, self.img_ext)

    def depth_paths(self, folder, frame_index, side):
        return []


class KITTIDepthDataset(KITTIDataset):
    """KITTI depth benchmark: ``depth_gt`` is the improved ground truth (uint16 / 256), resized to 375 x 1242."""

    def get_gt_path(self, folder, frame_index, side):
        return kitti_utils.gt_depth_path(self.data_path, folder, frame_index, side)

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


DATASETS = {"kitti": KITTIRAWDataset, "kitti_odom": KITTIOdomDataset, "kitti_depth": KITTIDepthDataset}


def split_dir_of(opt):
    """Folder holding train_files.txt / val_files.txt for ``opt.split`` (ToolkitError if missing)."""
    try:
        d = resolve_split_dir(opt.split, getattr(opt, "splits_dir", None))
    except FileNotFoundError as e:
        raise ToolkitError("split not found: {} (--split {}): give a split name under splits/ (see "
                           "--splits_dir) or a folder with train_files.txt".format(e, opt.split)) from None
    for f in ("train_files.txt", "val_files.txt"):
        if not os.path.isfile(os.path.join(d, f)):
            raise ToolkitError("split file missing: {} (--split {}): the split folder needs train_files.txt "
                               "and val_files.txt".format(os.path.join(d, f), opt.split))
    return d


def build_dataset(opt, which, is_train):
    """Dataset for the ``which`` ('train' or 'val') list of ``opt.split`` (check_training_data builds the run's)."""
    from camera import IntrinsicsLookup, intrinsics_from_option
    if opt.dataset not in DATASETS:
        raise ToolkitError(f"dataset '{opt.dataset}' cannot be trained on (--dataset): use kitti, kitti_odom "
                           "or kitti_depth")
    split_file = os.path.join(split_dir_of(opt), "{}_files.txt".format(which))
    filenames = kitti_utils.read_split_file(split_file)
    if not filenames:
        raise ToolkitError("split list is empty ({}_files.txt of --split {}): add samples".format(which, opt.split))
    frame_ids = list(opt.frame_ids) + (["s"] if opt.use_stereo and "s" not in opt.frame_ids else [])
    intrinsics = IntrinsicsLookup(opt.data_path, intrinsics_from_option(opt.intrinsics))
    return DATASETS[opt.dataset](opt.data_path, filenames, opt.height, opt.width, frame_ids, len(opt.scales),
                                 is_train=is_train, img_ext=".png" if opt.png else ".jpg",
                                 use_depth_hints=opt.use_depth_hints, depth_hint_path=opt.depth_hint_path,
                                 split_file=split_file, intrinsics=intrinsics)
