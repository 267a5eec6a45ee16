"""The paper's trajectory classifier (SegAnyMo, CVPR 2025) in torch.

Two parts (paper sections 5-7):

* the *motion encoder* (spatio-temporal trajectory attention): per-track, per-frame input of
  88 channels (frequency encoding of position and displacement, depth and its change,
  visibility, confidence), a 1x1 projection, a post-norm transformer whose every layer attends
  along time within each track and then across tracks within each frame, and a max-pool over
  time;
* the *tracks decoder* (motion-semantic decoupled embedding, MSDE): self-attention over all
  tracks; the semantic (DINO) feature enters only the encoder blocks' FFNs; the decoder blocks
  attend over the motion-only embedding and cross-attend to the encoder output.

Module and parameter names follow the released ``moseg.pth`` so that it loads with
``strict=True`` (see ``moseg_manifest.json``); the code itself is written from the paper and
from those names and shapes. ``reference_quirks=True`` reproduces what the reference model saw
(depth sampled at [-1, 1] coordinates as if they were [0, 1], 16-bit depth read as 8-bit,
cross-attention memory and max-pool that also include invisible frames); the default feeds
the corrected input and masks invisible frames everywhere.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: where the released checkpoint of the paper lives
RELEASED_WEIGHTS_HINT = (
    'the released weights are file "moseg.pth" of the Hugging Face repository '
    '"Changearthmore/moseg"; on a machine with network access run `motionseg fetch-weights` '
    '(or download it by hand) and copy the file here')

MANIFEST_PATH = Path(__file__).with_name('moseg_manifest.json')


class WeightsError(ValueError):
    """A weights file that is missing, unreadable or does not fit the model."""


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


# ---------------------------------------------------------------------------- input encoding
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
    """Pixels (x, y) -> [-1, 1] the way the reference does (x / W * 2 - 1)."""
    h, w = image_size
    scale = torch.tensor([float(w), float(h)], dtype=xy.dtype, device=xy.device)
    return xy / scale * 2.0 - 1.0


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
        parts += [vis_value.unsqueeze(-1), conf.unsqueeze(-1)]
    return torch.cat(parts, dim=-1)


# ---------------------------------------------------------------------------- motion encoder
def _safe_padding(pad: Tensor) -> Tensor:
    """Unmask rows whose every key is masked (softmax over nothing would give NaN).

    Those rows are tokens of invisible frames or of tracks with no visible frame; their
    outputs are masked downstream, so letting them attend to something is harmless.
    """
    all_masked = pad.all(dim=1, keepdim=True)
    return pad & ~all_masked


def attend(mha: nn.MultiheadAttention, query: Tensor, key: Tensor,
           key_padding_mask: Optional[Tensor] = None) -> Tensor:
    """Multi-head attention with ``mha``'s weights through ``scaled_dot_product_attention``.

    Same result as ``mha(query, key, key, key_padding_mask=...)`` (batch first), but the mask
    is broadcast instead of materialised per head: about 3x faster for inference on a CPU.
    In training mode torch's own module is used (its backward is faster there).
    """
    if mha.training:
        return mha(query, key, key, key_padding_mask=key_padding_mask, need_weights=False)[0]
    b, lq, e = query.shape
    h = mha.num_heads
    w, bias = mha.in_proj_weight, mha.in_proj_bias
    if query is key:
        q, k, v = F.linear(query, w, bias).chunk(3, dim=-1)
    else:
        q = F.linear(query, w[:e], bias[:e])
        k, v = F.linear(key, w[e:], bias[e:]).chunk(2, dim=-1)
    ls = k.shape[1]
    q = q.reshape(b, lq, h, e // h).transpose(1, 2)
    k = k.reshape(b, ls, h, e // h).transpose(1, 2)
    v = v.reshape(b, ls, h, e // h).transpose(1, 2)
    mask = None if key_padding_mask is None else (~key_padding_mask)[:, None, None, :]
    out = F.scaled_dot_product_attention(
        q, k, v, attn_mask=mask, dropout_p=mha.dropout if mha.training else 0.0)
    return mha.out_proj(out.transpose(1, 2).reshape(b, lq, e))


def _at_keys(x: Tensor, keys: Optional[Tensor]) -> Tensor:
    """``x`` (B, L, E) itself, or its positions ``keys`` along L (see :func:`key_tracks`)."""
    return x if keys is None else x[:, keys]


def key_tracks(uv: Tensor, visible: Tensor, count: int) -> Optional[Tensor]:
    """Return the indices of at most ``count`` tracks to attend across, chosen by content.

    Tracks with the most visible frames first (they carry the most motion context), ties broken
    by a pseudo-random hash of the first visible position, so that the choice spreads over the
    image and does not depend on the order of the tracks (the model stays permutation
    equivariant). None: every track (``count`` 0 or at least N).
    """
    n = uv.shape[0]
    if count <= 0 or n <= count:
        return None
    first = visible.float().argmax(dim=1)
    pos = uv[torch.arange(n, device=uv.device), first]
    noise = torch.frac(torch.sin(pos[:, 0] * 12.9898 + pos[:, 1] * 78.233) * 43758.5453).abs()
    score = visible.sum(dim=1).float() + 0.5 * noise
    return torch.topk(score, count).indices.sort().values


class _EncoderLayer(nn.Module):
    """Post-norm layer: attention along time, attention across tracks (shared weights), FFN.

    The reference applies the same attention module twice (time, then space), so one
    ``self_attn`` serves both; parameter names are those of ``moseg.pth``.
    """

    def __init__(self, d_model: int, nhead: int, ffn: int, dropout: float,
                 attn_dropout: float) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=attn_dropout,
                                               batch_first=True)
        self.linear1 = nn.Linear(d_model, ffn)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(ffn, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)

    def _attend(self, x: Tensor, pad: Tensor, keys: Optional[Tensor] = None) -> Tensor:
        return self.dropout1(attend(self.self_attn, x, _at_keys(x, keys), pad))

    def forward(self, x: Tensor, pad_time: Tensor, pad_space: Tensor,
                keys: Optional[Tensor] = None) -> Tensor:
        """X (N, T, E); pad_time (N, T) and pad_space (T, N): True = ignore as key.

        ``keys``: indices of the tracks attended across (None = all); ``pad_space`` is then
        (T, len(keys)).
        """
        x = self.norm1(x + self._attend(x, pad_time))
        xs = x.transpose(0, 1)
        x = self.norm3(xs + self._attend(xs, pad_space, keys)).transpose(0, 1)
        ff = self.linear2(self.dropout(F.relu(self.linear1(x))))
        return self.norm2(x + self.dropout2(ff))


class _DecoderLayer(nn.Module):
    """Post-norm: time attention, space attention (shared), cross-attention over time, FFN."""

    def __init__(self, d_model: int, nhead: int, ffn: int, dropout: float,
                 attn_dropout: float) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=attn_dropout,
                                               batch_first=True)
        self.multihead_attn = nn.MultiheadAttention(d_model, nhead, dropout=attn_dropout,
                                                    batch_first=True)
        self.linear1 = nn.Linear(d_model, ffn)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(ffn, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm4 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)

    def _attend(self, x: Tensor, pad: Tensor, keys: Optional[Tensor] = None) -> Tensor:
        return self.dropout1(attend(self.self_attn, x, _at_keys(x, keys), pad))

    def forward(self, x: Tensor, memory: Tensor, pad_time: Tensor, pad_space: Tensor,
                pad_memory: Optional[Tensor], keys: Optional[Tensor] = None) -> Tensor:
        """x, memory (N, T, E); pad_memory None = attend to every frame (reference)."""
        x = self.norm1(x + self._attend(x, pad_time))
        xs = x.transpose(0, 1)
        x = self.norm4(xs + self._attend(xs, pad_space, keys)).transpose(0, 1)
        cross = attend(self.multihead_attn, x, memory, pad_memory)
        x = self.norm2(x + self.dropout2(cross))
        ff = self.linear2(self.dropout(F.relu(self.linear1(x))))
        return self.norm3(x + self.dropout3(ff))


class _Stack(nn.Module):
    """``layers`` + final ``norm``, named like the reference's transformer halves."""

    def __init__(self, layers: nn.ModuleList, d_model: int) -> None:
        super().__init__()
        self.layers = layers
        self.norm = nn.LayerNorm(d_model)


class _SpaceTimeTransformer(nn.Module):
    """Encoder-decoder over (tracks x frames) tokens; the decoder's target is the input."""

    def __init__(self, cfg: MosegConfig) -> None:
        super().__init__()
        args = (cfg.d_model, cfg.nhead, cfg.dim_feedforward, cfg.dropout, cfg.attention_dropout)
        self.encoder = _Stack(nn.ModuleList(
            [_EncoderLayer(*args) for _ in range(cfg.num_encoder_layers)]), cfg.d_model)
        self.decoder = _Stack(nn.ModuleList(
            [_DecoderLayer(*args) for _ in range(cfg.num_decoder_layers)]), cfg.d_model)
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(self, x: Tensor, invisible: Tensor, mask_memory: bool,
                keys: Optional[Tensor] = None) -> Tensor:
        """X (N, T, E), invisible (N, T) bool -> (N, T, E); ``keys`` see :func:`key_tracks`."""
        pad_time = _safe_padding(invisible)
        pad_space = _safe_padding((invisible if keys is None else invisible[keys]).t())
        memory = x
        for layer in self.encoder.layers:
            memory = layer(memory, pad_time, pad_space, keys)
        memory = self.encoder.norm(memory)
        out = x
        pad_memory = pad_time if mask_memory else None
        for layer in self.decoder.layers:
            out = layer(out, memory, pad_time, pad_space, pad_memory, keys)
        return self.decoder.norm(out)


class MotionEncoder(nn.Module):
    """Per-frame projection, space-time transformer, max-pool over time -> (N, d_model)."""

    def __init__(self, cfg: MosegConfig) -> None:
        super().__init__()
        self.input_fc1 = nn.Conv2d(cfg.in_channels, 16, (1, 1))
        self.fc2 = nn.Conv2d(16, cfg.d_model, (1, 1))
        self.transformer_model = _SpaceTimeTransformer(cfg)

    def _project(self, x: Tensor) -> Tensor:
        # 1x1 convolutions on a (1, C, N, T) image, as the reference stores them
        img = x.permute(2, 0, 1).unsqueeze(0)
        img = F.relu(self.fc2(F.relu(self.input_fc1(img))))
        return img.squeeze(0).permute(1, 2, 0)

    def forward(self, x: Tensor, invisible: Tensor, reference_quirks: bool = False,
                keys: Optional[Tensor] = None) -> Tensor:
        """X (N, T, C), invisible (N, T) -> (N, d_model)."""
        tokens = self._project(x)
        out = self.transformer_model(tokens, invisible, mask_memory=not reference_quirks,
                                     keys=keys)
        if reference_quirks:
            return out.max(dim=1).values
        keep = _safe_padding(invisible)
        out = out.masked_fill(keep.unsqueeze(-1), float('-inf'))
        return out.max(dim=1).values


# ---------------------------------------------------------------------------- MSDE decoder
class _PointEmbedding(nn.Module):
    def __init__(self, in_dim: int, dim: int) -> None:
        super().__init__()
        self.embedding = nn.Linear(in_dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.embedding(x)


class _MsdeEncoderBlock(nn.Module):
    """Self-attention over tracks; FFN input = [embedding, semantic feature]."""

    def __init__(self, dim: int, heads: int, ffn: int, feature_dim: int, dropout: float,
                 attn_dropout: float) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(dim, heads, dropout=attn_dropout,
                                               batch_first=True)
        self.ffn = nn.Sequential(nn.Linear(dim + feature_dim, ffn), nn.ReLU(), nn.Linear(ffn, dim))
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, feature: Optional[Tensor],
                keys: Optional[Tensor] = None) -> Tensor:
        x = self.norm1(x + self.dropout(attend(self.attention, x, _at_keys(x, keys))))
        inp = x if feature is None else torch.cat([x, feature], dim=-1)
        return self.norm2(x + self.dropout(self.ffn(inp)))


class _MsdeDecoderBlock(nn.Module):
    """Self-attention on the motion embedding, cross-attention to the encoder output, FFN."""

    def __init__(self, dim: int, heads: int, ffn: int, dropout: float,
                 attn_dropout: float) -> None:
        super().__init__()
        self.self_attention = nn.MultiheadAttention(dim, heads, dropout=attn_dropout,
                                                    batch_first=True)
        self.cross_attention = nn.MultiheadAttention(dim, heads, dropout=attn_dropout,
                                                     batch_first=True)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn), nn.ReLU(), nn.Linear(ffn, dim))
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, memory: Tensor, keys: Optional[Tensor] = None) -> Tensor:
        x = self.norm1(x + self.dropout(attend(self.self_attention, x, _at_keys(x, keys))))
        cross = attend(self.cross_attention, x, _at_keys(memory, keys))
        x = self.norm2(x + self.dropout(cross))
        return self.norm3(x + self.dropout(self.ffn(x)))


class TracksDecoder(nn.Module):
    """MSDE: (N, d_model) motion + optional (N, D) semantics -> (N,) logits."""

    def __init__(self, cfg: MosegConfig) -> None:
        super().__init__()
        dim = cfg.net_channels
        self.embedding = _PointEmbedding(cfg.d_model, dim)
        self.encoders = nn.ModuleList([
            _MsdeEncoderBlock(dim, cfg.decoder_heads, cfg.decoder_ffn, cfg.feature_dim,
                              cfg.dropout, cfg.attention_dropout)
            for _ in range(cfg.decoder_blocks)])
        self.decoders = nn.ModuleList([
            _MsdeDecoderBlock(dim, cfg.decoder_heads, cfg.decoder_ffn, cfg.dropout,
                              cfg.attention_dropout) for _ in range(cfg.decoder_blocks)])
        self.output_layer = nn.Linear(dim, 1)

    def forward(self, motion: Tensor, feature: Optional[Tensor],
                keys: Optional[Tensor] = None) -> Tensor:
        """Map (N, d_model) motion and optional (N, D) features to (N,) logits.

        ``keys``: indices of the tracks attended to (None = all), see :func:`key_tracks`.
        """
        x = self.embedding(motion).unsqueeze(0)                  # (1, N, dim)
        feat = None if feature is None else feature.unsqueeze(0)
        memory = x
        for block in self.encoders:
            memory = block(memory, feat, keys)
        out = x
        for block in self.decoders:
            out = block(out, memory, keys)
        return self.output_layer(out)[0, :, 0]


# ---------------------------------------------------------------------------- whole model
class MosegModel(nn.Module):
    """Trajectory classifier: tracks of one window in, per-track logits out.

    Top-level names (``joint_encoder``, ``decoder``) are those of the released checkpoint.
    """

    def __init__(self, cfg: Optional[MosegConfig] = None) -> None:
        super().__init__()
        self.cfg = cfg or MosegConfig()
        self.joint_encoder = MotionEncoder(self.cfg)
        self.decoder = TracksDecoder(self.cfg)

    def forward(self, inputs: Tensor, invisible: Tensor, features: Optional[Tensor] = None,
                reference_quirks: bool = False) -> Tensor:
        """Map inputs (N, T, C) from :func:`encode_inputs`, invisible (N, T) to (N,) logits."""
        if inputs.dim() != 3 or inputs.shape[-1] != self.cfg.in_channels:
            raise ValueError(f'moseg: expected inputs (N, T, {self.cfg.in_channels}), got '
                             f'{tuple(inputs.shape)}')
        if self.cfg.feature_dim:
            if features is None or features.shape != (inputs.shape[0], self.cfg.feature_dim):
                got = None if features is None else tuple(features.shape)
                raise ValueError(f'moseg: this model needs semantic features '
                                 f'({inputs.shape[0]}, {self.cfg.feature_dim}); got {got}')
        else:
            features = None
        if inputs.shape[0] == 0:
            return inputs.new_zeros(0)
        # the first two input channels are the normalised positions (frequency encoding)
        keys = key_tracks(inputs[..., :2], ~invisible, self.cfg.space_keys)
        motion = self.joint_encoder(inputs, invisible, reference_quirks, keys)
        return self.decoder(motion, features, keys)

    def classify(self, xy: Tensor, visible: Tensor, confidence: Tensor,
                 image_size: Tuple[int, int], depth: Optional[Tensor] = None,
                 features: Optional[Tensor] = None, reference_quirks: bool = False,
                 depth_maps: Optional[Tensor] = None, evidence: Optional[Tensor] = None
                 ) -> Tensor:
        """Pixels in, (N,) logits out: the whole input path for one window.

        ``depth`` (N, T) metric or relative depth (NaN unknown); ``depth_maps`` (T, H, W)
        disparity maps are used instead in reference mode when given; ``evidence`` (N, T, 2)
        (or 3 with ``geo_epipolar``) the geometric channels of a ``geo_evidence`` model.
        """
        inputs, invisible = self.prepare(xy, visible, confidence, image_size, depth,
                                         reference_quirks, depth_maps, evidence)
        return self(inputs, invisible, features, reference_quirks)

    def prepare(self, xy: Tensor, visible: Tensor, confidence: Tensor,
                image_size: Tuple[int, int], depth: Optional[Tensor] = None,
                reference_quirks: bool = False, depth_maps: Optional[Tensor] = None,
                evidence: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        """Return the encoded inputs (N, T, C) and the invisible mask (N, T)."""
        visible = visible.bool()
        uv = normalise_positions(xy.float(), image_size)
        disparity = valid = None
        if self.cfg.use_depth and reference_quirks and depth_maps is not None:
            disparity = reference_depth_sample(reference_depth_maps(depth_maps), uv)
            valid = torch.isfinite(disparity)
            disparity = torch.nan_to_num(disparity, nan=0.0)
        elif self.cfg.use_depth and depth is not None:
            disparity, valid = normalise_window_depth(depth.float(), visible)
        inputs = encode_inputs(self.cfg, uv, visible, confidence.float(), disparity, valid,
                               reference_quirks=reference_quirks)
        if self.cfg.ego_residual:
            inputs = torch.cat([inputs, homography_residuals(uv, visible, image_size)], dim=-1)
        if self.cfg.geo_evidence:
            want = (xy.shape[0], xy.shape[1], 3 if self.cfg.geo_epipolar else 2)
            if evidence is None or tuple(evidence.shape) != want:
                got = None if evidence is None else tuple(evidence.shape)
                raise ValueError(f'moseg: this model needs geometric evidence {want}; got '
                                 f'{got}')
            inputs = torch.cat([inputs, evidence.to(inputs.dtype)], dim=-1)
        return inputs, ~visible


# ---------------------------------------------------------------------------- weights I/O
def load_manifest(path: Union[str, Path] = MANIFEST_PATH) -> Dict[str, Any]:
    """Return the committed key -> shape/dtype list of the released checkpoint."""
    with open(path, 'r', encoding='utf-8') as f:
        return json.load(f)


def extract_state_dict(obj: Any) -> Dict[str, Tensor]:
    """Find the model's state dict in a loaded checkpoint and drop wrapping prefixes."""
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    if not isinstance(obj, Mapping):
        raise WeightsError(f'checkpoint holds a {type(obj).__name__}, not a state dict')
    for key in ('model_state_dict', 'state_dict', 'model'):
        if key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
            break
    state = {k: v for k, v in obj.items() if isinstance(v, Tensor)}
    if not state:
        raise WeightsError('checkpoint holds no tensors')
    for prefix in ('module.', 'model.', '_orig_mod.'):
        if all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def config_from_state_dict(state: Mapping[str, Tensor]) -> MosegConfig:
    """Infer the dimensions of a checkpoint from its shapes (works for ``moseg.pth``)."""
    try:
        fc1 = state['joint_encoder.input_fc1.weight']
        fc2 = state['joint_encoder.fc2.weight']
        emb = state['decoder.embedding.embedding.weight']
        ffn0 = state['decoder.encoders.0.ffn.0.weight']
        lin1 = state['joint_encoder.transformer_model.encoder.layers.0.linear1.weight']
    except KeyError as exc:
        raise WeightsError(f'not a moseg checkpoint: key {exc.args[0]!r} missing') from exc

    def count(prefix: str) -> int:
        idx = {int(k[len(prefix):].split('.')[0]) for k in state if k.startswith(prefix)}
        return len(idx)

    in_ch = int(fc1.shape[1])
    # channels = 2 * 2 * (1 + 2 f) + depth(2) + extra(2); released: 88 = 84 + 2 + 2
    options = [(f, dep, ext) for f in range(0, 17) for dep in (True, False)
               for ext in (True, False)
               if 4 * (1 + 2 * f) + 2 * dep + 2 * ext == in_ch]
    if not options:
        raise WeightsError(f'input projection expects {in_ch} channels: no encoding fits')
    f, dep, ext = options[0]
    net = int(emb.shape[0])
    n_enc = count('decoder.encoders.')
    return MosegConfig(
        n_freqs=f, use_depth=dep, use_extra=ext, d_model=int(fc2.shape[0]),
        dim_feedforward=int(lin1.shape[0]),
        num_encoder_layers=count('joint_encoder.transformer_model.encoder.layers.'),
        num_decoder_layers=count('joint_encoder.transformer_model.decoder.layers.'),
        net_channels=net, decoder_ffn=int(ffn0.shape[0]), decoder_blocks=n_enc,
        feature_dim=int(ffn0.shape[1]) - net)


def load_checkpoint(path: Union[str, Path], cfg: Optional[MosegConfig] = None,
                    map_location: str = 'cpu') -> Tuple['MosegModel', Dict[str, Any]]:
    """Load ``moseg.pth`` or one of our checkpoints strictly; return (model, metadata).

    Our checkpoints store ``{'model_state_dict', 'model_config', ...}``; the released one
    stores ``{'model_state_dict', ...}`` with the paper's dimensions. A missing file, a file
    that is not a moseg checkpoint, or shapes that do not fit raise :class:`WeightsError`.
    """
    path = Path(path)
    if not path.is_file():
        hint = RELEASED_WEIGHTS_HINT if path.name == 'moseg.pth' else (
            'give the path of a checkpoint written by `motionseg train-classifier`, '
            "`builtin:motion_only` / `builtin:motion_depth`, or the paper's moseg.pth ("
            + RELEASED_WEIGHTS_HINT + ')')
        raise WeightsError(f'moseg weights not found: {path}; {hint}')
    try:
        obj = torch.load(str(path), map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file
        raise WeightsError(f'cannot read moseg weights {path}: {exc}') from exc
    meta: Dict[str, Any] = {}
    if isinstance(obj, Mapping):
        meta = {k: v for k, v in obj.items() if not isinstance(v, (Mapping, Tensor))}
        if isinstance(obj.get('model_config'), Mapping):
            meta['model_config'] = dict(obj['model_config'])
    state = extract_state_dict(obj)
    if cfg is None:
        cfg = (MosegConfig.from_dict(meta['model_config']) if 'model_config' in meta
               else config_from_state_dict(state))
    model = MosegModel(cfg)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state)
                   if tuple(expected[k].shape) != tuple(state[k].shape))
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f'{len(missing)} missing (e.g. {missing[:3]})')
        if unexpected:
            parts.append(f'{len(unexpected)} unexpected (e.g. {unexpected[:3]})')
        if wrong:
            k = wrong[0]
            parts.append(f'{len(wrong)} with other shapes (e.g. {k}: file '
                         f'{tuple(state[k].shape)} vs model {tuple(expected[k].shape)})')
        raise WeightsError(f'moseg weights {path} do not fit the model {cfg.to_dict()}: '
                           + '; '.join(parts))
    model.load_state_dict(state, strict=True)
    model.eval()
    meta['model_config'] = cfg.to_dict()
    return model, meta


def save_checkpoint(path: Union[str, Path], model: MosegModel, **extra: Any) -> None:
    """Write ``{'model_state_dict', 'model_config', **extra}`` (loadable by the reference)."""
    data: Dict[str, Any] = {'model_state_dict': model.state_dict(),
                            'model_config': model.cfg.to_dict()}
    data.update(extra)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(str(path) + '.tmp')
    torch.save(data, str(tmp))
    tmp.replace(path)
