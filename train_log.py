"""Where a training run reports: the console, ``<log_dir>/<model_name>/train.log`` and
VisualDL (``train/`` and ``val/`` under the same folder).

- The console shows a tqdm bar only on a terminal; under nohup or a batch scheduler the
  same lines as train.log are printed instead.
- ``train.log`` gets the start-up summary, a line every ``--log_frequency`` steps (step,
  epoch, loss, hint-won fraction, images/s, elapsed, ETA) and a line per checkpoint.
- VisualDL gets every loss term per scale, the learning rate, the hint-won fraction and
  a few images (colour, disparity, auto-mask, hint pixels), on Monodepth2's schedule.
"""
import os
import sys
import time

import numpy as np

import utils
from progress import format_duration


class TrainLog:
    """Console + train.log + VisualDL for one run. Only the main process writes
    (``enabled=False`` on the other ranks makes every method a no-op)."""

    def __init__(self, log_path, enabled=True, stream=None):
        self.log_path = log_path
        self.enabled = enabled
        self.stream = stream or sys.stdout
        self.writers = {}
        self.bar = None
        self.file = None
        self._t0 = None
        self._step0 = 0
        if enabled:
            os.makedirs(log_path, exist_ok=True)
            self.file = open(os.path.join(log_path, "train.log"), "a", buffering=1)

    # ------------------------------------------------------------------ text

    def line(self, text):
        """One line to train.log (time-stamped) and the console."""
        if not self.enabled:
            return
        if self.file is not None:
            self.file.write("{} {}\n".format(time.strftime("%Y-%m-%d %H:%M:%S"), text))
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def start(self, total_steps, initial_step):
        """Begin the step loop: the bar (on a terminal) and the clock for rates and ETA."""
        self._t0 = time.time()
        self._step0 = initial_step
        self.total_steps = total_steps
        if self.enabled and getattr(self.stream, "isatty", lambda: False)():
            from tqdm import tqdm
            self.bar = tqdm(total=total_steps, initial=min(initial_step, total_steps), unit="step",
                            dynamic_ncols=True, file=self.stream)

    def step(self, step, epoch, loss, images_per_s, hint_won=None, write_line=False):
        """After optimisation step ``step`` (1-based count of steps done)."""
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss="{:.4f}".format(loss), img_s="{:.2f}".format(images_per_s), epoch=epoch)
        if write_line:
            elapsed = time.time() - self._t0
            done = step - self._step0
            eta = elapsed / max(done, 1) * max(self.total_steps - step, 0)
            hint = "" if hint_won is None else " | hint won {:.3f}".format(hint_won)
            text = ("step {}/{} | epoch {} | loss {:.5f}{} | {:.2f} images/s | elapsed {} | ETA {}".format(
                step, self.total_steps, epoch, loss, hint, images_per_s, format_duration(elapsed),
                format_duration(eta)))
            self.file.write("{} {}\n".format(time.strftime("%Y-%m-%d %H:%M:%S"), text))
            if self.bar is None:
                print(text, file=self.stream, flush=True)

    # ------------------------------------------------------------------ VisualDL

    def delete_visualdl_records(self):
        """Delete the VisualDL records of an earlier run in this folder (``--overwrite``: its
        curves would otherwise be drawn over the new run's). Returns the deleted paths."""
        if not self.enabled or self.writers:
            return []
        deleted = []
        for mode in ("train", "val"):
            folder = os.path.join(self.log_path, mode)
            if os.path.isdir(folder):
                for name in sorted(os.listdir(folder)):
                    if name.startswith("vdlrecords.") and os.path.isfile(os.path.join(folder, name)):
                        os.remove(os.path.join(folder, name))
                        deleted.append(os.path.join(folder, name))
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
            name = "{}/s{}".format(k[0], k[1]) if isinstance(k, tuple) else k
            w.add_scalar(tag=name, value=float(v), step=step)
        w.add_scalar(tag="lr", value=float(lr), step=step)

        def gray(tag, x):
            x = (np.clip(x, 0, 1) * 255).astype(np.uint8)
            w.add_image(tag=tag, img=np.repeat(x[:, :, None], 3, 2), step=step, dataformats="HWC")

        for j in range(min(4, inputs[("color", 0, 0)].shape[0])):
            img = inputs[("color", 0, 0)][j].numpy().transpose(1, 2, 0)
            w.add_image(tag="color_0/{}".format(j), img=(np.clip(img, 0, 1) * 255).astype(np.uint8),
                        step=step, dataformats="HWC")
            w.add_image(tag="disp_0/{}".format(j), img=utils.colormap_disp(outputs[("disp", 0)][j, 0].numpy()),
                        step=step, dataformats="HWC")
            if ("automask", 0) in outputs:
                gray("automask_0/{}".format(j), outputs[("automask", 0)][j, 0].numpy())
            if ("hint_mask", 0) in outputs:
                gray("hint_pixels_0/{}".format(j), outputs[("hint_mask", 0)][j, 0].numpy())
                gray("depth_hint/{}".format(j), utils.normalize_image(inputs["depth_hint"][j, 0].numpy()))

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        for w in self.writers.values():
            w.close()
        self.writers = {}
        if self.file is not None:
            self.file.close()
            self.file = None
