"""Train Monodepth2 / Depth Hints models: ``python train.py --config configs/depth_hints/s_640x192.yaml ...``
(README, "Training", also for several GPUs). A ToolkitError (bad options or data, a run folder that already
holds checkpoints, a sample that fails to load: ``weights_last`` is saved first) ends it with one
``error: ...`` line on stderr and exit code 2; Ctrl-C / SIGTERM with 130 / 143."""
import sys

from options import MonodepthOptions, validate_options
from runtime import cpu_env_defaults, quiet_paddle_notices
from utils import run_cli

quiet_paddle_notices()
cpu_env_defaults()  # before paddle is imported


def train(argv):
    opt = MonodepthOptions().parse(argv)
    validate_options(opt)
    from trainer import Trainer
    trainer = Trainer(opt, check_data=True)  # the run folder, then the data, then the rest
    trainer.train()
    if trainer.step == 0 and trainer.is_main and trainer.guard.stopped is None:
        # e.g. --max_steps 0: keep the initial weights (an untrained baseline to evaluate)
        print("no training step was run; initial weights saved to {}".format(trainer.save_checkpoint()))
    return 0 if trainer.guard.stopped is None else 128 + int(trainer.guard.stopped)  # 130 Ctrl-C, 143 SIGTERM


def main(argv=None):
    try:
        return run_cli(train, argv)
    except KeyboardInterrupt:  # a second Ctrl-C / SIGTERM: stop at once
        print("error: interrupted; the last checkpoint saved is kept: continue with --resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
