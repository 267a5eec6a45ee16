"""The paper's trajectory classifier (SegAnyMo, CVPR 2025) in torch.

Two parts (paper sections 5-7):

* the *motion encoder* (spatio-temporal trajectory attention): per-track, per-frame input of
  88 channels (see :mod:`.encoding`), a 1x1 projection, a post-norm transformer whose every
  layer attends along time within each track and then across tracks within each frame, and a
  max-pool over time;
* the *tracks decoder* (motion-semantic decoupled embedding, MSDE): self-attention over all
  tracks; the semantic (DINO) feature enters only the encoder blocks' FFNs; the decoder blocks
  attend over the motion-only embedding and cross-attend to the encoder output.

Module and parameter names follow the released ``moseg.pth`` so that it loads with
``strict=True`` (see ``moseg_manifest.json`` and :mod:`.checkpoint`); the code itself is
written from the paper and from those names and shapes. ``reference_quirks=True`` reproduces
what the reference model saw (see :mod:`.encoding`; cross-attention memory and max-pool that
also include invisible frames); the default feeds the corrected input and masks invisible
frames everywhere.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from motionseg_ros.models.attention_layers import (
    MsdeDecoderBlock, MsdeEncoderBlock, PointEmbedding, SpaceTimeTransformer, key_tracks,
    safe_padding)
from motionseg_ros.models.checkpoint import save_checkpoint  # noqa: F401 - re-exported
from motionseg_ros.models.config import MosegConfig
from motionseg_ros.models.ego_residual import homography_residuals
from motionseg_ros.models.encoding import (
    encode_inputs, force_visible_frames, normalise_positions, normalise_window_depth,
    reference_depth_maps, reference_depth_sample)


class MotionEncoder(nn.Module):
    """Per-frame projection, space-time transformer, max-pool over time -> (N, d_model)."""

    def __init__(self, cfg: MosegConfig) -> None:
        super().__init__()
        self.input_fc1 = nn.Conv2d(cfg.in_channels, 16, (1, 1))
        self.fc2 = nn.Conv2d(16, cfg.d_model, (1, 1))
        self.transformer_model = SpaceTimeTransformer(cfg)

    def _project(self, x: Tensor) -> Tensor:
        # 1x1 convolutions on a (1, C, N, T) image, as the reference stores them
        img = x.permute(2, 0, 1).unsqueeze(0)
        img = F.relu(self.fc2(F.relu(self.input_fc1(img))))
        return img.squeeze(0).permute(1, 2, 0)

    def forward(self, x: Tensor, invisible: Tensor, reference_quirks: bool = False,
                keys: Optional[Tensor] = None) -> Tensor:
        """X (N, T, C), invisible (N, T) -> (N, d_model)."""
        tokens = self._project(x)
        out = self.transformer_model(tokens, invisible, mask_memory=not reference_quirks,
                                     keys=keys)
        if not reference_quirks:   # the reference max-pools over invisible frames too
            out = out.masked_fill(safe_padding(invisible).unsqueeze(-1), float('-inf'))
        return out.max(dim=1).values


class TracksDecoder(nn.Module):
    """MSDE: (N, d_model) motion + optional (N, D) semantics -> (N,) logits."""

    def __init__(self, cfg: MosegConfig) -> None:
        super().__init__()
        dim = cfg.net_channels
        self.embedding = PointEmbedding(cfg.d_model, dim)
        self.encoders = nn.ModuleList([
            MsdeEncoderBlock(dim, cfg.decoder_heads, cfg.decoder_ffn, cfg.feature_dim,
                             cfg.dropout, cfg.attention_dropout)
            for _ in range(cfg.decoder_blocks)])
        self.decoders = nn.ModuleList([
            MsdeDecoderBlock(dim, cfg.decoder_heads, cfg.decoder_ffn, cfg.dropout,
                             cfg.attention_dropout) for _ in range(cfg.decoder_blocks)])
        self.output_layer = nn.Linear(dim, 1)

    def forward(self, motion: Tensor, feature: Optional[Tensor],
                keys: Optional[Tensor] = None) -> Tensor:
        """Map (N, d_model) motion and optional (N, D) features to (N,) logits.

        ``keys``: indices of the tracks attended to (None = all), see :func:`key_tracks`.
        """
        x = self.embedding(motion).unsqueeze(0)                  # (1, N, dim)
        feat = None if feature is None else feature.unsqueeze(0)
        memory = x
        for block in self.encoders:
            memory = block(memory, feat, keys)
        out = x
        for block in self.decoders:
            out = block(out, memory, keys)
        return self.output_layer(out)[0, :, 0]


class MosegModel(nn.Module):
    """Trajectory classifier: tracks of one window in, per-track logits out.

    Top-level names (``joint_encoder``, ``decoder``) are those of the released checkpoint.
    """

    def __init__(self, cfg: Optional[MosegConfig] = None) -> None:
        super().__init__()
        self.cfg = cfg or MosegConfig()
        self.joint_encoder = MotionEncoder(self.cfg)
        self.decoder = TracksDecoder(self.cfg)

    def forward(self, inputs: Tensor, invisible: Tensor, features: Optional[Tensor] = None,
                reference_quirks: bool = False) -> Tensor:
        """Map inputs (N, T, C) from :func:`encode_inputs`, invisible (N, T) to (N,) logits."""
        if inputs.dim() != 3 or inputs.shape[-1] != self.cfg.in_channels:
            raise ValueError(f'moseg: expected inputs (N, T, {self.cfg.in_channels}), got '
                             f'{tuple(inputs.shape)}')
        if self.cfg.feature_dim:
            if features is None or features.shape != (inputs.shape[0], self.cfg.feature_dim):
                got = None if features is None else tuple(features.shape)
                raise ValueError(f'moseg: this model needs semantic features '
                                 f'({inputs.shape[0]}, {self.cfg.feature_dim}); got {got}')
        else:
            features = None
        if inputs.shape[0] == 0:
            return inputs.new_zeros(0)
        # the first two input channels are the normalised positions (frequency encoding)
        keys = key_tracks(inputs[..., :2], ~invisible, self.cfg.space_keys)
        motion = self.joint_encoder(inputs, invisible, reference_quirks, keys)
        return self.decoder(motion, features, keys)

    def classify(self, xy: Tensor, visible: Tensor, confidence: Tensor,
                 image_size: Tuple[int, int], depth: Optional[Tensor] = None,
                 features: Optional[Tensor] = None, reference_quirks: bool = False,
                 depth_maps: Optional[Tensor] = None, evidence: Optional[Tensor] = None,
                 visibility: Optional[Tensor] = None) -> Tensor:
        """Pixels in, (N,) logits out: the whole input path for one window.

        ``depth`` (N, T) metric or relative depth (NaN unknown); ``depth_maps`` (T, H, W)
        disparity maps are used instead in reference mode when given; ``evidence`` (N, T, 2)
        (or 3 with ``geo_epipolar``) the geometric channels of a ``geo_evidence`` model;
        ``visibility`` (N, T) the tracker's continuous visibility (None: ``visible`` as 0/1).
        """
        inputs, invisible = self.prepare(xy, visible, confidence, image_size, depth,
                                         reference_quirks, depth_maps, evidence, visibility)
        return self(inputs, invisible, features, reference_quirks)

    def prepare(self, xy: Tensor, visible: Tensor, confidence: Tensor,
                image_size: Tuple[int, int], depth: Optional[Tensor] = None,
                reference_quirks: bool = False, depth_maps: Optional[Tensor] = None,
                evidence: Optional[Tensor] = None, visibility: Optional[Tensor] = None
                ) -> Tuple[Tensor, Tensor]:
        """Return the encoded inputs (N, T, C) and the invisible mask (N, T).

        In reference mode a frame where no track is visible gets its most confident track
        marked visible (:func:`force_visible_frames`), as the reference's inference did; the
        visibility channel keeps the tracker's value.
        """
        visible = visible.bool()
        vis_value = visible.float() if visibility is None else visibility.float()
        if reference_quirks:
            visible = force_visible_frames(visible, confidence)
        uv = normalise_positions(xy.float(), image_size)
        disparity = valid = None
        if self.cfg.use_depth and reference_quirks and depth_maps is not None:
            disparity = reference_depth_sample(reference_depth_maps(depth_maps), uv)
            valid = torch.isfinite(disparity)
            disparity = torch.nan_to_num(disparity, nan=0.0)
        elif self.cfg.use_depth and depth is not None:
            disparity, valid = normalise_window_depth(depth.float(), visible)
        inputs = encode_inputs(self.cfg, uv, visible, confidence.float(), disparity, valid,
                               visibility_value=vis_value, reference_quirks=reference_quirks)
        if self.cfg.ego_residual:
            inputs = torch.cat([inputs, homography_residuals(uv, visible, image_size)], dim=-1)
        if self.cfg.geo_evidence:
            want = (xy.shape[0], xy.shape[1], 3 if self.cfg.geo_epipolar else 2)
            if evidence is None or tuple(evidence.shape) != want:
                got = None if evidence is None else tuple(evidence.shape)
                raise ValueError(f'moseg: this model needs geometric evidence {want}; got '
                                 f'{got}')
            inputs = torch.cat([inputs, evidence.to(inputs.dtype)], dim=-1)
        return inputs, ~visible
