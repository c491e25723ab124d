"""Evaluate the pose network on KITTI odometry sequence 09 or 10 (docs/METHOD.md, section 6, Monodepth2).

    python evaluate_pose.py --eval_split odom_9 --load_weights_folder W --data_path <kitti_odom>

The separate-ResNet pose network (``pose_encoder.pdparams`` + ``pose.pdparams``) predicts the
transform between frames t and t+1 for every line of ``<splits_dir>/odom/test_files_09.txt``
(resp. ``_10``). Ground truth is ``<data_path>/poses/09.txt`` (KITTI odometry: one 3x4
camera-to-world matrix a line). For every 5-frame snippet the predicted and true local
motions are chained into trajectories starting at the origin, the prediction is aligned on
the first frame and scaled by the least-squares factor, and the absolute trajectory error
(Monodepth2/SfMLearner: sqrt(sum of squared position errors) / snippet length) is averaged.
Prints ``Trajectory error: mean, std: std`` and saves the predicted poses as ``poses.npy``.
"""
import json
import os
import sys
import warnings

warnings.filterwarnings("ignore", message="No ccache found")  # noise from importing paddle

from runtime import cpu_env_defaults  # noqa: E402

cpu_env_defaults()  # MKL/OpenMP settings, before paddle is imported

import numpy as np  # noqa: E402

from utils import ToolkitError, run_cli  # noqa: E402

TRACK_LENGTH = 5
ODOM_SEQUENCES = {"odom_9": 9, "odom_10": 10}


# ----------------------------------------------------------------------------- pure parts


def dump_xyz(source_to_target_transformations):
    """Chain 4x4 local motions from the origin; returns the positions (len + 1, 3)."""
    xyzs = []
    cam_to_world = np.eye(4)
    xyzs.append(cam_to_world[:3, 3])
    for transform in source_to_target_transformations:
        cam_to_world = np.dot(cam_to_world, transform)
        xyzs.append(cam_to_world[:3, 3])
    return np.array(xyzs)


def compute_ate(gtruth_xyz, pred_xyz_o):
    """ATE of one snippet: align the first positions, scale by the least-squares factor
    sum(gt . pred) / sum(pred . pred), return sqrt(sum |scale * pred - gt|^2) / N."""
    gtruth_xyz = np.asarray(gtruth_xyz, dtype=np.float64)
    pred_xyz_o = np.asarray(pred_xyz_o, dtype=np.float64)
    offset = gtruth_xyz[0] - pred_xyz_o[0]
    pred_xyz = pred_xyz_o + offset[None, :]
    denom = np.sum(pred_xyz ** 2)
    scale = np.sum(gtruth_xyz * pred_xyz) / denom if denom > 0 else 0.0
    alignment_error = pred_xyz * scale - gtruth_xyz
    return float(np.sqrt(np.sum(alignment_error ** 2)) / gtruth_xyz.shape[0])


def load_gt_poses(path):
    """KITTI odometry poses file -> (N, 4, 4) camera-to-world matrices."""
    if not os.path.isfile(path):
        raise ToolkitError(f"ground-truth poses not found ({path}): download KITTI odometry "
                           "'data_odometry_poses' and unpack it so <data_path>/poses/NN.txt exists")
    try:
        raw = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except ValueError as exc:
        raise ToolkitError(f"unreadable poses file ({path}): {exc}") from exc
    if raw.shape[1] != 12:
        raise ToolkitError(f"poses file must hold 12 numbers a line, got {raw.shape[1]} ({path}): "
                           "use KITTI odometry's poses/NN.txt")
    poses = np.zeros((raw.shape[0], 4, 4))
    poses[:, :3, :] = raw.reshape(-1, 3, 4)
    poses[:, 3, 3] = 1.0
    return poses


def global_to_local(gt_global_poses):
    """Monodepth2's ground-truth local motions: inv(inv(P[i-1]) @ P[i]) for i >= 1."""
    return [np.linalg.inv(np.dot(np.linalg.inv(gt_global_poses[i - 1]), gt_global_poses[i]))
            for i in range(1, len(gt_global_poses))]


def compute_snippet_ates(pred_poses, gt_local_poses, track_length=TRACK_LENGTH):
    """ATE for the snippet starting at every frame (Monodepth2: snippets near the end are
    shorter). ``pred_poses`` and ``gt_local_poses`` are sequences of N 4x4 local motions."""
    if len(pred_poses) != len(gt_local_poses):
        raise ToolkitError(
            f"{len(pred_poses)} predicted motions but {len(gt_local_poses)} ground-truth motions "
            "(test_files / poses file): the split must list every frame of the sequence but the "
            "last (poses file lines - 1)")
    ates = []
    for i in range(len(gt_local_poses)):
        local_xyzs = dump_xyz(pred_poses[i:i + track_length - 1])
        gt_local_xyzs = dump_xyz(gt_local_poses[i:i + track_length - 1])
        ates.append(compute_ate(gt_local_xyzs, local_xyzs))
    return np.array(ates)


# ----------------------------------------------------------------------------- model parts


def recorded_size(weights_folder, height, width):
    """The training (height, width) recorded in encoder.pdparams when present, else the flags.
    Read without running code (``safe_load.load_paddle``: a file with a pickle payload is
    refused in one line)."""
    path = os.path.join(weights_folder, "encoder.pdparams")
    if os.path.isfile(path):
        import safe_load
        state = safe_load.load_paddle(path)
        if not isinstance(state, dict):
            raise ToolkitError(f"encoder.pdparams does not hold a state dict ({path}): expected a .pdparams "
                               "file of parameters")
        if "height" in state and "width" in state:
            from model_loader import read_meta
            meta = read_meta(state, path)
            return meta["height"], meta["width"]
    return int(height), int(width)


def predict_poses(encoder, decoder, dataloader, progress=True):
    """(N, 4, 4) transforms from frame 0 to frame 1 of every item (``color_aug`` at scale 0)."""
    import paddle
    from datasets import checked_batches
    from layers import transformation_from_parameters
    from progress import ProgressLog
    out = []
    # a bar on a terminal, else a plain status line (rate, ETA) every 30 s and at the end
    log = ProgressLog(len(dataloader), "batch", stream=sys.stderr, desc="poses") if progress else None
    try:
        with paddle.no_grad():
            for inputs in checked_batches(dataloader):
                pair = paddle.concat([paddle.to_tensor(inputs[("color_aug", i, 0)]).astype("float32")
                                      for i in (0, 1)], axis=1)
                axisangle, translation = decoder([encoder(pair)])
                out.append(transformation_from_parameters(axisangle[:, 0], translation[:, 0]).numpy())
                if log is not None:
                    log.update()
    finally:
        if log is not None:
            log.close()
    if not out:
        raise ToolkitError("the split lists no frame pair (test_files): check the split file")
    return np.concatenate(out, 0).astype(np.float64)


def evaluate(opt):
    """Run the odometry evaluation for ``opt``; returns {"ate_mean", "ate_std", ...}."""
    import paddle
    import datasets
    from runtime import pick_device
    from fileio import atomic_save_npy, check_output_dir, check_output_file, clean_stale_temp_files, readlines
    from kitti_utils import resolve_split_dir

    if opt.eval_split not in ODOM_SEQUENCES:
        raise ToolkitError(f"pose evaluation needs an odometry split, got {opt.eval_split} "
                           "(--eval_split): use odom_9 or odom_10")
    seq = ODOM_SEQUENCES[opt.eval_split]
    import kitti_utils
    from model_loader import check_weights_folder, load_pose_model
    from options import explicit_num_layers
    folder = check_weights_folder(opt.load_weights_folder, ("pose_encoder.pdparams", "pose.pdparams"))
    out_dir = check_output_dir(opt.eval_out_dir or folder, "--eval_out_dir")  # outputs before any work
    clean_stale_temp_files(out_dir)  # left by a killed earlier run
    if opt.metrics_out:
        check_output_file(opt.metrics_out, "--metrics_out")
    if not os.path.isdir(opt.data_path):
        raise ToolkitError(f"data path not found (--data_path {opt.data_path}): point it at the "
                           "KITTI odometry folder holding sequences/ and poses/")
    gt_global = load_gt_poses(kitti_utils.odom_poses_path(opt.data_path, seq))
    split_file = os.path.join(resolve_split_dir("odom", opt.splits_dir),
                              "test_files_{:02d}.txt".format(seq))
    filenames = readlines(split_file)
    if len(filenames) != len(gt_global) - 1:
        raise ToolkitError(
            f"{split_file} lists {len(filenames)} frames but poses/{seq:02d}.txt has "
            f"{len(gt_global)} poses ({split_file}): the split must list every frame but the last")

    if opt.no_cuda:
        opt.device = "cpu"
    device = pick_device(opt.device)
    height, width = recorded_size(folder, opt.height, opt.width)
    encoder, decoder = load_pose_model(folder, explicit_num_layers(opt))
    img_ext = ".png" if opt.png else ".jpg"
    dataset = datasets.KITTIOdomDataset(opt.data_path, filenames, height, width, [0, 1], 1,
                                        is_train=False, img_ext=img_ext)
    datasets.check_eval_split(dataset)
    num_workers = max(0, min(int(opt.num_workers), os.cpu_count() or 1))
    loader = paddle.io.DataLoader(datasets.SafeDataset(dataset), batch_size=int(opt.batch_size), shuffle=False,
                                  num_workers=num_workers, drop_last=False, collate_fn=datasets.collate)
    print("-> Predicting poses for sequence {:02d} ({} pairs, {}x{}) on {}".format(
        seq, len(filenames), width, height, device))
    pred_poses = predict_poses(encoder, decoder, loader)
    bad = int(np.count_nonzero(~np.isfinite(pred_poses).all(axis=(1, 2))))
    if bad:
        raise ToolkitError(f"{bad} of {len(pred_poses)} predicted poses hold NaN or infinite values (model "
                           f"{folder}, --load_weights_folder): the weights are damaged or diverged in training; "
                           "evaluate another checkpoint")

    ates = compute_snippet_ates(pred_poses, global_to_local(gt_global))
    print("\n   Trajectory error: {:0.3f}, std: {:0.3f}\n".format(np.mean(ates), np.std(ates)))
    from evaluate_depth import write_metrics, write_output
    save_path = os.path.join(out_dir, "poses.npy")
    write_output(lambda p: atomic_save_npy(p, pred_poses), save_path, "--eval_out_dir")
    print("-> Predictions saved to", save_path)
    result = {"eval_split": opt.eval_split, "sequence": seq, "num_snippets": int(len(ates)),
              "ate_mean": float(np.mean(ates)), "ate_std": float(np.std(ates))}
    if opt.metrics_out:
        write_metrics(opt.metrics_out, result)
    return result


def main(argv=None):
    """CLI entry: parse MonodepthOptions (--eval_split odom_9|odom_10 required), evaluate;
    ToolkitError -> one line on stderr, exit 2."""
    from options import MonodepthOptions
    return run_cli(lambda: evaluate(MonodepthOptions().parse(argv)))


if __name__ == "__main__":
    sys.exit(main())
