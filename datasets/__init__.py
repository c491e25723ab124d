"""KITTI datasets with Monodepth2 / Depth Hints items (SPEC section 1), split-file parsing
and the fast up-front file check used before training."""
from .mono_dataset import (MonoDataset, ColorJitter, KITTI_K, parse_split_line, read_split_file,
                           load_depth_hint, pil_loader)
from .kitti_dataset import KITTIDataset, KITTIRAWDataset, KITTIOdomDataset, KITTIDepthDataset
from .check import check_split

__all__ = ["MonoDataset", "KITTIDataset", "KITTIRAWDataset", "KITTIOdomDataset",
           "KITTIDepthDataset", "check_split", "parse_split_line", "read_split_file",
           "load_depth_hint", "pil_loader", "ColorJitter", "KITTI_K"]
