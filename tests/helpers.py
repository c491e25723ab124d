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
