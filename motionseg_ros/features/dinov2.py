"""Semantic features ``dinov2``: DINOv2 patch features sampled at track positions.

Two variants matter (paper.md section 3): the released ``moseg.pth`` classifier expects
ViT-B/14 features of the last block's attention *keys* (768-d), taken with a forward hook on
that block's key projection and laid out as the reference lays them out (channel
``d * heads + h``); a lighter profile uses dinov2-small's last hidden state (384-d,
``facet: token``). Two modes:

* ``faithful`` (config/gpu.yaml): what SegAnyMo did to make the features ``moseg.pth`` was
  trained on -- the frame at its own resolution rounded up to a multiple of 14 per side, patches
  every 7 pixels (overlapping; see :mod:`.vit_stride`), and each track takes the patch
  ``int(x * grid_w / W)``, ``int(y * grid_h / H)`` (:mod:`.track_lookup`). About 4x the tokens
  of stride 14 at the same size, and attention grows with their square.
* ``fast``: the model's own stride 14 with the long side at ``input_size`` (448), the map
  sampled bilinearly at the track (or ``nearest``); much cheaper, features differ
  (docs/paper-fidelity.md gives the measured difference).
"""

from __future__ import annotations

import logging
import math
from typing import Optional, Tuple

import numpy as np

from motionseg_ros.features.track_lookup import LOOKUPS, keys_to_reference_layout, lookup
from motionseg_ros.features.vit_stride import set_patch_stride, token_grid
from motionseg_ros.registry import BackendError, register
from motionseg_ros.stages import FeatureExtractor, StageContext
from motionseg_ros.types import Frame
from motionseg_ros.weights import (free_gpu_memory, is_oom, resolve_device, resolve_dtype,
                                   resolve_weights)

LOG = logging.getLogger(__name__)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MODES = ('faithful', 'fast')
FAST_INPUT_SIZE = 448


@register('features', 'dinov2')
class Dinov2Features(FeatureExtractor):
    """DINOv2 (transformers ``Dinov2Model``) features at track positions."""

    def __init__(self, model: str = 'dinov2-base', facet: str = 'key', mode: str = 'fast',
                 device: str = 'auto', dtype: str = 'auto', input_size: Optional[int] = None,
                 sampling: str = 'auto', min_input_size: int = 112) -> None:
        """Load ``model`` (a local transformers folder).

        ``facet``: key (last block's attention keys, what moseg.pth expects) | token (last
        hidden state). ``mode``: faithful | fast (module docstring). ``input_size``: fast: the
        long side fed to the model (default 448); faithful: a cap on the frame's long side
        (default 0 = the frame's own size). On GPU out of memory it is halved down to
        ``min_input_size`` with a warning. ``sampling``: auto (faithful: reference, fast:
        bilinear) | reference | bilinear | nearest.
        """
        import torch
        from transformers import AutoConfig, AutoModel
        if facet not in ('key', 'token'):
            raise BackendError(f'features dinov2: facet must be key or token, got {facet!r}')
        if mode not in MODES:
            raise BackendError(f'features dinov2: mode must be faithful or fast, got {mode!r}')
        if sampling == 'auto':
            sampling = 'reference' if mode == 'faithful' else 'bilinear'
        if sampling not in LOOKUPS:
            raise BackendError(f'features dinov2: sampling must be auto, reference, bilinear '
                               f'or nearest, got {sampling!r}')
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
        self.heads = int(cfg.num_attention_heads)
        self.skip_tokens = 1 + int(getattr(cfg, 'num_register_tokens', 0) or 0)
        self.facet, self.mode, self.sampling = facet, mode, sampling
        self.stride = self.patch
        if mode == 'faithful':
            if self.patch % 2:
                raise BackendError(f'features dinov2: faithful mode needs an even patch size '
                                   f'(stride = patch / 2), got {self.patch}')
            self.stride = self.patch // 2
            set_patch_stride(self.model, self.stride)
        if input_size is None:
            input_size = 0 if mode == 'faithful' else FAST_INPUT_SIZE
        self.input_size = int(input_size)
        self.min_input_size = int(min_input_size)
        if self.input_size < self.patch and not (mode == 'faithful' and self.input_size == 0):
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

    def input_shape(self, h: int, w: int) -> Tuple[int, int]:
        """(height, width) in pixels the model sees for an ``h`` x ``w`` frame.

        fast: long side ``input_size``, each side rounded to the patch size; faithful: the
        frame (scaled down to ``input_size`` if set) rounded *up* to a multiple of the patch size
        per side, as the reference.
        """
        p = self.patch
        if self.mode == 'fast':
            scale = self.input_size / max(h, w)
            return (max(1, int(round(h * scale / p))) * p, max(1, int(round(w * scale / p))) * p)
        scale = min(1.0, self.input_size / max(h, w)) if self.input_size else 1.0
        return (max(1, math.ceil(max(1, round(h * scale)) / p)) * p,
                max(1, math.ceil(max(1, round(w * scale)) / p)) * p)

    def feature_map(self, frame: Frame):
        """Return the (D, gh, gw) patch feature map of ``frame`` (torch, float32).

        For ``facet: key`` the channels are the key projection's own (head by head);
        :meth:`extract` reorders them to the reference's layout.
        """
        torch = self._torch
        size = self.input_shape(*frame.size)
        gh, gw = token_grid(size[0], size[1], self.patch, self.stride)
        img = torch.from_numpy(np.ascontiguousarray(frame.image[..., ::-1])).to(self.device)
        img = img.permute(2, 0, 1)[None].float() / 255.0
        img = torch.nn.functional.interpolate(img, size=size, mode='bilinear',
                                              align_corners=False, antialias=True)
        mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1)
        img = ((img - mean) / std).to(self.dtype)
        with torch.inference_mode():
            out = self.model(pixel_values=img)
            tokens = self._keys if self.facet == 'key' else out.last_hidden_state
            self._keys = None
            patches = tokens[0, self.skip_tokens:].float()
        return patches.reshape(gh, gw, -1).permute(2, 0, 1)

    def _lower_input_size(self, frame: Frame) -> bool:
        """Halve the input size after a GPU out of memory; False when it would go too low."""
        current = self.input_size or max(frame.size)
        if current // 2 < self.min_input_size:
            return False
        self.input_size = current // 2
        return True

    def extract(self, frame: Frame, xy: np.ndarray, ctx: StageContext) -> np.ndarray:
        """Return (N, D) float32 features at pixel positions ``xy`` (N, 2)."""
        xy = np.asarray(xy, np.float32).reshape(-1, 2)
        if xy.shape[0] == 0:
            return np.zeros((0, self.dim), np.float32)
        while True:
            try:
                fmap = self.feature_map(frame)
                break
            except Exception as exc:  # noqa: BLE001 - only OOM is handled, the rest re-raised
                if not is_oom(exc) or not self._lower_input_size(frame):
                    raise
                free_gpu_memory()
                msg = f'dinov2: GPU out of memory; input_size lowered to {self.input_size}'
                LOG.warning(msg)
                ctx.scratch.setdefault('warnings', []).append(msg)
        feats = lookup(fmap, xy, frame.size, self.sampling)
        if self.facet == 'key':
            feats = keys_to_reference_layout(feats, self.heads)
        return feats.contiguous().cpu().numpy().astype(np.float32)

    def close(self) -> None:
        """Free the model."""
        self.__dict__.pop('model', None)
        free_gpu_memory()
