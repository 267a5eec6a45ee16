"""Extension channels (not in the paper): each track's residual to the dominant image motion."""

from __future__ import annotations

from typing import Tuple

import torch
from torch import Tensor


def homography_residuals(uv: Tensor, visible: Tensor, image_size: Tuple[int, int],
                         iterations: int = 4) -> Tensor:
    """Residual (N, T, 3) of each track w.r.t. the dominant motion to the newest frame.

    For every frame t a homography from frame t to the newest frame is fitted to all tracks
    visible in both by iteratively reweighted least squares (Cauchy weights), in the [-1, 1]
    coordinates. Channels: residual x, y (in units of 1/100 of the half image width) and
    log(1 + |residual| in pixels). Zero where the track is not visible in both frames or a
    frame has fewer than 6 such tracks. This hands the model the background-motion cue that
    the paper's model must learn from data; it is an extension, off for ``moseg.pth``.
    """
    n, t, _ = uv.shape
    out = uv.new_zeros(n, t, 3)
    if n < 6 or t < 2:
        return out
    half_w = image_size[1] / 2.0
    src = uv.transpose(0, 1)                                    # (T, N, 2)
    dst = uv[:, -1].unsqueeze(0).expand(t, n, 2)
    valid = (visible & visible[:, -1:]).t()                     # (T, N)
    x, y = src[..., 0], src[..., 1]
    xd, yd = dst[..., 0], dst[..., 1]
    zeros, ones = torch.zeros_like(x), torch.ones_like(x)
    rows_x = torch.stack([x, y, ones, zeros, zeros, zeros, -x * xd, -y * xd], dim=-1)
    rows_y = torch.stack([zeros, zeros, zeros, x, y, ones, -x * yd, -y * yd], dim=-1)
    a = torch.cat([rows_x, rows_y], dim=1).double()             # (T, 2N, 8)
    b = torch.cat([xd, yd], dim=1).double()                     # (T, 2N)
    w = valid.double()
    enough = valid.sum(dim=1) >= 6
    res = torch.zeros(t, n, 2, dtype=torch.float64, device=uv.device)
    for _ in range(iterations):
        ww = torch.cat([w, w], dim=1).unsqueeze(-1)
        ata = (a * ww).transpose(1, 2) @ a + 1e-6 * torch.eye(8, dtype=a.dtype, device=a.device)
        atb = ((a * ww).transpose(1, 2) @ b.unsqueeze(-1))
        h = torch.linalg.solve(ata, atb)[..., 0]                # (T, 8)
        den = h[:, None, 6] * x.double() + h[:, None, 7] * y.double() + 1.0
        den = torch.where(den.abs() < 1e-6, torch.full_like(den, 1e-6), den)
        px = (h[:, None, 0] * x + h[:, None, 1] * y + h[:, None, 2]) / den
        py = (h[:, None, 3] * x + h[:, None, 4] * y + h[:, None, 5]) / den
        res = torch.stack([xd - px, yd - py], dim=-1)           # (T, N, 2)
        mag = res.norm(dim=-1)
        inl = mag[valid]
        scale = 1.4826 * inl.median() if inl.numel() else torch.tensor(1.0, dtype=mag.dtype)
        scale = torch.clamp(scale, min=0.5 / half_w)            # noise floor: half a pixel
        w = valid.double() / (1.0 + (mag / (2.0 * scale)) ** 2)
    ok = (valid & enough[:, None]).unsqueeze(-1)
    res = torch.where(ok, res, torch.zeros_like(res)).transpose(0, 1).to(uv.dtype)
    mag_px = res.norm(dim=-1, keepdim=True) * half_w
    out = torch.cat([res * 100.0, torch.log1p(mag_px)], dim=-1)
    return out
