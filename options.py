"""Command-line options for training and evaluation (Monodepth2 / Depth Hints names and defaults).

`MonodepthOptions().parse(argv=None)` returns an `argparse.Namespace`. Every option of the
Monodepth2 and Depth-Hints command lines keeps its name and default, except Monodepth2's
`--eval_eigen_to_benchmark`, which is not offered (it needs an index file this project does
not ship; predict on `--eval_split eigen_benchmark` instead). The toolkit adds
`--config`, `--device`, `--seed`, `--resume`, `--overwrite`, `--check_data`, `--max_steps`,
`--loader_timeout`, `--splits_dir`, `--intrinsics`, `--stereo_baseline` and `--metrics_out`.

`--config FILE` reads options from a YAML or JSON file whose keys are the option names
(`opt.json` of a run is one); flags given on the command line win over the file.

`validate_options(opt)` rejects invalid combinations with a one-line `utils.ToolkitError`;
`train.py` calls it, then `datasets.check_training_data(opt)`, before building the trainer.
"""
import argparse
import copy
import os
import sys

FILE_DIR = os.path.dirname(os.path.abspath(__file__))


class MonodepthOptions:
    """Argument parser holding every training and evaluation option."""

    def __init__(self):
        p = argparse.ArgumentParser(description="Depth Hints / Monodepth2 options (PaddlePaddle)")
        self.parser = p
        p.add_argument("--config", type=str, default=None,
                       help="YAML or JSON file of options (keys are option names, e.g. a run's opt.json); "
                            "flags on the command line win")

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
        p.add_argument("--intrinsics", nargs="+", type=str, default=None, metavar="FX_FY_CX_CY_OR_FILE",
                       help="camera intrinsics normalised by the image size as in Monodepth2's K "
                            "(fx/W fy/H cx/W cy/H; KITTI: 0.58 1.92 0.5 0.5) or a file holding them; "
                            "an intrinsics.txt in a drive or date folder overrides it there")
        p.add_argument("--stereo_baseline", type=float, default=None,
                       help="stereo baseline of the camera rig in metres, for metric depth "
                            "(default: KITTI's 0.54)")
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
        p.add_argument("--loader_timeout", type=float, default=600,
                       help="seconds to wait for one batch before saving weights_last and stopping with "
                            "an error (a read that never returns, e.g. a dead network mount); 0 waits forever")

        # LOADING
        p.add_argument("--load_weights_folder", type=str, default=None, help="name of model to load")
        p.add_argument("--models_to_load", nargs="+", type=str,
                       default=["encoder", "depth", "pose_encoder", "pose"], help="models to load")
        p.add_argument("--overwrite", action="store_true",
                       help="start again in a --log_dir/--model_name that already holds checkpoints "
                            "(its earlier checkpoints are deleted when the new run starts)")
        p.add_argument("--check_data", type=str, default="quick", choices=["quick", "full"],
                       help="before training: quick = every file exists and every hint's .npy header is "
                            "right; full = also decode every image and hint (slow, certain)")
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
        p.add_argument("--eval_out_dir", type=str, default=None,
                       help="if set will output the disparities to this folder")
        p.add_argument("--post_process", action="store_true",
                       help="if set will perform the flipping post processing from the original monodepth paper")
        p.add_argument("--metrics_out", type=str, default=None,
                       help="if set, write the evaluation metrics to this JSON file")

    def parse(self, argv=None):
        """Parse ``argv`` (default ``sys.argv[1:]``) and return the Namespace.

        With ``--config FILE`` the file's options come first and the command line's flags
        override them. ``opt._given`` is the set of option names given on the command line
        (so that a flag the user typed can be told from a default)."""
        argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
        given = given_options(self.parser, argv)
        opt = self.parser.parse_args(argv)
        if opt.config:  # the file's values become defaults: the command line wins
            parser = copy.deepcopy(self.parser)
            parser.set_defaults(**config_values(parser, opt.config))
            opt = parser.parse_args(argv)
        opt._given = given
        opt._argv = argv
        self.options = opt
        return opt


MAX_CONFIG_BYTES = 1 << 20  # a recipe is a few hundred bytes; anything near this is not one
MAX_LIST = 64  # the longest list option (--frame_ids, --scales, --intrinsics) is a handful of values


def _short(text, n=200):
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[:n] + "..."


def load_config(path):
    """The options dict of a YAML or JSON file (ToolkitError naming the file on any problem)."""
    import json
    from utils import ToolkitError
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
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ToolkitError("config file must map option names to values (--config {})".format(path))
    return data


def config_values(parser, path):
    """The options of a config file as values for ``parser``'s defaults, converted and checked
    like argparse does (type, choices). A value is never a flag: nothing in the file becomes
    a command-line token, and a string that starts with '-' is refused."""
    from utils import ToolkitError
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
    import json
    return json.dumps({k: v for k, v in vars(opt).items() if not k.startswith("_")}, indent=2, default=str)


def given_options(parser, argv):
    """Names (dests) of the options that ``argv`` sets explicitly."""
    probe = copy.deepcopy(parser)
    for action in probe._actions:
        action.default = argparse.SUPPRESS
        action.required = False
    return set(vars(probe.parse_args(argv)))


def _err(what, where, fix):
    from utils import ToolkitError
    return ToolkitError("{} ({}): {}".format(what, where, fix))


def explicit_num_layers(opt):
    """``opt.num_layers`` when given on the command line, else None (the weights decide)."""
    return opt.num_layers if "num_layers" in getattr(opt, "_given", ()) else None


def validate_options(opt):
    """Reject invalid option combinations and values with one-line ToolkitErrors.

    Only the flags are checked here; ``datasets.check_training_data`` checks the data."""
    import math
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
    from utils import check_input_size
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
    if opt.batch_size < 1:
        raise _err("batch size must be >= 1", "--batch_size", "use a positive batch size")
    for name in ("num_epochs", "scheduler_step_size", "log_frequency", "save_frequency"):
        if getattr(opt, name) < 1:
            raise _err("{} must be >= 1, got {}".format(name, getattr(opt, name)), "--" + name,
                       "use a positive number")
    if opt.max_steps is not None and opt.max_steps < 0:
        raise _err("max_steps must be >= 0", "--max_steps", "use 0 or more (0 saves the initial weights)")
    if opt.num_workers < 0:
        raise _err("num_workers must be >= 0", "--num_workers", "use 0 (load in the main process) or more")
    if opt.loader_timeout < 0:
        raise _err("loader_timeout must be >= 0", "--loader_timeout", "use seconds, or 0 to wait forever")
    if opt.disparity_smoothness < 0:
        raise _err("disparity smoothness must be >= 0", "--disparity_smoothness", "use e.g. 1e-3, or 0")
    if opt.pred_depth_scale_factor <= 0:
        raise _err("the depth scale factor must be positive", "--pred_depth_scale_factor", "use e.g. 1")
    if opt.learning_rate <= 0:
        raise _err("learning rate must be positive", "--learning_rate", "use e.g. 1e-4")
    if opt.resume and opt.overwrite:
        raise _err("--resume continues a run, --overwrite starts it again", "--resume/--overwrite",
                   "give one of them")
    if opt.stereo_baseline is not None and opt.stereo_baseline <= 0:
        raise _err("stereo baseline must be positive metres", "--stereo_baseline", "use e.g. 0.54")
    if opt.intrinsics is not None:
        import camera
        camera.intrinsics_from_option(opt.intrinsics)
    if opt.weights_init not in ("pretrained", "scratch") and not os.path.exists(opt.weights_init):
        raise _err("backbone weights not found", "--weights_init " + opt.weights_init,
                   "use scratch, pretrained, or an existing .pdparams file/folder")
    if opt.load_weights_folder is not None and not os.path.isdir(os.path.expanduser(opt.load_weights_folder)):
        raise _err("weights folder not found", "--load_weights_folder " + opt.load_weights_folder,
                   "point it at a models/weights_<epoch> folder")
