"""KITTI datasets with Monodepth2 / Depth Hints items (docs/METHOD.md, section 1), the up-front data checks
(check.py), the resumable sampling of training (sampling.py) and the safe loading (safe_loading.py)."""
from kitti_utils import parse_split_line, read_split_file
from .mono_dataset import MonoDataset, ColorJitter
from .kitti_dataset import (KITTIDataset, KITTIRAWDataset, KITTIOdomDataset, KITTIDepthDataset, build_dataset,
                            split_dir_of)
from .check import check_eval_split, check_split, check_training_data
from .safe_loading import DataLoadError, SafeDataset, checked_batches, collate, worker_died
from .sampling import SeededDataset, training_loaders
