"""The training loop of Monodepth2 / Depth Hints in PaddlePaddle: ``Trainer(opt).train()``. Each step runs the networks
(networks.DepthHintsModel), warps and scores (losses.DepthHintsLoss) and updates Adam. Checkpoints (checkpoint.py) go to
``<log_dir>/<model_name>/models/``: ``weights_<epoch>/`` per ``--save_frequency`` and at the end, ``weights_last/`` when
training stops mid-epoch (--max_steps; Ctrl-C, SIGTERM or a sample that fails to load: run_guard.py); ``--resume``
continues the newest intact one.
"""
import os
import random
import time

import numpy as np
import paddle
import paddle.nn.functional as F

import checkpoint
import datasets
import fileio
import layers
import networks
import options
import run_guard
import runtime
from losses import DepthHintsLoss
from run_lock import RunLock
from train_log import TrainLog
from utils import ToolkitError


class Trainer:
    """Trains depth (and pose) networks with the Monodepth2 + Depth Hints loss."""

    def __init__(self, opt, build_data=True, check_data=False):
        """Everything from ``opt``, a resumed checkpoint included; ``check_data``: train.py's data check
        first; ``build_data=False`` skips the run folder and the data (benchmarks)."""
        self.opt = opt
        self.log_path = os.path.join(os.path.expanduser(opt.log_dir), opt.model_name)
        self.models_dir = os.path.join(self.log_path, "models")
        early_lines = []  # for train.log, once it is open
        self.lock = RunLock(self.log_path, "--log_dir/--model_name", log=early_lines.append)
        if build_data:  # before any work: a writable run folder, and no earlier checkpoints unless asked for
            log_path = fileio.check_output_dir(self.log_path, "--log_dir/--model_name")
            checkpoint.check_models_dir(os.path.join(log_path, "models"), opt.resume, opt.overwrite,
                                        opt.load_weights_folder)
            if paddle.distributed.get_rank() == 0:
                self.lock.acquire()  # one run per folder, before the (possibly long) data check
        checked = datasets.check_training_data(opt) if build_data and check_data else None
        self.device = runtime.pick_device("cpu" if opt.no_cuda else opt.device)
        dist = paddle.distributed
        self.world_size = dist.get_world_size()
        if self.world_size > 1:
            dist.init_parallel_env()
        self.rank = dist.get_rank()
        self.is_main = self.rank == 0

        paddle.seed(opt.seed)  # same initial weights on every rank
        np.random.seed(opt.seed)
        random.seed(opt.seed)
        self.model = networks.DepthHintsModel(opt)
        self.models = self.model.models
        self.parameters_to_train = self.model.parameters()
        # one DataParallel wrapper: Paddle's reducer all-reduces every gradient in backward
        self.net = paddle.DataParallel(self.model) if self.world_size > 1 else self.model
        if self.rank > 0:
            paddle.seed(opt.seed + 1000 * self.rank)  # independent tie-break noise per rank
        self.loss = DepthHintsLoss.from_options(opt)
        self.scheduler = paddle.optimizer.lr.StepDecay(opt.learning_rate, opt.scheduler_step_size, gamma=0.1)
        self.optimizer = paddle.optimizer.Adam(learning_rate=self.scheduler, parameters=self.parameters_to_train)

        self.epoch = self.step = self.batch_in_epoch = 0
        self.pending = []  # (loss, hint-won) tensors of the steps since the last check_loss
        self.val_batches, self.num_workers = None, 0
        self.log = TrainLog(self.log_path, enabled=self.is_main and build_data)
        for line in early_lines:
            self.log.line(line)
        if self.is_main and build_data:
            checkpoint.tidy_models_dir(self.models_dir, log=self.log.line, overwrite=opt.overwrite)
            if opt.overwrite and self.log.delete_visualdl_records():
                self.log.line("--overwrite: deleted the earlier run's VisualDL records in {}".format(self.log_path))
            fileio.clean_stale_temp_files(self.log_path)
        if self.world_size > 1:
            dist.barrier()  # the other ranks look for a checkpoint to resume after the tidy-up
        if build_data:
            self._build_data(checked)

        if opt.load_weights_folder is not None:
            self.load_model(opt.load_weights_folder, opt.models_to_load)
        if opt.resume:
            ckpt = checkpoint.find_resume_checkpoint(self.models_dir, log=self.log.line)
            if ckpt is not None:
                self.resume_from(ckpt)
            else:
                self.log.line("No checkpoint to resume in {}: starting from scratch".format(self.models_dir))
        if self.is_main and build_data:
            self.save_opts()
            self.log.summary(opt, runtime.environment_summary(self.device), self.world_size, len(self.train_dataset),
                             len(self.val_dataset), datasets.split_dir_of(opt), self.steps_per_epoch,
                             self.num_total_steps, self.step)

    def _build_data(self, checked=None):
        """Loaders over the train/val lists (``checked``: the data sets the data check built)."""
        opt = self.opt
        train, val = checked or (datasets.build_dataset(opt, "train", is_train=False),
                                 datasets.build_dataset(opt, "val", is_train=False))
        d = datasets.training_loaders(opt, train, val, self.world_size)
        self.train_dataset, self.val_dataset, self.num_workers = d.train_dataset, d.val_dataset, d.num_workers
        self.train_sampler, self.train_loader, self.val_batches = d.train_sampler, d.train_loader, d.val_batches
        self.steps_per_epoch = len(self.train_sampler)
        self.num_total_steps = self.steps_per_epoch * opt.num_epochs
        if opt.max_steps is not None:
            self.num_total_steps = min(self.num_total_steps, opt.max_steps)

    # ------------------------------------------------------------------ one step
    def to_tensors(self, batch):
        """Batched dict (numpy arrays or the DataLoader's CPU tensors) -> tensors on the device."""
        out = {}
        for k, v in batch.items():
            if isinstance(v, np.ndarray) and v.dtype.kind in "fiub":
                v = paddle.to_tensor(v)
            if isinstance(v, paddle.Tensor):
                out[k] = v.cuda() if self.device == "gpu" and not v.place.is_gpu_place() else v
        return out

    def process_batch(self, inputs, net=None):
        """Networks, warps and loss on a batch of tensors: (outputs, losses)."""
        outputs = (net or self.net)(inputs)
        self.loss.warp_sources(inputs, outputs)
        return outputs, self.loss(inputs, outputs)

    def train_step(self, batch):
        """One optimisation step: (inputs, outputs, losses); the loss stays on the device (read by check_loss)."""
        inputs = self.to_tensors(batch)
        outputs, losses = self.process_batch(inputs)
        self.optimizer.clear_grad()
        losses["loss"].backward()
        self.optimizer.step()
        won = losses.get(("hint_won", 0))
        self.pending.append((losses["loss"].detach(), None if won is None else won.detach()))
        return inputs, outputs, losses

    def check_loss(self, all_ranks=True):
        """Mean loss and hint-won fraction of the steps since the last call (averaged over the
        ranks; (None, None) when there were none); a non-finite loss ends the run with one line."""
        if not self.pending:
            return None, None
        n, won = len(self.pending), [w for _, w in self.pending if w is not None]
        values = paddle.stack([loss for loss, _ in self.pending] + won).astype("float32").reshape([-1])
        if all_ranks and self.world_size > 1:
            paddle.distributed.all_reduce(values)
            values = values / self.world_size
        values, first, self.pending = values.numpy(), self.step - n, []  # first: 0-based index of step 1 of n
        bad = np.flatnonzero(~np.isfinite(values[:n]))
        if bad.size:
            raise ToolkitError("non-finite loss {} at step {} (epoch {}): training stopped, {}; lower --learning_rate "
                               "or check the data".format(values[bad[0]], first + int(bad[0]), self.epoch,
                                                          checkpoint.newest_checkpoint_note(self.models_dir)))
        return float(values[:n].mean()), (float(values[n:].mean()) if won else None)

    # ------------------------------------------------------------------ the loop
    def done(self):
        return self.opt.max_steps is not None and self.step >= self.opt.max_steps

    def train(self):
        """Run the training loop; returns the final global step."""
        self.guard = run_guard.RunGuard(
            save=self.save_checkpoint, log=self.log.line, step=lambda: self.step, models_dir=self.models_dir,
            world_size=self.world_size, rank=self.rank, loader_timeout=self.opt.loader_timeout,
            num_workers=self.num_workers, parameters=self.parameters_to_train)
        self.log.start(self.num_total_steps, self.step)
        try:
            with self.guard:
                self.val_batches.watchdog = self.guard.watchdog
                while self.epoch < self.opt.num_epochs and not self.done() and not self.guard.stopped:
                    self.run_epoch()
                if not self.guard.stopped and self.batch_in_epoch != 0:
                    self.save_checkpoint()  # --max_steps stopped mid-epoch
        finally:
            self.log.close()
            self.lock.release()
        return self.step

    def run_epoch(self):
        """One epoch (from ``batch_in_epoch`` when resuming mid-epoch)."""
        opt = self.opt
        self.model.train()
        self.train_sampler.set_epoch(self.epoch, self.batch_in_epoch)
        t0, step0 = time.time(), self.step
        for batch in self.guard.batches(self.train_loader):
            inputs, outputs, losses = self.train_step(batch)
            self.step += 1
            self.batch_in_epoch += 1
            self.log.step()
            if self.step % opt.log_frequency == 0 or self.step == self.num_total_steps:
                loss, hint_won = self.check_loss()
                images_per_s = (self.step - step0) * opt.batch_size * self.world_size / max(time.time() - t0, 1e-9)
                self.log.status(self.step, self.epoch, loss, images_per_s, hint_won)
                t0, step0 = time.time(), self.step
            # Monodepth2's VisualDL schedule: often early on, then every 2000 steps
            step = self.step - 1
            if self.is_main and (((self.batch_in_epoch - 1) % opt.log_frequency == 0 and step < 2000)
                                 or step % 2000 == 0):
                self.log.visualdl("train", step, inputs, outputs, losses, self.optimizer.get_lr())
                try:
                    self.val(step)
                except datasets.DataLoadError as exc:
                    self.guard.defer(exc)
            if self.done():
                return
        if self.guard.stopped:
            return
        self.scheduler.step()
        self.epoch += 1
        self.batch_in_epoch = 0
        if self.epoch % opt.save_frequency == 0 or self.epoch == opt.num_epochs:
            self.save_checkpoint("weights_{}".format(self.epoch - 1))

    # ------------------------------------------------------------------ validation
    def val(self, step=None):
        """Loss (and depth metrics when ground truth exists) on one validation batch."""
        self.model.eval()
        batch = self.val_batches.next()
        with paddle.no_grad():
            inputs = self.to_tensors(batch)
            outputs, losses = self.process_batch(inputs, net=self.model)
            if "depth_gt" in inputs:  # the depth metrics, at the ground truth's size
                gt = inputs["depth_gt"]
                pred = F.interpolate(outputs[("depth", 0, 0)], gt.shape[-2:], mode="bilinear", align_corners=False)
                losses.update(layers.median_scaled_errors(gt.numpy(), pred.numpy()))
            self.log.visualdl("val", self.step if step is None else step, inputs, outputs, losses,
                              self.optimizer.get_lr())
        self.model.train()
        return losses

    # ------------------------------------------------------------------ checkpoints
    def save_opts(self):
        """Write opt.json (all options) to the log folder and models/ (where Monodepth2 keeps it)."""
        for folder in (self.log_path, self.models_dir):
            fileio.atomic_write_text(os.path.join(folder, "opt.json"), options.to_json(self.opt))

    def trainer_state(self):
        """Everything besides weights, Adam and the RNG states needed to continue exactly."""
        return {"epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch, "step": self.step,
                "scheduler": self.scheduler.state_dict(), "world_size": self.world_size,
                "val_position": self.val_batches.position if self.val_batches else (0, 0),
                "opt": {k: getattr(self.opt, k) for k in checkpoint.RESUME_MUST_MATCH + ("batch_size",)}}

    def save_checkpoint(self, name="weights_last", all_ranks=True):
        """Save models, Adam and trainer state to models/<name>/ (rank 0 writes; called on every
        rank, which check the loss together, unless ``all_ranks`` is False)."""
        self.check_loss(all_ranks)
        if not self.is_main:
            return None
        path = checkpoint.save_checkpoint(os.path.join(self.models_dir, name), dict(self.models.items()),
                                          self.optimizer, self.trainer_state(), checkpoint.encoder_meta(self.opt))
        self.log.line("step {}: checkpoint {}".format(self.step, path))
        return path

    def resume_from(self, folder):
        """Restore weights, Adam, scheduler, counters and RNG states from ``folder``."""
        st = checkpoint.load_trainer_state(checkpoint.state_path(folder))
        saved = st.get("opt", {})
        checkpoint.check_resume_options(saved, self.opt, folder)
        if saved.get("batch_size", self.opt.batch_size) != self.opt.batch_size:
            self.log.line("warning: resuming with --batch_size {} (checkpoint used {}): the data order "
                          "changes".format(self.opt.batch_size, saved["batch_size"]))
        self.load_model(folder, list(self.models.keys()), quiet=True)
        self.epoch, self.batch_in_epoch, self.step = st["epoch"], st["batch_in_epoch"], st["step"]
        self.scheduler.set_state_dict(st["scheduler"])
        checkpoint.restore_rng_states(st)
        if self.val_batches is not None:
            self.val_batches.seek(*st.get("val_position", (st.get("val_epoch", 0), 0)))
        self.log.line("Resuming from {} at epoch {}, step {}".format(folder, self.epoch, self.step))

    def load_model(self, folder, names, quiet=False):
        """Load model weights (and Adam state when present) from a weights folder."""
        models = dict(self.models.items())
        checkpoint.load_weights_into(models, folder, names, self.opt.num_layers,
                                     log=None if quiet else self.log.line)
        if not checkpoint.load_adam(self.optimizer, os.path.expanduser(folder), models,
                                    self.scheduler.state_dict()) and not quiet:
            self.log.line("Cannot find Adam weights so Adam is randomly initialized")
