"""All networks of a training run in one layer (docs/METHOD.md, section 2), so that one ``paddle.DataParallel``
wrapper synchronises every gradient. ``forward(inputs)`` maps a batch (Monodepth2 keys) to ``("disp", s)`` per scale
and, with temporal frames, ``("axisangle", 0, f)``, ``("translation", 0, f)``, ``("cam_T_cam", 0, f)`` per source
frame. The sub-networks keep their checkpoint names in ``models``.
"""
import paddle
import paddle.nn as nn

from layers import transformation_from_parameters

from .depth_decoder import DepthDecoder
from .pose_cnn import PoseCNN
from .pose_decoder import PoseDecoder
from .resnet_encoder import ResnetEncoder


def uses_pose_net(opt):
    """Stereo-only training (frame ids [0] + stereo) needs no pose network."""
    return not (opt.use_stereo and list(opt.frame_ids) == [0])


class DepthHintsModel(nn.Layer):
    """The depth network, plus pose networks (and a predictive mask) when the options use them."""

    def __init__(self, opt):
        super().__init__()
        self.frame_ids = list(opt.frame_ids) + (["s"] if opt.use_stereo else [])
        self.pose_model_type = opt.pose_model_type
        self.num_pose_frames = 2 if opt.pose_model_input == "pairs" else len(opt.frame_ids)
        self.use_pose_net = uses_pose_net(opt)
        pretrained = {"pretrained": True, "scratch": False}.get(opt.weights_init, opt.weights_init)
        m = nn.LayerDict()
        m["encoder"] = ResnetEncoder(opt.num_layers, pretrained)
        m["depth"] = DepthDecoder(m["encoder"].num_ch_enc, opt.scales)
        if self.use_pose_net:
            if opt.pose_model_type == "separate_resnet":
                m["pose_encoder"] = ResnetEncoder(opt.num_layers, pretrained, num_input_images=self.num_pose_frames)
                m["pose"] = PoseDecoder(m["pose_encoder"].num_ch_enc, num_input_features=1,
                                        num_frames_to_predict_for=2)
            elif opt.pose_model_type == "shared":
                m["pose"] = PoseDecoder(m["encoder"].num_ch_enc, self.num_pose_frames)
            else:
                m["pose"] = PoseCNN(self.num_pose_frames)
        if opt.predictive_mask:
            m["predictive_mask"] = DepthDecoder(m["encoder"].num_ch_enc, opt.scales,
                                                num_output_channels=len(self.frame_ids) - 1)
        self.models = m

    def forward(self, inputs):
        m = self.models
        if self.pose_model_type == "shared" and self.use_pose_net:
            # one encoder pass over all frames, split back per frame
            all_aug = paddle.concat([inputs[("color_aug", i, 0)] for i in self.frame_ids], 0)
            all_feats = [paddle.split(f, len(self.frame_ids), axis=0) for f in m["encoder"](all_aug)]
            features = {k: [f[i] for f in all_feats] for i, k in enumerate(self.frame_ids)}
            target_features = features[0]
        else:
            features = target_features = m["encoder"](inputs[("color_aug", 0, 0)])
        outputs = m["depth"](target_features)
        if "predictive_mask" in m:
            outputs["predictive_mask"] = m["predictive_mask"](target_features)
        if self.use_pose_net:
            outputs.update(self.predict_poses(inputs, features))
        return outputs

    def _pose_input(self, inputs, features, frames):
        """The pose network's input for the frame ids ``frames``, in that order."""
        if self.pose_model_type == "shared":
            return [features[f] for f in frames]
        images = paddle.concat([inputs[("color_aug", f, 0)] for f in frames], 1)
        return [self.models["pose_encoder"](images)] if self.pose_model_type == "separate_resnet" else images

    def predict_poses(self, inputs, features):
        """Camera poses from the target to each temporal source (a negative id: the pair [frame, 0], inverted)."""
        outputs = {}
        temporal = [f for f in self.frame_ids[1:] if f != "s"]
        if self.num_pose_frames == 2:
            for f in temporal:
                pose_in = self._pose_input(inputs, features, [f, 0] if f < 0 else [0, f])
                axisangle, translation = self.models["pose"](pose_in)
                outputs[("axisangle", 0, f)] = axisangle
                outputs[("translation", 0, f)] = translation
                outputs[("cam_T_cam", 0, f)] = transformation_from_parameters(axisangle[:, 0], translation[:, 0], f < 0)
            return outputs
        ids = [f for f in self.frame_ids if f != "s"]
        axisangle, translation = self.models["pose"](self._pose_input(inputs, features, ids))
        for i, f in enumerate(temporal):
            outputs[("axisangle", 0, f)] = axisangle
            outputs[("translation", 0, f)] = translation
            outputs[("cam_T_cam", 0, f)] = transformation_from_parameters(axisangle[:, i], translation[:, i])
        return outputs
