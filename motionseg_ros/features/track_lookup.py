"""Per-track lookup of a patch feature map, and the reference's key-channel layout.

``reference`` is SegAnyMo's ``get_feat`` (core/utils/utils.py): the patch index is
``int(x * grid_w / W)``, ``int(y * grid_h / H)`` (truncated, then clamped to the grid), with
``W``, ``H`` the frame size and pixel coordinates as the tracker gives them. ``bilinear`` and
``nearest`` sample the map at the pixel centre with ``grid_sample`` (the fast mode's lookup).
"""

from __future__ import annotations

from typing import Tuple

import numpy as np
import torch

LOOKUPS = ('reference', 'bilinear', 'nearest')


def finite_positions(xy: np.ndarray) -> np.ndarray:
    """(N, 2) float32 positions with NaN / inf moved far outside (they clamp to the border)."""
    xy = np.asarray(xy, np.float32).reshape(-1, 2)
    return np.nan_to_num(xy, nan=-1e6, posinf=-1e6, neginf=-1e6)


def reference_patch_index(xy: np.ndarray, size: Tuple[int, int],
                          grid: Tuple[int, int]) -> Tuple[torch.Tensor, torch.Tensor]:
    """Row and column indices (N,) of the patch SegAnyMo gives each position."""
    (h, w), (gh, gw) = size, grid
    pos = torch.from_numpy(finite_positions(xy))
    ix = (pos[:, 0] * (gw / w)).long().clamp(0, gw - 1)
    iy = (pos[:, 1] * (gh / h)).long().clamp(0, gh - 1)
    return iy, ix


def lookup(fmap: torch.Tensor, xy: np.ndarray, size: Tuple[int, int], how: str) -> torch.Tensor:
    """(N, D) features of the (D, gh, gw) map ``fmap`` at positions ``xy`` of an (h, w) frame."""
    if how == 'reference':
        iy, ix = reference_patch_index(xy, size, tuple(fmap.shape[1:]))
        return fmap[:, iy.to(fmap.device), ix.to(fmap.device)].T
    if how not in LOOKUPS:
        raise ValueError(f'lookup must be one of {LOOKUPS}, got {how!r}')
    h, w = size
    safe = finite_positions(xy)
    grid = np.stack([(safe[:, 0] + 0.5) / w * 2 - 1, (safe[:, 1] + 0.5) / h * 2 - 1], 1)
    grid_t = torch.from_numpy(grid.astype(np.float32)).to(fmap.device).view(1, 1, -1, 2)
    feats = torch.nn.functional.grid_sample(fmap[None], grid_t, mode=how,
                                            padding_mode='border', align_corners=False)
    return feats[0, :, 0].T


def keys_to_reference_layout(keys: torch.Tensor, heads: int) -> torch.Tensor:
    """Reorder (N, heads * head_dim) key vectors to the reference's channel order.

    The key projection writes channels head by head (``h * head_dim + d``); dino-vit-features
    reshapes the keys to (heads, tokens, head_dim) and flattens them as (tokens, head_dim * heads),
    so channel ``d * heads + h`` -- the order ``moseg.pth`` was trained on.
    """
    n, dim = keys.shape
    return keys.reshape(n, heads, dim // heads).transpose(1, 2).reshape(n, dim)
