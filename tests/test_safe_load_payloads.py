"""safe_load refuses crafted files without running them (issue "Trust").

For each format the toolkit reads (paddle pickle, legacy trainer state, .npy and .npz
object arrays, torch zip and legacy .pth), files whose unpickling would create a marker
file (os.system, subprocess, eval, getattr/__import__ chains, functools.partial,
copyreg, operator, a call tucked into a real-looking state dict) or abuse an allowed
reconstructor must raise one-line UnsafeFileError naming the file and the refused global,
and the marker must never appear. Absurd, damaged and truncated files raise one-line
ToolkitErrors only. Payloads are raw pickle opcodes, as an attacker writes them.
"""
import collections
import io
import os
import pickle
import random
import shlex
import struct
import zipfile

import numpy as np
import pytest

import safe_load
from safe_load import UnreadableFileError, UnsafeFileError
from utils import MissingFileError, ToolkitError

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
SYSTEM_MODULE = os.system.__module__          # 'posix' (or 'nt')


def _torch():
    try:
        import torch
    except Exception:  # noqa: BLE001  (not installed, or a broken install)
        pytest.skip("torch not importable")
    return torch


def _s(text):
    raw = text.encode("utf-8")
    return b"X" + struct.pack("<I", len(raw)) + raw                 # BINUNICODE


def _global2(module, name):
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"   # GLOBAL (protocol 0-3)


def _global4(module, name):
    return _s(module) + _s(name) + b"\x93"                          # STACK_GLOBAL (protocol 4+)


def _call(callee, *args):
    """``callee(*args)`` where args are opcode strings (1 to 3 of them)."""
    return callee + b"".join(args) + {1: b"\x85", 2: b"\x86", 3: b"\x87"}[len(args)] + b"R"


def _payloads(marker):
    cmd = "touch " + shlex.quote(str(marker))
    eval_expr = f"__import__('os').system({cmd!r}) and None or {{'a': 1}}"
    return {
        # refused global -> the name the message must show
        "os.system": (b"\x80\x02" + _call(_global2(SYSTEM_MODULE, "system"), _s(cmd)) + b".",
                      f"{SYSTEM_MODULE}.system"),
        "os.system (protocol 4)": (b"\x80\x04" + _call(_global4(SYSTEM_MODULE, "system"), _s(cmd)) + b".",
                                   f"{SYSTEM_MODULE}.system"),
        "subprocess": (b"\x80\x02" + _call(_global2("subprocess", "check_call"),
                                           b"]" + _s("touch") + b"a" + _s(str(marker)) + b"a") + b".",
                       "subprocess.check_call"),
        # stealth: unpickles to a valid-looking value ({'a': 1}) and touches the marker
        "eval": (b"\x80\x02" + _call(_global2("builtins", "eval"), _s(eval_expr)) + b".", "builtins.eval"),
        "getattr(__import__('os'), 'system')": (
            b"\x80\x02" + _call(_call(_global2("builtins", "getattr"),
                                      _call(_global2("builtins", "__import__"), _s("os")), _s("system")), _s(cmd))
            + b".", "builtins.getattr"),
        # partial(os.system, cmd)(): EMPTY_TUPLE + REDUCE calls the partial
        "functools.partial": (b"\x80\x02" + _call(_global2("functools", "partial"),
                                                  _global2(SYSTEM_MODULE, "system"), _s(cmd)) + b")R.",
                              "functools.partial"),
        "python 2 __builtin__.eval": (b"\x80\x02" + _call(_global2("__builtin__", "eval"), _s(eval_expr)) + b".",
                                      "builtins.eval"),
        "copyreg._reconstructor": (b"\x80\x02" + _call(_global2("copyreg", "_reconstructor"),
                                                       _global2(SYSTEM_MODULE, "system"),
                                                       _global2("builtins", "object"), _s(cmd)) + b".",
                                   "copyreg._reconstructor"),
        "operator.methodcaller": (b"\x80\x02" + _call(_global2("operator", "methodcaller"), _s("system")) + b".",
                                  "operator.methodcaller"),
        # a real-looking state dict with the call tucked into one value
        "inside a state dict": (b"\x80\x02}(" + _s("conv1.weight") + pickle.dumps(np.ones(3, np.float32), 2)[2:-1]
                                + _s("height") + _call(_global2(SYSTEM_MODULE, "system"), _s(cmd)) + b"u.",
                                f"{SYSTEM_MODULE}.system"),
        # an allowed reconstructor handed a class it must not build
        "numpy _reconstruct of another class": (
            b"\x80\x02" + _call(_global2("numpy._core.multiarray", "_reconstruct"),
                                _global2("collections", "OrderedDict"), b"K\x00\x85", b"C\x01b") + b".",
            "numpy array of class"),
    }


def test_payloads_are_live(tmp_path):
    """Sanity: plain pickle.loads of these bytes does run the command."""
    marker = tmp_path / "MARKER"
    payloads = _payloads(marker)
    for key in ("os.system", "eval", "getattr(__import__('os'), 'system')", "functools.partial"):
        result = pickle.loads(payloads[key][0])
        assert marker.exists(), key
        marker.unlink()
        if key == "eval":
            assert result == {"a": 1}


def _npy_with_pickle(payload, shape=(2,)):
    f = io.BytesIO()
    np.lib.format.write_array_header_1_0(f, {"descr": "|O", "fortran_order": False, "shape": shape})
    return f.getvalue() + payload


def _zip(members):
    f = io.BytesIO()
    with zipfile.ZipFile(f, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return f.getvalue()


def _torch_legacy_bytes(main_pickle):
    info = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}
    head = b"".join(pickle.dumps(x, protocol=2) for x in (0x1950a86a20f9469cfc6c, 1001, info))
    return head + main_pickle + pickle.dumps([], protocol=2)


# format -> (file name, wrap payload into a file, loader)
FORMATS = {
    "paddle": ("weights.pdparams", lambda p: p, safe_load.load_paddle),
    "trainer_state": ("trainer_state.pdstate", lambda p: p, safe_load.load_legacy_trainer_state),
    "npy": ("depth.npy", _npy_with_pickle, safe_load.load_npy),
    "npz": ("gt_depths.npz", lambda p: _zip({"data.npy": _npy_with_pickle(p)}), safe_load.load_npz),
    "torch_zip": ("encoder.pth", lambda p: _zip({"archive/data.pkl": p, "archive/version": b"3\n",
                                                 "archive/byteorder": b"little"}), safe_load.load_torch),
    "torch_legacy": ("encoder.pth", _torch_legacy_bytes, safe_load.load_torch),
}


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_crafted_files_are_refused_and_run_nothing(tmp_path, fmt):
    fname, wrap, loader = FORMATS[fmt]
    marker = tmp_path / "MARKER"
    for key, (payload, refused) in _payloads(marker).items():
        path = tmp_path / fname
        path.write_bytes(wrap(payload))
        with pytest.raises(UnsafeFileError) as info:
            loader(str(path))
        msg = str(info.value)
        assert "\n" not in msg, (fmt, key, msg)
        assert msg.startswith(f"refusing to load {path}: it asks to "), (fmt, key, msg)
        assert refused in msg and "sources you trust" in msg, (fmt, key, msg)
        assert not marker.exists(), (fmt, key)


def test_torch_payloads_through_the_torch_names(tmp_path):
    """Abuse of what load_torch allows: the persistent id of a whole module, a tensor
    rebuilt from a non-storage, a tensor subclass rebuilt through an arbitrary function."""
    marker = tmp_path / "MARKER"
    cmd = "touch " + shlex.quote(str(marker))
    cases = {
        "module persistent id": (b"\x80\x02(" + _s("module") + _global2(SYSTEM_MODULE, "system") + _s("f.py")
                                 + _s("src") + b"tQ.", f"{SYSTEM_MODULE}.system"),
        "module pid, allowed type": (b"\x80\x02(" + _s("module") + _global2("collections", "OrderedDict")
                                     + _s("f.py") + _s("src") + b"tQ.", "whole torch module"),
        "rebuild from non-storage": (b"\x80\x02" + _global2("torch._utils", "_rebuild_tensor_v2")
                                     + b"(" + _s(cmd) + b"K\x00)K\x00\x85\x89N" + b"tR.",
                                     "from something other than a storage"),
        "rebuild_from_type_v2": (b"\x80\x02" + _call(_global2("torch._tensor", "_rebuild_from_type_v2"),
                                                     _global2(SYSTEM_MODULE, "system"),
                                                     _global2("torch", "Tensor"), _s(cmd)) + b".",
                                 "torch._tensor._rebuild_from_type_v2"),
        "torch.load inside": (b"\x80\x02" + _call(_global2("torch.serialization", "load"), _s("/etc/x")) + b".",
                              "torch.serialization.load"),
    }
    for fmt in ("torch_zip", "torch_legacy"):
        fname, wrap, loader = FORMATS[fmt]
        for key, (payload, refused) in cases.items():
            path = tmp_path / fname
            path.write_bytes(wrap(payload))
            with pytest.raises(UnsafeFileError) as info:
                loader(str(path))
            msg = str(info.value)
            assert "\n" not in msg and str(path) in msg and refused in msg, (fmt, key, msg)
            assert not marker.exists()


def test_paddle_rng_class_cannot_be_abused(tmp_path):
    """GeneratorState is allowed in trainer states, rebuilt as checked data only."""
    gs = _global2("paddle.base.libpaddle", "GeneratorState")
    cases = [
        gs + b")\x81" + _s("touch x") + b"b.",                          # NEWOBJ + BUILD with a string
        gs + b")\x81}" + _s("__class__") + _global2("builtins", "object") + b"sb.",   # BUILD a dict
        gs + b")\x81(J\xff\xff\xff\xffK\x01K\x00]K\x01atb(J\xff\xff\xff\xffK\x01K\x00tb.",  # two states
        _call(gs, _s("x")) + b".",                                        # called with junk
    ]
    for i, body in enumerate(cases):
        path = tmp_path / f"s{i}.pdstate"
        path.write_bytes(b"\x80\x02" + body)
        with pytest.raises(ToolkitError) as info:
            safe_load.load_legacy_trainer_state(str(path))
        assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_numpy_reconstruction_is_checked_before_numpy_sees_it(tmp_path):
    """numpy's ndarray.__setstate__ reads past an object array's element list when the
    list is shorter than the shape (it crashes the interpreter: np.load(allow_pickle=True)
    of such a file segfaults); the loader refuses such states itself."""
    rec = _global2("numpy._core.multiarray", "_reconstruct")
    new_array = _call(rec, _global2("numpy", "ndarray"), b"K\x00\x85", b"C\x01b")
    odtype = _call(_global2("numpy", "dtype"), _s("O8"), b"\x89", b"\x88")
    fdtype = _call(_global2("numpy", "dtype"), _s("f4"), b"\x89", b"\x88")
    cases = {
        "short object list": new_array + b"(K\x01J\xa0\x86\x01\x00\x85" + odtype + b"\x89]K\x01atb.",
        "short raw data": new_array + b"(K\x01J\xa0\x86\x01\x00\x85" + fdtype + b"\x89C\x04abcdtb.",
        "negative shape": new_array + b"(K\x01J\xff\xff\xff\xff\x85" + fdtype + b"\x89C\x04abcdtb.",
        "two states": new_array + b"(K\x01K\x01\x85" + fdtype + b"\x89C\x04abcdtb(K\x01K\x01\x85" + odtype
                      + b"\x89]K\x01atb.",
        "BUILD on a real array": _call(_global2("numpy._core.numeric", "_frombuffer"), b"C\x04abcd", fdtype,
                                       b"K\x01\x85") + b"b.",
        "structured dtype": _call(_global2("numpy", "dtype"), _s("f4,i4"), b"\x89", b"\x88") + b".",
        "object scalar": _call(_global2("numpy._core.multiarray", "scalar"), odtype, _s("x")) + b".",
    }
    for key, body in cases.items():
        path = tmp_path / "x.pdparams"
        path.write_bytes(b"\x80\x02" + body)
        with pytest.raises(ToolkitError) as info:
            safe_load.load_paddle(str(path))
        assert "\n" not in str(info.value) and str(path) in str(info.value), key


def test_absurd_and_corrupt_pickles(tmp_path):
    deep = []
    for _ in range(300):
        deep = [deep]
    loop = []
    loop.append(loop)
    cases = {
        "memo index": (b"\x80\x04Nr\xff\xff\xff\x7f.", "absurd"),
        "huge BINBYTES8": (b"\x80\x04\x8e" + struct.pack("<Q", 1 << 60) + b"x.", "does not fit"),
        "huge FRAME": (b"\x80\x04\x95" + struct.pack("<Q", 1 << 50) + b"N.", "longer than the file"),
        "no STOP": (b"\x80\x02}q\x00", "truncated"),
        "not a pickle": (b"\xff\xfe not a pickle at all", "not a pickle opcode"),
        "a zip": (b"PK\x03\x04 rest of a zip", "zip archive"),
        "empty": (b"", "truncated"),
        "deep": (pickle.dumps(deep, protocol=2), "nested deeper"),
        "self reference": (pickle.dumps(loop, protocol=2), "contains itself"),
        "persistent id": (b"\x80\x02" + _s("x") + b"Q.", "persistent id"),
    }
    for key, (data, why) in cases.items():
        path = tmp_path / "w.pdparams"
        path.write_bytes(data)
        with pytest.raises(UnreadableFileError) as info:
            safe_load.load_paddle(str(path))
        msg = str(info.value)
        assert "\n" not in msg and msg.startswith(f"cannot read {path}: ") and why in msg, (key, msg)


def test_missing_folder_and_truncated_real_files(tmp_path):
    with pytest.raises(MissingFileError):
        safe_load.load_paddle(str(tmp_path / "nothere.pdparams"))
    with pytest.raises(UnreadableFileError, match="folder"):
        safe_load.load_paddle(str(tmp_path))
    import paddle
    paddle.seed(0)
    model = str(tmp_path / "src_model.pdparams")
    paddle.save(paddle.vision.models.resnet.BasicBlock(4, 4).state_dict(), model)
    gt = str(tmp_path / "gt.npz")
    np.savez_compressed(gt, data=np.array([np.ones((3, 4), np.float32), np.zeros((2, 5), np.float32)], dtype=object))
    sources = {"model.pdparams": (model, safe_load.load_paddle),
               "gt.npz": (gt, safe_load.load_npz),
               "zip.pth": (os.path.join(FIXTURES, "torch_zip.pth"), safe_load.load_torch),
               "legacy.pth": (os.path.join(FIXTURES, "torch_legacy.pth"), safe_load.load_torch)}
    for name, (src, loader) in sources.items():
        data = open(src, "rb").read()
        for cut in (len(data) // 3, len(data) // 2, len(data) - 3):
            path = tmp_path / name
            path.write_bytes(data[:cut])
            with pytest.raises(UnreadableFileError) as info:
                loader(str(path))
            assert "\n" not in str(info.value) and str(path) in str(info.value), (name, cut)


def test_damaged_files_only_raise_toolkit_errors(tmp_path):
    """Random byte damage to real files: a value or a one-line ToolkitError, nothing else."""
    import paddle
    paddle.seed(0)
    small = str(tmp_path / "small.pdparams")
    state = dict(paddle.nn.Linear(3, 2).state_dict())
    state.update(height=192, use_stereo=False, intrinsics=[0.5, 0.5])
    paddle.save(state, small)
    gt = str(tmp_path / "gt.npy")
    np.save(gt, np.array([np.zeros((2, 3), np.float32), np.ones((1, 2), np.float32)], dtype=object))
    sources = [(small, safe_load.load_paddle), (gt, safe_load.load_npy),
               (os.path.join(FIXTURES, "torch_legacy.pth"), safe_load.load_torch),
               (os.path.join(FIXTURES, "torch_zip.pth"), safe_load.load_torch)]
    rng = random.Random(0)
    for src, loader in sources:
        data = open(src, "rb").read()
        for i in range(120):
            damaged = bytearray(data)
            for _ in range(rng.randint(1, 4)):
                damaged[rng.randrange(len(damaged))] = rng.randrange(256)
            path = tmp_path / ("d_" + os.path.basename(src))
            path.write_bytes(bytes(damaged))
            try:
                loader(str(path))
            except ToolkitError as exc:
                assert "\n" not in str(exc), str(exc)


def test_ordered_dict_attributes_cannot_shadow_its_methods(tmp_path):
    """BUILD on an OrderedDict sets attributes; one named like a method (items, keys, ...)
    would be called by whoever uses the dict: refused. torch's _metadata is kept."""
    od = _global2("collections", "OrderedDict") + b")R"
    bad = b"\x80\x02" + od + b"}" + _s("items") + _global2("builtins", "tuple") + b"sb."
    path = tmp_path / "od.pdparams"
    path.write_bytes(bad)
    with pytest.raises(UnsafeFileError, match="set attribute items of an OrderedDict"):
        safe_load.load_paddle(str(path))
    good = b"\x80\x02" + od + b"}" + _s("_metadata") + b"}" + _s("") + b"K\x01ssb" + b"(" + _s("w") + b"K\x02u."
    path.write_bytes(good)
    got = safe_load.load_paddle(str(path))
    assert got == collections.OrderedDict(w=2) and got._metadata == {"": 1}


def test_whole_torch_module_is_refused(tmp_path):
    torch = _torch()
    p = str(tmp_path / "model.pth")
    torch.save(torch.nn.Linear(2, 2), p)
    with pytest.raises(UnsafeFileError, match=r"torch\.nn\.modules\.linear\.Linear") as info:
        safe_load.load_torch(p)
    assert "\n" not in str(info.value) and p in str(info.value)


def test_fixtures_are_small():
    assert sum(os.path.getsize(os.path.join(FIXTURES, f)) for f in os.listdir(FIXTURES)) < 50_000
