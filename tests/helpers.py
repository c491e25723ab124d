"""Small helpers shared by several test modules (pytest puts tests/ on sys.path)."""
import os


def save_untrained_depth_model(folder, height, width, use_stereo=True, seed=0):
    """Write a randomly initialised ResNet18 depth model folder (encoder.pdparams with
    height/width/use_stereo, depth.pdparams) and return the (encoder, decoder) in eval mode."""
    import paddle
    import networks
    paddle.seed(seed)
    enc = networks.ResnetEncoder(18, False)
    dec = networks.DepthDecoder(enc.num_ch_enc, scales=range(4))
    os.makedirs(folder, exist_ok=True)
    state = dict(enc.state_dict())
    state.update(height=height, width=width, use_stereo=use_stereo)
    paddle.save(state, os.path.join(folder, "encoder.pdparams"))
    paddle.save(dec.state_dict(), os.path.join(folder, "depth.pdparams"))
    enc.eval()
    dec.eval()
    return enc, dec


def write_true_depth_hints(data, out, drop=0.3, seed=0):
    """Depth-hint files from the synthetic data's true depth (network units: metres * 0.1 /
    0.54), with a fraction ``drop`` of the pixels zeroed (= no hint), in the precompute's
    layout under ``out``; so tests of training need not run the SGM precompute."""
    import glob
    import numpy as np
    rng = np.random.default_rng(seed)
    for f in sorted(glob.glob(os.path.join(data, "*", "*", "true_depth", "image_0*", "*.npy"))):
        date, drive, _, cam, name = os.path.relpath(f, data).split(os.sep)
        d = np.load(f).astype(np.float32) * (0.1 / 0.54)
        if drop:
            d[rng.random(d.shape) < drop] = 0
        p = os.path.join(out, date, drive, cam, name)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        np.save(p, d[None])
    return out
