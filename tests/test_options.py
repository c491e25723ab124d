"""options.py: Monodepth2/Depth-Hints names and defaults, and train.py's one-line errors."""
import os
import subprocess
import sys

import pytest

from options import MonodepthOptions

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_defaults_match_monodepth2():
    o = MonodepthOptions().parse([])
    expected = dict(height=192, width=640, disparity_smoothness=1e-3, scales=[0, 1, 2, 3], min_depth=0.1,
                    max_depth=100.0, frame_ids=[0, -1, 1], batch_size=12, learning_rate=1e-4, num_epochs=20,
                    scheduler_step_size=15, weights_init="pretrained", pose_model_input="pairs",
                    pose_model_type="separate_resnet", num_workers=12, log_frequency=250, save_frequency=1,
                    split="eigen_zhou", dataset="kitti", num_layers=18, model_name="mdp",
                    use_stereo=False, use_depth_hints=False, depth_hint_path=None, v1_multiscale=False,
                    avg_reprojection=False, disable_automasking=False, predictive_mask=False, no_ssim=False,
                    png=False, no_cuda=False, load_weights_folder=None,
                    models_to_load=["encoder", "depth", "pose_encoder", "pose"],
                    device="auto", seed=0, resume=False, max_steps=None, splits_dir=None,
                    eval_stereo=False, eval_mono=False, disable_median_scaling=False, pred_depth_scale_factor=1,
                    ext_disp_to_eval=None, eval_split="eigen", save_pred_disps=False, no_eval=False,
                    eval_out_dir=None, post_process=False, metrics_out=None)
    for k, v in expected.items():
        assert getattr(o, k) == v, k
    assert not hasattr(o, "eval_eigen_to_benchmark")  # Monodepth2's only option not offered
    with pytest.raises(SystemExit):
        MonodepthOptions().parse(["--eval_eigen_to_benchmark"])
    assert o.log_dir == os.path.join(os.path.expanduser("~"), "tmp")


def test_parse_lists_and_paths():
    o = MonodepthOptions().parse(["--frame_ids", "0", "--use_stereo", "--use_depth_hints", "--scales", "0",
                                  "--weights_init", "scratch", "--eval_split", "eigen_benchmark"])
    assert o.frame_ids == [0] and o.scales == [0] and o.use_depth_hints and o.weights_init == "scratch"
    with pytest.raises(SystemExit):
        MonodepthOptions().parse(["--eval_split", "nope"])


def run_train(args, timeout=240):
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    args = ["--weights_init", "scratch"] + list(args)
    return subprocess.run([sys.executable, os.path.join(ROOT, "train.py")] + args, capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT, env=env)


def assert_one_line_error(r, *words):
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    lines = [l for l in r.stderr.splitlines() if l.startswith("error:")]
    assert len(lines) == 1, r.stderr[-2000:]
    assert "Traceback" not in r.stderr, r.stderr[-2000:]
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


BAD_COMBOS = [
    (["--use_depth_hints", "--frame_ids", "0", "-1", "1"], ["--use_depth_hints", "--use_stereo"]),
    (["--use_stereo", "--use_depth_hints", "--v1_multiscale"], ["--v1_multiscale"]),
    (["--predictive_mask"], ["--predictive_mask", "--disable_automasking"]),
    (["--height", "100"], ["--height", "32"]),
    (["--width", "650"], ["--width", "32"]),
    (["--frame_ids", "0"], ["--frame_ids"]),
]


@pytest.mark.parametrize("args,words", BAD_COMBOS)
def test_invalid_combination_one_line(tmp_path, args, words):
    r = run_train(["--data_path", str(tmp_path), "--log_dir", str(tmp_path / "log")] + args)
    assert_one_line_error(r, *words)
    assert not (tmp_path / "log").exists()


@pytest.mark.slow
def test_missing_data_path_one_line(tmp_path):
    r = run_train(["--data_path", str(tmp_path / "nope"), "--log_dir", str(tmp_path / "log")])
    assert_one_line_error(r, "--data_path", "nope")


@pytest.mark.slow
def test_missing_split_one_line(tmp_path):
    r = run_train(["--data_path", str(tmp_path), "--split", "no_such_split", "--log_dir", str(tmp_path / "log")])
    assert_one_line_error(r, "no_such_split")


@pytest.mark.slow
def test_missing_explicit_hint_path_one_line(synthetic_kitti, tmp_path):
    r = run_train(["--data_path", synthetic_kitti, "--split", os.path.join(synthetic_kitti, "splits", "synthetic"),
                   "--use_stereo", "--frame_ids", "0", "--use_depth_hints", "--depth_hint_path",
                   str(tmp_path / "hints_nowhere"), "--log_dir", str(tmp_path / "log")])
    assert_one_line_error(r, "--depth_hint_path", "hints_nowhere")


@pytest.mark.slow
def test_missing_hint_files_one_line(synthetic_kitti, tmp_path):
    """Default hint folder <data_path>/depth_hints does not exist: check_split names a missing file."""
    r = run_train(["--data_path", synthetic_kitti, "--split", os.path.join(synthetic_kitti, "splits", "synthetic"),
                   "--use_stereo", "--frame_ids", "0", "--use_depth_hints", "--weights_init", "scratch",
                   "--log_dir", str(tmp_path / "log")])
    line = assert_one_line_error(r)
    assert "depth_hints" in line, line


def test_missing_imagenet_weights_one_line(synthetic_kitti, tmp_path):
    r = run_train(["--data_path", synthetic_kitti, "--split", os.path.join(synthetic_kitti, "splits", "synthetic"),
                   "--use_stereo", "--frame_ids", "0", "--weights_init", str(tmp_path / "no_weights.pdparams"),
                   "--log_dir", str(tmp_path / "log")])
    assert_one_line_error(r, "--weights_init", "no_weights.pdparams")


GROUPS = ["data:", "model:", "training:", "depth hints:", "logging and checkpoints:", "evaluation:", "system:"]


def test_help_groups_and_defaults():
    """`train.py --help`: the options in titled groups, in order, each default shown once."""
    r = subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), "--help"], capture_output=True,
                       text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.splitlines()
    starts = [lines.index(title) for title in GROUPS]  # a title line of its own
    assert starts == sorted(starts)
    text = " ".join(r.stdout.split())  # the help text without its line wrapping
    for shown in ["learning rate (default: 0.0001)", "(default: 12)", "(default: 0 -1 1)", "(default: 0 1 2 3)",
                  "(default: separate_resnet)", "(default: encoder depth pose_encoder pose)", "(default: 250)",
                  "(default: eigen_zhou)", "(default: auto)", "(default: <data_path>/depth_hints)"]:
        assert shown in text, shown
    assert "(default: None)" not in text and "(default: False)" not in text
    assert text.count("(default: ") == text.count("default: ")  # no option says its default twice
    # the stale Monodepth2 strings are gone
    for stale in ["name of model to load", "normal or shared", "number of batches between each VisualDL log"]:
        assert stale not in text, stale
    section = r.stdout[r.stdout.index("logging and checkpoints:"):r.stdout.index("evaluation:")]
    assert "--log_frequency" in section and "train.log" in " ".join(section.split())
    # each group holds its options (a few checked)
    for title, opts in (("training:", ["--batch_size", "--learning_rate"]), ("depth hints:", ["--use_depth_hints"]),
                        ("system:", ["--device", "--num_workers"]), ("evaluation:", ["--eval_split"])):
        i = GROUPS.index(title)
        end = r.stdout.index(GROUPS[i + 1]) if i + 1 < len(GROUPS) else len(r.stdout)
        for o in opts:
            assert o in r.stdout[r.stdout.index(title):end], (title, o)


def test_groups_keep_every_option():
    """The groups only order the help: every option is still one of parser._actions (config_values)."""
    p = MonodepthOptions().parser
    dests = {a.dest for a in p._actions if a.option_strings}
    assert {"batch_size", "use_depth_hints", "log_frequency", "eval_split", "device", "config"} <= dests
    parsed = {k for k in vars(MonodepthOptions().parse([])) if not k.startswith("_")}
    assert dests - {"help"} == parsed
    assert sum(len(g._group_actions) for g in p._action_groups) == len(p._actions)
