"""Semantic features ``dinov2``: DINOv2 patch features sampled at track positions.

Two variants matter (paper.md section 3): the released ``moseg.pth`` classifier expects
ViT-B/14 features of the last block's attention *keys* (768-d), taken with a forward hook on
that block's key projection; a lighter profile uses dinov2-small's last hidden state (384-d,
``facet: token``). The frame is resized so that its long side is ``input_size`` (rounded to the
patch size) and each track takes the bilinearly interpolated (or nearest) patch feature at its
position. The reference extracts with stride 7; this backend keeps the model's stride 14 and
interpolates, which needs no surgery on the patch embedding.
"""

from __future__ import annotations

import logging
from typing import Optional

import numpy as np

from motionseg_ros.registry import BackendError, register
from motionseg_ros.stages import FeatureExtractor, StageContext
from motionseg_ros.types import Frame
from motionseg_ros.weights import (free_gpu_memory, is_oom, resolve_device, resolve_dtype,
                                   resolve_weights)

LOG = logging.getLogger(__name__)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@register('features', 'dinov2')
class Dinov2Features(FeatureExtractor):
    """DINOv2 (transformers ``Dinov2Model``) features at track positions."""

    def __init__(self, model: str = 'dinov2-base', facet: str = 'key', device: str = 'auto',
                 dtype: str = 'auto', input_size: int = 448, sampling: str = 'bilinear',
                 min_input_size: int = 112) -> None:
        """Load ``model`` (a local transformers folder).

        ``facet``: key (last block's attention keys, what moseg.pth expects) | token (last
        hidden state). ``input_size``: long side in pixels fed to the model; on GPU out of
        memory it is halved down to ``min_input_size`` with a warning.
        """
        import torch
        from transformers import AutoConfig, AutoModel
        if facet not in ('key', 'token'):
            raise BackendError(f'features dinov2: facet must be key or token, got {facet!r}')
        if sampling not in ('bilinear', 'nearest'):
            raise BackendError(f'features dinov2: sampling must be bilinear or nearest, '
                               f'got {sampling!r}')
        path = resolve_weights(model, 'features dinov2', kind='dir',
                               hub_id='facebook/dinov2-base')
        cfg = AutoConfig.from_pretrained(str(path), local_files_only=True)
        if cfg.model_type not in ('dinov2', 'dinov2_with_registers'):
            raise BackendError(f'features dinov2: {path} holds a {cfg.model_type!r} model, '
                               'expected dinov2')
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.model = AutoModel.from_pretrained(str(path), local_files_only=True,
                                               dtype=self.dtype).to(self.device).eval()
        self.patch = int(cfg.patch_size)
        self.skip_tokens = 1 + int(getattr(cfg, 'num_register_tokens', 0) or 0)
        self.facet = facet
        self.sampling = sampling
        self.input_size = int(input_size)
        self.min_input_size = int(min_input_size)
        if self.input_size < self.patch:
            raise BackendError(f'features dinov2: input_size {input_size} is below the patch '
                               f'size {self.patch}')
        self._keys: Optional['torch.Tensor'] = None
        layer = self.model.encoder.layer[-1].attention
        key_proj = getattr(layer, 'k_proj', None) or getattr(
            getattr(layer, 'attention', None), 'key', None)
        if key_proj is None:
            raise BackendError('features dinov2: no key projection in the last block')
        key_proj.register_forward_hook(self._grab_keys)
        self._torch = torch

    @property
    def dim(self) -> int:
        """Feature dimension D (768 for ViT-B/14, 384 for ViT-S/14)."""
        return int(self.model.config.hidden_size)

    def _grab_keys(self, module, inputs, output) -> None:
        """Forward hook: keep the last block's key projection output (B, tokens, D)."""
        self._keys = output

    def feature_map(self, frame: Frame):
        """Return the (D, gh, gw) patch feature map of ``frame`` (torch, float32)."""
        torch = self._torch
        h, w = frame.size
        scale = self.input_size / max(h, w)
        gh = max(1, int(round(h * scale / self.patch)))
        gw = max(1, int(round(w * scale / self.patch)))
        img = torch.from_numpy(np.ascontiguousarray(frame.image[..., ::-1])).to(self.device)
        img = img.permute(2, 0, 1)[None].float() / 255.0
        img = torch.nn.functional.interpolate(img, size=(gh * self.patch, gw * self.patch),
                                              mode='bilinear', align_corners=False,
                                              antialias=True)
        mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1)
        img = ((img - mean) / std).to(self.dtype)
        with torch.inference_mode():
            out = self.model(pixel_values=img)
            tokens = self._keys if self.facet == 'key' else out.last_hidden_state
            self._keys = None
            patches = tokens[0, self.skip_tokens:].float()
        return patches.reshape(gh, gw, -1).permute(2, 0, 1)

    def extract(self, frame: Frame, xy: np.ndarray, ctx: StageContext) -> np.ndarray:
        """Return (N, D) float32 features at pixel positions ``xy`` (N, 2)."""
        torch = self._torch
        xy = np.asarray(xy, np.float32).reshape(-1, 2)
        if xy.shape[0] == 0:
            return np.zeros((0, self.dim), np.float32)
        while True:
            try:
                fmap = self.feature_map(frame)
                break
            except Exception as exc:  # noqa: BLE001 - only OOM is handled, the rest re-raised
                if not is_oom(exc) or self.input_size // 2 < self.min_input_size:
                    raise
                free_gpu_memory()
                self.input_size //= 2
                msg = f'dinov2: GPU out of memory; input_size lowered to {self.input_size}'
                LOG.warning(msg)
                ctx.scratch.setdefault('warnings', []).append(msg)
        h, w = frame.size
        safe = np.nan_to_num(xy, nan=-1e6, posinf=-1e6, neginf=-1e6)
        grid = np.stack([(safe[:, 0] + 0.5) / w * 2 - 1, (safe[:, 1] + 0.5) / h * 2 - 1], 1)
        grid_t = torch.from_numpy(grid.astype(np.float32)).to(fmap.device).view(1, 1, -1, 2)
        feats = torch.nn.functional.grid_sample(fmap[None], grid_t, mode=self.sampling,
                                                padding_mode='border', align_corners=False)
        return feats[0, :, 0].T.contiguous().cpu().numpy().astype(np.float32)

    def close(self) -> None:
        """Free the model."""
        self.__dict__.pop('model', None)
        free_gpu_memory()
