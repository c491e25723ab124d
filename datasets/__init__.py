"""KITTI datasets with Monodepth2 / Depth Hints items (docs/METHOD.md, section 1), split-file
parsing, the up-front file checks and the resumable sampling used in training."""
from .mono_dataset import (MonoDataset, ColorJitter, parse_split_line, read_split_file,
                           load_depth_hint, pil_loader)
from .kitti_dataset import KITTIDataset, KITTIRAWDataset, KITTIOdomDataset, KITTIDepthDataset
from .check import check_split, check_training_data
from .sampling import (ResumableBatchSampler, SeededDataset, build_dataset, collate,
                       split_dir_of)

__all__ = ["MonoDataset", "KITTIDataset", "KITTIRAWDataset", "KITTIOdomDataset",
           "KITTIDepthDataset", "check_split", "check_training_data", "parse_split_line",
           "read_split_file", "load_depth_hint", "pil_loader", "ColorJitter",
           "ResumableBatchSampler", "SeededDataset", "build_dataset", "collate", "split_dir_of"]
