"""Networks (docs/METHOD.md, section 2): parameter names/shapes that let Monodepth2 checkpoints load,
output shapes, multi-image conv1 tiling, pose heads, strict loading errors, and one
ResNet18 depth-net forward + backward at 192x640 on CPU."""
import numpy as np
import paddle
import pytest

import layers
import networks
from networks import (DepthDecoder, PoseCNN, PoseDecoder, ResnetEncoder, infer_num_layers,
                      load_state_dict_strict)
from networks import pretrained as pretrained_mod
from utils import ToolkitError


def _shapes(layer):
    return {k: [int(s) for s in v.shape] for k, v in layer.state_dict().items()}


def _expected_resnet18_keys():
    """Key -> shape of a torchvision/Monodepth2 ResNet18 encoder without fc and
    num_batches_tracked, with Paddle's BN buffer names."""
    def bn(name, c):
        return {f"{name}.{p}": [c] for p in ("weight", "bias", "_mean", "_variance")}

    exp = {"encoder.conv1.weight": [64, 3, 7, 7], **bn("encoder.bn1", 64)}
    cin = 64
    for stage, c in zip(range(1, 5), (64, 128, 256, 512)):
        for b in range(2):
            p = f"encoder.layer{stage}.{b}"
            exp[f"{p}.conv1.weight"] = [c, cin if b == 0 else c, 3, 3]
            exp.update(bn(f"{p}.bn1", c))
            exp[f"{p}.conv2.weight"] = [c, c, 3, 3]
            exp.update(bn(f"{p}.bn2", c))
            if b == 0 and stage > 1:
                exp[f"{p}.downsample.0.weight"] = [c, cin, 1, 1]
                exp.update(bn(f"{p}.downsample.1", c))
        cin = c
    return exp


@pytest.fixture(scope="module")
def enc18():
    return ResnetEncoder(18, False)


def test_resnet18_encoder_state_dict_names_and_shapes(enc18):
    shapes = _shapes(enc18)
    assert shapes == _expected_resnet18_keys()
    assert len(shapes) == 100
    assert shapes["encoder.layer2.0.downsample.0.weight"] == [128, 64, 1, 1]
    assert not any(".fc." in k for k in shapes)
    assert list(enc18.num_ch_enc) == [64, 64, 128, 256, 512]


def test_depth_decoder_state_dict_in_monodepth2_order(enc18):
    dec = DepthDecoder(enc18.num_ch_enc)
    shapes = _shapes(dec)
    # upconv(4,0), upconv(4,1), upconv(3,0), ..., upconv(0,1): ConvBlocks
    block_w = [[256, 512], [256, 512], [128, 256], [128, 256], [64, 128], [64, 128],
               [32, 64], [32, 96], [16, 32], [16, 16]]
    exp = {}
    for k, (co, ci) in enumerate(block_w):
        exp[f"decoder.{k}.conv.conv.weight"] = [co, ci, 3, 3]
        exp[f"decoder.{k}.conv.conv.bias"] = [co]
    for k, ci in zip(range(10, 14), (16, 32, 64, 128)):  # dispconv(0..3)
        exp[f"decoder.{k}.conv.weight"] = [1, ci, 3, 3]
        exp[f"decoder.{k}.conv.bias"] = [1]
    assert shapes == exp
    assert len(dec.decoder) == 14


def test_depth_decoder_pads_with_its_ops_attributes(enc18):
    """The decoder pads through its attributes (layers' ops by default), which an instance
    may replace (export_ops.traced_forms does while tracing): every pad goes through them."""
    paddle.seed(0)
    dec = DepthDecoder(enc18.num_ch_enc)
    dec.eval()
    assert dec.reflection_pad1 is layers.reflection_pad1 and dec.upsample_pad1 is layers.upsample_pad1
    with paddle.no_grad():
        feats = enc18(paddle.rand([1, 3, 64, 64]))
        want = dec(feats)
        calls = []
        dec.reflection_pad1 = lambda x: calls.append("pad") or layers.reflection_pad1(x)
        dec.upsample_pad1 = lambda x: calls.append("up") or layers.upsample_pad1(x)
        got = dec(feats)
    del dec.reflection_pad1, dec.upsample_pad1
    # per stage: upconv(i,0)'s input, the upsampling, the skip (i > 0), dispconv(i) (i < 4)
    assert calls.count("up") == 5 and calls.count("pad") == 5 + 4 + 4
    for key in want:
        np.testing.assert_array_equal(got[key].numpy(), want[key].numpy())
    assert dec.reflection_pad1 is layers.reflection_pad1


def test_check_input_size_is_the_one_rule():
    assert (networks.INPUT_SIZE_MULTIPLE, networks.MIN_INPUT_SIZE) == (32, 64)
    for h, w in ((64, 64), (192, 640), (320, 1024)):
        networks.check_input_size(h, w)
    networks.check_input_size(4096, 4096)
    for h, w in ((100, 640), (192, 630), (32, 640), (192, 32), (0, 640), (192, 4128), (100000, 640)):
        with pytest.raises(ToolkitError) as err:
            networks.check_input_size(h, w)
        msg = str(err.value)
        assert msg == (f"input size {w}x{h} is not a multiple of 32 of at least 64x64 and at most 4096 a side "
                       "(--height/--width): use e.g. 640x192 or 1024x320")
    with pytest.raises(ToolkitError) as err:
        networks.check_input_size(32, 64, "--model_path", what="recorded training size", fix="retrain")
    assert str(err.value) == ("recorded training size 64x32 is not a multiple of 32 of at least "
                              "64x64 and at most 4096 a side (--model_path): retrain")


@pytest.mark.parametrize("num_layers,channels", [(18, [64, 64, 128, 256, 512]),
                                                 (50, [64, 256, 512, 1024, 2048])])
@pytest.mark.slow
def test_encoder_decoder_output_shapes(num_layers, channels):
    paddle.seed(0)
    enc = ResnetEncoder(num_layers, False)
    dec = DepthDecoder(enc.num_ch_enc)
    enc.eval()
    dec.eval()
    x = paddle.rand([2, 3, 64, 128])
    with paddle.no_grad():
        feats = enc(x)
        out = dec(feats)
    assert list(enc.num_ch_enc) == channels
    exp_hw = [(32, 64), (16, 32), (8, 16), (4, 8), (2, 4)]
    assert [list(f.shape) for f in feats] == [[2, c, h, w] for c, (h, w) in zip(channels, exp_hw)]
    assert sorted(out) == [("disp", s) for s in range(4)]
    for s in range(4):
        d = out[("disp", s)].numpy()
        assert d.shape == (2, 1, 64 >> s, 128 >> s)
        assert (d > 0).all() and (d < 1).all()


def _write_imagenet_file(path, prefix="encoder.", seed=1):
    """A fake single-image ImageNet ResNet18 file, with the classifier like torchvision's."""
    paddle.seed(seed)
    src = networks.ResNetMultiImageInput(18, 1)
    state = {prefix + k: v.numpy() for k, v in src.state_dict().items()}
    state[prefix + "fc.weight"] = np.zeros((512, 1000), np.float32)
    state[prefix + "fc.bias"] = np.zeros((1000,), np.float32)
    paddle.save(state, str(path))
    return {k: v.numpy() for k, v in src.state_dict().items()}


@pytest.mark.slow
def test_multi_image_conv1_tiled_and_divided(tmp_path):
    src = _write_imagenet_file(tmp_path / "resnet18.pdparams")
    enc = ResnetEncoder(18, str(tmp_path / "resnet18.pdparams"), num_input_images=3)
    got = enc.encoder.conv1.weight.numpy()
    assert got.shape == (64, 9, 7, 7)
    w = src["conv1.weight"]
    for i in range(3):
        np.testing.assert_allclose(got[:, 3 * i:3 * i + 3], w / 3.0, rtol=1e-6)
    np.testing.assert_array_equal(enc.encoder.layer3[1].conv2.weight.numpy(),
                                  src["layer3.1.conv2.weight"])
    # Three copies of one image through the tiled conv1 == one image through the original.
    single = ResnetEncoder(18, str(tmp_path), num_input_images=1)  # folder form, no prefix needed
    np.testing.assert_array_equal(single.encoder.conv1.weight.numpy(), w)
    enc.eval()
    single.eval()
    x = paddle.rand([1, 3, 64, 64])
    with paddle.no_grad():
        a = enc(paddle.concat([x, x, x], axis=1))[-1].numpy()
        b = single(x)[-1].numpy()
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_unprefixed_imagenet_file_loads(tmp_path):
    src = _write_imagenet_file(tmp_path / "r18.pdparams", prefix="")
    enc = ResnetEncoder(18, str(tmp_path / "r18.pdparams"))
    np.testing.assert_array_equal(enc.encoder.bn1._mean.numpy(), src["bn1._mean"])


def test_pretrained_without_local_file_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(pretrained_mod, "DEFAULT_WEIGHTS_DIR", str(tmp_path))
    with pytest.raises(ToolkitError) as err:
        ResnetEncoder(18, True)
    msg = str(err.value)
    assert "resnet18.pdparams" in msg and "convert_torch_weights.py" in msg
    assert "weights/README.md" in msg


def test_pose_decoder_names_shapes_and_known_output(enc18):
    dec = PoseDecoder(enc18.num_ch_enc, num_input_features=1, num_frames_to_predict_for=2)
    assert _shapes(dec) == {
        "net.0.weight": [256, 512, 1, 1], "net.0.bias": [256],
        "net.1.weight": [256, 256, 3, 3], "net.1.bias": [256],
        "net.2.weight": [256, 256, 3, 3], "net.2.bias": [256],
        "net.3.weight": [12, 256, 1, 1], "net.3.bias": [12],
    }
    feats = [[paddle.rand([2, 512, 2, 4])] * 5]
    axisangle, translation = dec(feats)
    assert list(axisangle.shape) == [2, 2, 1, 3] and list(translation.shape) == [2, 2, 1, 3]
    # Zero last conv weight: output = 0.01 * bias, split into axis-angle | translation.
    dec.net[3].weight.set_value(np.zeros([12, 256, 1, 1], np.float32))
    dec.net[3].bias.set_value(np.arange(12, dtype=np.float32))
    axisangle, translation = dec(feats)
    np.testing.assert_allclose(axisangle.numpy()[1, 1, 0], [0.06, 0.07, 0.08], rtol=1e-6)
    np.testing.assert_allclose(translation.numpy()[0, 0, 0], [0.03, 0.04, 0.05], rtol=1e-6)


def test_pose_decoder_two_inputs_default_frames():
    enc = ResnetEncoder(18, False, num_input_images=2)
    assert list(enc.encoder.conv1.weight.shape) == [64, 6, 7, 7]
    dec = PoseDecoder(enc.num_ch_enc, num_input_features=2)
    assert list(dec.net[1].weight.shape) == [256, 512, 3, 3]
    feats = [[paddle.rand([3, 512, 2, 2])], [paddle.rand([3, 512, 2, 2])]]
    axisangle, translation = dec(feats)
    assert list(axisangle.shape) == [3, 1, 1, 3] and list(translation.shape) == [3, 1, 1, 3]


def test_pose_cnn_names_shapes_and_known_output():
    net = PoseCNN(3)
    shapes = _shapes(net)
    assert len(shapes) == 16
    assert shapes["net.0.weight"] == [16, 9, 7, 7]
    assert shapes["net.1.weight"] == [32, 16, 5, 5]
    assert shapes["net.6.weight"] == [256, 256, 3, 3]
    assert shapes["pose_conv.weight"] == [12, 256, 1, 1]
    x = paddle.rand([2, 9, 64, 128])
    axisangle, translation = net(x)
    assert list(axisangle.shape) == [2, 2, 1, 3] and list(translation.shape) == [2, 2, 1, 3]
    net.pose_conv.weight.set_value(np.zeros([12, 256, 1, 1], np.float32))
    net.pose_conv.bias.set_value(np.arange(12, dtype=np.float32))
    axisangle, translation = net(x)
    np.testing.assert_allclose(translation.numpy()[1, 1, 0], [0.09, 0.10, 0.11], rtol=1e-6)


@pytest.mark.slow
def test_load_strict_wrong_layer_count(tmp_path, enc18):
    paddle.save(ResnetEncoder(34, False).state_dict(), str(tmp_path / "encoder.pdparams"))
    with pytest.raises(ToolkitError) as err:
        load_state_dict_strict(enc18, str(tmp_path / "encoder.pdparams"), what="encoder.pdparams")
    msg = str(err.value)
    assert msg.startswith("encoder.pdparams does not match the ResnetEncoder")
    assert "unexpected keys" in msg and "encoder.layer1.2.conv1.weight" in msg
    assert "missing keys" not in msg and "--num_layers" in msg


def test_load_strict_shape_and_missing_keys(enc18):
    state = dict(ResnetEncoder(18, False, num_input_images=2).state_dict())
    del state["encoder.layer4.1.bn2.bias"]
    with pytest.raises(ToolkitError) as err:
        load_state_dict_strict(enc18, state, what="pose_encoder.pdparams")
    msg = str(err.value)
    assert "1 missing keys [encoder.layer4.1.bn2.bias]" in msg
    assert "1 shape mismatches [encoder.conv1.weight: file [64, 6, 7, 7] vs model [64, 3, 7, 7]]" in msg


@pytest.mark.slow
def test_load_strict_ignores_metadata_and_fc(tmp_path):
    paddle.seed(3)
    src = ResnetEncoder(18, False)
    state = {k: v.numpy() for k, v in src.state_dict().items()}
    state.update(height=192, width=640, use_stereo=True,
                 **{"encoder.fc.weight": np.ones((512, 1000), np.float32),
                    "encoder.fc.bias": np.ones((1000,), np.float32)})
    paddle.save(state, str(tmp_path / "encoder.pdparams"))
    dst = ResnetEncoder(18, False)
    load_state_dict_strict(dst, str(tmp_path / "encoder.pdparams"))
    for k, v in dst.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), state[k])
    with pytest.raises(ToolkitError, match="depth.pdparams not found"):
        load_state_dict_strict(dst, str(tmp_path / "depth.pdparams"), what="depth.pdparams")


def test_num_decoder_scales(enc18):
    assert networks.num_decoder_scales(DepthDecoder(enc18.num_ch_enc).state_dict()) == 4
    assert networks.num_decoder_scales(DepthDecoder(enc18.num_ch_enc, [0]).state_dict()) == 1


@pytest.mark.slow
def test_infer_num_layers():
    assert infer_num_layers(ResnetEncoder(18, False).state_dict()) == 18
    assert infer_num_layers(ResnetEncoder(34, False).state_dict()) == 34
    assert infer_num_layers(networks.ResNetMultiImageInput(50).state_dict()) == 50
    assert infer_num_layers({"decoder.0.conv.conv.weight": 0}) is None


@pytest.mark.slow
def test_resnet18_depth_net_forward_backward_192x640():
    paddle.seed(0)
    enc = ResnetEncoder(18, False)
    dec = DepthDecoder(enc.num_ch_enc)
    x = paddle.rand([1, 3, 192, 640])
    out = dec(enc(x))
    assert list(out[("disp", 0)].shape) == [1, 1, 192, 640]
    assert list(out[("disp", 3)].shape) == [1, 1, 24, 80]
    loss = sum(out[("disp", s)].mean() for s in range(4))
    loss.backward()
    for p in (enc.encoder.conv1.weight, enc.encoder.layer4[1].bn2.weight,
              dec.decoder[0].conv.conv.weight, dec.decoder[13].conv.bias):
        g = p.grad.numpy()
        assert np.isfinite(g).all() and np.abs(g).sum() > 0
    # A scale-0-only loss gives no gradient to the other scales' disp convs.
    enc.clear_gradients()
    dec.clear_gradients()
    dec(enc(x))[("disp", 0)].mean().backward()
    g13 = dec.decoder[13].conv.weight.grad
    assert g13 is None or float(paddle.abs(g13).sum()) == 0.0


def _payload_state_pickle(state, key, marker):
    """A protocol-2 pickle of ``state`` whose ``key`` is ``os.system("touch <marker>")``."""
    import pickle
    body = pickle.dumps({k: v for k, v in state.items() if k != key}, protocol=2)
    call = (b"c" + __import__("os").system.__module__.encode() + b"\nsystem\n(S'touch "
            + str(marker).encode() + b"'\ntR")
    return body[:-2] + b"X" + len(key).to_bytes(4, "little") + key.encode() + call + b"u."


def test_load_weights_file_reads_without_paddle_load(tmp_path, enc18, monkeypatch):
    """Weights files are read through safe_load (numpy arrays; paddle.load is never called)
    and load into the networks as paddle.load's Tensors did, metadata included."""
    paddle.seed(4)
    src = ResnetEncoder(18, False)
    path = tmp_path / "encoder.pdparams"
    paddle.save(dict(src.state_dict(), height=192, width=640, use_stereo=True), str(path))
    monkeypatch.setattr(paddle, "load", lambda *a, **k: pytest.fail("paddle.load called"))
    state = networks.load_weights_file(str(path))
    assert (state["height"], state["width"], bool(state["use_stereo"])) == (192, 640, True)
    assert all(isinstance(v, np.ndarray) for k, v in state.items() if k not in networks.META_KEYS)
    dst = ResnetEncoder(18, False)
    load_state_dict_strict(dst, str(path))
    for k, v in src.state_dict().items():
        np.testing.assert_array_equal(dst.state_dict()[k].numpy(), v.numpy(), err_msg=k)


def test_load_weights_file_refuses_code_without_running_it(tmp_path, enc18):
    import safe_load
    marker = tmp_path / "MARKER"
    state = {k: v.numpy() for k, v in enc18.state_dict().items()}
    path = tmp_path / "encoder.pdparams"
    path.write_bytes(_payload_state_pickle(dict(state, height=192), "height", marker))
    for load in (lambda: networks.load_weights_file(str(path), "encoder.pdparams"),
                 lambda: load_state_dict_strict(ResnetEncoder(18, False), str(path))):
        with pytest.raises(safe_load.UnsafeFileError) as err:
            load()
        msg = str(err.value)
        assert "\n" not in msg and msg.startswith(f"refusing to load {path}: it asks to")
        assert "posix.system" in msg or "nt.system" in msg
        assert not marker.exists()


def test_load_weights_file_damaged_and_foreign_files_are_one_line(tmp_path, enc18):
    paddle.save(enc18.state_dict(), str(tmp_path / "good.pdparams"))
    data = (tmp_path / "good.pdparams").read_bytes()
    (tmp_path / "cut.pdparams").write_bytes(data[: len(data) // 3])
    (tmp_path / "list.pdparams").write_bytes(__import__("pickle").dumps([1, 2], protocol=2))
    legacy_pth = b"".join(__import__("pickle").dumps(x, protocol=2) for x in (0x1950a86a20f9469cfc6c, 1001))
    (tmp_path / "encoder.pth.pdparams").write_bytes(legacy_pth)  # a PyTorch < 1.6 file: its magic number
    for name, needle in (("cut.pdparams", "could not be read"), ("list.pdparams", "does not hold a state dict"),
                         ("encoder.pth.pdparams", "it is a PyTorch .pth file (convert it with tools/convert_torch")):
        with pytest.raises(ToolkitError) as err:
            networks.load_weights_file(str(tmp_path / name), name)
        msg = str(err.value)
        assert "\n" not in msg and needle in msg and str(tmp_path / name) in msg, msg
