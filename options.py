"""Command-line options for training and evaluation (Monodepth2 / Depth Hints names and defaults).

`MonodepthOptions().parse(argv=None)` returns an `argparse.Namespace`. Every option of the
Monodepth2 and Depth-Hints command lines keeps its name and default; the toolkit adds
`--device`, `--seed`, `--resume`, `--max_steps`, `--splits_dir` and `--metrics_out`.

`validate_options(opt)` rejects invalid combinations and missing inputs with a one-line
`utils.ToolkitError`; `train.py` calls it before building the trainer.
"""
import argparse
import os

FILE_DIR = os.path.dirname(os.path.abspath(__file__))


class MonodepthOptions:
    """Argument parser holding every training and evaluation option."""

    def __init__(self):
        p = argparse.ArgumentParser(description="Depth Hints / Monodepth2 options (PaddlePaddle)")
        self.parser = p

        # PATHS
        p.add_argument("--data_path", type=str, default=os.path.join(FILE_DIR, "kitti_data"),
                       help="path to the training data (KITTI raw layout)")
        p.add_argument("--log_dir", type=str, default=os.path.join(os.path.expanduser("~"), "tmp"),
                       help="log directory")
        p.add_argument("--splits_dir", type=str, default=None,
                       help="folder holding split folders (default: <repo>/splits)")

        # TRAINING
        p.add_argument("--model_name", type=str, default="mdp",
                       help="the name of the folder to save the model in")
        p.add_argument("--split", type=str, default="eigen_zhou",
                       help="split name under --splits_dir (eigen_zhou, eigen_full, odom, benchmark, ...) "
                            "or a path to a folder with train_files.txt and val_files.txt")
        p.add_argument("--num_layers", type=int, default=18, choices=[18, 34, 50, 101, 152],
                       help="number of resnet layers")
        p.add_argument("--dataset", type=str, default="kitti",
                       choices=["kitti", "kitti_odom", "kitti_depth", "kitti_test"],
                       help="dataset to train on")
        p.add_argument("--png", action="store_true",
                       help="if set, trains from raw KITTI png files (instead of jpgs)")
        p.add_argument("--height", type=int, default=192, help="input image height")
        p.add_argument("--width", type=int, default=640, help="input image width")
        p.add_argument("--disparity_smoothness", type=float, default=1e-3,
                       help="disparity smoothness weight")
        p.add_argument("--scales", nargs="+", type=int, default=[0, 1, 2, 3],
                       help="scales used in the loss")
        p.add_argument("--min_depth", type=float, default=0.1, help="minimum depth")
        p.add_argument("--max_depth", type=float, default=100.0, help="maximum depth")
        p.add_argument("--use_stereo", action="store_true", help="if set, uses stereo pair for training")
        p.add_argument("--frame_ids", nargs="+", type=int, default=[0, -1, 1], help="frames to load")
        p.add_argument("--use_depth_hints", action="store_true",
                       help="if set, apply depth hints during training")
        p.add_argument("--depth_hint_path", type=str, default=None,
                       help="path to load precomputed depth hints from "
                            "(default: <data_path>/depth_hints)")

        # OPTIMIZATION
        p.add_argument("--batch_size", type=int, default=12, help="batch size")
        p.add_argument("--learning_rate", type=float, default=1e-4, help="learning rate")
        p.add_argument("--num_epochs", type=int, default=20, help="number of epochs")
        p.add_argument("--scheduler_step_size", type=int, default=15, help="step size of the scheduler")
        p.add_argument("--max_steps", type=int, default=None,
                       help="stop after this many optimisation steps in total (smoke runs, benchmarks)")
        p.add_argument("--seed", type=int, default=0, help="random seed (data order, augmentation, init)")

        # ABLATION
        p.add_argument("--v1_multiscale", action="store_true", help="if set, uses monodepth v1 multiscale")
        p.add_argument("--avg_reprojection", action="store_true", help="if set, uses average reprojection loss")
        p.add_argument("--disable_automasking", action="store_true", help="if set, doesn't do auto-masking")
        p.add_argument("--predictive_mask", action="store_true",
                       help="if set, uses a predictive masking scheme as in Zhou et al")
        p.add_argument("--no_ssim", action="store_true", help="if set, disables ssim in the loss")
        p.add_argument("--weights_init", type=str, default="pretrained",
                       help="pretrained, scratch, or a path to backbone weights (.pdparams file or folder)")
        p.add_argument("--pose_model_input", type=str, default="pairs", choices=["pairs", "all"],
                       help="how many images the pose network gets")
        p.add_argument("--pose_model_type", type=str, default="separate_resnet",
                       choices=["posecnn", "separate_resnet", "shared"],
                       help="normal or shared")

        # SYSTEM
        p.add_argument("--no_cuda", action="store_true", help="if set disables CUDA (same as --device cpu)")
        p.add_argument("--device", type=str, default="auto", choices=["auto", "cpu", "gpu"],
                       help="where to run: auto picks a GPU when Paddle sees one")
        p.add_argument("--num_workers", type=int, default=12,
                       help="number of dataloader workers (clamped to the CPU count)")

        # LOADING
        p.add_argument("--load_weights_folder", type=str, default=None, help="name of model to load")
        p.add_argument("--models_to_load", nargs="+", type=str,
                       default=["encoder", "depth", "pose_encoder", "pose"], help="models to load")
        p.add_argument("--resume", action="store_true",
                       help="continue from the newest checkpoint in <log_dir>/<model_name>/models "
                            "(optimizer, scheduler, epoch, step and RNG state)")

        # LOGGING
        p.add_argument("--log_frequency", type=int, default=250,
                       help="number of batches between each VisualDL log")
        p.add_argument("--save_frequency", type=int, default=1,
                       help="number of epochs between each save")

        # EVALUATION
        p.add_argument("--eval_stereo", action="store_true",
                       help="if set evaluates in stereo mode")
        p.add_argument("--eval_mono", action="store_true", help="if set evaluates in mono mode")
        p.add_argument("--disable_median_scaling", action="store_true",
                       help="if set disables median scaling in evaluation")
        p.add_argument("--pred_depth_scale_factor", type=float, default=1,
                       help="if set multiplies predictions by this number")
        p.add_argument("--ext_disp_to_eval", type=str, default=None,
                       help="optional path to a .npy disparities file to evaluate")
        p.add_argument("--eval_split", type=str, default="eigen",
                       choices=["eigen", "eigen_benchmark", "benchmark", "odom_9", "odom_10"],
                       help="which split to run eval on")
        p.add_argument("--save_pred_disps", action="store_true",
                       help="if set saves predicted disparities")
        p.add_argument("--no_eval", action="store_true", help="if set disables evaluation")
        p.add_argument("--eval_eigen_to_benchmark", action="store_true",
                       help="if set assume we are loading eigen results from npy but "
                            "we want to evaluate using the new benchmark.")
        p.add_argument("--eval_out_dir", type=str, default=None,
                       help="if set will output the disparities to this folder")
        p.add_argument("--post_process", action="store_true",
                       help="if set will perform the flipping post processing from the original monodepth paper")
        p.add_argument("--metrics_out", type=str, default=None,
                       help="if set, write the evaluation metrics to this JSON file")

    def parse(self, argv=None):
        """Parse `argv` (default sys.argv[1:]) and return the Namespace."""
        self.options = self.parser.parse_args(argv)
        return self.options


def _err(what, where, fix):
    from utils import ToolkitError
    return ToolkitError("{} ({}): {}".format(what, where, fix))


def validate_options(opt, check_data=True):
    """Reject invalid option combinations and missing inputs with one-line ToolkitErrors.

    With `check_data`, also checks that the data path, split files and (with hints) the
    hint files exist, via `datasets.check_split` on the train and val datasets.
    """
    if opt.use_depth_hints and not opt.use_stereo:
        raise _err("depth hints need the stereo pair", "--use_depth_hints",
                   "add --use_stereo or drop --use_depth_hints")
    if opt.use_depth_hints and opt.v1_multiscale:
        raise _err("depth hints are computed at full resolution", "--v1_multiscale",
                   "drop --v1_multiscale or --use_depth_hints")
    if opt.predictive_mask and not opt.disable_automasking:
        raise _err("the predictive mask replaces auto-masking", "--predictive_mask",
                   "add --disable_automasking")
    for name in ("height", "width"):
        v = getattr(opt, name)
        if v <= 0 or v % 32 != 0:
            raise _err("{} {} is not a positive multiple of 32".format(name, v), "--" + name,
                       "use e.g. --height 192 --width 640")
    if not opt.frame_ids or opt.frame_ids[0] != 0:
        raise _err("frame ids must start with 0", "--frame_ids", "use e.g. --frame_ids 0 -1 1")
    if len(opt.frame_ids) == 1 and not opt.use_stereo:
        raise _err("no source frame to reconstruct the target from", "--frame_ids",
                   "add --use_stereo or temporal frames (--frame_ids 0 -1 1)")
    if not opt.scales or sorted(opt.scales) != list(range(len(opt.scales))):
        raise _err("scales must be 0..N-1", "--scales", "use e.g. --scales 0 1 2 3")
    if not (0 < opt.min_depth < opt.max_depth):
        raise _err("need 0 < min_depth < max_depth", "--min_depth/--max_depth", "fix the depth range")
    if opt.batch_size < 1:
        raise _err("batch size must be >= 1", "--batch_size", "use a positive batch size")
    if opt.weights_init not in ("pretrained", "scratch") and not os.path.exists(opt.weights_init):
        raise _err("backbone weights not found", "--weights_init " + opt.weights_init,
                   "use scratch, pretrained, or an existing .pdparams file/folder")
    if opt.load_weights_folder is not None and not os.path.isdir(os.path.expanduser(opt.load_weights_folder)):
        raise _err("weights folder not found", "--load_weights_folder " + opt.load_weights_folder,
                   "point it at a models/weights_<epoch> folder")
    if check_data:
        check_training_data(opt)
    if opt.weights_init != "scratch":  # ImageNet weights must exist locally (no download)
        from networks.resnet_encoder import resolve_pretrained_path
        resolve_pretrained_path(opt.num_layers, True if opt.weights_init == "pretrained" else opt.weights_init)


def split_dir_of(opt):
    """Folder holding train_files.txt / val_files.txt for `opt.split` (ToolkitError if missing)."""
    import utils
    try:
        d = utils.resolve_split_dir(opt.split, getattr(opt, "splits_dir", None))
    except FileNotFoundError as e:
        raise _err("split not found: {}".format(e), "--split " + opt.split,
                   "give a split name under splits/ (see --splits_dir) or a folder with train_files.txt")
    for f in ("train_files.txt", "val_files.txt"):
        if not os.path.isfile(os.path.join(d, f)):
            raise _err("split file missing: " + os.path.join(d, f), "--split " + opt.split,
                       "the split folder needs train_files.txt and val_files.txt")
    return d


def check_training_data(opt):
    """Check data path, split files and (with hints) hint files; ToolkitError on the first problem."""
    if not os.path.isdir(opt.data_path):
        raise _err("data path not found: " + opt.data_path, "--data_path",
                   "point --data_path at the KITTI raw folder")
    if opt.use_depth_hints and opt.depth_hint_path is not None and not os.path.isdir(opt.depth_hint_path):
        raise _err("depth hint path not found: " + opt.depth_hint_path, "--depth_hint_path",
                   "run precompute_depth_hints.py or fix the path")
    split_dir_of(opt)
    if check_data_files_enabled(opt):
        from trainer import build_dataset
        import datasets
        for which in ("train", "val"):
            ds = build_dataset(opt, which, is_train=False)
            datasets.check_split(ds)


def check_data_files_enabled(opt):
    """Whether per-file checks run (always; a hook so tests can switch it off)."""
    return getattr(opt, "check_files", True)
