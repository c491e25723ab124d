#!/usr/bin/env python
"""Export a trained depth network for deployment (Paddle Inference or ONNX Runtime).

    python export_model.py --load_weights_folder W --output_path exported/depth
    python export_model.py --load_weights_folder W --output_path exported/depth --output metric --format onnx

The exported model takes an RGB batch in [0, 1] (float32, NCHW, input name ``image``; the
normalisation is inside) of any batch size and any height and width that are multiples of
32 and at least 64, and returns one (batch, 1, height, width) map chosen with ``--output``
(docs/METHOD.md, section 3):

* ``disp`` (default): the network's sigmoid disparity;
* ``depth``: ``layers.disp_to_depth(disp, 0.1, 100)[1]``, the training depth range;
* ``metric``: depth in metres, depth x the stereo scale (the training rig's baseline / 0.1,
  5.4 for KITTI); only for stereo-trained models.

``--format paddle`` (default) writes ``<output_path>.json`` + ``.pdiparams`` for Paddle
Inference (``paddle.inference.Config`` + ``create_predictor``; the default CPU config, oneDNN
on, runs it); ``--format onnx`` writes ``<output_path>.onnx`` through paddle2onnx (``pip
install -r requirements-deploy.txt``). Both write ``<output_path>_export.json``: the input and
size rules, the output and its scale, the checkpoint and the check below.

Before anything is moved into place, the exported model runs in its runtime (Paddle
Inference with its default config, or ONNX Runtime) at two batch sizes and sizes, and must
equal the dynamic model to 1e-4 (``--no_check`` skips this). ``tools/infer_exported.py``
runs an exported model on images.

Writing: one export per ``--output_path`` at a time (a PID + host lock file
``<folder>/.<prefix>.export.lock``; a second export gets one line naming the first's PID).
The files are written into a hidden temp folder ``<folder>/.export_<pid>_<host>_<random>``,
checked whole (Paddle's writer stops silently on a full disk: the ``.pdiparams`` is parsed
against the program), fsynced and only then moved into place; a failed move is rolled back,
and ``--overwrite`` moves the whole earlier export aside first and restores it on failure.
A full disk or an unwritable folder is one line naming the folder, exit code 2, and no file
under the final name. Temp folders of killed exports are removed by the next export into
that folder (by the PID in their name; a live export's folder is never touched).
"""
import argparse
import errno
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

from runtime import cpu_env_defaults, quiet_paddle_notices  # noqa: E402

cpu_env_defaults()  # MKL/OpenMP settings, before paddle is imported

import numpy as np  # noqa: E402

from fileio import PROCESS_START, atomic_write_text, check_output_dir, clean_stale_temp_files  # noqa: E402
from run_lock import RunLock, pid_alive  # noqa: E402
from utils import ToolkitError, run_cli  # noqa: E402

OUTPUT_KINDS = ("disp", "depth", "metric")
FORMATS = ("paddle", "onnx")
MIN_DEPTH, MAX_DEPTH = 0.1, 100.0  # the training range (Monodepth2's defaults, docs/METHOD.md 3)
INPUT_NAME = "image"
INFO_SUFFIX = "_export.json"  # not "<prefix>.<x>.json": paddle.jit.load reads those as programs
ONNX_OPSET = 13
CHECK_TOL = 1e-4    # |exported - dynamic| <= CHECK_TOL * (1 + |dynamic|)
CHECK_SECOND_SHAPE = (2, 3, 64, 96)  # besides (1, 3, height, width): another batch and size
DEPLOY_REQUIREMENTS = "requirements-deploy.txt"
# The export is written into a hidden temp folder beside the output, ".export_<pid>_<host tag>_<random>"
# holding OWNER_FILE (pid, host, output prefix), and moved into place when complete and checked.
TEMP_PREFIX = ".export_"
TEMP_RE = re.compile(r"^\.export_(\d+)_([0-9a-f]{8})_")
OWNER_FILE = ".owner.json"
PREVIOUS_DIR = ".previous"      # in the temp folder: an --overwrite'n export, restored if the move fails
LEGACY_TEMP_AGE_S = 24 * 3600   # an earlier release's ".export_<random>" (no owner): stale after a day
# errors of writing the output (the disk, the folder), reported as one line naming the folder
WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM,
                errno.EIO, errno.ENOENT}


def _import_optional(name, flag):
    try:
        return __import__(name)
    except ImportError as exc:
        raise ToolkitError(f"{name} is not installed ({flag}): pip install -r "
                           f"{DEPLOY_REQUIREMENTS}") from exc


# ----------------------------------------------------------------------------- the network


def build_depth_net(weights_folder, num_layers=None, output="disp", min_depth=MIN_DEPTH,
                    max_depth=MAX_DEPTH):
    """Encoder + decoder from ``<folder>/{encoder,depth}.pdparams``; returns (layer, meta).

    The layer maps (B,3,H,W) in [0,1] to the ``output`` map (B,1,H,W). ``meta`` holds what
    model_loader.load_depth_model reads (``height``, ``width``, ``use_stereo``,
    ``stereo_baseline``, ``num_layers``) and ``scale``, the factor applied to the depth
    (1, or the stereo scale for ``metric``). ``metric`` on a mono-trained model is refused.
    """
    import paddle
    import paddle.nn as nn

    from camera import stereo_scale_factor
    from model_loader import load_depth_model
    from layers import disp_to_depth

    if output not in OUTPUT_KINDS:
        raise ToolkitError(f"unknown output {output!r} (--output): use one of "
                           f"{', '.join(OUTPUT_KINDS)}")
    if not os.path.isdir(os.path.expanduser(weights_folder)):
        raise ToolkitError(f"weights folder not found ({weights_folder}) (--load_weights_folder): "
                           "give a models/weights_N folder holding encoder.pdparams and depth.pdparams")
    encoder, decoder, meta = load_depth_model(weights_folder, num_layers)
    if output == "metric" and not meta["use_stereo"]:
        raise ToolkitError(
            f"metric depth needs a stereo-trained model, but {weights_folder}/encoder.pdparams "
            "records use_stereo=False (--output metric): use --output depth (mono models have "
            "no metric scale) or a model trained with --use_stereo")
    decoder.scales = [0]  # only the full-resolution disparity is computed and exported
    meta["scale"] = stereo_scale_factor(meta["stereo_baseline"]) if output == "metric" else 1.0

    class _DepthNet(nn.Layer):
        def __init__(self):
            super().__init__()
            self.encoder = encoder
            self.decoder = decoder

        def forward(self, image):
            disp = self.decoder(self.encoder(image))[("disp", 0)]
            if output == "disp":
                return disp
            # depth = 1 / scaled disparity; reciprocal, since ``1.0 / x`` traces to a
            # full_batch_size_like op that paddle2onnx 2.1 cannot convert
            depth = paddle.reciprocal(disp_to_depth(disp, min_depth, max_depth)[0])
            return depth * meta["scale"] if output == "metric" else depth

    net = _DepthNet()
    net.eval()
    return net, meta


# ----------------------------------------------------------------------------- runtimes


def paddle_predictor(model_file, params_file, threads=None):
    """A Paddle Inference predictor with the default CPU config (oneDNN on) and ``threads``
    math-library threads (default: all cores; Paddle Inference's own default is 1)."""
    import paddle.inference as paddle_infer
    config = paddle_infer.Config(model_file, params_file)
    config.disable_glog_info()
    config.set_cpu_math_library_num_threads(int(threads or os.cpu_count() or 1))
    return paddle_infer.create_predictor(config)


def onnx_session(model_file, threads=None):
    """An ONNX Runtime CPU session using ``threads`` intra-op threads (default: all cores)."""
    ort = _import_optional("onnxruntime", "--format onnx")
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads or os.cpu_count() or 1)
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(model_file, options, providers=["CPUExecutionProvider"])


class ExportedRunner:
    """Runs the exported files of ``prefix`` in their runtime: ``runner(images)`` maps a
    (B,3,H,W) float32 numpy batch to the (B,1,H,W) output; ``output_name`` is the name of
    the model's output."""

    def __init__(self, prefix, fmt, threads=None):
        self.fmt = fmt
        if fmt == "onnx":
            self._session = onnx_session(prefix + ".onnx", threads)
            self._input_name = self._session.get_inputs()[0].name
            self.output_name = self._session.get_outputs()[0].name
        else:
            self._predictor = paddle_predictor(prefix + ".json", prefix + ".pdiparams", threads)
            self._input = self._predictor.get_input_handle(self._predictor.get_input_names()[0])
            self.output_name = self._predictor.get_output_names()[0]
            self._output = self._predictor.get_output_handle(self.output_name)

    def __call__(self, images):
        images = np.ascontiguousarray(images, np.float32)
        if self.fmt == "onnx":
            return self._session.run(None, {self._input_name: images})[0]
        self._input.reshape(list(images.shape))
        self._input.copy_from_cpu(images)
        self._predictor.run()
        return self._output.copy_to_cpu()


# ----------------------------------------------------------------------------- ONNX


def _drop_identities_and_dead_nodes(graph):
    """Remove paddle2onnx's Identity nodes and the nodes (mostly unused Constants, of which
    ONNX Runtime warns one by one) that no graph output depends on."""
    outputs = {o.name for o in graph.output}
    alias = {n.output[0]: n.input[0] for n in graph.node
             if n.op_type == "Identity" and n.output[0] not in outputs}

    def source(name):
        while name in alias:
            name = alias[name]
        return name
    nodes = [n for n in graph.node if n.output[0] not in alias or n.op_type != "Identity"]
    for node in nodes:
        node.input[:] = [source(name) for name in node.input]
    needed, live = set(outputs), []
    for node in reversed(nodes):  # nodes are in topological order
        if any(name in needed for name in node.output):
            live.append(node)
            needed.update(node.input)
    del graph.node[:]
    graph.node.extend(reversed(live))
    for field in (graph.initializer, graph.value_info):
        for item in [t for t in field if t.name not in needed]:
            field.remove(item)


def _to_onnx(prefix, onnx_path, output):
    """Convert the Paddle program ``prefix.json/.pdiparams`` to ``onnx_path``; names the
    output after its kind and the free dimensions ``batch``, ``height``, ``width``."""
    paddle2onnx = _import_optional("paddle2onnx", "--format onnx")
    onnx = _import_optional("onnx", "--format onnx")
    version = getattr(paddle2onnx, "__version__", "?")
    # in a child process: paddle2onnx aborts its process on an operator it cannot convert
    # optimize_tool="none": its default (Polygraphy constant folding) takes minutes, may
    # pip-install packages, and the model runs no faster (ONNX Runtime folds constants itself)
    code = ("import sys, paddle2onnx; paddle2onnx.export(sys.argv[1] + '.json', sys.argv[1] + "
            "'.pdiparams', sys.argv[2], opset_version=int(sys.argv[3]), verbose=False, "
            "optimize_tool='none')")
    res = subprocess.run([sys.executable, "-c", code, prefix, onnx_path, str(ONNX_OPSET)],
                         capture_output=True, text=True)
    if res.returncode != 0 or not os.path.isfile(onnx_path):
        text = re.sub(r"\x1b\[[0-9;]*m", "", res.stdout + res.stderr)  # colour codes
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        errors = [ln for ln in lines if "ERROR" in ln or "Error" in ln] or lines[-1:]
        why = errors[0] if errors else f"exit code {res.returncode}, no file written"
        raise ToolkitError(f"paddle2onnx {version} could not convert the Paddle program "
                           f"({onnx_path}): {why}; export with --format paddle and run it with "
                           "Paddle Inference")
    try:
        model = onnx.load(onnx_path)
    except Exception as exc:  # noqa: BLE001  (protobuf's DecodeError and friends)
        raise _Incomplete(f"{os.path.basename(onnx_path)} from paddle2onnx does not parse "
                          f"({type(exc).__name__})") from None
    graph = model.graph
    old = graph.output[0].name
    for node in graph.node:
        node.output[:] = [output if n == old else n for n in node.output]
        node.input[:] = [output if n == old else n for n in node.input]
    graph.output[0].name = output
    for value in (graph.input[0], graph.output[0]):
        dims = value.type.tensor_type.shape.dim
        for i, sym in ((0, "batch"), (2, "height"), (3, "width")):
            dims[i].ClearField("dim_value")
            dims[i].dim_param = sym
    _drop_identities_and_dead_nodes(graph)
    onnx.checker.check_model(model)
    onnx.save(model, onnx_path)
    return version


# ----------------------------------------------------------------------------- the check


def check_exported(run, net, height, width):
    """Run the exported model (``run``) and the dynamic one (``net``) on random images of
    (1, 3, height, width) and CHECK_SECOND_SHAPE; ToolkitError if they differ by more
    than CHECK_TOL * (1 + |dynamic|). Returns the check record for the JSON."""
    import paddle
    rng = np.random.RandomState(0)
    record = {"tolerance": f"|exported - dynamic| <= {CHECK_TOL} * (1 + |dynamic|)", "runs": []}
    for shape in ((1, 3, height, width), CHECK_SECOND_SHAPE):
        images = rng.rand(*shape).astype(np.float32)
        with paddle.no_grad():
            want = net(paddle.to_tensor(images)).numpy()
        got = np.asarray(run(images))
        if got.shape != want.shape:
            raise ToolkitError(f"the exported model returned shape {list(got.shape)} for input "
                               f"{list(shape)}, the dynamic model {list(want.shape)} (--no_check "
                               "skips this check): please report it with the _export.json file")
        err = float(np.max(np.abs(got - want) / (1.0 + np.abs(want))))
        if not np.isfinite(err) or err > CHECK_TOL:
            raise ToolkitError(f"the exported model differs from the dynamic model by {err:.3g} "
                               f"(relative) on input {list(shape)}, more than {CHECK_TOL} "
                               "(--no_check skips this check): the conversion is wrong, do not "
                               "deploy it; try the other --format")
        record["runs"].append({"input_shape": list(shape), "max_rel_diff": err})
    return record


def _checkpoint_record(folder):
    folder = os.path.abspath(os.path.expanduser(folder))
    files = {}
    for name in ("encoder.pdparams", "depth.pdparams"):
        digest = hashlib.sha256()
        with open(os.path.join(folder, name), "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        files[name] = "sha256:" + digest.hexdigest()
    return {"folder": folder, "files": files}


# ----------------------------------------------------------------------------- writing safely


class _Incomplete(Exception):
    """A file of the export was written short (Paddle's C++ writers do not report a full disk)."""


def _host_tag():
    return hashlib.sha1(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:8]


def lock_path(output_path):
    """The lock file of an export to ``output_path``: ``<folder>/.<prefix>.export.lock``."""
    out = os.path.abspath(os.path.expanduser(output_path))
    return os.path.join(os.path.dirname(out), "." + os.path.basename(out) + ".export.lock")


class ExportLock(RunLock):
    """One export per ``--output_path`` at a time (run_lock's PID + host lock file, held in
    the output folder under a name derived from the prefix, so exports to other prefixes
    of the same folder run side by side). A second export gets one line naming the owner."""

    def __init__(self, output_path, log=print):
        out = os.path.abspath(os.path.expanduser(output_path))
        super().__init__(os.path.dirname(out), "--output_path", log)
        self.path = lock_path(out)
        self.output_path = output_path

    def acquire(self):
        try:
            return super().acquire()
        except ToolkitError:
            pid, host = self._read()
            if pid is None or pid == os.getpid():
                raise
            where = "this host" if host == socket.gethostname() else f"host {host}"
            raise ToolkitError(
                f"{self.output_path} is being exported by another process (process {pid} on {where}; "
                f"--output_path; lock {self.path}): wait for it to end, or choose another --output_path"
                + ("" if host == socket.gethostname() else "; if that export is gone, delete the lock file")
            ) from None


def _read_owner(folder):
    try:
        with open(os.path.join(folder, OWNER_FILE), encoding="utf-8") as f:
            owner = json.loads(f.read(4096))
        return owner if isinstance(owner, dict) else None
    except (OSError, ValueError):
        return None


def clean_dead_exports(out_dir, prefix, log=print):
    """Delete the temp folders (``.export_*``) that killed exports left in ``out_dir``.

    A folder is deleted when the process recorded in its name (on this host) is gone; one of
    an export to ``prefix`` (whose lock this process holds, so no live export of it can
    exist) also when it is older than this process (its PID now belongs to another process).
    Temp folders of live exports to other prefixes, and of other hosts, are left alone; an
    earlier release's ``.export_<random>`` (no owner recorded) is deleted once untouched for
    LEGACY_TEMP_AGE_S. Returns the deleted paths."""
    removed = []
    try:
        names = os.listdir(out_dir)
    except OSError:
        return removed
    for name in names:
        path = os.path.join(out_dir, name)
        if not name.startswith(TEMP_PREFIX) or os.path.islink(path) or not os.path.isdir(path):
            continue
        try:
            mtime = os.path.getmtime(path)
        except OSError:
            continue
        m = TEMP_RE.match(name)
        if m:
            pid = int(m.group(1))
            if m.group(2) != _host_tag() or pid == os.getpid():
                continue
            owner = _read_owner(path)
            ours = owner is not None and owner.get("output") == prefix
            stale = not pid_alive(pid) or (ours and mtime < PROCESS_START)
            who = f"process {pid}, no longer running" if not pid_alive(pid) else f"process {pid}"
        else:
            stale = mtime < PROCESS_START - LEGACY_TEMP_AGE_S
            who = "an earlier release"
        if stale:
            shutil.rmtree(path, ignore_errors=True)
            if not os.path.exists(path):
                removed.append(path)
                log(f"removed {path}, left by an export that did not finish ({who})")
    return removed


def _make_temp_dir(out_dir, prefix):
    tmp = tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{os.getpid()}_{_host_tag()}_", dir=out_dir)
    with open(os.path.join(tmp, OWNER_FILE), "w", encoding="utf-8") as f:
        json.dump({"pid": os.getpid(), "host": socket.gethostname(), "output": prefix,
                   "started": time.time()}, f)
    return tmp


# Paddle's VarType data types -> bytes per element (framework.proto)
_PADDLE_DTYPE_SIZES = {0: 1, 1: 2, 2: 4, 3: 8, 4: 2, 5: 4, 6: 8, 20: 1, 21: 1, 22: 2, 23: 8, 24: 16}


def _varint(buf, i):
    value = shift = 0
    while True:
        if i >= len(buf) or shift > 63:
            raise ValueError("bad varint")
        b = buf[i]
        value |= (b & 0x7F) << shift
        i += 1
        shift += 7
        if not b & 0x80:
            return value, i


def _tensor_bytes(desc):
    """Bytes of the data of a serialized TensorDesc (data_type = 1, dims = 2), or None."""
    i, dtype, dims = 0, None, []
    while i < len(desc):
        key, i = _varint(desc, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(desc, i)
            if field == 1:
                dtype = value
            elif field == 2:
                dims.append(value)
        elif wire == 2:
            size, i = _varint(desc, i)
            if field == 2:  # packed dims
                end, j = i + size, i
                while j < end:
                    value, j = _varint(desc, j)
                    dims.append(value)
            i += size
        else:
            return None
    if dtype not in _PADDLE_DTYPE_SIZES:
        return None
    numel = 1
    for d in dims:
        if d >= 1 << 63:  # a negative int64: not a saved tensor
            return None
        numel *= d
    return numel * _PADDLE_DTYPE_SIZES[dtype]


def _program_parameter_count(program_file):
    """The number of parameters a PIR program (``.json``) lists; _Incomplete if the file does
    not parse (written short), None if its layout is not the one known here."""
    try:
        with open(program_file, encoding="utf-8") as f:
            program = json.load(f)
    except ValueError as exc:
        raise _Incomplete(f"{os.path.basename(program_file)} is cut short ({str(exc)[:80]})") from None
    try:
        ops = program["program"]["regions"][0]["blocks"][0]["ops"]
        return sum(1 for op in ops if op.get("#") == "p")
    except (KeyError, IndexError, TypeError, AttributeError):
        return None


def check_params_file(path, count=None):
    """Check that a ``.pdiparams`` file (Paddle's save_combine stream: per tensor a version,
    its LoD, a TensorDesc and the data) holds ``count`` whole tensors and nothing after them:
    paddle.jit.save writes it from C++ and does not report a full disk, it just stops.
    Returns the number of tensors; _Incomplete when the file is short."""
    size = os.path.getsize(path)
    name = os.path.basename(path)
    n, pos = 0, 0
    with open(path, "rb") as f:
        while pos < size:
            head = f.read(12)
            if len(head) < 12:
                raise _Incomplete(f"{name} stops inside parameter {n + 1} ({size} bytes)")
            lod_levels = int.from_bytes(head[4:12], "little")
            if lod_levels > 64:
                return n  # not the layout known here: nothing to say
            for _ in range(lod_levels):
                level = f.read(8)
                if len(level) < 8:
                    raise _Incomplete(f"{name} stops inside parameter {n + 1} ({size} bytes)")
                f.seek(int.from_bytes(level, "little"), os.SEEK_CUR)
            head = f.read(8)
            if len(head) < 8:
                raise _Incomplete(f"{name} stops inside parameter {n + 1} ({size} bytes)")
            desc_size = int.from_bytes(head[4:8], "little", signed=True)
            if not 0 <= desc_size <= 1 << 20:
                return n
            desc = f.read(desc_size)
            if len(desc) < desc_size:
                raise _Incomplete(f"{name} stops inside parameter {n + 1} ({size} bytes)")
            try:
                nbytes = _tensor_bytes(desc)
            except ValueError:
                nbytes = None
            if nbytes is None:
                return n
            pos = f.tell() + nbytes
            if pos > size:
                raise _Incomplete(f"{name} stops inside parameter {n + 1} ({size} of at least {pos} bytes)")
            f.seek(pos)
            n += 1
    if count is not None and n < count:
        raise _Incomplete(f"{name} holds {n} of the program's {count} parameters ({size} bytes)")
    return n


def check_paddle_program(prefix):
    """``prefix.json`` parses and ``prefix.pdiparams`` holds all its parameters, whole."""
    check_params_file(prefix + ".pdiparams", _program_parameter_count(prefix + ".json"))


def _free_space(folder):
    try:
        st = os.statvfs(folder)
        return f"{st.f_bavail * st.f_frsize / 1e6:.1f} MB free there"
    except (OSError, AttributeError):
        return "free space unknown"


def _write_error(out_dir, reason, overwrite):
    kept = "the earlier export there is unchanged" if overwrite else "nothing was written there"
    return ToolkitError(f"cannot write the exported model into {out_dir} ({reason}; --output_path): free some "
                        f"space (or fix the folder) and export again, or choose another --output_path; {kept}")


def _fsync(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def move_into_place(tmp, out_dir, names, earlier):
    """Move ``names`` (files in ``tmp``) into ``out_dir``, ``<prefix>_export.json`` last; the
    ``earlier`` files of an export at the same prefix are first moved aside into ``tmp``, so
    no file of it is left beside the new ones. If a move fails, the moved files are taken
    back and the earlier ones restored: the prefix holds the old export or the new one,
    whole. Returns the paths written."""
    previous = os.path.join(tmp, PREVIOUS_DIR)
    aside, written = [], []
    names = sorted(names, key=lambda n: (n.endswith(INFO_SUFFIX), n))
    try:
        if earlier:
            os.mkdir(previous)
            # the record first: a reader finds no record rather than a record of missing files
            for path in sorted(earlier, key=lambda p: not p.endswith(INFO_SUFFIX)):
                os.replace(path, os.path.join(previous, os.path.basename(path)))
                aside.append(path)
        for name in names:
            dst = os.path.join(out_dir, name)
            os.replace(os.path.join(tmp, name), dst)
            written.append(dst)
        try:
            _fsync(out_dir)
        except OSError:
            pass  # durability of the renames only; some filesystems cannot fsync a folder
    except BaseException:
        for dst in reversed(written):
            try:
                os.remove(dst)
            except OSError:
                pass
        for path in reversed(aside):
            try:
                os.replace(os.path.join(previous, os.path.basename(path)), path)
            except OSError:
                pass
        raise
    return written


# ----------------------------------------------------------------------------- export


def read_info(prefix):
    """The ``<prefix>_export.json`` record, or ToolkitError naming the file."""
    path = prefix + INFO_SUFFIX
    if not os.path.isfile(path):
        raise ToolkitError(f"no exported model at {prefix} ({path} missing): give the "
                           "--output_path prefix used with export_model.py, e.g. exported/depth")
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as exc:
        raise ToolkitError(f"cannot read {path}: {exc}; export the model again") from exc


def _write_export(tmp, prefix, net, meta, record, height, width, output, fmt, check, min_depth,
                  max_depth):
    """Write the exported files and ``<prefix>_export.json`` into the temp folder ``tmp``,
    each checked whole (and the model against the dynamic one with ``check``); returns the
    record."""
    import paddle

    from export_ops import traced_forms
    from networks import INPUT_SIZE_MULTIPLE, MIN_INPUT_SIZE

    tmp_prefix = os.path.join(tmp, prefix)
    spec = [paddle.static.InputSpec([None, 3, None, None], "float32", name=INPUT_NAME)]
    with traced_forms(net.decoder):
        paddle.jit.save(net, tmp_prefix, input_spec=spec)
    check_paddle_program(tmp_prefix)  # Paddle writes from C++: a full disk cuts the files silently
    info = {
        "format": fmt,
        "input": {"name": INPUT_NAME, "shape": ["batch", 3, "height", "width"],
                  "dtype": "float32", "layout": "NCHW", "color": "RGB", "range": [0.0, 1.0],
                  "size_rule": f"height and width multiples of {INPUT_SIZE_MULTIPLE}, at "
                               f"least {MIN_INPUT_SIZE}; any batch size",
                  "size_multiple": INPUT_SIZE_MULTIPLE, "min_size": MIN_INPUT_SIZE,
                  "height": height, "width": width},
        "output": {"kind": output, "shape": ["batch", 1, "height", "width"],
                   "min_depth": min_depth, "max_depth": max_depth, "scale": meta["scale"]},
        "checkpoint": dict(record, num_layers=meta["num_layers"],
                           trained_height=meta["height"], trained_width=meta["width"],
                           use_stereo=meta["use_stereo"],
                           stereo_baseline_m=meta["stereo_baseline"]),
        "paddle_version": paddle.__version__,
    }
    info["output"]["meaning"] = {
        "disp": "sigmoid disparity in [0, 1]; scaled disparity = 1/max_depth + "
                "(1/min_depth - 1/max_depth) * disp, depth = 1 / scaled disparity",
        "depth": "depth in the network's units: 1 / (1/max_depth + (1/min_depth - "
                 "1/max_depth) * sigmoid disparity)",
        "metric": "depth in metres: scale x depth, scale = stereo baseline (m) / 0.1",
    }[output]
    if fmt == "onnx":
        info["paddle2onnx_version"] = _to_onnx(tmp_prefix, tmp_prefix + ".onnx", output)
        info["onnx_opset"] = ONNX_OPSET
        for ext in (".json", ".pdiparams"):
            os.remove(tmp_prefix + ext)
    info["files"] = sorted(n for n in os.listdir(tmp) if not n.startswith("."))
    info["output"]["name"] = output  # the ONNX output is named after its kind
    info["check"] = None
    if check or fmt == "paddle":  # Paddle's output name is known to its predictor only
        runner = ExportedRunner(tmp_prefix, fmt)
        info["output"]["name"] = runner.output_name
        if check:
            info["check"] = dict(check_exported(runner, net, height, width),
                                 runtime="onnxruntime" if fmt == "onnx"
                                 else "paddle.inference (default CPU config, oneDNN on)")
        del runner
    atomic_write_text(tmp_prefix + INFO_SUFFIX, json.dumps(info, indent=2) + "\n")
    return info


def export(weights_folder, output_path, height=None, width=None, num_layers=None,
           output="disp", fmt="paddle", check=True, min_depth=MIN_DEPTH, max_depth=MAX_DEPTH,
           overwrite=False):
    """Export; returns the list of files written (``<output_path>.*``). An earlier export at
    the same prefix is replaced only with ``overwrite``. One export per prefix at a time
    (ExportLock); the files are written into a temp folder, checked whole and moved into
    place only then (move_into_place): a full disk or an unwritable folder is one line and
    leaves no file of the export behind."""
    from networks import INPUT_SIZE_MULTIPLE

    if fmt not in FORMATS:
        raise ToolkitError(f"unknown format {fmt!r} (--format): use paddle or onnx")
    if fmt == "onnx":  # fail before the slow part when the optional packages are missing
        _import_optional("paddle2onnx", "--format onnx")
        if check:
            _import_optional("onnxruntime", "--format onnx")
    if not 0 < min_depth < max_depth:
        raise ToolkitError(f"bad depth range {min_depth}..{max_depth} (--min_depth/--max_depth): "
                           "need 0 < min_depth < max_depth, the training values (0.1 and 100)")
    prefix = os.path.basename(output_path)
    if not prefix:
        raise ToolkitError(f"--output_path {output_path!r} names a folder: give a file prefix, "
                           "e.g. exported/depth")
    out_dir = os.path.dirname(os.path.abspath(os.path.expanduser(output_path)))
    made = _missing_folders(out_dir)  # created here, removed again if the export fails
    out_dir = check_output_dir(out_dir, "--output_path", create=True)
    output_path = os.path.join(out_dir, prefix)
    try:
        written, info, meta, width, height = _export_locked(
            weights_folder, output_path, height, width, num_layers, output, fmt, check, min_depth,
            max_depth, overwrite)
    except BaseException:
        for folder in made:  # leaf first; only empty ones (another export may have started there)
            try:
                os.rmdir(folder)
            except OSError:
                break
        raise
    checked = ("checked against the dynamic model in " + info["check"]["runtime"]
               if info["check"] else "not checked (--no_check)")
    print(f"-> exported ResNet{meta['num_layers']} depth net ({output}, {fmt}) for input "
          f"[batch, 3, height, width], height and width multiples of {INPUT_SIZE_MULTIPLE} "
          f"(default {width}x{height}); {checked}:")
    for path in written:
        print(f"   {path}")
    return written


def _missing_folders(folder):
    """``folder`` and its ancestors that do not exist yet, leaf first."""
    out = []
    while not os.path.exists(folder) and os.path.dirname(folder) != folder:
        out.append(folder)
        folder = os.path.dirname(folder)
    return out


def _export_locked(weights_folder, output_path, height, width, num_layers, output, fmt, check,
                   min_depth, max_depth, overwrite):
    from networks import check_input_size

    out_dir, prefix = os.path.split(output_path)
    with ExportLock(output_path):
        clean_stale_temp_files(out_dir)
        clean_dead_exports(out_dir, prefix)
        earlier = [p for p in (output_path + ext for ext in (".json", ".pdiparams", ".onnx", INFO_SUFFIX))
                   if os.path.exists(p)]
        if earlier and not overwrite:
            raise ToolkitError(f"an exported model is already there ({', '.join(earlier)}) (--output_path): "
                               "add --overwrite to replace it, or choose another --output_path")
        net, meta = build_depth_net(weights_folder, num_layers, output, min_depth, max_depth)
        height = int(height or meta["height"])
        width = int(width or meta["width"])
        check_input_size(height, width)
        record = _checkpoint_record(weights_folder)  # read before anything is written
        tmp = None
        try:
            tmp = _make_temp_dir(out_dir, prefix)
            info = _write_export(tmp, prefix, net, meta, record, height, width, output, fmt, check,
                                 min_depth, max_depth)
            names = [n for n in os.listdir(tmp) if not n.startswith(".")]
            for name in names:  # a full disk can surface only here (delayed allocation)
                _fsync(os.path.join(tmp, name))
            written = move_into_place(tmp, out_dir, names, earlier)
        except OSError as exc:
            if exc.errno not in WRITE_ERRNOS:
                raise
            raise _write_error(out_dir, exc.strerror or str(exc), bool(earlier)) from None
        except _Incomplete as exc:
            raise _write_error(out_dir, f"{exc}; {_free_space(out_dir)}", bool(earlier)) from None
        finally:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
    return written, info, meta, width, height


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--load_weights_folder", required=True,
                   help="folder with encoder.pdparams and depth.pdparams (models/weights_N)")
    p.add_argument("--output_path", required=True,
                   help="path prefix of the exported files, e.g. exported/depth")
    p.add_argument("--output", default="disp", choices=OUTPUT_KINDS,
                   help="what the model returns: disp (sigmoid disparity, default), depth "
                        "(disp_to_depth with --min_depth/--max_depth) or metric (depth x the "
                        "stereo scale; stereo-trained models only)")
    p.add_argument("--format", default="paddle", choices=FORMATS,
                   help="paddle (Paddle Inference program, default) or onnx (through paddle2onnx)")
    p.add_argument("--height", type=int, default=None,
                   help="default input height, recorded in <output_path>_export.json and "
                        "used by the check (default: the training height); the model takes "
                        "any multiple of 32")
    p.add_argument("--width", type=int, default=None,
                   help="default input width (default: the training width)")
    p.add_argument("--num_layers", type=int, default=None, choices=[18, 34, 50, 101, 152],
                   help="ResNet depth (default: inferred from encoder.pdparams)")
    p.add_argument("--min_depth", type=float, default=MIN_DEPTH,
                   help="training minimum depth for --output depth/metric (default 0.1)")
    p.add_argument("--max_depth", type=float, default=MAX_DEPTH,
                   help="training maximum depth for --output depth/metric (default 100)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an earlier export at --output_path")
    p.add_argument("--no_check", action="store_true",
                   help="do not compare the exported model with the dynamic one")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    # Paddle's C++ warnings while tracing (e.g. "not support input out tensor") say nothing
    # about the export; it reads this before paddle is first imported
    os.environ.setdefault("GLOG_minloglevel", "2")
    quiet_paddle_notices()
    return run_cli(export, args.load_weights_folder, args.output_path, args.height, args.width,
                   args.num_layers, args.output, args.format, not args.no_check,
                   args.min_depth, args.max_depth, args.overwrite)


if __name__ == "__main__":
    sys.exit(main())
