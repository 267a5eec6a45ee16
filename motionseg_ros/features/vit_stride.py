"""Run a transformers DINOv2 at a patch stride below its patch size (SegAnyMo's stride 7).

SegAnyMo extracts its DINOv2 features with the dino-vit-features trick: the patch-embedding
convolution keeps its 14x14 kernel but steps 7 pixels, which gives overlapping patches and a token
grid of ``1 + (side - 14) // 7`` per side, and the position embeddings are resized bicubically to
that grid with DINO's +0.1 offset on the *scale factor* (not an output size; the two give
different samples). :func:`set_patch_stride` applies the same change to a transformers
``Dinov2Model``, so that its features equal the reference's (``scripts/parity/dinov2.py``).
"""

from __future__ import annotations

import math
import types
from typing import Tuple

import torch

#: DINO's historical offset on the position-embedding scale factor (dino issue #8)
POS_OFFSET = 0.1


def token_grid(height: int, width: int, patch: int, stride: int) -> Tuple[int, int]:
    """Token grid (rows, cols) of a ``height`` x ``width`` input at ``stride``."""
    return 1 + (height - patch) // stride, 1 + (width - patch) // stride


def resize_position_embeddings(pos: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """Resize (1, 1 + M*M, D) position embeddings to a ``rows`` x ``cols`` grid, as the reference.

    Bicubic, ``align_corners=False``, scale factors ``(rows + 0.1) / M`` and ``(cols + 0.1) / M``
    used as given (``recompute_scale_factor=False``); computed in float32.
    """
    n_pos = pos.shape[1] - 1
    side = int(math.sqrt(n_pos))
    if side * side != n_pos:
        raise ValueError(f'position embeddings of {n_pos} patches are not a square grid')
    grid = pos[:, 1:].float().reshape(1, side, side, -1).permute(0, 3, 1, 2)
    grid = torch.nn.functional.interpolate(
        grid, scale_factor=((rows + POS_OFFSET) / side, (cols + POS_OFFSET) / side),
        mode='bicubic', align_corners=False, recompute_scale_factor=False)
    if tuple(grid.shape[-2:]) != (rows, cols):
        raise ValueError(f'position embeddings resized to {tuple(grid.shape[-2:])}, '
                         f'expected {(rows, cols)}')
    grid = grid.permute(0, 2, 3, 1).reshape(1, rows * cols, -1).to(pos.dtype)
    return torch.cat((pos[:, :1], grid), dim=1)


def set_patch_stride(model, stride: int) -> None:
    """Make ``model`` (a transformers ``Dinov2Model``) embed patches every ``stride`` pixels.

    The stride must divide the patch size. Inputs should be a multiple of the patch size per
    side, as in the reference (it rounds the frame up to one).
    """
    emb = model.embeddings
    patch = int(emb.patch_embeddings.patch_size[0])
    if stride <= 0 or patch % stride:
        raise ValueError(f'stride {stride} does not divide the patch size {patch}')
    emb.patch_embeddings.projection.stride = (stride, stride)

    def interpolate_pos_encoding(self, embeddings: torch.Tensor, height: int,
                                 width: int) -> torch.Tensor:
        pos = self.position_embeddings
        rows, cols = token_grid(height, width, patch, stride)
        if rows * cols != embeddings.shape[1] - 1:
            raise ValueError(f'{embeddings.shape[1] - 1} tokens for a {rows}x{cols} grid')
        if rows * cols == pos.shape[1] - 1 and height == width:
            return pos          # the reference skips the resize here too
        return resize_position_embeddings(pos, rows, cols)

    emb.interpolate_pos_encoding = types.MethodType(interpolate_pos_encoding, emb)
