"""The mask head: a small U-Net from the densifier's 10 input channels to foreground logits.

Four levels of 16/32/64/96 channels, two conv-BN-ReLU per level, bilinear upsampling and skip
concatenation (about 387 k parameters, 1.5 MB in float32): small enough for a CPU at quarter
resolution. Checkpoints are a dict (format tag, input channels, widths, decision threshold,
training metadata, state dict) and are loaded strictly: anything that does not fit raises
:class:`~motionseg_ros.weights.WeightsError` naming the file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from motionseg_ros.weights import WeightsError

FORMAT = 'motionseg-mask-head'
FORMAT_VERSION = 1
WIDTHS = (16, 32, 64, 96)
#: spatial sizes must be multiples of this (three poolings)
MULTIPLE = 8


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True))


class MaskHeadNet(nn.Module):
    """U-Net returning (B, 1, H, W) logits; pads any size to a multiple of 8 internally."""

    def __init__(self, in_channels: int = 10, widths: Sequence[int] = WIDTHS) -> None:
        """Build the encoder (len(widths) levels) and the mirrored decoder."""
        super().__init__()
        self.in_channels = int(in_channels)
        self.widths = tuple(int(w) for w in widths)
        self.down = nn.ModuleList()
        cin = self.in_channels
        for w in self.widths:
            self.down.append(_block(cin, w))
            cin = w
        self.up = nn.ModuleList(
            _block(self.widths[i + 1] + self.widths[i], self.widths[i])
            for i in reversed(range(len(self.widths) - 1)))
        self.head = nn.Conv2d(self.widths[0], 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        """Return logits of the same height and width as ``x``."""
        h, w = x.shape[-2:]
        ph, pw = (-h) % MULTIPLE, (-w) % MULTIPLE
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode='replicate')
        skips = []
        for i, block in enumerate(self.down):
            if i:
                x = F.max_pool2d(x, 2)
            x = block(x)
            skips.append(x)
        for block, skip in zip(self.up, reversed(skips[:-1])):
            x = F.interpolate(x, size=skip.shape[-2:], mode='bilinear', align_corners=False)
            x = block(torch.cat([x, skip], 1))
        return self.head(x)[..., :h, :w]


def num_params(model: nn.Module) -> int:
    """Return the number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def save_mask_head(model: MaskHeadNet, path: Union[str, Path], threshold: float,
                   meta: Optional[Mapping[str, Any]] = None) -> Path:
    """Write the weights-only checkpoint the densifier loads (float32 state dict)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().float() if v.is_floating_point() else v.detach().cpu()
             for k, v in model.state_dict().items()}
    # plain JSON types only, so that loading needs no unpickling beyond tensors
    plain_meta = json.loads(json.dumps(dict(meta or {}), default=str))
    torch.save({'format': FORMAT, 'version': FORMAT_VERSION,
                'in_channels': model.in_channels, 'widths': list(model.widths),
                'threshold': float(threshold), 'meta': plain_meta, 'state_dict': state},
               path)
    return path


def load_mask_head(path: Union[str, Path], in_channels: int = 10
                   ) -> Tuple[MaskHeadNet, float, Dict[str, Any]]:
    """Return (model in eval mode, stored threshold, metadata); WeightsError if unusable."""
    path = Path(path)
    where = f'mask head weights {path}'
    if not path.is_file():
        raise WeightsError(f'{where}: no such file')
    try:
        ckpt = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling error means a bad file
        raise WeightsError(f'{where}: not a readable torch checkpoint: {exc}') from exc
    if not isinstance(ckpt, Mapping) or ckpt.get('format') != FORMAT:
        raise WeightsError(f'{where}: not a mask head checkpoint (format tag {FORMAT!r} '
                           'missing); train one with `motionseg train-densifier`')
    if int(ckpt.get('version', -1)) != FORMAT_VERSION:
        raise WeightsError(f'{where}: checkpoint format version {ckpt.get("version")}, this '
                           f'code reads version {FORMAT_VERSION}')
    if int(ckpt.get('in_channels', -1)) != in_channels:
        raise WeightsError(f'{where}: trained for {ckpt.get("in_channels")} input channels, '
                           f'the densifier builds {in_channels}')
    try:
        model = MaskHeadNet(in_channels, ckpt['widths'])
        model.load_state_dict(ckpt['state_dict'], strict=True)
        threshold = float(ckpt['threshold'])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise WeightsError(f'{where}: state dict does not fit the mask head: {exc}') from exc
    if not 0.0 < threshold < 1.0:
        raise WeightsError(f'{where}: stored threshold {threshold} is not in (0, 1)')
    model.eval()
    return model, threshold, dict(ckpt.get('meta') or {})
