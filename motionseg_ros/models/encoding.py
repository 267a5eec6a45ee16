"""Per-frame input of the trajectory classifier: 88 channels per track and frame.

Frequency-encoded positions and displacements, depth and its change, visibility and
confidence (paper sections 5-6). ``reference_quirks`` reproduces what the reference code fed
its model (depth sampled at [-1, 1] coordinates as if they were [0, 1], 16-bit depth read as
8-bit, invisible frames kept); the default feeds the corrected input.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor

from motionseg_ros.models.config import MosegConfig


def frequency_encode(x: Tensor, n_freqs: int) -> Tensor:
    """NeRF-style encoding [x, sin(2^k x), cos(2^k x) for k < n_freqs] along the last axis."""
    if n_freqs <= 0:
        return x
    # one sin and one cos over all bands (20 small ops and a 21-way cat cost 10x more)
    bands = torch.tensor([2.0 ** k for k in range(n_freqs)], dtype=x.dtype, device=x.device)
    scaled = x.unsqueeze(-2) * bands[:, None]                     # (..., F, C)
    waves = torch.stack([torch.sin(scaled), torch.cos(scaled)], dim=-2)  # (..., F, 2, C)
    return torch.cat([x, waves.flatten(-3)], dim=-1)


def normalise_positions(xy: Tensor, image_size: Tuple[int, int]) -> Tensor:
    """Pixels (x, y) -> [-1, 1] the way the reference does (x / W * 2 - 1, then clamped).

    Off-image positions (trackers such as CoTracker3 predict them) are clamped to the border,
    as the reference's ``normalize_point_traj_torch`` does: the model never saw anything else.
    """
    h, w = image_size
    scale = torch.tensor([float(w), float(h)], dtype=xy.dtype, device=xy.device)
    return torch.clamp(xy / scale * 2.0 - 1.0, -1.0, 1.0)


def force_visible_frames(visible: Tensor, confidence: Tensor) -> Tensor:
    """Mark the most confident track visible in every frame where no track is visible.

    The reference's inference does this (after dropping the tracks never visible), so that no
    frame's attention across tracks is empty; ties go to the first track, as ``torch.max``.
    """
    empty = ~visible.any(dim=0)
    if visible.shape[0] == 0 or not bool(empty.any()):
        return visible
    frames = torch.nonzero(empty).flatten()
    best = torch.max(confidence[:, frames], dim=0).indices
    out = visible.clone()
    out[best, frames] = True
    return out


def forward_difference(values: Tensor, valid: Tensor) -> Tensor:
    """Per-track change to the next frame, zero where either end is invalid and at the end.

    ``values`` is (N, T, C), ``valid`` (N, T) bool.
    """
    diff = torch.zeros_like(values)
    ok = (valid[:, 1:] & valid[:, :-1]).unsqueeze(-1).to(values.dtype)
    diff[:, :-1] = (values[:, 1:] - values[:, :-1]) * ok
    return diff


def normalise_window_depth(depth: Tensor, visible: Tensor) -> Tuple[Tensor, Tensor]:
    """Depth (N, T), NaN/<=0 unknown -> disparity min-max normalised over the window, valid.

    The model was trained on normalised disparity (near = 1, far = 0). Normalising over the
    whole window (not per frame) keeps the change of depth between frames meaningful.
    Unknown values become the track's mean (0 if it has none) and are marked invalid.
    """
    valid = torch.isfinite(depth) & (depth > 0) & visible
    disp = torch.where(valid, 1.0 / torch.where(valid, depth, torch.ones_like(depth)),
                       torch.zeros_like(depth))
    if bool(valid.any()):
        vals = disp[valid]
        lo, hi = vals.min(), vals.max()
        span = torch.clamp(hi - lo, min=1e-12)
        disp = torch.where(valid, (disp - lo) / span, torch.zeros_like(disp))
        if float(hi - lo) <= 1e-12:
            disp = torch.where(valid, torch.full_like(disp, 0.5), disp)
    count = valid.sum(dim=1, keepdim=True).clamp(min=1)
    mean = (disp * valid).sum(dim=1, keepdim=True) / count
    disp = torch.where(valid, disp, mean.expand_as(disp))
    return disp, valid


def reference_depth_maps(disparity_maps: Tensor) -> Tensor:
    """(T, H, W) disparity -> what the reference read: uint16 PNG opened as 8-bit, min-max.

    The reference saved each frame's min-max disparity as uint16 and opened it with PIL
    ``convert('L')``, which clips at 255, then min-max normalised per frame (paper section 11).
    """
    out = []
    for disp in disparity_maps:
        disp = torch.nan_to_num(disp.double(), nan=0.0)
        lo, hi = disp.min(), disp.max()
        u16 = torch.zeros_like(disp) if float(hi - lo) <= 1e-12 else \
            torch.floor(65535.0 * (disp - lo) / (hi - lo))
        u8 = torch.clamp(u16, max=255.0)
        lo8, hi8 = u8.min(), u8.max()
        out.append(((u8 - lo8) / (hi8 - lo8)).float() if float(hi8 - lo8) > 0
                   else torch.full_like(u8, float('nan')).float())
    return torch.stack(out)


def reference_depth_sample(maps: Tensor, uv: Tensor) -> Tensor:
    """Sample (T, H, W) maps at [-1, 1] coordinates uv (N, T, 2) as the reference did.

    The reference took coordinates already in [-1, 1] as if in [0, 1]: flat index
    ``int(v * H) * W + int(u * W)`` (truncation), clamped to the image.
    """
    t, h, w = maps.shape
    flat = maps.reshape(t, h * w)
    xi = torch.trunc(uv[..., 0] * w).long()
    yi = torch.trunc(uv[..., 1] * h).long()
    idx = (yi * w + xi).clamp(0, h * w - 1)              # (N, T)
    return flat.gather(1, idx.t()).t()                     # (N, T)


def encode_inputs(cfg: MosegConfig, uv: Tensor, visible: Tensor, confidence: Tensor,
                  disparity: Optional[Tensor] = None, depth_valid: Optional[Tensor] = None,
                  visibility_value: Optional[Tensor] = None,
                  reference_quirks: bool = False) -> Tensor:
    """Build the (N, T, C) per-frame input from normalised positions and side channels.

    Corrected mode zeroes every channel of invisible frames (their values must not matter);
    reference mode keeps them, as the reference did, and masks displacements only by the
    visibility of the next frame.
    """
    n, t, _ = uv.shape
    dtype = uv.dtype
    if reference_quirks:
        step_valid = torch.ones_like(visible)
    else:
        step_valid = visible
        uv = uv * visible.unsqueeze(-1).to(dtype)
    # the reference multiplies the difference by the next frame's visibility only
    duv = torch.zeros_like(uv)
    ok = (visible[:, 1:] & step_valid[:, :-1]).unsqueeze(-1).to(dtype)
    duv[:, :-1] = (uv[:, 1:] - uv[:, :-1]) * ok
    parts = [frequency_encode(uv, cfg.n_freqs), frequency_encode(duv, cfg.n_freqs)]
    if cfg.use_depth:
        if disparity is None:
            disparity = torch.zeros(n, t, dtype=dtype, device=uv.device)
            depth_valid = torch.zeros(n, t, dtype=torch.bool, device=uv.device)
        d = disparity.to(dtype).unsqueeze(-1)
        dvalid = depth_valid if depth_valid is not None else torch.ones_like(visible)
        if reference_quirks:
            dd = torch.zeros_like(d)
            dd[:, :-1] = (d[:, 1:] - d[:, :-1]) * visible[:, 1:].unsqueeze(-1).to(dtype)
        else:
            dd = forward_difference(d, dvalid & visible)
            d = d * visible.unsqueeze(-1).to(dtype)
        parts += [d, dd]
    if cfg.use_extra:
        vis_value = visible.to(dtype) if visibility_value is None else visibility_value.to(dtype)
        conf = confidence.to(dtype)
        if not reference_quirks:
            conf = conf * visible.to(dtype)
            vis_value = vis_value * visible.to(dtype)
        parts += [vis_value.unsqueeze(-1), conf.unsqueeze(-1)]
    return torch.cat(parts, dim=-1)
