"""Where a training run reports: the console and ``<log_dir>/<model_name>/train.log`` (through progress.ProgressLog)
and VisualDL (``train/`` and ``val/`` there: every loss term per scale, the learning rate, the hint-won fraction and
a few images, on Monodepth2's schedule)."""
import os
import shlex
import sys

import numpy as np

import image_io
from progress import ProgressLog, format_duration


class TrainLog:
    """Console + train.log + VisualDL for one run; ``enabled=False`` (the ranks but the main one): all no-ops."""

    def __init__(self, log_path, enabled=True, stream=None):
        self.log_path, self.enabled, self.writers = log_path, enabled, {}
        self.out = (ProgressLog(None, "step", os.path.join(log_path, "train.log"), stream or sys.stdout, interval=None)
                    if enabled else None)

    def line(self, text):
        """One line to train.log (time-stamped) and the console."""
        if self.out is not None:
            self.out.message(text)

    def summary(self, opt, env, world_size, num_train, num_val, split_dir, steps_per_epoch, total_steps, step):
        """The start-up summary: where and what this run trains, and the exact command."""
        cuda = (", no CUDA (CPU build of Paddle)" if env["cuda"] is None
                else ", CUDA {}, cuDNN {}".format(env["cuda"], env["cudnn"]))
        full = steps_per_epoch * opt.num_epochs
        steps = "{} steps per epoch x {} epochs = {} steps".format(steps_per_epoch, opt.num_epochs, full)
        if total_steps < full:
            steps = "--max_steps {} of {}".format(total_steps, steps)
        for text in ["command: python train.py {}".format(shlex.join(getattr(opt, "_argv", sys.argv[1:]))),
                     "device: {} ({}), {} process(es); Paddle {}{}".format(
                         env["device"], env["device_name"], world_size, env["paddle"], cuda),
                     "data: {} training samples, {} validation samples from {}".format(num_train, num_val, split_dir),
                     "schedule: {} (batch {} per process), from step {}".format(steps, opt.batch_size, step),
                     "output: {}".format(self.log_path)]:
            self.line(text)

    def start(self, total_steps, initial_step):
        """Begin the step loop: the bar (on a terminal) and the clock for rates and ETA."""
        if self.out is not None:
            self.out.start(total_steps, min(initial_step, total_steps))

    def step(self):
        """After each optimisation step (the bar)."""
        if self.out is not None:
            self.out.update(1)

    def status(self, step, epoch, loss, images_per_s, hint_won=None):
        """The line every --log_frequency steps (``step``: 1-based count of steps done)."""
        if self.out is None:
            return
        elapsed, _, eta = self.out.timing()
        hint = "" if hint_won is None else " | hint won {:.3f}".format(hint_won)
        self.out.update(0, "step {}/{} | epoch {} | loss {:.5f}{} | {:.2f} images/s | elapsed {} | ETA {}".format(
            step, self.out.total, epoch, loss, hint, images_per_s, format_duration(elapsed),
            format_duration(eta if eta == eta else 0)), {"loss": "{:.4f}".format(loss), "epoch": epoch})

    def delete_visualdl_records(self):
        """Delete the VisualDL records of an earlier run (``--overwrite``: its curves would mix in); returns them."""
        if not self.enabled or self.writers:
            return []
        folders = [os.path.join(self.log_path, mode) for mode in ("train", "val")]
        deleted = [os.path.join(f, name) for f in folders if os.path.isdir(f) for name in sorted(os.listdir(f))
                   if name.startswith("vdlrecords.") and os.path.isfile(os.path.join(f, name))]
        for path in deleted:
            os.remove(path)
        return deleted

    def _writer(self, mode):
        if mode not in self.writers:
            from visualdl import LogWriter
            self.writers[mode] = LogWriter(logdir=os.path.join(self.log_path, mode))
        return self.writers[mode]

    def visualdl(self, mode, step, inputs, outputs, losses, lr):
        """Scalars (every loss term per scale, lr, hint-won fraction) and up to 4 images."""
        if not self.enabled:
            return
        w = self._writer(mode)
        for k, v in losses.items():
            w.add_scalar(tag="{}/s{}".format(k[0], k[1]) if isinstance(k, tuple) else k, value=float(v), step=step)
        w.add_scalar(tag="lr", value=float(lr), step=step)

        def image(tag, x):  # x: HxW grey or HxWx3 RGB in [0, 1]
            x = (np.clip(x, 0, 1) * 255).astype(np.uint8)
            w.add_image(tag=tag, img=np.repeat(x[:, :, None], 3, 2) if x.ndim == 2 else x, step=step, dataformats="HWC")

        for j in range(min(4, inputs[("color", 0, 0)].shape[0])):
            image("color_0/{}".format(j), inputs[("color", 0, 0)][j].numpy().transpose(1, 2, 0))
            w.add_image(tag="disp_0/{}".format(j), img=image_io.colormap_disp(outputs[("disp", 0)][j, 0].numpy()),
                        step=step, dataformats="HWC")
            if ("automask", 0) in outputs:
                image("automask_0/{}".format(j), outputs[("automask", 0)][j, 0].numpy())
            if ("hint_mask", 0) in outputs:
                image("hint_pixels_0/{}".format(j), outputs[("hint_mask", 0)][j, 0].numpy())
                image("depth_hint/{}".format(j), image_io.normalize_image(inputs["depth_hint"][j, 0].numpy()))

    def close(self):
        for w in self.writers.values():
            w.close()
        self.writers = {}
        if self.out is not None:
            self.out.close()
            self.out = None
