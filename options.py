"""Command-line options for training and evaluation: Monodepth2's and Depth Hints' with their names and defaults
(all but `--eval_eigen_to_benchmark`: README, "Training"), plus the toolkit's own. ``--config FILE`` reads them
from YAML or JSON; `validate_options` rejects invalid combinations with a one-line `utils.ToolkitError`."""
import argparse
import copy
import json
import math
import os
import sys

from utils import ToolkitError, check_input_size

FILE_DIR = os.path.dirname(os.path.abspath(__file__))


class HelpFormatter(argparse.HelpFormatter):
    """``--help`` with each option's default after its help ("(default: 12)"; lists as "0 -1 1"),
    except where the default is None or off (a switch) or the help already says it."""

    def _get_help_string(self, action):
        text = action.help or ""
        d = action.default
        if (not action.option_strings or d is None or d is False or d is argparse.SUPPRESS
                or "default" in text):
            return text
        shown = " ".join(map(str, d)) if isinstance(d, (list, tuple)) else str(d)
        return "{} (default: {})".format(text, shown.replace("%", "%%"))


class MonodepthOptions:
    """The parser of every option of train.py, evaluate_depth.py and evaluate_pose.py, in ``--help`` groups."""

    def __init__(self):
        p = argparse.ArgumentParser(
            description="Depth Hints / Monodepth2 options (PaddlePaddle), shared by train.py, "
                        "evaluate_depth.py and evaluate_pose.py.",
            formatter_class=HelpFormatter)
        self.parser = p
        p.add_argument("--config", type=str, default=None,
                       help="YAML or JSON file of options (keys are option names, e.g. a run's opt.json); "
                            "flags on the command line win")

        g = p.add_argument_group("data")
        g.add_argument("--data_path", type=str, default=os.path.join(FILE_DIR, "kitti_data"),
                       help="root of the data in the KITTI raw layout (<date>/<drive>/image_0{2,3}/data/...)")
        g.add_argument("--splits_dir", type=str, default=None,
                       help="folder holding the split folders (default: <repo>/splits)")
        g.add_argument("--split", type=str, default="eigen_zhou",
                       help="training split: a folder name under --splits_dir (eigen_zhou, eigen_full, odom, "
                            "benchmark, ...) or a path to a folder with train_files.txt and val_files.txt")
        g.add_argument("--dataset", type=str, default="kitti",
                       choices=["kitti", "kitti_odom", "kitti_depth", "kitti_test"],
                       help="layout of the training data: kitti (raw), kitti_odom (odometry sequences), "
                            "kitti_depth (raw images with the depth benchmark's ground truth for validation); "
                            "kitti_test is accepted for Monodepth2's command lines but cannot train")
        g.add_argument("--png", action="store_true",
                       help="the images are .png files (KITTI raw as distributed) instead of .jpg")
        g.add_argument("--height", type=int, default=192,
                       help="network input height: images (and depth hints) are resized to it; a multiple of 32")
        g.add_argument("--width", type=int, default=640,
                       help="network input width; a multiple of 32")
        g.add_argument("--frame_ids", nargs="+", type=int, default=[0, -1, 1],
                       help="frames each sample loads, relative to the target frame: 0 first, then the temporal source "
                            "frames (e.g. -1 1); 0 alone with --use_stereo trains from stereo pairs only")
        g.add_argument("--use_stereo", action="store_true",
                       help="add the other camera of the stereo pair as a source frame (S and MS training)")
        g.add_argument("--intrinsics", nargs="+", type=str, default=None, metavar="FX_FY_CX_CY_OR_FILE",
                       help="camera intrinsics normalised by the image size as in Monodepth2's K "
                            "(fx/W fy/H cx/W cy/H; KITTI: 0.58 1.92 0.5 0.5) or a file holding them; "
                            "an intrinsics.txt in a drive or date folder overrides it there")
        g.add_argument("--stereo_baseline", type=float, default=None,
                       help="stereo baseline of the camera rig in metres, for metric depth (default: KITTI's 0.54)")
        g.add_argument("--check_data", type=str, default="quick", choices=["quick", "full"],
                       help="before training: quick = every file exists and every hint's .npy header is "
                            "right; full = also decode every image and hint (slow, certain)")

        g = p.add_argument_group("model")
        g.add_argument("--num_layers", type=int, default=18, choices=[18, 34, 50, 101, 152],
                       help="ResNet depth of the depth (and pose) encoder; evaluation reads it from the "
                            "weights unless given")
        g.add_argument("--weights_init", type=str, default="pretrained",
                       help="encoder initialisation: pretrained (ImageNet weights), scratch (random), or a "
                            "path to backbone weights (.pdparams file or folder)")
        g.add_argument("--scales", nargs="+", type=int, default=[0, 1, 2, 3],
                       help="decoder output scales 0..N-1 (scale s is 1/2^s of the input) that the loss is computed on")
        g.add_argument("--min_depth", type=float, default=0.1,
                       help="nearest depth the network can predict: its sigmoid output is scaled to "
                            "disparities 1/max_depth .. 1/min_depth")
        g.add_argument("--max_depth", type=float, default=100.0,
                       help="farthest depth the network can predict")
        g.add_argument("--pose_model_type", type=str, default="separate_resnet",
                       choices=["posecnn", "separate_resnet", "shared"],
                       help="pose network (for temporal frames): separate_resnet (its own ResNet encoder), "
                            "shared (the depth encoder's features) or posecnn (Zhou et al.'s small CNN)")
        g.add_argument("--pose_model_input", type=str, default="pairs", choices=["pairs", "all"],
                       help="pose network input: pairs (the target with one source frame at a time) or "
                            "all (every frame at once)")
        g.add_argument("--predictive_mask", action="store_true",
                       help="learn a per-pixel mask of the photometric loss as in Zhou et al. (needs "
                            "--disable_automasking)")

        g = p.add_argument_group("training")
        g.add_argument("--batch_size", type=int, default=12,
                       help="samples per step (per process when training on several GPUs); also the "
                            "evaluation batch size")
        g.add_argument("--learning_rate", type=float, default=1e-4, help="Adam learning rate")
        g.add_argument("--num_epochs", type=int, default=20, help="number of epochs")
        g.add_argument("--scheduler_step_size", type=int, default=15,
                       help="epochs between the learning-rate drops (x0.1 each)")
        g.add_argument("--max_steps", type=int, default=None,
                       help="stop after this many optimisation steps in total and save weights_last "
                            "(smoke runs, benchmarks; 0 saves the initial weights)")
        g.add_argument("--seed", type=int, default=0, help="random seed (data order, augmentation, init)")
        g.add_argument("--disparity_smoothness", type=float, default=1e-3,
                       help="weight of the edge-aware disparity smoothness loss")
        g.add_argument("--v1_multiscale", action="store_true",
                       help="compute the loss at each scale's own resolution (Monodepth v1) instead of "
                            "upsampling every scale's depth to the input size")
        g.add_argument("--avg_reprojection", action="store_true",
                       help="average the photometric error over the source frames instead of taking the "
                            "per-pixel minimum")
        g.add_argument("--disable_automasking", action="store_true",
                       help="do not mask the pixels that the unwarped source frames already explain "
                            "(static camera, objects moving with it)")
        g.add_argument("--no_ssim", action="store_true",
                       help="photometric error as L1 only (default: 0.85 SSIM + 0.15 L1)")

        g = p.add_argument_group("depth hints")
        g.add_argument("--use_depth_hints", action="store_true",
                       help="add the depth hint loss (Watson et al. 2019) where a precomputed hint "
                            "reprojects better than the prediction (needs --use_stereo)")
        g.add_argument("--depth_hint_path", type=str, default=None,
                       help="folder of the precomputed hints (precompute_depth_hints.py --save_path) "
                            "(default: <data_path>/depth_hints)")

        g = p.add_argument_group("logging and checkpoints")
        g.add_argument("--log_dir", type=str, default=os.path.join(os.path.expanduser("~"), "tmp"),
                       help="folder of the runs: each one writes <log_dir>/<model_name>/")
        g.add_argument("--model_name", type=str, default="mdp",
                       help="name of the run: its folder <log_dir>/<model_name> holds opt.json, train.log, "
                            "the VisualDL records (train/, val/) and the checkpoints (models/)")
        g.add_argument("--log_frequency", type=int, default=250,
                       help="steps between the progress lines of train.log and the console (loss, images/s, "
                            "ETA); also the batches between VisualDL logs (with one validation batch) in the "
                            "first 2000 steps, after which VisualDL logs every 2000 steps")
        g.add_argument("--save_frequency", type=int, default=1,
                       help="epochs between checkpoints models/weights_<epoch> (the last epoch is always saved)")
        g.add_argument("--load_weights_folder", type=str, default=None,
                       help="weights folder to start from (a models/weights_<epoch> or weights_last folder, or "
                            "a published model's name: python tools/models.py list): "
                            "training loads --models_to_load from it (and Adam's state when present), "
                            "evaluate_depth.py the depth networks, evaluate_pose.py the pose networks")
        g.add_argument("--models_to_load", nargs="+", type=str,
                       default=["encoder", "depth", "pose_encoder", "pose"],
                       help="networks that training loads from --load_weights_folder (those the run has)")
        g.add_argument("--resume", action="store_true",
                       help="continue from the newest checkpoint in <log_dir>/<model_name>/models "
                            "(optimizer, scheduler, epoch, step and RNG state)")
        g.add_argument("--overwrite", action="store_true",
                       help="start again in a --log_dir/--model_name that already holds checkpoints "
                            "(its earlier checkpoints are deleted when the new run starts)")

        g = p.add_argument_group("evaluation", "evaluate_depth.py and evaluate_pose.py")
        g.add_argument("--eval_stereo", action="store_true",
                       help="stereo-trained model: metric depth (x5.4), no median scaling")
        g.add_argument("--eval_mono", action="store_true",
                       help="monocular model: scale each prediction by the median ratio to the ground truth")
        g.add_argument("--disable_median_scaling", action="store_true",
                       help="no per-image median scaling in mono evaluation")
        g.add_argument("--pred_depth_scale_factor", type=float, default=1,
                       help="multiply the predicted depths by this number (stereo evaluation uses 5.4)")
        g.add_argument("--ext_disp_to_eval", type=str, default=None,
                       help="evaluate the disparities in this .npy file (e.g. from --save_pred_disps) instead of "
                            "running a model")
        g.add_argument("--eval_split", type=str, default="eigen",
                       choices=["eigen", "eigen_benchmark", "benchmark", "odom_9", "odom_10"],
                       help="test split under --splits_dir: eigen, eigen_benchmark, benchmark (predictions "
                            "written, no ground truth), odom_9 / odom_10 (evaluate_pose.py)")
        g.add_argument("--save_pred_disps", action="store_true",
                       help="save the predicted disparities as disps_<eval_split>_split.npy in --eval_out_dir")
        g.add_argument("--no_eval", action="store_true", help="predict (and save) only, compute no metrics")
        g.add_argument("--eval_out_dir", type=str, default=None,
                       help="folder for --save_pred_disps and the benchmark split's predictions (default: the "
                            "weights folder, else beside --ext_disp_to_eval)")
        g.add_argument("--post_process", action="store_true",
                       help="average each prediction with that of the mirrored image (Monodepth's post-processing)")
        g.add_argument("--metrics_out", type=str, default=None,
                       help="if set, write the evaluation metrics to this JSON file")

        g = p.add_argument_group("system")
        g.add_argument("--device", type=str, default="auto", choices=["auto", "cpu", "gpu"],
                       help="where to run: auto picks a GPU when Paddle sees one")
        g.add_argument("--no_cuda", action="store_true", help="same as --device cpu")
        g.add_argument("--num_workers", type=int, default=12,
                       help="data-loading worker processes of training and evaluation (clamped to the CPU "
                            "count; 0 loads in the main process)")
        g.add_argument("--loader_timeout", type=float, default=600,
                       help="seconds to wait for one batch before saving weights_last and stopping with "
                            "an error (a read that never returns, e.g. a dead network mount); 0 waits forever")

    def parse(self, argv=None):
        """The Namespace of ``argv`` (default ``sys.argv[1:]``); ``opt._given`` is the set of option names given
        on the command line (so that a flag the user typed can be told from a default)."""
        argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
        opt = self.parser.parse_args(argv)  # first: --help and usage errors come from the real parser
        given = given_options(self.parser, argv)
        if opt.config:  # the file's values become defaults: the command line wins
            parser = copy.deepcopy(self.parser)
            parser.set_defaults(**config_values(parser, opt.config))
            opt = parser.parse_args(argv)
        opt._given = given
        opt._argv = argv
        return opt


MAX_CONFIG_BYTES = 1 << 20  # a recipe is a few hundred bytes; anything near this is not one
MAX_LIST = 64  # the longest list option (--frame_ids, --scales, --intrinsics) is a handful of values


def _short(text, n=200):
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[:n] + "..."


def load_config(path):
    """The options dict of a YAML or JSON file (ToolkitError naming the file on any problem)."""
    if not os.path.isfile(path):
        raise ToolkitError("config file not found (--config {}): give a YAML or JSON file".format(path))
    if os.path.getsize(path) > MAX_CONFIG_BYTES:
        raise ToolkitError("config file is over {} bytes (--config {}): a config holds a few option "
                           "names and values".format(MAX_CONFIG_BYTES, path))
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError as exc:
        raise ToolkitError("config file is not UTF-8 text (--config {}: byte {} at offset {}): save it as "
                           "UTF-8".format(path, hex(exc.object[exc.start]), exc.start)) from None
    try:
        data = json.loads(text) if path.endswith(".json") else __import__("yaml").safe_load(text)
    except Exception as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise ToolkitError("cannot parse config file (--config {}): {}".format(path, _short(first))) from None
    if data is not None and not isinstance(data, dict):
        raise ToolkitError("config file must map option names to values (--config {})".format(path))
    return data or {}


def config_values(parser, path):
    """A config file's options as values for ``parser``'s defaults, converted and checked as argparse does (type,
    choices). A value is never a flag: nothing in it becomes a command-line token; one starting with '-' is refused."""
    actions = {a.dest: a for a in parser._actions if a.option_strings}
    out = {}

    def bad(key, what):
        return ToolkitError("{} for option '{}' in config file (--config {})".format(what, key, path))

    def convert(key, action, v):
        if isinstance(v, (dict, list)):
            raise bad(key, "bad value (a nested {})".format(type(v).__name__))
        if isinstance(v, bool):
            raise bad(key, "bad value {} (a switch value for an option that is not a switch)".format(v))
        if isinstance(v, str) and v.startswith("-") and not _is_number(v):
            raise bad(key, "refused value {!r} (starts with '-': config values are values, never flags)".format(
                _short(v, 60)))
        try:
            x = action.type(v) if action.type else v
        except (TypeError, ValueError):
            raise bad(key, "bad value {!r}".format(_short(v, 60))) from None
        if action.choices is not None and x not in action.choices:
            raise bad(key, "bad value {!r} (choose from {})".format(_short(v, 60), ", ".join(map(str, action.choices))))
        return x

    for key, value in load_config(path).items():
        key = str(key)
        if key == "config" or key.startswith("_"):
            continue
        if key not in actions:
            raise ToolkitError("unknown option '{}' in config file (--config {}): use the option names of "
                               "`python train.py --help` (without the leading --)".format(_short(key, 60), path))
        action = actions[key]
        if value is None:
            continue
        if isinstance(action, argparse._StoreTrueAction):
            if not isinstance(value, bool):
                raise ToolkitError("option '{}' is a switch: use true or false (--config {})".format(key, path))
            out[key] = value
        elif action.nargs in ("+", "*"):
            values = value if isinstance(value, list) else [value]
            if not values or len(values) > MAX_LIST:
                raise bad(key, "{} values (give 1 to {})".format(len(values), MAX_LIST))
            out[key] = [convert(key, action, v) for v in values]
        elif isinstance(value, list):
            raise ToolkitError("option '{}' takes one value, got a list (--config {})".format(key, path))
        else:
            out[key] = convert(key, action, value)
    return out


def _is_number(text):
    try:
        float(text)
        return True
    except ValueError:
        return False


def to_json(opt):
    """The options of a run as JSON text (``opt.json``), itself a valid ``--config`` file."""
    return json.dumps({k: v for k, v in vars(opt).items() if not k.startswith("_")}, indent=2, default=str)


def given_options(parser, argv):
    """Names (dests) of the options that ``argv`` sets explicitly."""
    probe = copy.deepcopy(parser)
    for action in probe._actions:
        action.default = argparse.SUPPRESS
        action.required = False
    return set(vars(probe.parse_args(argv)))


def _err(what, where, fix):
    return ToolkitError("{} ({}): {}".format(what, where, fix))


def explicit_num_layers(opt):
    """``opt.num_layers`` when given on the command line, else None (the weights decide)."""
    return opt.num_layers if "num_layers" in getattr(opt, "_given", ()) else None


def validate_options(opt):
    """Reject invalid option values and combinations with one-line ToolkitErrors (the data: check_training_data)."""
    for name, value in sorted(vars(opt).items()):
        if any(isinstance(v, float) and not math.isfinite(v) for v in (value if isinstance(value, list) else [value])):
            raise _err("{} must be a finite number, got {}".format(name, value), "--" + name, "give a finite value")
    if opt.use_depth_hints and not opt.use_stereo:
        raise _err("depth hints need the stereo pair", "--use_depth_hints",
                   "add --use_stereo or drop --use_depth_hints")
    if opt.use_depth_hints and opt.v1_multiscale:
        raise _err("depth hints are computed at full resolution", "--v1_multiscale",
                   "drop --v1_multiscale or --use_depth_hints")
    if opt.predictive_mask and not opt.disable_automasking:
        raise _err("the predictive mask replaces auto-masking", "--predictive_mask",
                   "add --disable_automasking")
    check_input_size(opt.height, opt.width, fix="use e.g. --height 192 --width 640")
    if not opt.frame_ids or opt.frame_ids[0] != 0:
        raise _err("frame ids must start with 0", "--frame_ids", "use e.g. --frame_ids 0 -1 1")
    if len(opt.frame_ids) == 1 and not opt.use_stereo:
        raise _err("no source frame to reconstruct the target from", "--frame_ids",
                   "add --use_stereo or temporal frames (--frame_ids 0 -1 1)")
    if not opt.scales or sorted(opt.scales) != list(range(len(opt.scales))):
        raise _err("scales must be 0..N-1", "--scales", "use e.g. --scales 0 1 2 3")
    if not (0 < opt.min_depth < opt.max_depth):
        raise _err("need 0 < min_depth < max_depth", "--min_depth/--max_depth", "fix the depth range")
    for name in ("num_epochs", "scheduler_step_size", "log_frequency", "save_frequency"):
        if getattr(opt, name) < 1:
            raise _err("{} must be >= 1, got {}".format(name, getattr(opt, name)), "--" + name,
                       "use a positive number")
    at_least = (("batch_size", 1, "batch size must be >= 1", "use a positive batch size"),
                ("max_steps", 0, "max_steps must be >= 0", "use 0 or more (0 saves the initial weights)"),
                ("num_workers", 0, "num_workers must be >= 0", "use 0 (load in the main process) or more"),
                ("loader_timeout", 0, "loader_timeout must be >= 0", "use seconds, or 0 to wait forever"),
                ("disparity_smoothness", 0, "disparity smoothness must be >= 0", "use e.g. 1e-3, or 0"))
    positive = (("pred_depth_scale_factor", "the depth scale factor must be positive", "use e.g. 1"),
                ("learning_rate", "learning rate must be positive", "use e.g. 1e-4"),
                ("stereo_baseline", "stereo baseline must be positive metres", "use e.g. 0.54"))
    for name, least, what, fix in at_least:
        if getattr(opt, name) is not None and getattr(opt, name) < least:
            raise _err(what, "--" + name, fix)
    for name, what, fix in positive:
        if getattr(opt, name) is not None and getattr(opt, name) <= 0:
            raise _err(what, "--" + name, fix)
    if opt.resume and opt.overwrite:
        raise _err("--resume continues a run, --overwrite starts it again", "--resume/--overwrite",
                   "give one of them")
    if opt.intrinsics is not None:
        import camera
        camera.intrinsics_from_option(opt.intrinsics)
    if opt.weights_init not in ("pretrained", "scratch") and not os.path.exists(opt.weights_init):
        raise _err("backbone weights not found", "--weights_init " + opt.weights_init,
                   "use scratch, pretrained, or an existing .pdparams file/folder")
    lwf = opt.load_weights_folder
    if lwf is not None and not os.path.isdir(os.path.expanduser(lwf)) and (os.sep in lwf or lwf.startswith(".")):
        # a name without a path separator may be a published model's (checkpoint.check_weights_folder)
        raise _err("weights folder not found", "--load_weights_folder " + lwf,
                   "point it at a models/weights_<epoch> folder or give a published model's name")
