"""Checkpoints: how a training run is saved into a weights folder and resumed (the files: weights/README.md;
model_loader.py loads trained models for the tools). A folder is written as ``<name>.partial/`` and renamed
into place, so a crash leaves the old or the new checkpoint, never a mix; Adam's state is stored under
model-and-parameter names (``depth.decoder.0...``), not Paddle's per-process names, so it loads in any process.
"""
import json
import os
import random
import re
import shutil
import sys

import numpy as np
import paddle

import fileio
import networks
import utils
from camera import KITTI_BASELINE_M, intrinsics_from_option, intrinsics_vector
from utils import ToolkitError

STATE_FILE = "trainer_state.json"  # plain data, RNG states included (no pickle)
STATE_FORMAT = "depth-hints-paddle trainer state 1"
LEGACY_STATE_FILE = "trainer_state.pdstate"  # a pickle, as earlier releases wrote it; read through safe_load
ADAM_FILE = "adam.pdopt"
# options that fix the shapes and the networks: resuming with others cannot load
RESUME_MUST_MATCH = ("height", "width", "num_layers", "frame_ids", "use_stereo", "scales",
                     "pose_model_type", "pose_model_input", "predictive_mask")
_ACC_RE = re.compile(r"^(.*)_(moment1|moment2|beta1_pow_acc|beta2_pow_acc|moment2_max)_(\d+)$")


def _struct_names(models):
    """{Paddle's unique parameter name: 'model.structured.name'} for all parameters."""
    return {p.name: f"{mname}.{pname}" for mname, m in models.items() for pname, p in m.named_parameters()}


def optimizer_state_to_struct(state, models):
    """Rename Adam accumulators from Paddle's unique names to structured names (portable)."""
    names = _struct_names(models)
    out = {}
    for k, v in state.items():
        m = _ACC_RE.match(k)
        if m and m.group(1) in names:
            k = "{}::{}_{}".format(names[m.group(1)], m.group(2), m.group(3))
        out[k] = v
    return out


def optimizer_state_from_struct(state, models):
    """Inverse of :func:`optimizer_state_to_struct` for the models of this process."""
    inv = {v: k for k, v in _struct_names(models).items()}
    out = {}
    for k, v in state.items():
        sname, sep, acc = k.partition("::")
        if not sep:
            out[k] = v
        elif sname in inv:  # accumulators of networks this run does not have are dropped
            out["{}_{}".format(inv[sname], acc)] = v
    return out


def save_checkpoint(folder, models, optimizer=None, trainer_state=None, meta=None):
    """Write ``models`` ({name: Layer}), Adam and the trainer state (``meta``: into encoder.pdparams) to ``folder`` as
    one unit; returns it. A write error or a non-finite weight: a ToolkitError, the earlier ``folder`` kept."""
    floats = (paddle.float16, paddle.float32, paddle.float64)
    for name, model in models.items():
        for key, value in model.state_dict().items():
            if value.dtype in floats and not bool(paddle.isfinite(value).all()):
                raise ToolkitError("refusing to save checkpoint {}: {}.{} holds NaN or inf (training diverged): "
                                   "lower --learning_rate, check the data, and continue from the newest good "
                                   "checkpoint".format(folder, name, key))
    tmp = folder + ".partial"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        os.makedirs(tmp)
        for name, model in models.items():
            state = dict(model.state_dict())
            if name == "encoder" and meta:
                state.update({k: meta[k] for k in networks.META_KEYS if k in meta})
            fileio.atomic_paddle_save(state, os.path.join(tmp, name + ".pdparams"))
        if optimizer is not None:
            fileio.atomic_paddle_save(optimizer_state_to_struct(optimizer.state_dict(), models),
                                     os.path.join(tmp, ADAM_FILE))
        if trainer_state is not None:
            fileio.atomic_write_text(os.path.join(tmp, STATE_FILE), trainer_state_json(trainer_state))
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ToolkitError(f"cannot write checkpoint {folder}: {exc.strerror or exc}; free space on that "
                           "disk (or choose --log_dir elsewhere), then continue with --resume") from None
    old = folder + ".old"
    if os.path.isdir(folder):
        shutil.rmtree(old, ignore_errors=True)
        os.replace(folder, old)
    os.replace(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)
    return folder


def encoder_meta(opt):
    """What ``encoder.pdparams`` records of a training run (model_loader.read_meta reads it)."""
    return {"height": opt.height, "width": opt.width, "use_stereo": bool(opt.use_stereo),
            "intrinsics": intrinsics_vector(intrinsics_from_option(opt.intrinsics)),
            "stereo_baseline": float(opt.stereo_baseline or KITTI_BASELINE_M)}


def restore_rng_states(state):
    """Set Paddle's, numpy's and Python's RNGs to a trainer state's (JSON lists; old pickles hold the objects)."""
    gens = state["paddle_rng"]
    if gens and isinstance(gens[0], list):
        cls = type(paddle.get_rng_state()[0])
        gens = [cls.__new__(cls) for _ in state["paddle_rng"]]
        for g, (device, seed, offset, text) in zip(gens, state["paddle_rng"]):
            g.__setstate__((device, seed, offset, list(text.encode("latin-1"))))
    paddle.set_rng_state(gens)
    name, keys, *rest = state["numpy_rng"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), *rest))
    version, internal, gauss = state["python_rng"]
    random.setstate((version, tuple(internal), gauss))


def state_path(folder):
    """``folder``'s trainer-state file: this release's JSON, else an earlier release's pickle if only that is there."""
    legacy = os.path.join(folder, LEGACY_STATE_FILE)
    path = os.path.join(folder, STATE_FILE)
    return legacy if not os.path.isfile(path) and os.path.isfile(legacy) else path


def trainer_state_json(state):
    """``state`` (plain data: numbers, strings, lists, dicts) plus the RNG states now, as JSON."""
    nstate = np.random.get_state()
    gens = [g.__getstate__() for g in paddle.get_rng_state()]  # (device, seed, offset, state bytes)
    rng = {"paddle_rng": [[device, seed, offset, bytes(text).decode("latin-1")] for device, seed, offset, text in gens],
           "numpy_rng": [nstate[0], nstate[1].tolist()] + [v.item() if hasattr(v, "item") else v for v in nstate[2:]],
           "python_rng": random.getstate()}
    return json.dumps(dict(state, format=STATE_FORMAT, **rng), allow_nan=False)


def load_trainer_state(path):
    """A trainer state (JSON, or an earlier release's pickle); ToolkitError if not one or a counter is no count."""
    if not path.endswith(".json"):
        import safe_load
        state = safe_load.load_legacy_trainer_state(path)
    else:
        try:
            with open(path, encoding="utf-8") as f:
                state = json.loads(f.read(1 << 22))
        except FileNotFoundError:
            raise utils.MissingFileError("trainer state not found: {}".format(path)) from None
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise ToolkitError("{} is not readable JSON ({}): the checkpoint is damaged; resume an earlier "
                               "one".format(path, str(exc)[:100])) from None
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise ToolkitError("{} is not a trainer state of this toolkit: the checkpoint is damaged".format(path))
    if not isinstance(state, dict):
        raise ToolkitError("{} is not a trainer state (a dict): the checkpoint is damaged".format(path))
    for key in ("epoch", "batch_in_epoch", "step"):
        if not isinstance(state.get(key), int) or isinstance(state.get(key), bool) or state[key] < 0:
            raise ToolkitError("{} records a bad {} ({!r:.40}): the checkpoint is damaged; resume an earlier "
                               "one".format(path, key, state.get(key)))
    return state


def _intact(folder):
    """(step, None) when every file of ``folder`` reads back (safe_load), else (None, reason)."""
    import safe_load
    weights = sorted(f for f in os.listdir(folder) if f.endswith((".pdparams", ".pdopt")))
    name = os.path.basename(state_path(folder))
    try:
        step = int(load_trainer_state(state_path(folder))["step"])
        for name in weights:
            safe_load.load_paddle(os.path.join(folder, name))
    except safe_load.UnsafeFileError:
        raise  # a file with code in it: one line, exit 2, never skipped quietly
    except Exception as exc:  # truncated / not a pickle / wrong content
        return None, "{} unreadable ({}: {})".format(name, type(exc).__name__, exc)
    return step, None


def find_resume_checkpoint(models_dir, log=print):
    """The intact checkpoint folder under ``models_dir`` with the highest step, or None (damaged: a ``log`` line)."""
    if not os.path.isdir(models_dir):
        return None
    candidates = []
    for name in os.listdir(models_dir):
        path = os.path.join(models_dir, name)
        sfile = state_path(path)
        if name.endswith((".partial", ".old")) or not os.path.isfile(sfile):
            continue
        step, reason = _intact(path)
        if step is None:
            log("skipping checkpoint {}: {}".format(path, reason))
            continue
        candidates.append(((step, os.path.getmtime(sfile)), path))
    return max(candidates)[1] if candidates else None


def newest_checkpoint_note(models_dir):
    """'the newest good checkpoint is <path>' or 'no checkpoint was saved' (for error lines)."""
    path = find_resume_checkpoint(models_dir, log=lambda _: None)
    return "the newest good checkpoint is {}".format(path) if path else "no checkpoint was saved"


def list_checkpoints(models_dir):
    """Names of the folders under ``models_dir`` that hold a checkpoint (or part of one)."""
    def holds_checkpoint(path):
        try:
            return os.path.isdir(path) and any(f.endswith((".pdparams", ".pdopt", ".pdstate")) or f == STATE_FILE
                                               for f in os.listdir(path))
        except OSError:
            return False
    try:
        return [name for name in sorted(os.listdir(models_dir)) if holds_checkpoint(os.path.join(models_dir, name))]
    except OSError:
        return []


def check_models_dir(models_dir, resume, overwrite, load_weights_folder=None):
    """ToolkitError unless a folder's checkpoints are resumed or overwritten (never ``load_weights_folder``'s)."""
    found = list_checkpoints(models_dir)
    if overwrite and found and load_weights_folder:
        inside = os.path.abspath(os.path.expanduser(load_weights_folder))
        if os.path.commonpath([inside, os.path.abspath(models_dir)]) == os.path.abspath(models_dir):
            raise ToolkitError("--overwrite would delete the weights to load ({}; --load_weights_folder): "
                               "copy them elsewhere first, or train into another --model_name".format(inside))
    if found and not resume and not overwrite:
        shown = ", ".join(found[:3]) + (", ..." if len(found) > 3 else "")
        raise ToolkitError("{} already holds checkpoints of a run ({}; --log_dir/--model_name): add "
                           "--resume to continue it, --overwrite to start it again (its checkpoints are "
                           "deleted), or choose another --model_name".format(models_dir, shown))


def tidy_models_dir(models_dir, log=print, overwrite=False):
    """Start-up housekeeping (main process): a complete ``<name>.partial`` (else ``<name>.old``) of an interrupted
    save becomes a missing ``<name>``, leftovers and stale temp files go, and with ``overwrite`` the old checkpoints."""
    if not os.path.isdir(models_dir):
        return
    for suffix in (".partial", ".old"):  # a complete .partial is newer than .old
        for name in sorted(os.listdir(models_dir)):
            path = os.path.join(models_dir, name)
            if not name.endswith(suffix) or not os.path.isdir(path):
                continue
            base = path[:-len(suffix)]
            complete = suffix == ".old" or os.path.isfile(state_path(path))
            if not os.path.exists(base) and complete:
                os.replace(path, base)
                log("recovered checkpoint {} from {} (a save was interrupted)".format(base, name))
            else:
                shutil.rmtree(path, ignore_errors=True)
    for path in fileio.clean_stale_temp_files(models_dir):
        log("removed stale temp file {}".format(path))
    if overwrite:
        found = list_checkpoints(models_dir)
        for name in found:
            shutil.rmtree(os.path.join(models_dir, name), ignore_errors=True)
        if found:
            log("--overwrite: deleted the earlier run's checkpoints in {} ({})".format(models_dir, ", ".join(found)))


def check_resume_options(saved, opt, folder):
    """ToolkitError when ``opt`` differs from the checkpoint's in an option that fixes shapes."""
    for k in RESUME_MUST_MATCH:
        if k in saved and saved[k] != getattr(opt, k):
            raise ToolkitError("cannot resume {} with a different --{} ({} there, {} now): use the same "
                               "options or a new --model_name".format(folder, k, saved[k], getattr(opt, k)))


def check_weights_folder(folder, names=("encoder.pdparams", "depth.pdparams"), flag="--load_weights_folder"):
    """The expanded folder (a published model's name: its cached folder, fetched the first
    time: published_models.py); ToolkitError naming ``flag`` if it or one of ``names`` is missing."""
    if folder is None:
        raise ToolkitError("no model given ({}): point it at a models/weights_<epoch> folder".format(flag))
    folder = os.path.expanduser(folder)
    if not os.path.isdir(folder):
        import published_models
        if folder not in published_models.MODELS:
            raise ToolkitError(f"weights folder not found ({flag} {folder}): point it at a models/weights_<epoch> "
                               "folder or give a published model's name (python tools/models.py list)")
        folder = published_models.fetch(folder, log=lambda text: print(text, file=sys.stderr, flush=True))
    for name in names:
        if not os.path.isfile(os.path.join(folder, name)):
            raise ToolkitError(f"{name} missing ({os.path.join(folder, name)}): the weights "
                               f"folder ({flag}) must hold {', '.join(names)} (see weights/README.md)")
    return folder


def resnet_depth(state, num_layers, path):
    """The ResNet depth the weights ``state`` hold; ``num_layers`` (None: not asked) must agree; unknown: it or 18."""
    inferred = networks.infer_num_layers(state)
    if inferred and num_layers and int(num_layers) != inferred:
        raise ToolkitError(f"{os.path.basename(path)} holds a ResNet-{inferred}, not the ResNet-{num_layers} "
                           f"asked for ({path}, --num_layers): drop --num_layers (the weights decide) "
                           f"or load matching weights")
    return inferred or int(num_layers or 18)


def load_weights_into(models, folder, names, num_layers=None, log=print):
    """Load ``<folder>/<name>.pdparams`` into ``models[name]`` for each of ``names`` in ``models``."""
    folder = check_weights_folder(folder, names=())
    for name in (n for n in names if n in models):
        path = os.path.join(folder, name + ".pdparams")
        if not os.path.isfile(path):
            raise ToolkitError(f"missing weights file ({path}): check --load_weights_folder / --models_to_load")
        state = networks.load_weights_file(path, name + ".pdparams")
        if name in ("encoder", "pose_encoder"):
            resnet_depth(state, num_layers, path)
        networks.load_state_dict_strict(models[name], state, path)
        if log:
            log("Loaded {} weights from {}".format(name, path))


def load_adam(optimizer, folder, models, scheduler_state):
    """Load ``adam.pdopt`` (if present) into ``optimizer``, its schedule staying ``scheduler_state``; True if loaded."""
    import safe_load
    path = os.path.join(folder, ADAM_FILE)
    if not os.path.isfile(path):
        return False
    state = optimizer_state_from_struct(safe_load.load_paddle(path), models)
    state["LR_Scheduler"] = scheduler_state
    optimizer.set_state_dict(state)
    return True
