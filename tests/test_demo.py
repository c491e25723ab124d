"""The README's first command, end to end, at a tiny size: tools/demo.sh must run every stage
(synthetic data -> hints -> train -> gt export -> evaluation -> predictions) and print the
comparison table. The full-size demo is timed by hand (BENCHMARKS.md)."""
import json
import os
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_demo_runs_every_stage(tmp_path):
    out = tmp_path / "demo"
    env = dict(os.environ, DEMO_STEPS="2", DEMO_FRAMES="6")
    r = subprocess.run(["bash", os.path.join(ROOT, "configs", "depth_hints", "depth_hints.sh"), "demo",
                        "--out", str(out), "--num_workers", "1"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])
    for stage in range(1, 8):
        assert "=== [demo" in r.stdout and "%d/7" % stage in r.stdout
    for name in ("untrained", "trained"):
        m = json.load(open(out / ("metrics_%s.json" % name)))
        assert m["mode"] == "stereo" and m["num_images"] == 6
    assert "trained beats untrained on" in r.stdout
    preds = sorted(os.listdir(out / "predictions"))
    assert len([p for p in preds if p.endswith("_disp.png")]) == 4
    assert len([p for p in preds if p.endswith("_depth.npy")]) == 4
    assert (out / "synthetic_kitti" / "splits" / "eigen" / "gt_depths.npz").is_file()
