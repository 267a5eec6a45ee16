"""Dimensions of the paper's trajectory classifier (SegAnyMo) and of our extensions."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Dict, Mapping, Optional


@dataclass
class MosegConfig:
    """Dimensions of the classifier; the defaults are those of the released ``moseg.pth``."""

    n_freqs: int = 10          # frequency bands of the position encoding (input included too)
    use_depth: bool = True     # depth d and delta d channels
    use_extra: bool = True     # visibility and confidence channels
    d_model: int = 16          # motion encoder width
    nhead: int = 4
    dim_feedforward: int = 64
    num_encoder_layers: int = 2
    num_decoder_layers: int = 2
    dropout: float = 0.1
    #: dropout on attention weights; None = ``dropout`` (as the reference). 0 trains faster.
    attn_dropout: Optional[float] = None
    net_channels: int = 128    # MSDE width
    decoder_heads: int = 8
    decoder_ffn: int = 512
    decoder_blocks: int = 4    # encoder blocks = decoder blocks = this
    feature_dim: int = 768     # semantic (DINO) feature size; 0 = motion only
    #: extension (not in the paper): 3 more channels per frame, the track's residual after a
    #: robust homography fit of all tracks between that frame and the newest one
    ego_residual: bool = False
    #: extension: 2 more channels per frame, the geometric classifier's residual score of the
    #: track at each of its baselines (see ``classifiers.geometric.evidence_channels``)
    geo_evidence: bool = False
    #: extension (with geo_evidence): 1 more channel, the track's residual score to a
    #: fundamental matrix fitted at every baseline, even where the homography wins, so that
    #: parallax (a near ground plane) can be told from independent motion
    geo_epipolar: bool = False
    #: extension: attention across tracks (motion encoder, per frame, and MSDE) uses at most
    #: this many key tracks (0 = all, as the paper): cost O(N * keys) instead of O(N^2)
    space_keys: int = 0

    @property
    def attention_dropout(self) -> float:
        """Dropout applied to attention weights."""
        return self.dropout if self.attn_dropout is None else float(self.attn_dropout)

    @property
    def in_channels(self) -> int:
        """Per-frame input channels (88 for the released model)."""
        pe = 2 * (1 + 2 * self.n_freqs)
        return 2 * pe + (2 if self.use_depth else 0) + (2 if self.use_extra else 0) + (
            3 if self.ego_residual else 0) + (2 if self.geo_evidence else 0) + (
            1 if self.geo_evidence and self.geo_epipolar else 0)

    def to_dict(self) -> Dict[str, Any]:
        """Plain dict (stored in our checkpoints)."""
        return asdict(self)

    @staticmethod
    def from_dict(data: Optional[Mapping[str, Any]]) -> 'MosegConfig':
        """Build from a dict, rejecting unknown keys with a clear message."""
        data = dict(data or {})
        known = {f.name for f in fields(MosegConfig)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f'unknown moseg model option(s) {unknown}; known: {sorted(known)}')
        return MosegConfig(**data)
