"""Depth ``depth_anything``: monocular relative depth from Depth-Anything (V2) in transformers.

The model predicts relative inverse depth (disparity). The paper's classifier consumes it
min-max normalised per frame to [0, 1] (paper.md section 2), resized to the input frame.
``Frame.depth`` is a *depth* (larger = farther; what ``sensor`` gives and what the ``moseg``
classifier inverts back to disparity), so by default this backend returns
``1 / clip(normalised disparity, eps, 1)``: inverting it gives the paper's normalised disparity
back exactly (clipped at ``eps`` for the farthest pixels). ``output: disparity`` returns the
normalised disparity itself. ``preprocessing: reference`` feeds the network and resizes its
output back exactly as the SegAnyMo reference did (``depth/preprocess.py``); ``fast`` (the
default) fits the long side instead. V2-Small is Apache-2.0; Base/Large are CC-BY-NC-4.0.
Sensor depth goes through the same interface in ``depth/sensor.py``.
"""

from __future__ import annotations

import logging
from typing import Optional

import numpy as np

from motionseg_ros.depth.pos_embed import use_offset_interpolation
from motionseg_ros.depth.preprocess import PREPROCESSING, fast_pixels, reference_pixels
from motionseg_ros.registry import BackendError, register
from motionseg_ros.stages import DepthEstimator, StageContext
from motionseg_ros.types import Frame
from motionseg_ros.weights import (free_gpu_memory, is_oom, resolve_device, resolve_dtype,
                                   resolve_weights)

LOG = logging.getLogger(__name__)


def normalise(disp: np.ndarray, output: str = 'depth', eps: float = 1e-3) -> np.ndarray:
    """Min-max normalise a disparity map over its finite pixels (near = 1), as the reference.

    ``output`` depth: ``1 / clip(normalised, eps, 1)``. Non-finite pixels stay NaN; a flat map
    is 0 (the reference's to_uint16 writes zeros then).
    """
    disp = np.asarray(disp, np.float32)
    finite = np.isfinite(disp)
    if not finite.any():
        return np.full(disp.shape, np.nan, np.float32)
    lo, hi = float(disp[finite].min()), float(disp[finite].max())
    out = (disp - lo) / (hi - lo) if hi > lo else np.zeros_like(disp)
    if output == 'depth':
        out = 1.0 / np.clip(out, eps, 1.0)
    out[~finite] = np.nan
    return out.astype(np.float32)


@register('depth', 'depth_anything')
class DepthAnythingDepth(DepthEstimator):
    """Per-frame min-max normalised disparity from ``DepthAnythingForDepthEstimation``."""

    def __init__(self, model: str = 'depth-anything-v2-small', device: str = 'auto',
                 dtype: str = 'auto', input_size: int = 518, min_input_size: int = 140,
                 multiple_of: int = 14, output: str = 'depth', eps: float = 1e-3,
                 preprocessing: str = 'fast') -> None:
        """Load ``model`` (a local transformers folder).

        ``output``: depth (relative, 1 / normalised disparity, the Frame.depth convention) |
        disparity (min-max normalised per frame, near = 1).
        ``input_size``: long side fed to the network (rounded to ``multiple_of``); halved on
        GPU out of memory down to ``min_input_size``, with a warning. With
        ``preprocessing: reference`` it is the reference's square target size instead (the
        side whose scale is nearer 1 is fitted to it: the short side of a landscape frame).
        ``eps``: floor of the normalised disparity before inversion (depth <= 1 / eps).
        """
        import torch
        from transformers import AutoConfig, DepthAnythingForDepthEstimation
        if output not in ('depth', 'disparity'):
            raise BackendError(f'depth depth_anything: output must be depth or disparity, '
                               f'got {output!r}')
        if not 0.0 < float(eps) < 1.0:
            raise BackendError('depth depth_anything: eps must be in (0, 1)')
        if preprocessing not in PREPROCESSING:
            raise BackendError(f'depth depth_anything: preprocessing must be one of '
                               f'{", ".join(PREPROCESSING)}, got {preprocessing!r}')
        self.preprocessing = preprocessing
        self.output = output
        self.eps = float(eps)
        path = resolve_weights(model, 'depth depth_anything', kind='dir',
                               hub_id='depth-anything/Depth-Anything-V2-Small-hf')
        cfg = AutoConfig.from_pretrained(str(path), local_files_only=True)
        if cfg.model_type != 'depth_anything':
            raise BackendError(f'depth depth_anything: {path} holds a {cfg.model_type!r} '
                               'model, expected depth_anything')
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.model = DepthAnythingForDepthEstimation.from_pretrained(
            str(path), local_files_only=True, dtype=self.dtype).to(self.device).eval()
        use_offset_interpolation(self.model)     # as trained (transformers >= 4.45 differs)
        self.input_size = int(input_size)
        self.min_input_size = int(min_input_size)
        self.multiple_of = int(multiple_of)
        if self.input_size < self.multiple_of:
            raise BackendError(f'depth depth_anything: input_size {input_size} too small')
        self._torch = torch

    def raw_disparity(self, frame: Frame) -> np.ndarray:
        """Network output (unnormalised disparity) resized to the frame, (H, W) float32."""
        torch = self._torch
        h, w = frame.size
        if self.preprocessing == 'reference':
            img = torch.from_numpy(reference_pixels(frame.image, self.input_size,
                                                    self.multiple_of)).to(self.device)
            mode = 'bicubic'
        else:
            img = fast_pixels(torch, frame.image, self.input_size, self.multiple_of, self.device)
            mode = 'bilinear'
        with torch.inference_mode():
            pred = self.model(pixel_values=img.to(self.dtype)).predicted_depth.float()
            pred = torch.nn.functional.interpolate(pred[:, None], size=(h, w), mode=mode,
                                                   align_corners=False)[0, 0]
        return pred.cpu().numpy()

    def estimate(self, frame: Frame, ctx: StageContext) -> Optional[np.ndarray]:
        """Return (H, W) float32 relative depth (or normalised disparity) for this frame."""
        while True:
            try:
                disp = self.raw_disparity(frame)
                break
            except Exception as exc:  # noqa: BLE001 - only OOM is handled, the rest re-raised
                if not is_oom(exc) or self.input_size // 2 < self.min_input_size:
                    raise
                free_gpu_memory()
                self.input_size //= 2
                msg = f'depth_anything: GPU out of memory; input_size lowered to {self.input_size}'
                LOG.warning(msg)
                ctx.scratch.setdefault('warnings', []).append(msg)
        return normalise(disp, self.output, self.eps)

    def close(self) -> None:
        """Free the model."""
        self.__dict__.pop('model', None)
        free_gpu_memory()
