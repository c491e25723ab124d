"""The training loss of Monodepth2 with Depth Hints (docs/METHOD.md, section 4): ``DepthHintsLoss`` warps every source
frame into the target view with each scale's depth (:meth:`~DepthHintsLoss.warp_sources`), then scores the warps
(``__call__``). Every formula is a layers.py function, shared with the hint precomputation.
"""
import paddle
import paddle.nn.functional as F

import layers


class DepthHintsLoss:
    """Loss terms of Watson et al. (2019) on top of Godard et al. (2019); arguments are Monodepth2's option names and
    defaults. ``frame_ids``: the target 0 first, then the sources (``"s"``: the stereo image). PoseCNN translations
    (``pose_model_type="posecnn"``) are scaled by the mean inverse depth."""

    OPTIONS = ("height", "width", "scales", "min_depth", "max_depth", "use_depth_hints", "no_ssim",
               "avg_reprojection", "disable_automasking", "predictive_mask", "disparity_smoothness",
               "v1_multiscale", "pose_model_type")

    def __init__(self, height, width, frame_ids, scales=(0, 1, 2, 3), min_depth=0.1, max_depth=100.0,
                 use_depth_hints=False, no_ssim=False, avg_reprojection=False, disable_automasking=False,
                 predictive_mask=False, disparity_smoothness=1e-3, v1_multiscale=False,
                 pose_model_type="separate_resnet"):
        self.height, self.width = int(height), int(width)
        self.frame_ids = list(frame_ids)
        self.scales = list(scales)
        self.min_depth, self.max_depth = min_depth, max_depth
        self.use_depth_hints = use_depth_hints
        self.no_ssim = no_ssim
        self.avg_reprojection = avg_reprojection
        self.automask = not disable_automasking
        self.predictive_mask = predictive_mask
        self.disparity_smoothness = disparity_smoothness
        self.v1_multiscale = v1_multiscale
        self.pose_model_type = pose_model_type
        self.backproject, self.project = {}, {}
        for s in self.scales:
            h, w = self.height // 2 ** s, self.width // 2 ** s
            self.backproject[s] = layers.BackprojectDepth(1, h, w)
            self.project[s] = layers.Project3D(1, h, w)

    @classmethod
    def from_options(cls, opt):
        frame_ids = list(opt.frame_ids) + (["s"] if opt.use_stereo else [])
        return cls(frame_ids=frame_ids, **{k: getattr(opt, k) for k in cls.OPTIONS})

    def warp_sources(self, inputs, outputs):
        """Add ``("depth", 0, s)``, ``("sample", f, s)`` and ``("color", f, s)`` (source f warped into the target at
        scale s) to ``outputs``; with hints ``("color_depth_hint", "s", 0)``, warped with the hint."""
        for scale in self.scales:
            disp = outputs[("disp", scale)]
            source_scale = scale if self.v1_multiscale else 0
            if source_scale != scale:
                disp = F.interpolate(disp, [self.height, self.width], mode="bilinear", align_corners=False)
            _, depth = layers.disp_to_depth(disp, self.min_depth, self.max_depth)
            outputs[("depth", 0, scale)] = depth
            cam_points = None
            for frame_id in self.frame_ids[1:]:
                T = inputs["stereo_T"] if frame_id == "s" else outputs[("cam_T_cam", 0, frame_id)]
                if self.pose_model_type == "posecnn" and frame_id != "s":
                    axisangle = outputs[("axisangle", 0, frame_id)]
                    translation = outputs[("translation", 0, frame_id)]
                    mean_inv_depth = paddle.mean(1.0 / depth, axis=[2, 3], keepdim=True)
                    T = layers.transformation_from_parameters(
                        axisangle[:, 0], translation[:, 0] * mean_inv_depth[:, 0, :, :], frame_id < 0)
                if cam_points is None:
                    cam_points = self.backproject[source_scale](depth, inputs[("inv_K", source_scale)])
                grid = self.project[source_scale](cam_points, inputs[("K", source_scale)], T)
                outputs[("sample", frame_id, scale)] = grid
                outputs[("color", frame_id, scale)] = layers.warp(inputs[("color", frame_id, source_scale)], grid)
        if self.use_depth_hints:
            cam_points = self.backproject[0](inputs["depth_hint"], inputs[("inv_K", 0)])
            grid = self.project[0](cam_points, inputs[("K", 0)], inputs["stereo_T"])
            outputs[("color_depth_hint", "s", 0)] = layers.warp(inputs[("color", "s", 0)], grid)

    def _min_over_sources(self, errors):
        if self.avg_reprojection:
            return paddle.mean(errors, axis=1, keepdim=True)
        return paddle.min(errors, axis=1, keepdim=True) if errors.shape[1] > 1 else errors

    def __call__(self, inputs, outputs):
        """Total loss and its terms for warped ``outputs`` (:meth:`warp_sources`): ``"loss"``, per scale s
        ``("loss", s)``, ``("reproj", s)``, ``("smooth", s)``, with hints ``("hint", s)``, ``("hint_won", s)`` (the
        hint's share of pixels). Adds the ``("automask", s)`` and ``("hint_mask", s)`` masks to ``outputs``."""
        losses = {}
        total = 0.0
        sources = self.frame_ids[1:]
        stats = {}  # the target's pooled SSIM statistics, once per target image

        def pe(pred, source_scale):
            target = inputs[("color", 0, source_scale)]
            if not self.no_ssim and source_scale not in stats:
                stats[source_scale] = layers.reprojection_target_stats(target)
            return layers.compute_reprojection_loss(pred, target, self.no_ssim, stats.get(source_scale))

        hint_pe = hint_valid = None
        if self.use_depth_hints:
            hint_valid = inputs["depth_hint_mask"]
            hint_pe = pe(outputs[("color_depth_hint", "s", 0)], 0) + 1000.0 * (1.0 - hint_valid)
        identity_cache = {}
        for scale in self.scales:
            source_scale = scale if self.v1_multiscale else 0
            reproj = paddle.concat([pe(outputs[("color", f, scale)], source_scale) for f in sources], 1)
            if self.predictive_mask:
                mask = outputs["predictive_mask"][("disp", scale)]
                if source_scale != scale:
                    mask = F.interpolate(mask, [self.height, self.width], mode="bilinear", align_corners=False)
                reproj = reproj * mask
                weighting = 0.2 * F.binary_cross_entropy(mask, paddle.ones_like(mask))
            reproj = self._min_over_sources(reproj)

            identity = None
            if self.automask:
                if source_scale not in identity_cache:
                    identity_cache[source_scale] = self._min_over_sources(
                        paddle.concat([pe(inputs[("color", f, source_scale)], source_scale) for f in sources], 1))
                # tiny noise breaks ties between identical errors
                identity = identity_cache[source_scale] + paddle.randn(reproj.shape, dtype=reproj.dtype) * 1e-5

            reproj_mask, hint_mask = layers.compute_loss_masks(reproj, identity, hint_pe)  # no gradient
            loss = paddle.sum(reproj * reproj_mask) / (paddle.sum(reproj_mask) + 1e-7)
            losses[("reproj", scale)] = loss
            if self.predictive_mask:
                loss = loss + weighting
            if hint_mask is not None:
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
            smooth = self.disparity_smoothness * smooth / (2 ** scale)
            loss = loss + smooth
            losses[("smooth", scale)] = smooth
            losses[("loss", scale)] = loss
            total = total + loss
        losses["loss"] = total / len(self.scales)
        return losses
