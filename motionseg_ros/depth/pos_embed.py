"""DINOv2 position embeddings resized as Depth-Anything-V2 was trained (offset scale factor).

The original DINOv2 / Depth-Anything-V2 code, and transformers up to 4.4x (what the SegAnyMo
reference pinned), resize the 37x37 position grid bicubic with ``scale_factor = (n + 0.1) / 37``
per side; later transformers resize to ``size = n`` instead, which samples the grid at other
positions whenever the input is not square (at 518x924: up to 0.25 patch apart) and changes
the depth map by several percent. ``use_offset_interpolation`` puts the original rule back
(the resize itself is :func:`motionseg_ros.features.vit_stride.resize_position_embeddings`).
"""

from __future__ import annotations

import types
from typing import Any

from motionseg_ros.features.vit_stride import resize_position_embeddings


def offset_interpolate_pos_encoding(self: Any, embeddings: Any, height: int, width: int) -> Any:
    """Dinov2Embeddings.interpolate_pos_encoding with the original ``+0.1`` scale factor."""
    num_patches = embeddings.shape[1] - 1
    num_positions = self.position_embeddings.shape[1] - 1
    if num_patches == num_positions and height == width:
        return self.position_embeddings
    patch = self.config.patch_size
    return resize_position_embeddings(self.position_embeddings, height // patch, width // patch)


def use_offset_interpolation(model: Any) -> None:
    """Make ``model``'s DINOv2 backbone resize position embeddings the original way."""
    embeddings = model.backbone.embeddings
    embeddings.interpolate_pos_encoding = types.MethodType(offset_interpolate_pos_encoding,
                                                           embeddings)
