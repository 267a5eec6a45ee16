"""Image -> network input for Depth-Anything, two ways: the reference's and a faster one.

``reference`` is what the SegAnyMo reference fed the model (transformers 4.44 depth-estimation
pipeline with the ``DPTImageProcessor`` of Depth-Anything-V2-*-hf): the side whose scale is
nearest 1 fitted to ``size`` (518: the short side of a landscape video frame), both sides
rounded to a multiple of 14, PIL bicubic on the uint8 RGB image, 1/255 in float64 then float32
ImageNet normalisation; the prediction is resized back bicubic. ``fast`` fits the long side
(about 3x fewer tokens at 480x854), resizes in torch on the device and resizes back bilinear.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PREPROCESSING = ('fast', 'reference')


def _to_multiple(value: float, multiple: int) -> int:
    """Round ``value`` to the nearest multiple as DPT's processor does (Python round), >= 1."""
    return max(multiple, int(round(value / multiple)) * multiple)


def reference_shape(h: int, w: int, size: int, multiple: int) -> Tuple[int, int]:
    """(height, width) the reference's processor resizes an (h, w) image to.

    "Scale as little as possible": of the two scales that fit ``size`` x ``size``, take the one
    nearer 1 for both sides (keep_aspect_ratio), then round each side to ``multiple``.
    """
    sh, sw = size / h, size / w
    scale = sw if abs(1 - sw) < abs(1 - sh) else sh
    return _to_multiple(scale * h, multiple), _to_multiple(scale * w, multiple)


def fast_shape(h: int, w: int, size: int, multiple: int) -> Tuple[int, int]:
    """(height, width) with the long side at ``size``, both sides multiples of ``multiple``."""
    scale = size / max(h, w)
    return _to_multiple(h * scale, multiple), _to_multiple(w * scale, multiple)


def reference_pixels(image_bgr: np.ndarray, size: int, multiple: int) -> np.ndarray:
    """(1, 3, h, w) float32 network input exactly as the reference's processor makes it."""
    from PIL import Image
    h, w = image_bgr.shape[:2]
    nh, nw = reference_shape(h, w, size, multiple)
    rgb = Image.fromarray(np.ascontiguousarray(image_bgr[..., ::-1]))
    resized = np.asarray(rgb.resize((nw, nh), resample=Image.BICUBIC))
    pixels = (resized.astype(np.float64) * (1 / 255)).astype(np.float32)
    pixels = (pixels - np.array(IMAGENET_MEAN, np.float32)) / np.array(IMAGENET_STD, np.float32)
    return np.ascontiguousarray(pixels.transpose(2, 0, 1)[None])


def fast_pixels(torch, image_bgr: np.ndarray, size: int, multiple: int, device: str):
    """(1, 3, h, w) float32 tensor on ``device``: torch bicubic, long side at ``size``."""
    h, w = image_bgr.shape[:2]
    nh, nw = fast_shape(h, w, size, multiple)
    img = torch.from_numpy(np.ascontiguousarray(image_bgr[..., ::-1])).to(device)
    img = img.permute(2, 0, 1)[None].float() / 255.0
    img = torch.nn.functional.interpolate(img, size=(nh, nw), mode='bicubic',
                                          align_corners=False).clamp(0, 1)
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
    return (img - mean) / std
