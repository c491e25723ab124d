"""The training loop of Monodepth2 / Depth Hints in PaddlePaddle.

``Trainer(opt).train()`` builds the networks (networks.DepthHintsModel), the loss
(losses.DepthHintsLoss), Adam with a step schedule and the data loaders, then trains:
each step runs the networks, warps and scores (the loss), and updates; every
``--log_frequency`` steps it logs (train_log.TrainLog) and validates on one batch.
Checkpoints (checkpoint.py) go to ``<log_dir>/<model_name>/models/``: ``weights_<epoch>/``
per ``--save_frequency`` and at the end, ``weights_last/`` when training stops mid-epoch
(Ctrl-C, SIGTERM, ``--max_steps``, a sample that fails to load); ``--resume`` continues the
newest intact one. A folder with checkpoints is only trained into again with ``--resume`` or
``--overwrite`` (:func:`check_outputs`).
"""
import os
import random
import shlex
import signal
import sys
import time

import numpy as np
import paddle
import paddle.nn.functional as F

import camera
import checkpoint
import data_parallel
import datasets
import layers
import networks
import options
import runtime
import utils
from losses import DepthHintsLoss
from train_log import TrainLog
from utils import ToolkitError


def check_outputs(opt):
    """Before any work: the run folder can be written, and holds no earlier run's checkpoints
    unless --resume or --overwrite says what to do with them (one-line ToolkitErrors)."""
    log_path = utils.check_output_dir(os.path.join(os.path.expanduser(opt.log_dir), opt.model_name),
                                      "--log_dir/--model_name")
    checkpoint.check_models_dir(os.path.join(log_path, "models"), opt.resume, opt.overwrite,
                                opt.load_weights_folder)


class Trainer:
    """Trains depth (and pose) networks with the Monodepth2 + Depth Hints loss."""

    def __init__(self, opt, build_data=True):
        """Build everything from ``opt``; ``build_data=False`` skips the data sets (benchmarks)."""
        self.opt = opt
        self.log_path = os.path.join(os.path.expanduser(opt.log_dir), opt.model_name)
        self.models_dir = os.path.join(self.log_path, "models")
        if build_data:
            check_outputs(opt)
        self.device = runtime.pick_device("cpu" if opt.no_cuda else opt.device)
        import paddle.distributed as dist
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
        self.val_batches = None
        self._stop_signal = None
        self._stop_agreed = False  # data parallel: the ranks agreed to stop for a signal
        self._rank_error = None  # a data-parallel rank's load error, told to all ranks (_with_all_ranks)
        self.log = TrainLog(self.log_path, enabled=self.is_main and build_data)
        if self.is_main and build_data:
            checkpoint.tidy_models_dir(self.models_dir, log=self.log.line, overwrite=opt.overwrite)
            if opt.overwrite and self.log.delete_visualdl_records():
                self.log.line("--overwrite: deleted the earlier run's VisualDL records in {}".format(self.log_path))
            utils.clean_stale_temp_files(self.log_path)
        if self.world_size > 1:
            dist.barrier()  # the other ranks look for a checkpoint to resume after the tidy-up
        if build_data:
            self._build_data()

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
            self.log_summary()

    # ------------------------------------------------------------------ construction

    def _build_data(self):
        opt = self.opt
        self.train_dataset = datasets.SeededDataset(datasets.build_dataset(opt, "train", is_train=True), opt.seed)
        self.val_dataset = datasets.SeededDataset(datasets.build_dataset(opt, "val", is_train=False), opt.seed + 1)
        if len(self.train_dataset) < opt.batch_size * self.world_size:
            raise ToolkitError("only {} training samples for batch size {} x {} processes (--batch_size): "
                               "lower it or use a bigger split".format(len(self.train_dataset), opt.batch_size,
                                                                      self.world_size))
        self.num_workers = max(0, min(opt.num_workers, os.cpu_count() or 1))
        self.train_sampler = datasets.ResumableBatchSampler(self.train_dataset, opt.batch_size, opt.seed)
        self.train_loader = paddle.io.DataLoader(self.train_dataset, batch_sampler=self.train_sampler,
                                                 num_workers=self.num_workers, collate_fn=datasets.collate,
                                                 use_shared_memory=self.num_workers > 0,
                                                 worker_init_fn=datasets.stop_signals_end_worker)
        self.steps_per_epoch = len(self.train_sampler)
        self.num_total_steps = self.steps_per_epoch * opt.num_epochs
        if opt.max_steps is not None:
            self.num_total_steps = min(self.num_total_steps, opt.max_steps)
        vbs = min(opt.batch_size, len(self.val_dataset))
        self.val_sampler = datasets.ResumableBatchSampler(self.val_dataset, vbs, opt.seed + 1)
        self.val_loader = paddle.io.DataLoader(self.val_dataset, batch_sampler=self.val_sampler,
                                               num_workers=0, collate_fn=datasets.collate)
        self.val_batches = datasets.PositionedBatches(self.val_loader, self.val_sampler)

    def log_summary(self):
        """The start-up summary: where and what this run trains, and the exact command."""
        env = runtime.environment_summary(self.device)
        cuda = (", no CUDA (CPU build of Paddle)" if env["cuda"] is None
                else ", CUDA {}, cuDNN {}".format(env["cuda"], env["cudnn"]))
        lines = [
            "command: python train.py {}".format(shlex.join(getattr(self.opt, "_argv", sys.argv[1:]))),
            "device: {} ({}), {} process(es); Paddle {}{}".format(
                env["device"], env["device_name"], self.world_size, env["paddle"], cuda),
            "data: {} training samples, {} validation samples from {}".format(
                len(self.train_dataset), len(self.val_dataset), datasets.split_dir_of(self.opt)),
            "schedule: {} steps per epoch x {} epochs = {} steps (batch {} per process), from step {}".format(
                self.steps_per_epoch, self.opt.num_epochs, self.num_total_steps, self.opt.batch_size, self.step),
            "output: {}".format(self.log_path),
        ]
        for line in lines:
            self.log.line(line)

    # ------------------------------------------------------------------ one step

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

    def process_batch(self, inputs, net=None):
        """Networks, warps and loss on a batch of tensors: (outputs, losses)."""
        outputs = (net or self.net)(inputs)
        self.loss.warp_sources(inputs, outputs)
        return outputs, self.loss(inputs, outputs)

    def train_step(self, batch):
        """One optimisation step on a collated batch: (inputs, outputs, losses, loss value)."""
        inputs = self.to_tensors(batch)
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
        self.optimizer.step()
        return inputs, outputs, losses, loss_value

    def on_step_end(self):
        """Hook called after every optimisation step (tests use it to interrupt)."""

    # ------------------------------------------------------------------ the loop

    def _install_signal_handlers(self):
        """SIGINT/SIGTERM set a flag; the loop saves ``weights_last`` after the current step
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

    def _stopping(self):
        """Stop for a signal now? Data parallel: only once all ranks agreed (_with_all_ranks)."""
        return self._stop_signal is not None and (self.world_size == 1 or self._stop_agreed)

    @property
    def stopped_by_signal(self):
        """The signal number that stopped training (None when it ran to the end)."""
        return self._stop_signal

    def request_stop(self):
        """Ask the loop to save and stop after the current step (what Ctrl-C does)."""
        self._stop_signal = signal.SIGINT

    def _done(self):
        return self.opt.max_steps is not None and self.step >= self.opt.max_steps

    def train(self):
        """Run the training loop; returns the final global step."""
        self._install_signal_handlers()
        self.log.start(self.num_total_steps, self.step)
        self._watchdog = datasets.LoaderWatchdog(self.opt.loader_timeout, on_timeout=self._save_at_timeout)
        self.val_batches.watchdog = self._watchdog
        try:
            while self.epoch < self.opt.num_epochs and not self._done():
                try:
                    self.run_epoch()
                except datasets.DataLoadError as exc:  # raised before a step: all steps are whole
                    if self._stopping():
                        break  # the loader's workers got the signal too: stop as signalled
                    path = self._save_on_all_ranks()
                    raise datasets.DataLoadError("{}; training stopped at step {} (saved to {}): continue with "
                                                 "--resume once fixed".format(exc, self.step, path)) from None
                except (SystemError, OSError, RuntimeError) as exc:  # a loader worker died, maybe mid-step
                    lost = data_parallel.lost_rank(exc, self.world_size, self.models_dir)
                    if lost is not None:
                        raise lost from None
                    raise datasets.worker_died(exc, self.num_workers, "continue with --resume (from the last "
                                               "checkpoint in {})".format(self.models_dir)) from None
                if self._stopping() or self._done():
                    break
            if self._stopping():
                path = self._save_on_all_ranks()
                self.log.line("Stopping on signal {} at step {}: checkpoint saved to {}".format(
                    self._stop_signal, self.step, path))
            elif self.batch_in_epoch != 0:
                self.save_checkpoint()  # --max_steps stopped mid-epoch
            if self.world_size > 1:
                data_parallel.check_weights_in_sync(self.parameters_to_train, self.step)
        finally:
            self._watchdog.close()
            self._restore_signal_handlers()
            self.log.close()
        return self.step

    def run_epoch(self):
        """One epoch (from ``batch_in_epoch`` when resuming mid-epoch)."""
        opt = self.opt
        self.model.train()
        self.train_sampler.set_epoch(self.epoch, self.batch_in_epoch)
        batches = datasets.checked_batches(self.train_loader, self.num_workers, self._watchdog)
        for batch in (self._with_all_ranks(batches) if self.world_size > 1 else batches):
            t0 = time.time()
            inputs, outputs, losses, loss_value = self.train_step(batch)
            self.last_losses = losses
            images_per_s = inputs[("color", 0, 0)].shape[0] * self.world_size / max(time.time() - t0, 1e-9)
            self.step += 1
            batch_in_epoch, self.batch_in_epoch = self.batch_in_epoch, self.batch_in_epoch + 1
            if self.is_main:
                hint_won = float(losses[("hint_won", 0)]) if ("hint_won", 0) in losses else None
                self.log.step(self.step, self.epoch, loss_value, images_per_s, hint_won,
                              write_line=self.step % opt.log_frequency == 0 or self.step == self.num_total_steps)
                # Monodepth2's VisualDL schedule: often early on, then every 2000 steps
                step0 = self.step - 1
                if (batch_in_epoch % opt.log_frequency == 0 and step0 < 2000) or step0 % 2000 == 0:
                    self.log.visualdl("train", step0, inputs, outputs, losses, self.optimizer.get_lr())
                    try:
                        self.val(step0)
                    except datasets.DataLoadError as exc:
                        if self.world_size == 1:
                            raise
                        self._rank_error = exc  # every rank stops at the next step
            self.on_step_end()
            if self._stopping() or self._done():
                return
        if self._stopping():
            return
        self.scheduler.step()
        self.epoch += 1
        self.batch_in_epoch = 0
        if self.epoch % opt.save_frequency == 0 or self.epoch == opt.num_epochs or self._done():
            self.save_checkpoint("weights_{}".format(self.epoch - 1))

    def _with_all_ranks(self, batches):
        """Data-parallel batches, with one tiny all-reduce before each step: when one rank's sample
        (or validation batch) fails to load, one rank gets a stop signal, or the data end, every
        rank stops at that step (else the others wait forever in the next gradient all-reduce)."""
        it = iter(batches)
        while True:
            batch = None
            if self._rank_error is None:
                try:
                    batch = next(it)
                except StopIteration:
                    pass
                except datasets.DataLoadError as exc:  # after a signal: the read was interrupted
                    self._rank_error = exc if self._stop_signal is None else None
            failed = self.rank + 1 if self._rank_error is not None else 0
            failed, sig, end = data_parallel.max_over_ranks(
                [failed, self._stop_signal or 0, int(batch is None and not failed)])
            if self._rank_error is not None:
                raise self._rank_error
            if failed:
                raise datasets.DataLoadError(
                    "rank {} of {} could not load a sample: its own error line names the file (its log, "
                    "log/workerlog.{} under paddle.distributed.launch)".format(failed - 1, self.world_size, failed - 1))
            if sig:  # agreed: every rank stops now (_stopping)
                self._stop_signal, self._stop_agreed = self._stop_signal or sig, True
            if sig or end:
                return
            yield batch

    def _save_at_timeout(self):
        """LoaderWatchdog's action (its thread, the main thread waiting for a batch)."""
        if not self.is_main:
            return "; rank {} saves nothing (rank 0 does)".format(self.rank)
        self.log.line("no batch within --loader_timeout {:.0f} s: stopping".format(self.opt.loader_timeout))
        return "; training stopped at step {} (saved to {})".format(self.step, self.save_checkpoint())

    def _save_on_all_ranks(self):
        """weights_last written by rank 0 while the other ranks wait (a launcher stops the
        whole job when the first rank exits); returns its path on every rank."""
        self.save_checkpoint()
        if self.world_size > 1:
            data_parallel.barrier()
        return os.path.join(self.models_dir, "weights_last")

    # ------------------------------------------------------------------ validation

    def val(self, step=None):
        """Loss (and depth metrics when ground truth exists) on one validation batch."""
        self.model.eval()
        batch = self.val_batches.next()
        with paddle.no_grad():
            inputs = self.to_tensors(batch)
            outputs, losses = self.process_batch(inputs, net=self.model)
            if "depth_gt" in inputs:
                losses.update(self.compute_depth_losses(inputs, outputs))
            self.log.visualdl("val", self.step if step is None else step, inputs, outputs, losses,
                              self.optimizer.get_lr())
        self.model.train()
        return losses

    def compute_depth_losses(self, inputs, outputs):
        """Monodepth2's training-time depth metrics: Garg crop, median scaling, clamp 1e-3..80."""
        gt = inputs["depth_gt"].numpy()
        h, w = gt.shape[-2:]
        pred = F.interpolate(outputs[("depth", 0, 0)], [h, w], mode="bilinear", align_corners=False)
        pred = np.clip(pred.numpy(), utils.MIN_DEPTH, utils.MAX_DEPTH)
        top, bottom, left, right = utils.garg_crop_bounds(h, w)
        mask = np.zeros(gt.shape, bool)
        mask[:, :, top:bottom, left:right] = True
        mask &= gt > 0
        if not mask.any():
            return {}
        g, p = gt[mask], pred[mask]
        p = np.clip(p * (np.median(g) / np.median(p)), utils.MIN_DEPTH, utils.MAX_DEPTH)
        errs = layers.compute_depth_errors(g, p)
        return {"de/" + k: v for k, v in zip(layers.DepthErrors.NAMES, errs)}

    # ------------------------------------------------------------------ checkpoints

    def save_opts(self):
        """Write opt.json (all options) to the log folder and models/, atomically."""
        text = options.to_json(self.opt)
        utils.atomic_write_text(os.path.join(self.log_path, "opt.json"), text)
        utils.atomic_write_text(os.path.join(self.models_dir, "opt.json"), text)  # where Monodepth2 keeps it

    def trainer_state(self):
        """Everything besides weights and Adam needed to continue exactly."""
        return {"epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch, "step": self.step,
                "scheduler": self.scheduler.state_dict(), "paddle_rng": paddle.get_rng_state(),
                "numpy_rng": np.random.get_state(), "python_rng": random.getstate(),
                "val_position": self.val_batches.position if self.val_batches else (0, 0),
                "world_size": self.world_size,
                "opt": {k: getattr(self.opt, k) for k in checkpoint.RESUME_MUST_MATCH + ("batch_size",)}}

    def save_checkpoint(self, name="weights_last"):
        """Save models, Adam and trainer state to models/<name>/ (main process only)."""
        if not self.is_main:
            return None
        meta = {"height": self.opt.height, "width": self.opt.width, "use_stereo": bool(self.opt.use_stereo),
                "intrinsics": camera.intrinsics_vector(camera.intrinsics_from_option(self.opt.intrinsics)),
                "stereo_baseline": float(self.opt.stereo_baseline or camera.KITTI_BASELINE_M)}
        path = checkpoint.save_checkpoint(os.path.join(self.models_dir, name), dict(self.models.items()),
                                          self.optimizer, self.trainer_state(), meta)
        self.log.line("step {}: checkpoint {}".format(self.step, path))
        return path

    def resume_from(self, folder):
        """Restore weights, Adam, scheduler, counters and RNG states from ``folder``."""
        st = checkpoint.load_trainer_state(os.path.join(folder, checkpoint.STATE_FILE))
        saved = st.get("opt", {})
        checkpoint.check_resume_options(saved, self.opt, folder)
        if saved.get("batch_size", self.opt.batch_size) != self.opt.batch_size:
            self.log.line("warning: resuming with --batch_size {} (checkpoint used {}): the data order "
                          "changes".format(self.opt.batch_size, saved["batch_size"]))
        self.load_model(folder, list(self.models.keys()), quiet=True)
        self.epoch, self.batch_in_epoch, self.step = st["epoch"], st["batch_in_epoch"], st["step"]
        self.scheduler.set_state_dict(st["scheduler"])
        paddle.set_rng_state(st["paddle_rng"])
        np.random.set_state(st["numpy_rng"])
        random.setstate(st["python_rng"])
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
