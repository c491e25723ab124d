"""The published trained models of Depth Hints and Monodepth2, by name, without PyTorch.

``fetch(name)`` downloads a model's zip once (resuming an interrupted download with an HTTP
Range request), checks it (the published md5 where there is one; always: the expected
``encoder.pth``/``depth.pth`` in it, read safely by ``safe_load.load_torch`` and loaded into
this toolkit's networks by ``tools/convert_torch_weights.py``), converts it once into
``<cache>/models/<name>/`` (``encoder.pdparams``, ``depth.pdparams``, ``pose_encoder`` /
``pose`` when the zip has them, ``SOURCE.json``: url, sha256, md5, date) and from then on
returns that folder without any network access. ``resolve_weights(value)`` takes a folder
or a published name (the value of ``--load_weights_folder``); ``fetch_predictions(name)``
gets a model's published Eigen-split disparities. Every failure is one ToolkitError line,
and the cache never holds a half-written model folder or an unchecked file under its final
name (an interrupted download stays as ``<file>.part``, to be resumed).

Cache: ``--cache`` / ``cache=``, else ``$DEPTH_HINTS_CACHE``, else ``~/.cache/depth_hints_paddle``.
``$DEPTH_HINTS_MODELS_URL`` replaces the ``https://storage.googleapis.com/niantic-lon-static/research``
prefix of every URL (a mirror). Offline: put the zip at the path the error names.

The table (values as published, not re-measured here):
Depth Hints: Watson et al., "Self-Supervised Monocular Depth Hints", ICCV 2019 / nianticlabs
depth-hints README (no checksums published). Monodepth2: Godard et al., "Digging Into
Self-Supervised Monocular Depth Estimation", ICCV 2019 / monodepth2 README (md5 sums from the
table in its utils.py; abs_rel and delta < 1.25 only). ``resnet_layers`` is what the names and
papers say; the conversion reads the depth from the weights themselves.
"""
import datetime
import difflib
import json
import os
import posixpath
import re
import shutil
import stat
import zipfile
from dataclasses import dataclass
from typing import Optional

from downloads import download, extract_member, file_lock, hashes, reason, remove, unsafe_member
from utils import ToolkitError
from fileio import atomic_write_text, check_output_dir

BASE_URL = "https://storage.googleapis.com/niantic-lon-static/research"
ENV_CACHE, ENV_URL = "DEPTH_HINTS_CACHE", "DEPTH_HINTS_MODELS_URL"
DEFAULT_CACHE = os.path.join("~", ".cache", "depth_hints_paddle")
MAX_MEMBER, MAX_MEMBERS = 2 << 30, 10000
PTH_FILES = ("encoder", "depth", "pose_encoder", "pose")


@dataclass(frozen=True)
class PublishedModel:
    name: str
    family: str                 # "depth-hints" | "monodepth2"
    modality: str               # "stereo" | "mono" | "mono+stereo"
    imagenet_pretrained: bool
    width: int
    height: int
    resnet_layers: int
    url: str                    # the weights zip
    md5: Optional[str]          # published md5 of the zip (Monodepth2 only)
    eigen_url: Optional[str]    # published Eigen-split disparities (.npy)
    abs_rel: float
    sq_rel: Optional[float]     # not published by Monodepth2's README
    a1: float                   # delta < 1.25

    @property
    def size(self):
        return f"{self.width}x{self.height}"


def _dh(name, pt, w, h, layers, abs_rel, sq_rel, a1, modality="stereo"):
    base = f"{BASE_URL}/depth-hints/{name.replace('+', '%2B')}"
    return PublishedModel(name, "depth-hints", modality, pt, w, h, layers, base + "/models.zip", None,
                          base + "/disps_eigen_split.npy", abs_rel, sq_rel, a1)


def _md2(name, md5, abs_rel, a1, eigen=True):
    modality, _, size = name.partition("_")
    w, h = (int(v) for v in size.rsplit("_", 1)[-1].split("x"))
    base = f"{BASE_URL}/monodepth2/{name.replace('+', '%2B')}"
    return PublishedModel(name, "monodepth2", modality, "no_pt" not in name, w, h, 18, base + ".zip", md5,
                          base + "_eigen.npy" if eigen else None, abs_rel, None, a1)


MODELS = {m.name: m for m in (
    # Watson et al. ICCV 2019 / nianticlabs depth-hints README
    _dh("DH-Resnet50", True, 640, 192, 50, 0.102, 0.762, 0.880),
    _dh("DH-Resnet50-nopt", False, 640, 192, 50, 0.118, 0.941, 0.850),
    _dh("DH-HR-Resnet50", True, 1024, 320, 50, 0.096, 0.710, 0.890),
    _dh("DH-HR-Resnet50-nopt", False, 1024, 320, 50, 0.112, 0.857, 0.861),
    _dh("DH-HR-Mono+Stereo", True, 1024, 320, 18, 0.098, 0.702, 0.887, modality="mono+stereo"),
    # Godard et al. ICCV 2019 / monodepth2 README (md5: monodepth2 utils.py)
    _md2("mono_640x192", "a964b8356e08a02d009609d9e3928f7c", 0.115, 0.877),
    _md2("stereo_640x192", "3dfb76bcff0786e4ec07ac00f658dd07", 0.109, 0.864),
    _md2("mono+stereo_640x192", "c024d69012485ed05d7eaa9617a96b81", 0.106, 0.874),
    _md2("mono_no_pt_640x192", "9c2f071e35027c895a4728358ffc913a", 0.132, 0.845, eigen=False),
    _md2("stereo_no_pt_640x192", "41ec2de112905f85541ac33a854742d1", 0.130, 0.831, eigen=False),
    _md2("mono+stereo_no_pt_640x192", "46c3b824f541d143a45c37df65fbab0a", 0.127, 0.836, eigen=False),
    _md2("mono_1024x320", "0ab0766efdfeea89a0d9ea8ba90e1e63", 0.115, 0.879),
    _md2("stereo_1024x320", "afc2f2126d70cf3fdf26b550898b501a", 0.107, 0.874),
    _md2("mono+stereo_1024x320", "cdc5fc9b23513c07d5b19235d9ef08f7", 0.106, 0.876),
)}

LIST_HINT = "python tools/models.py list"


def list_models(table=None):
    """The published models, in the table's order (Depth Hints first)."""
    return list((table or MODELS).values())


def get(name, table=None):
    """The :class:`PublishedModel` called ``name``; a typo is one ToolkitError line with the names."""
    table = table or MODELS
    if name in table:
        return table[name]
    close = [n for n in table if n.lower() == str(name).lower()] or difflib.get_close_matches(str(name), table, 1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    raise ToolkitError(f"unknown published model '{name}'{hint}: the names are {', '.join(table)}")


def cache_dir(override=None):
    """``override`` (a --cache value), else ``$DEPTH_HINTS_CACHE``, else ``~/.cache/depth_hints_paddle``."""
    path = override or os.environ.get(ENV_CACHE) or DEFAULT_CACHE
    return os.path.abspath(os.path.expanduser(os.fspath(path)))


def _cache_flag(override):
    return "--cache" if override else (ENV_CACHE if os.environ.get(ENV_CACHE) else "the default cache")


def source_url(url):
    """``url`` with the ``BASE_URL`` prefix replaced by ``$DEPTH_HINTS_MODELS_URL`` when it is set."""
    mirror = os.environ.get(ENV_URL)
    if mirror and url.startswith(BASE_URL):
        return mirror.rstrip("/") + url[len(BASE_URL):]
    return url


def model_folder(name, cache=None):
    return os.path.join(cache_dir(cache), "models", name)


def zip_path(name, cache=None):
    """Where the model's zip is kept (and where to put one downloaded by hand)."""
    return os.path.join(cache_dir(cache), "downloads", name + ".zip")


def predictions_path(name, cache=None):
    return os.path.join(cache_dir(cache), "predictions", name + "_eigen.npy")


def _ready(folder):
    return all(os.path.isfile(os.path.join(folder, f)) for f in ("SOURCE.json", "encoder.pdparams", "depth.pdparams"))


def cached(name, cache=None, table=None):
    """The converted folder of ``name`` when it is in the cache, else None (no network)."""
    folder = model_folder(get(name, table).name, cache)
    return folder if _ready(folder) else None


def resolve_weights(value, cache=None, flag="--load_weights_folder", log=print, table=None):
    """An existing folder as it is; a published model's name fetched (once) into the cache."""
    if value and os.path.isdir(value):
        return value
    if value in (table or MODELS):
        return fetch(value, cache, log=log, table=table)
    names = list(table or MODELS)
    close = difflib.get_close_matches(str(value), names, 1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    raise ToolkitError(f"not a folder or a published model name ({flag} {value}){hint}: give a weights "
                       f"folder or one of the names ({LIST_HINT})")


# ----------------------------------------------------------------------------- downloading


def _get_file(url, final, what, manual_hint, log):
    """``(path, downloaded)``: a file placed by hand at ``final``, else a fresh .part download."""
    if os.path.isfile(final):
        log(f"using {final} (already there)")
        return final, False
    return download(source_url(url), final, what, manual_hint, log), True


def _bad(path, what, problem, downloaded, cls=ToolkitError):
    remove(path)
    again = "run again to download it anew" if downloaded else "download it again"
    return cls(f"{what} is not usable ({path}): {problem}; deleted it, {again}")


def _now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


# ----------------------------------------------------------------------------- models


def fetch(name, cache=None, log=print, table=None):
    """The path of ``<cache>/models/<name>/``, a ready weights folder; downloaded, checked and
    converted on the first call, returned without network access afterwards."""
    m = get(name, table)
    folder = model_folder(m.name, cache)
    if _ready(folder):
        return folder
    models = check_output_dir(os.path.dirname(folder), _cache_flag(cache), create=True)
    final = zip_path(m.name, cache)
    manual_hint = f"download it by hand and put it at {final}, or pass a weights folder"
    with file_lock(os.path.join(models, f".{m.name}.lock"), m.name, log):
        if _ready(folder):
            return folder
        if os.path.exists(folder):
            raise ToolkitError(f"the cache folder of {m.name} is incomplete ({folder}): delete it and run again")
        path, downloaded = _get_file(m.url, final, m.name, manual_hint, log)
        md5, sha = hashes(path)
        if m.md5 and md5 != m.md5:
            raise _bad(path, f"the zip of {m.name}", f"wrong checksum, expected md5 {m.md5}, got {md5}", downloaded)
        partial = folder + ".partial"
        shutil.rmtree(partial, ignore_errors=True)  # a killed earlier run's
        try:
            info = _convert_zip(m, path, partial, downloaded, log)
            atomic_write_text(os.path.join(partial, "SOURCE.json"), json.dumps(dict(
                name=m.name, url=source_url(m.url), sha256=sha, md5=md5, md5_published=m.md5,
                date=_now(), source="download" if downloaded else f"placed by hand at {final}",
                converted_by="tools/convert_torch_weights.py", **info), indent=2) + "\n")
            if downloaded:
                os.makedirs(os.path.dirname(final), exist_ok=True)
                os.replace(path, final)   # checked: now under its final name
            os.rename(partial, folder)
            remove(final + ".part")  # a download given up for a zip placed by hand
        finally:
            shutil.rmtree(partial, ignore_errors=True)
    log(f"{m.name}: ready in {folder}")
    return folder


def _model_members(m, zf, log):
    """{stem: ZipInfo} of the .pth files of the model folder inside the zip."""
    infos = zf.infolist()
    if len(infos) > MAX_MEMBERS:
        raise ValueError(f"{len(infos)} members, more than {MAX_MEMBERS}")
    for info in infos:
        if unsafe_member(info.filename):
            raise ValueError(f"member '{info.filename[:200]}' has an unsafe path (absolute or with '..')")
    encoders = [i.filename for i in infos if posixpath.basename(i.filename) == "encoder.pth"
                and not i.filename.startswith("__MACOSX/")]
    folders = sorted({posixpath.dirname(n) for n in encoders})
    if not folders:
        raise ValueError("no encoder.pth in it (a model zip holds encoder.pth and depth.pth)")
    if len(folders) > 1:
        epochs = [re.fullmatch(r"(?:.*/)?weights_(\d+)", f) for f in folders]
        if not all(epochs):
            raise ValueError(f"encoder.pth in several folders ({', '.join(folders)}): unzip it and convert "
                             "the one you want with tools/convert_torch_weights.py")
        folders = [max(folders, key=lambda f: int(epochs[folders.index(f)].group(1)))]
        log(f"{m.name}: the zip holds several epochs, using {folders[0]}")
    members = {}
    for stem in PTH_FILES:
        try:
            members[stem] = zf.getinfo(posixpath.join(folders[0], stem + ".pth"))
        except KeyError:
            pass
    if "depth" not in members:
        raise ValueError(f"no depth.pth beside {posixpath.join(folders[0], 'encoder.pth')}")
    for info in members.values():
        mode = info.external_attr >> 16
        if info.is_dir() or stat.S_ISLNK(mode):
            raise ValueError(f"member '{info.filename}' is not a regular file")
        if info.file_size > MAX_MEMBER or (info.compress_type != zipfile.ZIP_STORED
                                           and info.file_size > 1100 * info.compress_size + (1 << 16)):
            raise ValueError(f"member '{info.filename}' claims an absurd size ({info.file_size} bytes)")
    return members


def _convert_zip(m, path, partial, downloaded, log):
    """Extract the model's .pth files into ``partial/_torch``, convert and check them into
    ``partial``; returns what the weights say (ResNet depth, size)."""
    from tools import convert_torch_weights as ctw
    import networks
    import safe_load

    torch_dir = os.path.join(partial, "_torch")
    os.makedirs(torch_dir)
    what = f"the zip of {m.name}"
    try:
        with zipfile.ZipFile(path) as zf:
            for stem, info in _model_members(m, zf, log).items():
                extract_member(zf, info, os.path.join(torch_dir, stem + ".pth"))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError, OSError) as exc:
        if isinstance(exc, OSError) and exc.errno is not None:  # the disk, not the file
            raise ToolkitError(f"cannot unpack {what} into {torch_dir} ({reason(exc)}): check the free space "
                               "and permissions there, or choose another --cache") from None
        raise _bad(path, what, " ".join(str(exc).split()) or type(exc).__name__, downloaded) from None
    try:
        ctw.convert_model_folder(torch_dir, partial, check=True, log=log)
    except ToolkitError as exc:
        raise _bad(path, what, str(exc), downloaded, type(exc)) from None
    except (KeyError, IndexError, ValueError) as exc:  # weights of an unexpected layout
        raise _bad(path, what, f"{type(exc).__name__}: {' '.join(str(exc).split())}", downloaded) from None
    except OSError as exc:
        raise ToolkitError(f"cannot convert {what} into {partial} ({reason(exc)}): check the free space "
                           "and permissions there, or choose another --cache") from None
    shutil.rmtree(torch_dir)
    enc = safe_load.load_paddle(os.path.join(partial, "encoder.pdparams"))
    info = dict(resnet_layers=networks.infer_num_layers(enc), height=enc.get("height"), width=enc.get("width"),
                files=sorted(f for f in os.listdir(partial) if f.endswith(".pdparams")))
    said = (m.resnet_layers, m.height, m.width)
    if said != (info["resnet_layers"], info["height"], info["width"]):
        log(f"note: the weights of {m.name} are ResNet{info['resnet_layers']} at {info['width']}x{info['height']} "
            f"(the table says ResNet{m.resnet_layers} at {m.size}); the tools use the weights' own values")
    return info


# ----------------------------------------------------------------------------- predictions


def fetch_predictions(name, cache=None, log=print, table=None):
    """The path of ``<cache>/predictions/<name>_eigen.npy``: the model's published Eigen-split
    disparities, downloaded once and checked (a float array of 3 dimensions)."""
    import safe_load
    import numpy as np

    m = get(name, table)
    if not m.eigen_url:
        have = ", ".join(n.name for n in list_models(table) if n.eigen_url)
        raise ToolkitError(f"no published Eigen predictions for {m.name}: the models that have them are {have}")
    final = predictions_path(m.name, cache)
    record = final[:-len(".npy")] + ".json"
    if os.path.isfile(final) and os.path.isfile(record):
        return final
    folder = check_output_dir(os.path.dirname(final), _cache_flag(cache), create=True)
    manual_hint = f"download it by hand and put it at {final}, or pass the predictions file"
    with file_lock(os.path.join(folder, f".{m.name}_eigen.lock"), m.name + " predictions", log):
        if os.path.isfile(final) and os.path.isfile(record):
            return final
        remove(record)
        path, downloaded = _get_file(m.eigen_url, final, f"{m.name} predictions", manual_hint, log)
        what = f"the Eigen predictions of {m.name}"
        try:
            arr = safe_load.load_npy(path)
        except ToolkitError as exc:
            raise _bad(path, what, str(exc), downloaded, type(exc)) from None
        if not (isinstance(arr, np.ndarray) and np.issubdtype(arr.dtype, np.floating) and arr.ndim == 3):
            raise _bad(path, what, f"expected a float array (images, height, width), got "
                                   f"{getattr(arr, 'dtype', type(arr).__name__)} {getattr(arr, 'shape', '')}",
                       downloaded)
        shape, dtype = list(arr.shape), str(arr.dtype)
        del arr
        md5, sha = hashes(path)
        if downloaded:
            os.replace(path, final)
        atomic_write_text(record, json.dumps(dict(name=m.name, url=source_url(m.eigen_url), sha256=sha, md5=md5,
                                                  date=_now(), shape=shape, dtype=dtype), indent=2) + "\n")
    log(f"{m.name}: Eigen predictions in {final}")
    return final
