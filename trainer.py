"""Depth Hints / Monodepth2 trainer (SPEC sections 2 and 4) in PaddlePaddle.

`Trainer(opt).train()` builds the networks, Adam + StepLR, the data loaders and trains,
logging to tqdm and VisualDL, saving checkpoints under `<log_dir>/<model_name>/models/`.
Every loss/geometry formula comes from `layers.py`; this file only wires them together.

Checkpoints: `weights_<epoch>/` (per --save_frequency and at the end) and `weights_last/`
(written when training stops mid-epoch: Ctrl-C, SIGTERM, --max_steps). Each holds
`{encoder,depth,pose_encoder,pose}.pdparams`, `adam.pdopt` and `trainer_state.pdstate`
(epoch, batch in epoch, global step, scheduler and RNG states). `--resume` continues from
the checkpoint with the highest step.
"""
import json
import os
import pickle
import random
import re
import shutil
import signal
import time

import numpy as np
import paddle
import paddle.nn.functional as F

import layers
import runtime
import utils
from utils import ToolkitError

STATE_FILE = "trainer_state.pdstate"
# options that fix the shapes / models; resuming with others would not load
RESUME_MUST_MATCH = ("height", "width", "num_layers", "frame_ids", "use_stereo", "scales",
                     "pose_model_type", "pose_model_input", "predictive_mask")
ADAM_FILE = "adam.pdopt"
_ACC_RE = re.compile(r"^(.*)_(moment1|moment2|beta1_pow_acc|beta2_pow_acc|moment2_max)_(\d+)$")


# ----------------------------------------------------------------------------- data helpers


def build_dataset(opt, which, is_train):
    """Dataset for the `which` ('train' or 'val') list of `opt.split` (used by validate_options)."""
    import datasets
    from options import split_dir_of
    classes = {"kitti": "KITTIRAWDataset", "kitti_odom": "KITTIOdomDataset",
               "kitti_depth": "KITTIDepthDataset"}
    if opt.dataset not in classes or not hasattr(datasets, classes[opt.dataset]):
        raise ToolkitError("dataset '{}' cannot be trained on (--dataset): use kitti, kitti_odom "
                           "or kitti_depth".format(opt.dataset))
    cls = getattr(datasets, classes[opt.dataset])
    split_file = os.path.join(split_dir_of(opt), "{}_files.txt".format(which))
    filenames = datasets.read_split_file(split_file)
    if not filenames:
        raise ToolkitError("split list is empty ({}_files.txt of --split {}): add samples".format(which, opt.split))
    frame_ids = list(opt.frame_ids) + (["s"] if opt.use_stereo and "s" not in opt.frame_ids else [])
    return cls(opt.data_path, filenames, opt.height, opt.width, frame_ids, len(opt.scales),
               is_train=is_train, img_ext=".png" if opt.png else ".jpg",
               use_depth_hints=opt.use_depth_hints, depth_hint_path=opt.depth_hint_path,
               split_file=split_file)


class SeededDataset(paddle.io.Dataset):
    """Wraps a dataset so that sample `epoch * N + i` is item i drawn with RNGs seeded by
    (seed, epoch, i): augmentation is a pure function of the sample, whatever worker
    process loads it, so a resumed run sees exactly the same batches."""

    def __init__(self, dataset, seed):
        self.dataset = dataset
        self.seed = int(seed)

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, key):
        n = len(self.dataset)
        epoch, idx = divmod(int(key), n)
        s = (self.seed * 1000003 + epoch * 7919 + idx) % (2 ** 32)
        random.seed(s)
        np.random.seed(s)
        item = self.dataset[idx]
        return {k: (v.numpy() if hasattr(v, "numpy") else np.asarray(v)) for k, v in item.items()}


class ResumableBatchSampler(paddle.io.DistributedBatchSampler):
    """DistributedBatchSampler with a seeded per-epoch permutation and a start batch.

    Yields lists of keys `epoch * N + index` for :class:`SeededDataset`. Every rank takes
    its strided share of the (padded) permutation, as DistributedBatchSampler does.
    """

    def __init__(self, dataset, batch_size, seed, shuffle=True, drop_last=True):
        super().__init__(dataset, batch_size, shuffle=shuffle, drop_last=drop_last)
        self.seed = int(seed)
        self.start_batch = 0

    def set_epoch(self, epoch, start_batch=0):
        self.epoch = int(epoch)
        self.start_batch = int(start_batch)

    def _indices(self):
        n = len(self.dataset)
        idx = np.arange(n)
        if self.shuffle:
            np.random.RandomState((self.seed * 9973 + self.epoch) % (2 ** 32)).shuffle(idx)
        total = int(np.ceil(n / self.nranks)) * self.nranks
        idx = np.concatenate([idx, idx[:total - n]]) if total > n else idx
        return idx[self.local_rank:total:self.nranks]

    def __iter__(self):
        idx = self._indices()
        n = len(self.dataset)
        nb = len(idx) // self.batch_size if self.drop_last else int(np.ceil(len(idx) / self.batch_size))
        for b in range(self.start_batch, nb):
            yield [int(self.epoch * n + i) for i in idx[b * self.batch_size:(b + 1) * self.batch_size]]

    def __len__(self):
        per_rank = int(np.ceil(len(self.dataset) / self.nranks))
        if self.drop_last:
            return per_rank // self.batch_size
        return int(np.ceil(per_rank / self.batch_size))


def collate(samples):
    """Stack a list of sample dicts of numpy arrays into a dict of batched numpy arrays."""
    return {k: np.stack([s[k] for s in samples], 0) for k in samples[0]}


def load_trainer_state(path):
    """Read a `trainer_state.pdstate` file (a pickle of :meth:`Trainer.trainer_state`)."""
    with open(path, "rb") as f:
        return pickle.load(f)


# ----------------------------------------------------------------------------- optimizer names


def _struct_names(models):
    """{paddle unique parameter name: 'model.structured.name'} for all parameters."""
    out = {}
    for mname, m in models.items():
        for pname, p in m.named_parameters():
            out[p.name] = "{}.{}".format(mname, pname)
    return out


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
        if "::" in k:
            sname, acc = k.split("::", 1)
            if sname not in inv:
                continue
            k = "{}_{}".format(inv[sname], acc)
        out[k] = v
    return out


# ----------------------------------------------------------------------------- trainer


class Trainer:
    """Trains depth (and pose) networks with the Monodepth2 + Depth Hints loss."""

    def __init__(self, opt, build_data=True):
        """Build everything from `opt`; `build_data=False` skips the data sets (benchmarks)."""
        self.opt = opt
        self.log_path = os.path.join(os.path.expanduser(opt.log_dir), opt.model_name)
        self.models_dir = os.path.join(self.log_path, "models")

        device = "cpu" if opt.no_cuda else opt.device
        self.device = runtime.pick_device(device)
        import paddle.distributed as dist
        self.world_size = dist.get_world_size()
        if self.world_size > 1:
            dist.init_parallel_env()
        self.rank = dist.get_rank()
        self.is_main = self.rank == 0

        paddle.seed(opt.seed)  # same initial weights on every rank
        np.random.seed(opt.seed)
        random.seed(opt.seed)

        self.num_scales = len(opt.scales)
        self.num_input_frames = len(opt.frame_ids)
        self.num_pose_frames = 2 if opt.pose_model_input == "pairs" else self.num_input_frames
        self.frame_ids = list(opt.frame_ids) + (["s"] if opt.use_stereo else [])
        self.use_pose_net = not (opt.use_stereo and list(opt.frame_ids) == [0])

        self._build_models()
        if self.rank > 0:
            paddle.seed(opt.seed + 1000 * self.rank)  # independent tie-break noise per rank
        self.scheduler = paddle.optimizer.lr.StepDecay(opt.learning_rate, opt.scheduler_step_size, gamma=0.1)
        self.optimizer = paddle.optimizer.Adam(learning_rate=self.scheduler, parameters=self.parameters_to_train)

        self.val_sampler = None
        if build_data:
            self._build_data()
        self._build_geometry()

        self.epoch = 0
        self.step = 0
        self.batch_in_epoch = 0
        self._stop_signal = None
        self.writers = {}
        self.val_iter = None

        if opt.load_weights_folder is not None:
            self.load_model(opt.load_weights_folder, opt.models_to_load)
        if opt.resume:
            ckpt = self.find_resume_checkpoint()
            if ckpt is not None:
                self.resume_from(ckpt)
            elif self.is_main:
                print("No checkpoint to resume in {}: starting from scratch".format(self.models_dir))
        if self.is_main and build_data:
            self.save_opts()

    # ------------------------------------------------------------------ construction

    def _build_models(self):
        import networks
        opt = self.opt
        pretrained = {"pretrained": True, "scratch": False}.get(opt.weights_init, opt.weights_init)
        m = {}
        m["encoder"] = networks.ResnetEncoder(opt.num_layers, pretrained)
        m["depth"] = networks.DepthDecoder(m["encoder"].num_ch_enc, opt.scales)
        if self.use_pose_net:
            if opt.pose_model_type == "separate_resnet":
                m["pose_encoder"] = networks.ResnetEncoder(opt.num_layers, pretrained,
                                                           num_input_images=self.num_pose_frames)
                m["pose"] = networks.PoseDecoder(m["pose_encoder"].num_ch_enc, num_input_features=1,
                                                 num_frames_to_predict_for=2)
            elif opt.pose_model_type == "shared":
                m["pose"] = networks.PoseDecoder(m["encoder"].num_ch_enc, self.num_pose_frames)
            else:
                m["pose"] = networks.PoseCNN(self.num_input_frames if opt.pose_model_input == "all" else 2)
        if opt.predictive_mask:
            assert opt.disable_automasking, "predictive_mask needs disable_automasking"
            m["predictive_mask"] = networks.DepthDecoder(m["encoder"].num_ch_enc, opt.scales,
                                                         num_output_channels=len(self.frame_ids) - 1)
        self.models = m
        self.parameters_to_train = [p for model in m.values() for p in model.parameters()]
        self.ddp = {}
        if self.world_size > 1:
            for k, model in m.items():
                self.ddp[k] = paddle.DataParallel(model, find_unused_parameters=False)

    def _call(self, name, *args):
        """Call a model (through its DataParallel wrapper in multi-process runs)."""
        return self.ddp.get(name, self.models[name])(*args)

    def _build_data(self):
        opt = self.opt
        self.train_dataset = SeededDataset(build_dataset(opt, "train", is_train=True), opt.seed)
        self.val_dataset = SeededDataset(build_dataset(opt, "val", is_train=False), opt.seed + 1)
        if len(self.train_dataset) < opt.batch_size * self.world_size:
            raise ToolkitError("only {} training samples for batch size {} x {} processes (--batch_size): "
                               "lower it or use a bigger split".format(len(self.train_dataset), opt.batch_size,
                                                                      self.world_size))
        self.num_workers = max(0, min(opt.num_workers, os.cpu_count() or 1))
        self.train_sampler = ResumableBatchSampler(self.train_dataset, opt.batch_size, opt.seed)
        self.train_loader = paddle.io.DataLoader(self.train_dataset, batch_sampler=self.train_sampler,
                                                 num_workers=self.num_workers, collate_fn=collate,
                                                 use_shared_memory=self.num_workers > 0)
        self.steps_per_epoch = len(self.train_sampler)
        self.num_total_steps = self.steps_per_epoch * opt.num_epochs
        if opt.max_steps is not None:
            self.num_total_steps = min(self.num_total_steps, opt.max_steps)
        vbs = min(opt.batch_size, len(self.val_dataset))
        self.val_sampler = ResumableBatchSampler(self.val_dataset, vbs, opt.seed + 1)
        self.val_loader = paddle.io.DataLoader(self.val_dataset, batch_sampler=self.val_sampler,
                                               num_workers=0, collate_fn=collate)

    def _build_geometry(self):
        opt = self.opt
        self.backproject_depth = {}
        self.project_3d = {}
        for s in opt.scales:
            h, w = opt.height // (2 ** s), opt.width // (2 ** s)
            self.backproject_depth[s] = layers.BackprojectDepth(opt.batch_size, h, w)
            self.project_3d[s] = layers.Project3D(opt.batch_size, h, w)

    # ------------------------------------------------------------------ forward

    def set_train(self):
        for m in self.models.values():
            m.train()

    def set_eval(self):
        for m in self.models.values():
            m.eval()

    def to_tensors(self, batch):
        """Batched dict (numpy arrays or the DataLoader's CPU tensors) -> tensors on the device."""
        out = {}
        for k, v in batch.items():
            if isinstance(v, np.ndarray) and v.dtype.kind in "fiub":
                v = paddle.to_tensor(v)
            if not isinstance(v, paddle.Tensor):
                continue
            if self.device == "gpu" and not v.place.is_gpu_place():
                v = v.cuda()
            out[k] = v
        return out

    def process_batch(self, inputs):
        """Forward pass + losses. Returns (outputs, losses)."""
        opt = self.opt
        if opt.pose_model_type == "shared" and self.use_pose_net:
            # one encoder pass over all frames, split back per frame (Monodepth2 "shared")
            all_aug = paddle.concat([inputs[("color_aug", i, 0)] for i in self.frame_ids], 0)
            all_feats = [paddle.split(f, len(self.frame_ids), axis=0) for f in self._call("encoder", all_aug)]
            features = {k: [f[i] for f in all_feats] for i, k in enumerate(self.frame_ids)}
            outputs = self._call("depth", features[0])
        else:
            features = self._call("encoder", inputs[("color_aug", 0, 0)])
            outputs = self._call("depth", features)
        if opt.predictive_mask:
            feats0 = features[0] if isinstance(features, dict) else features
            outputs["predictive_mask"] = self._call("predictive_mask", feats0)
        if self.use_pose_net:
            outputs.update(self.predict_poses(inputs, features))
        self.generate_images_pred(inputs, outputs)
        losses = self.compute_losses(inputs, outputs)
        return outputs, losses

    def predict_poses(self, inputs, features):
        """Relative camera poses between the target and each temporal source frame."""
        opt = self.opt
        outputs = {}
        temporal = [f for f in self.frame_ids[1:] if f != "s"]
        if self.num_pose_frames == 2:
            if opt.pose_model_type == "shared":
                feats = {f: features[f] for f in self.frame_ids}
            else:
                feats = {f: inputs[("color_aug", f, 0)] for f in self.frame_ids}
            for f in temporal:
                pair = [feats[f], feats[0]] if f < 0 else [feats[0], feats[f]]
                if opt.pose_model_type == "separate_resnet":
                    pose_in = [self._call("pose_encoder", paddle.concat(pair, 1))]
                elif opt.pose_model_type == "posecnn":
                    pose_in = paddle.concat(pair, 1)
                else:
                    pose_in = pair
                axisangle, translation = self._call("pose", pose_in)
                outputs[("axisangle", 0, f)] = axisangle
                outputs[("translation", 0, f)] = translation
                outputs[("cam_T_cam", 0, f)] = layers.transformation_from_parameters(
                    axisangle[:, 0], translation[:, 0], invert=(f < 0))
        else:
            ids = [i for i in self.frame_ids if i != "s"]
            if opt.pose_model_type in ("separate_resnet", "posecnn"):
                pose_in = paddle.concat([inputs[("color_aug", i, 0)] for i in ids], 1)
                if opt.pose_model_type == "separate_resnet":
                    pose_in = [self._call("pose_encoder", pose_in)]
            else:
                pose_in = [features[i] for i in ids]
            axisangle, translation = self._call("pose", pose_in)
            for i, f in enumerate(self.frame_ids[1:]):
                if f != "s":
                    outputs[("axisangle", 0, f)] = axisangle
                    outputs[("translation", 0, f)] = translation
                    outputs[("cam_T_cam", 0, f)] = layers.transformation_from_parameters(
                        axisangle[:, i], translation[:, i])
        return outputs

    def generate_images_pred(self, inputs, outputs):
        """Depth per scale and each source frame warped into the target view (and the
        stereo image warped with the depth hint, once per batch at scale 0)."""
        opt = self.opt
        for scale in opt.scales:
            disp = outputs[("disp", scale)]
            if opt.v1_multiscale:
                source_scale = scale
            else:
                if scale != 0:
                    disp = F.interpolate(disp, [opt.height, opt.width], mode="bilinear", align_corners=False)
                source_scale = 0
            _, depth = layers.disp_to_depth(disp, opt.min_depth, opt.max_depth)
            outputs[("depth", 0, scale)] = depth
            cam_points = None
            for frame_id in self.frame_ids[1:]:
                if frame_id == "s":
                    T = inputs["stereo_T"]
                else:
                    T = outputs[("cam_T_cam", 0, frame_id)]
                if opt.pose_model_type == "posecnn" and frame_id != "s":
                    axisangle = outputs[("axisangle", 0, frame_id)]
                    translation = outputs[("translation", 0, frame_id)]
                    mean_inv_depth = paddle.mean(1.0 / depth, axis=[2, 3], keepdim=True)
                    T = layers.transformation_from_parameters(
                        axisangle[:, 0], translation[:, 0] * mean_inv_depth[:, 0, :, :], frame_id < 0)
                if cam_points is None:
                    cam_points = self.backproject_depth[source_scale](depth, inputs[("inv_K", source_scale)])
                grid = self.project_3d[source_scale](cam_points, inputs[("K", source_scale)], T)
                outputs[("sample", frame_id, scale)] = grid
                outputs[("color", frame_id, scale)] = layers.warp(inputs[("color", frame_id, source_scale)], grid)
        if opt.use_depth_hints:
            hint = inputs["depth_hint"]
            cam_points = self.backproject_depth[0](hint, inputs[("inv_K", 0)])
            grid = self.project_3d[0](cam_points, inputs[("K", 0)], inputs["stereo_T"])
            outputs[("color_depth_hint", "s", 0)] = layers.warp(inputs[("color", "s", 0)], grid)

    def compute_losses(self, inputs, outputs):
        """Total loss and its terms (SPEC 4). Keys: 'loss', ('loss', s), ('reproj', s),
        ('hint', s), ('smooth', s), ('hint_won', s) and ('automask', s) images."""
        opt = self.opt
        losses = {}
        total = 0.0
        sources = self.frame_ids[1:]
        hint_pe = None
        # the target's pooled SSIM statistics, once per target image (~6 uses per step)
        tstats = {}

        def target_stats(source_scale):
            if opt.no_ssim:
                return None
            if source_scale not in tstats:
                tstats[source_scale] = layers.reprojection_target_stats(inputs[("color", 0, source_scale)])
            return tstats[source_scale]

        if opt.use_depth_hints:
            target0 = inputs[("color", 0, 0)]
            hint_pe = layers.compute_reprojection_loss(outputs[("color_depth_hint", "s", 0)], target0, opt.no_ssim,
                                                       target_stats(0))
            hint_valid = inputs["depth_hint_mask"]
            hint_pe = hint_pe + 1000.0 * (1.0 - hint_valid)
        identity_cache = {}
        for scale in opt.scales:
            source_scale = scale if opt.v1_multiscale else 0
            target = inputs[("color", 0, source_scale)]
            reproj = paddle.concat([layers.compute_reprojection_loss(outputs[("color", f, scale)], target, opt.no_ssim,
                                                                     target_stats(source_scale))
                                    for f in sources], 1)
            if opt.predictive_mask:
                mask = outputs["predictive_mask"][("disp", scale)]
                if not opt.v1_multiscale and scale != 0:
                    mask = F.interpolate(mask, [opt.height, opt.width], mode="bilinear", align_corners=False)
                reproj = reproj * mask
                weighting = 0.2 * F.binary_cross_entropy(mask, paddle.ones_like(mask))
            if opt.avg_reprojection:
                reproj = paddle.mean(reproj, axis=1, keepdim=True)
            elif reproj.shape[1] > 1:
                reproj = paddle.min(reproj, axis=1, keepdim=True)

            identity = None
            if not opt.disable_automasking:
                if source_scale not in identity_cache:
                    idl = paddle.concat([layers.compute_reprojection_loss(inputs[("color", f, source_scale)],
                                                                          target, opt.no_ssim, target_stats(source_scale))
                                         for f in sources], 1)
                    if opt.avg_reprojection:
                        idl = paddle.mean(idl, axis=1, keepdim=True)
                    elif idl.shape[1] > 1:
                        idl = paddle.min(idl, axis=1, keepdim=True)
                    identity_cache[source_scale] = idl
                identity = identity_cache[source_scale] + paddle.randn(reproj.shape, dtype=reproj.dtype) * 1e-5

            reproj_mask, hint_mask = layers.compute_loss_masks(reproj, identity, hint_pe)
            reproj_mask = reproj_mask.detach()
            reproj_term = paddle.sum(reproj * reproj_mask) / (paddle.sum(reproj_mask) + 1e-7)
            loss = reproj_term
            if opt.predictive_mask:
                loss = loss + weighting
            if hint_mask is not None:
                hint_mask = hint_mask.detach()
                hint_term = layers.compute_proxy_supervised_loss(outputs[("depth", 0, scale)], inputs["depth_hint"],
                                                                 hint_valid, hint_mask)
                loss = loss + hint_term
                losses[("hint", scale)] = hint_term
                losses[("hint_won", scale)] = paddle.mean(hint_mask)
                outputs[("hint_mask", scale)] = hint_mask
            if identity is not None:
                outputs[("automask", scale)] = reproj_mask

            disp = outputs[("disp", scale)]
            norm_disp = disp / (paddle.mean(disp, axis=[2, 3], keepdim=True) + 1e-7)
            smooth = layers.get_smooth_loss(norm_disp, inputs[("color", 0, scale)])
            smooth_term = opt.disparity_smoothness * smooth / (2 ** scale)
            loss = loss + smooth_term
            losses[("reproj", scale)] = reproj_term
            losses[("smooth", scale)] = smooth_term
            losses[("loss", scale)] = loss
            total = total + loss
        losses["loss"] = total / self.num_scales
        return losses

    # ------------------------------------------------------------------ training loop

    def _install_signal_handlers(self):
        """SIGINT/SIGTERM set a flag; the loop saves `weights_last` after the current step
        and stops. A second signal interrupts at once."""
        self._old_handlers = {}

        def handler(signum, frame):
            if self._stop_signal is not None:
                raise KeyboardInterrupt
            self._stop_signal = signum

        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old_handlers[sig] = signal.signal(sig, handler)
            except ValueError:  # not in the main thread
                pass

    def _restore_signal_handlers(self):
        for sig, h in getattr(self, "_old_handlers", {}).items():
            signal.signal(sig, h)

    @property
    def stopped_by_signal(self):
        """The signal number that stopped training (None when it ran to the end)."""
        return self._stop_signal

    def request_stop(self):
        """Ask the loop to save and stop after the current step (what Ctrl-C does)."""
        self._stop_signal = signal.SIGINT

    def train(self):
        """Run the training loop; returns the final global step."""
        from tqdm import tqdm
        opt = self.opt
        self._install_signal_handlers()
        bar = tqdm(total=self.num_total_steps, initial=min(self.step, self.num_total_steps),
                   disable=not self.is_main, unit="step", dynamic_ncols=True)
        self.start_time = time.time()
        try:
            while self.epoch < opt.num_epochs and not self._done():
                self.run_epoch(bar)
                if self._stop_signal is not None or self._done():
                    break
            if self._stop_signal is not None:
                if self.is_main:
                    bar.write("Stopping on signal {} at step {}: checkpoint saved to {}".format(
                        self._stop_signal, self.step, self.save_checkpoint()))
            elif self.batch_in_epoch != 0:
                self.save_checkpoint()  # --max_steps stopped mid-epoch
            if self.world_size > 1:
                self._check_ranks_in_sync()
        finally:
            bar.close()
            self._restore_signal_handlers()
            for w in self.writers.values():
                w.close()
        return self.step

    def _done(self):
        return self.opt.max_steps is not None and self.step >= self.opt.max_steps

    def run_epoch(self, bar):
        """One epoch (from `batch_in_epoch` when resuming mid-epoch)."""
        opt = self.opt
        self.set_train()
        self.train_sampler.set_epoch(self.epoch, self.batch_in_epoch)
        for batch in self.train_loader:
            t0 = time.time()
            inputs, outputs, losses, loss_value = self.train_step(batch)
            self.last_losses = losses
            dt = time.time() - t0

            if self.is_main:
                bs = inputs[("color", 0, 0)].shape[0] * self.world_size
                bar.update(1)
                bar.set_postfix(loss="{:.4f}".format(loss_value), img_s="{:.2f}".format(bs / max(dt, 1e-9)),
                                epoch=self.epoch)
                early = self.batch_in_epoch % opt.log_frequency == 0 and self.step < 2000
                late = self.step % 2000 == 0
                if early or late:
                    self.log("train", inputs, outputs, losses)
                    self.val()
            self.step += 1
            self.batch_in_epoch += 1
            self.on_step_end()
            if self._stop_signal is not None or self._done():
                return
        # epoch finished
        self.scheduler.step()
        self.epoch += 1
        self.batch_in_epoch = 0
        if self.epoch % opt.save_frequency == 0 or self.epoch == opt.num_epochs or self._done():
            self.save_checkpoint("weights_{}".format(self.epoch - 1))

    def train_step(self, batch):
        """One optimisation step on a collated batch: (inputs, outputs, losses, loss value)."""
        import contextlib
        inputs = self.to_tensors(batch)
        with contextlib.ExitStack() as stack:
            for m in self.ddp.values():  # gradients are averaged explicitly below
                stack.enter_context(m.no_sync())
            outputs, losses = self.process_batch(inputs)
            loss = losses["loss"]
            loss_value = float(loss)
            if self.world_size > 1:
                import paddle.distributed as dist
                lv = paddle.to_tensor([loss_value], dtype="float32")
                dist.all_reduce(lv)
                loss_value = float(lv.numpy()[0]) / self.world_size
            if not np.isfinite(loss_value):
                raise ToolkitError(
                    "non-finite loss {} at step {} (epoch {}, batch {}): training stopped, the last good "
                    "checkpoint in {} is kept; lower --learning_rate or check the data".format(
                        loss_value, self.step, self.epoch, self.batch_in_epoch, self.models_dir))
            self.optimizer.clear_grad()
            loss.backward()
        if self.world_size > 1:
            self._allreduce_grads()
        self.optimizer.step()
        return inputs, outputs, losses, loss_value

    def on_step_end(self):
        """Hook called after every optimisation step (tests use it to interrupt)."""

    def _check_ranks_in_sync(self):
        """Data-parallel sanity check: every rank must hold the same weights."""
        import paddle.distributed as dist
        total = float(sum(float(p.astype("float64").sum()) for p in self.parameters_to_train
                          if not p.stop_gradient))  # BN running stats stay per rank
        hi = paddle.to_tensor([total], dtype="float64")
        lo = paddle.to_tensor([total], dtype="float64")
        dist.all_reduce(hi, op=dist.ReduceOp.MAX)
        dist.all_reduce(lo, op=dist.ReduceOp.MIN)
        hi, lo = float(hi.numpy()[0]), float(lo.numpy()[0])
        if abs(hi - lo) > 1e-6 * max(1.0, abs(hi)):
            raise ToolkitError("data-parallel ranks hold different weights (sum {} vs {}) after step {}: "
                               "report this bug".format(lo, hi, self.step))
        return hi

    def _allreduce_grads(self):
        import paddle.distributed as dist
        for p in self.parameters_to_train:
            if p.grad is not None:
                dist.all_reduce(p.grad)
                p.grad.set_value(p.grad / self.world_size)

    # ------------------------------------------------------------------ validation & logging

    def val(self):
        """Loss (and depth metrics when ground truth exists) on one validation batch."""
        self.set_eval()
        if self.val_iter is None:
            self.val_iter = iter(self.val_loader)
        try:
            batch = next(self.val_iter)
        except StopIteration:
            self.val_sampler.set_epoch(self.val_sampler.epoch + 1)
            self.val_iter = iter(self.val_loader)
            batch = next(self.val_iter)
        with paddle.no_grad():
            inputs = self.to_tensors(batch)
            outputs, losses = self.process_batch(inputs)
            if "depth_gt" in inputs:
                losses.update(self.compute_depth_losses(inputs, outputs))
            self.log("val", inputs, outputs, losses)
        self.set_train()
        return losses

    def compute_depth_losses(self, inputs, outputs):
        """Monodepth2's training-time depth metrics: Garg crop, median scaling, clamp 1e-3..80."""
        gt = inputs["depth_gt"].numpy()
        h, w = gt.shape[-2:]
        pred = F.interpolate(outputs[("depth", 0, 0)], [h, w], mode="bilinear", align_corners=False)
        pred = np.clip(pred.numpy(), utils.MIN_DEPTH, utils.MAX_DEPTH)
        mask = gt > 0
        top, bottom, left, right = utils.garg_crop_bounds(h, w)
        crop = np.zeros_like(mask)
        crop[:, :, top:bottom, left:right] = True
        mask &= crop
        if not mask.any():
            return {}
        g, p = gt[mask], pred[mask]
        p = np.clip(p * (np.median(g) / np.median(p)), utils.MIN_DEPTH, utils.MAX_DEPTH)
        errs = layers.compute_depth_errors(g, p)
        return {"de/" + k: v for k, v in zip(layers.DepthErrors.NAMES, errs)}

    def _writer(self, mode):
        if mode not in self.writers:
            from visualdl import LogWriter
            self.writers[mode] = LogWriter(logdir=os.path.join(self.log_path, mode))
        return self.writers[mode]

    def log(self, mode, inputs, outputs, losses):
        """VisualDL scalars (every loss term per scale, lr, hint-won fraction) and images."""
        w = self._writer(mode)
        for k, v in losses.items():
            if isinstance(k, tuple):
                name = "{}/s{}".format(k[0], k[1])
            else:
                name = k
            w.add_scalar(tag=name, value=float(v), step=self.step)
        w.add_scalar(tag="lr", value=float(self.optimizer.get_lr()), step=self.step)
        n = min(4, inputs[("color", 0, 0)].shape[0])
        for j in range(n):
            img = inputs[("color", 0, 0)][j].numpy().transpose(1, 2, 0)
            w.add_image(tag="color_0/{}".format(j), img=(np.clip(img, 0, 1) * 255).astype(np.uint8),
                        step=self.step, dataformats="HWC")
            disp = outputs[("disp", 0)][j, 0].numpy()
            w.add_image(tag="disp_0/{}".format(j), img=utils.colormap_disp(disp), step=self.step, dataformats="HWC")
            if ("automask", 0) in outputs:
                self._add_gray(w, "automask_0/{}".format(j), outputs[("automask", 0)][j, 0].numpy())
            if ("hint_mask", 0) in outputs:
                self._add_gray(w, "hint_pixels_0/{}".format(j), outputs[("hint_mask", 0)][j, 0].numpy())
                hint = inputs["depth_hint"][j, 0].numpy()
                self._add_gray(w, "depth_hint/{}".format(j), utils.normalize_image(hint))

    def _add_gray(self, w, tag, x):
        x = (np.clip(x, 0, 1) * 255).astype(np.uint8)
        w.add_image(tag=tag, img=np.repeat(x[:, :, None], 3, 2), step=self.step, dataformats="HWC")

    # ------------------------------------------------------------------ checkpoints

    def save_opts(self):
        """Write opt.json (all options) to the log folder, atomically."""
        d = dict(vars(self.opt))
        d["frame_ids_used"] = [str(f) for f in self.frame_ids]
        text = json.dumps(d, indent=2, default=str)
        utils.atomic_write_text(os.path.join(self.log_path, "opt.json"), text)
        utils.atomic_write_text(os.path.join(self.models_dir, "opt.json"), text)  # where Monodepth2 keeps it

    def trainer_state(self):
        """Everything besides weights and Adam needed to continue exactly."""
        return {"epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch, "step": self.step,
                "scheduler": self.scheduler.state_dict(), "paddle_rng": paddle.get_rng_state(),
                "numpy_rng": np.random.get_state(), "python_rng": random.getstate(),
                "val_epoch": self.val_sampler.epoch if self.val_sampler else 0, "world_size": self.world_size,
                "opt": {k: getattr(self.opt, k) for k in RESUME_MUST_MATCH + ("batch_size",)}}

    def save_checkpoint(self, name="weights_last"):
        """Write models, Adam and trainer state to models/<name>/ as one unit.

        Files go to `<name>.partial/` first; the folder then replaces the old one, so a
        crash leaves either the old or the new checkpoint, never a mix."""
        if not self.is_main:
            return None
        final = os.path.join(self.models_dir, name)
        tmp = final + ".partial"
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        for mname, model in self.models.items():
            sd = dict(model.state_dict())
            if mname == "encoder":
                sd["height"] = self.opt.height
                sd["width"] = self.opt.width
                sd["use_stereo"] = bool(self.opt.use_stereo)
            utils.atomic_paddle_save(sd, os.path.join(tmp, "{}.pdparams".format(mname)))
        utils.atomic_paddle_save(optimizer_state_to_struct(self.optimizer.state_dict(), self.models),
                                 os.path.join(tmp, ADAM_FILE))
        utils.atomic_write_bytes(os.path.join(tmp, STATE_FILE), pickle.dumps(self.trainer_state()))
        old = final + ".old"
        if os.path.isdir(final):
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
        return final

    def find_resume_checkpoint(self):
        """The checkpoint folder under models/ with the highest saved step (None if none)."""
        if not os.path.isdir(self.models_dir):
            return None
        best, best_key = None, None
        for name in os.listdir(self.models_dir):
            path = os.path.join(self.models_dir, name)
            sfile = os.path.join(path, STATE_FILE)
            if name.endswith((".partial", ".old")) or not os.path.isfile(sfile):
                continue
            st = load_trainer_state(sfile)
            key = (st["step"], os.path.getmtime(sfile))
            if best_key is None or key > best_key:
                best, best_key = path, key
        return best

    def resume_from(self, folder):
        """Restore weights, Adam, scheduler, counters and RNG states from `folder`."""
        st = load_trainer_state(os.path.join(folder, STATE_FILE))
        saved = st.get("opt", {})
        for k in RESUME_MUST_MATCH:
            if k in saved and saved[k] != getattr(self.opt, k):
                raise ToolkitError("cannot resume {} with a different --{} ({} there, {} now): use the same "
                                   "options or a new --model_name".format(folder, k, saved[k], getattr(self.opt, k)))
        if saved.get("batch_size", self.opt.batch_size) != self.opt.batch_size and self.is_main:
            print("warning: resuming with --batch_size {} (checkpoint used {}): the data order changes".format(
                self.opt.batch_size, saved["batch_size"]))
        self.load_model(folder, [k for k in self.models], load_adam=True, quiet=True)
        self.epoch, self.batch_in_epoch, self.step = st["epoch"], st["batch_in_epoch"], st["step"]
        self.scheduler.set_state_dict(st["scheduler"])
        paddle.set_rng_state(st["paddle_rng"])
        np.random.set_state(st["numpy_rng"])
        random.setstate(st["python_rng"])
        if self.val_sampler is not None:
            self.val_sampler.epoch = st.get("val_epoch", 0)
        if self.is_main:
            print("Resuming from {} at epoch {}, step {}".format(folder, self.epoch, self.step))

    def load_model(self, folder, names, load_adam=True, quiet=False):
        """Load model weights (and Adam state when present) from a weights folder."""
        import networks
        folder = os.path.expanduser(folder)
        if not os.path.isdir(folder):
            raise ToolkitError("weights folder not found ({}): check --load_weights_folder".format(folder))
        for n in names:
            if n not in self.models:
                continue
            path = os.path.join(folder, "{}.pdparams".format(n))
            if not os.path.isfile(path):
                raise ToolkitError("missing weights file ({}): check --load_weights_folder / "
                                   "--models_to_load".format(path))
            sd = paddle.load(path)
            for k in ("height", "width", "use_stereo"):
                sd.pop(k, None)
            networks.load_state_dict_strict(self.models[n], sd, path)
            if not quiet and self.is_main:
                print("Loaded {} weights from {}".format(n, path))
        apath = os.path.join(folder, ADAM_FILE)
        if load_adam and os.path.isfile(apath):
            st = optimizer_state_from_struct(paddle.load(apath), self.models)
            st["LR_Scheduler"] = self.scheduler.state_dict()  # the schedule is this run's (or the resume state's)
            self.optimizer.set_state_dict(st)
        elif load_adam and not quiet and self.is_main:
            print("Cannot find Adam weights so Adam is randomly initialized")
