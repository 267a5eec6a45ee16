"""DINOv2 position embeddings resized as Depth-Anything-V2 was trained (offset scale factor).

The original DINOv2 / Depth-Anything-V2 code, and transformers up to 4.4x (what the SegAnyMo
reference pinned), resize the 37x37 position grid bicubic with ``scale_factor = (n + 0.1) / 37``
per side; later transformers resize to ``size = n`` instead, which samples the grid at other
positions whenever the input is not square (at 518x924: up to 0.25 patch apart) and changes
the depth map by several percent. ``use_offset_interpolation`` puts the original rule back.
"""

from __future__ import annotations

import math
import types
from typing import Any

OFFSET = 0.1


def offset_interpolate_pos_encoding(self: Any, embeddings: Any, height: int, width: int) -> Any:
    """Dinov2Embeddings.interpolate_pos_encoding with the original ``+0.1`` scale factor."""
    import torch
    num_patches = embeddings.shape[1] - 1
    num_positions = self.position_embeddings.shape[1] - 1
    if num_patches == num_positions and height == width:
        return self.position_embeddings
    patch = self.config.patch_size
    side = math.sqrt(num_positions)
    grid = self.position_embeddings[:, 1:]
    grid = grid.reshape(1, int(side), int(side), -1).permute(0, 3, 1, 2)
    scale = ((height // patch + OFFSET) / side, (width // patch + OFFSET) / side)
    grid = torch.nn.functional.interpolate(grid.float(), scale_factor=scale, mode='bicubic',
                                           align_corners=False).to(self.position_embeddings.dtype)
    grid = grid.permute(0, 2, 3, 1).reshape(1, -1, grid.shape[1])
    return torch.cat((self.position_embeddings[:, :1], grid), dim=1)


def use_offset_interpolation(model: Any) -> None:
    """Make ``model``'s DINOv2 backbone resize position embeddings the original way."""
    embeddings = model.backbone.embeddings
    embeddings.interpolate_pos_encoding = types.MethodType(offset_interpolate_pos_encoding,
                                                           embeddings)
