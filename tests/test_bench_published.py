"""bench/published_precompute.py: the least change that runs the published precompute script
on today's CPU stack, each change applied exactly once, and a clear refusal otherwise.
A stand-in checkout holds just the lines the changes touch (the published code is not
part of this project)."""
import importlib.util
import os

import numpy as np
import pytest

from bench import published_precompute as PP

SCRIPT = """import torch
from torchvision import transforms
from PIL import Image
class D:
    def __init__(self):
        self.interp = Image.ANTIALIAS
        self.resizer = transforms.Resize((self.height, self.width), interpolation=self.interp)
def run(opt):
    cam_to_world = BackprojectDepth(12, opt.height, opt.width).cuda()
    world_to_cam = Project3D(12, opt.height, opt.width).cuda()
    for i, data in enumerate(dataloader):
        if torch.cuda.is_available():
            data[key] = data[key].cuda()
        sample = F.grid_sample(data['lookup_image'], cam_pix, padding_mode='border')
"""


@pytest.fixture
def checkout(tmp_path):
    d = tmp_path / "depth-hints"
    d.mkdir()
    (d / "precompute_depth_hints.py").write_text(SCRIPT)
    (d / "layers.py").write_text("# layers\n")
    (d / "utils.py").write_text("# utils\n")
    return d


def _stack(monkeypatch, torch=True, cuda=False, antialias=False, torchvision=False):
    # most specific first: the CUDA and torchvision probes also contain "import torch"
    answers = {"cuda": cuda, "torchvision": torchvision, "ANTIALIAS": antialias, "import torch": torch}

    def probe(python, code):
        return next(v for k, v in answers.items() if k in code)
    monkeypatch.setattr(PP, "_probe", probe)


def test_cpu_stack_gets_every_change_once(checkout, tmp_path, monkeypatch):
    _stack(monkeypatch)
    work = tmp_path / "work"
    work.mkdir()
    changes = PP.prepare(str(checkout), str(work))
    assert len(changes) == 4
    text = (work / "precompute_depth_hints.py").read_text()
    assert text.count(".cuda()") == 1  # only the guarded one in the loop stays
    assert "BackprojectDepth(12, opt.height, opt.width)\n" in text
    assert "Image.LANCZOS" in text and "ANTIALIAS" not in text
    assert "padding_mode='border', align_corners=True)" in text
    assert (checkout / "precompute_depth_hints.py").read_text() == SCRIPT  # the checkout is untouched
    # the torchvision stand-in resizes a PIL image as Resize((h, w)) does
    spec = importlib.util.spec_from_file_location("tv_transforms", work / "torchvision" / "transforms.py")
    tv = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tv)
    from PIL import Image
    img = Image.fromarray(np.zeros((30, 50, 3), np.uint8))
    assert tv.Resize((8, 16), Image.LANCZOS)(img).size == (16, 8)


def test_gpu_stack_keeps_the_script_as_published(checkout, tmp_path, monkeypatch):
    _stack(monkeypatch, cuda=True, antialias=True, torchvision=True)
    changes = PP.prepare(str(checkout), str(tmp_path))
    assert changes == ["padding_mode='border') -> padding_mode='border', align_corners=True)"]
    assert not (tmp_path / "torchvision").exists()


def test_refusals_name_what_is_wrong(checkout, tmp_path, monkeypatch):
    _stack(monkeypatch, torch=False)
    with pytest.raises(PP.PublishedError, match="needs PyTorch.*pip install torch"):
        PP.prepare(str(checkout), str(tmp_path))
    _stack(monkeypatch)
    (checkout / "precompute_depth_hints.py").write_text(SCRIPT.replace("padding_mode='border')", "x)"))
    (tmp_path / "w").mkdir()
    with pytest.raises(PP.PublishedError) as err:
        PP.prepare(str(checkout), str(tmp_path / "w"))
    assert "precompute_depth_hints.py: expected 1 x" in str(err.value) and "found 0" in str(err.value)
    os.remove(checkout / "utils.py")
    with pytest.raises(PP.PublishedError, match=r"utils.py not found.*nianticlabs/depth-hints"):
        PP.prepare(str(checkout), str(tmp_path))


def test_compare_hints(tmp_path):
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    for d in (ours, theirs):
        (d / "drive" / "image_02").mkdir(parents=True)
    a = np.array([[[1.0, 2.0, 0.0, 4.0]]], np.float32)
    b = np.array([[[1.0, 2.0, 3.0, 4.4]]], np.float32)
    np.save(ours / "drive" / "image_02" / "0000000000.npy", a)
    np.save(theirs / "drive" / "image_02" / "0000000000.npy", b)
    c = PP.compare_hints(str(ours), str(theirs))
    assert c["files"] == 1 and c["equal"] == 0.5 and c["one_sided"] == 0.25
    assert c["max_rel"] == pytest.approx(0.4 / 4.4, rel=1e-5)

