#!/usr/bin/env python
"""Write the PyTorch fixture files of tests/test_safe_load.py (needs torch).

    python tools/make_torch_fixtures.py [OUT_DIR]      # default: tests/fixtures

Writes, from one small state dict shaped like Monodepth2's ``encoder.pth`` (tensors plus
``height``/``width``/``use_stereo``), built from ``torch.manual_seed(0)``:

- ``torch_zip.pth``: ``torch.save(state, path)`` (the zip format of torch >= 1.6);
- ``torch_legacy.pth``: ``torch.save(state, path, _use_new_zipfile_serialization=False)``
  (the stream format of torch < 1.6, the one of the 2019-2020 Monodepth2 releases);
- ``torch_expected.npz``: ``tensor.numpy()`` of every tensor (bfloat16 as float32),
  keyed by the state dict path with '/' between levels, so the tests check
  ``safe_load.load_torch`` without torch.

The committed fixtures were written with torch 2.13.0+cpu; the tests also re-run this
with whatever torch is installed and compare ``load_torch`` against ``torch.load``.
"""
import collections
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
META = {"height": 192, "width": 640, "use_stereo": False}


def make_state():
    """The fixture state dict (torch objects)."""
    import torch
    torch.manual_seed(0)
    base = torch.randn(4, 6)
    state = collections.OrderedDict()
    state["encoder.conv1.weight"] = torch.randn(4, 3, 3, 3)                     # float32
    state["encoder.bn1.num_batches_tracked"] = torch.tensor(7)                 # 0-d int64
    state["encoder.bn1.running_mean"] = torch.nn.Parameter(torch.randn(4))    # a Parameter
    state["base"] = base
    state["view"] = base[:, 1:5:2]                                             # non-contiguous, offset 1
    state["transposed"] = base.t()                                             # shares base's storage
    state["index"] = torch.arange(6, dtype=torch.int64).reshape(2, 3)
    state["scalar"] = torch.tensor(3.25)
    state["half"] = torch.randn(3).half()
    state["bfloat16"] = torch.randn(3).bfloat16()
    state["mask"] = torch.tensor([True, False, True])
    state["int8"] = torch.tensor([-3, 0, 5], dtype=torch.int8)
    state["empty"] = torch.zeros(0, 3)
    nested = collections.OrderedDict()
    nested["weight"] = torch.randn(2, 2)
    nested["steps"] = [1, 2, 3]
    nested["flag"] = True
    state["nested"] = nested
    state["bn"] = torch.nn.BatchNorm2d(2).state_dict()                      # a module's, with _metadata
    state.update(META)
    return state


def expected_arrays(state, prefix=""):
    """{'a/b': numpy array} of every tensor in ``state``."""
    import torch
    out = {}
    for key, value in state.items():
        name = prefix + key
        if isinstance(value, torch.Tensor):
            value = value.detach()
            out[name] = (value.float() if value.dtype == torch.bfloat16 else value).numpy().copy()
        elif isinstance(value, dict):
            out.update(expected_arrays(value, name + "/"))
    return out


def make_fixtures(out_dir):
    """Write the three fixture files to ``out_dir``; returns their paths (zip, legacy, expected)."""
    import torch
    os.makedirs(out_dir, exist_ok=True)
    state = make_state()
    zip_path = os.path.join(out_dir, "torch_zip.pth")
    legacy_path = os.path.join(out_dir, "torch_legacy.pth")
    expected_path = os.path.join(out_dir, "torch_expected.npz")
    torch.save(state, zip_path)
    torch.save(state, legacy_path, _use_new_zipfile_serialization=False)
    np.savez(expected_path, **expected_arrays(state))
    return zip_path, legacy_path, expected_path


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    out_dir = argv[0] if argv else os.path.join(ROOT, "tests", "fixtures")
    for path in make_fixtures(out_dir):
        print("wrote {} ({} bytes)".format(path, os.path.getsize(path)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
