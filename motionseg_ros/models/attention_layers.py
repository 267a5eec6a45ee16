"""Attention layers of the classifier, named like the released ``moseg.pth``.

The motion encoder's layers attend along time within each track and then across tracks
within each frame (one shared attention module, post-norm); the MSDE blocks attend over
tracks, with the semantic feature entering only the encoder blocks' FFNs.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from motionseg_ros.models.config import MosegConfig


def safe_padding(pad: Tensor) -> Tensor:
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


def at_keys(x: Tensor, keys: Optional[Tensor]) -> Tensor:
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


class _SpaceTimeLayer(nn.Module):
    """Sub-modules and shared time/space attention of the encoder and decoder layers.

    Sub-modules are created in the reference's order (it sets both the random initialisation
    and the state-dict keys of ``moseg.pth``): ``self_attn``, ``multihead_attn`` if
    ``cross``, the FFN, the ``norms`` named, then ``dropout1`` ... ``dropout<dropouts>``.
    """

    def __init__(self, d_model: int, nhead: int, ffn: int, dropout: float,
                 attn_dropout: float, cross: bool, norms: Tuple[str, ...], dropouts: int
                 ) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=attn_dropout,
                                               batch_first=True)
        if cross:
            self.multihead_attn = nn.MultiheadAttention(d_model, nhead, dropout=attn_dropout,
                                                        batch_first=True)
        self.linear1 = nn.Linear(d_model, ffn)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(ffn, d_model)
        for name in norms:
            self.add_module(name, nn.LayerNorm(d_model))
        for i in range(1, dropouts + 1):
            self.add_module(f'dropout{i}', nn.Dropout(dropout))

    def _attend(self, x: Tensor, pad: Tensor, keys: Optional[Tensor] = None) -> Tensor:
        return self.dropout1(attend(self.self_attn, x, at_keys(x, keys), pad))

    def _feed_forward(self, x: Tensor) -> Tensor:
        return self.linear2(self.dropout(F.relu(self.linear1(x))))


class EncoderLayer(_SpaceTimeLayer):
    """Post-norm layer: attention along time, attention across tracks (shared weights), FFN.

    The reference applies the same attention module twice (time, then space), so one
    ``self_attn`` serves both; parameter names are those of ``moseg.pth``.
    """

    def __init__(self, d_model: int, nhead: int, ffn: int, dropout: float,
                 attn_dropout: float) -> None:
        super().__init__(d_model, nhead, ffn, dropout, attn_dropout, cross=False,
                         norms=('norm1', 'norm2', 'norm3'), dropouts=2)

    def forward(self, x: Tensor, pad_time: Tensor, pad_space: Tensor,
                keys: Optional[Tensor] = None) -> Tensor:
        """X (N, T, E); pad_time (N, T) and pad_space (T, N): True = ignore as key.

        ``keys``: indices of the tracks attended across (None = all); ``pad_space`` is then
        (T, len(keys)).
        """
        x = self.norm1(x + self._attend(x, pad_time))
        xs = x.transpose(0, 1)
        x = self.norm3(xs + self._attend(xs, pad_space, keys)).transpose(0, 1)
        return self.norm2(x + self.dropout2(self._feed_forward(x)))


class DecoderLayer(_SpaceTimeLayer):
    """Post-norm: time attention, space attention (shared), cross-attention over time, FFN."""

    def __init__(self, d_model: int, nhead: int, ffn: int, dropout: float,
                 attn_dropout: float) -> None:
        super().__init__(d_model, nhead, ffn, dropout, attn_dropout, cross=True,
                         norms=('norm1', 'norm4', 'norm2', 'norm3'), dropouts=3)

    def forward(self, x: Tensor, memory: Tensor, pad_time: Tensor, pad_space: Tensor,
                pad_memory: Optional[Tensor], keys: Optional[Tensor] = None) -> Tensor:
        """x, memory (N, T, E); pad_memory None = attend to every frame (reference)."""
        x = self.norm1(x + self._attend(x, pad_time))
        xs = x.transpose(0, 1)
        x = self.norm4(xs + self._attend(xs, pad_space, keys)).transpose(0, 1)
        cross = attend(self.multihead_attn, x, memory, pad_memory)
        x = self.norm2(x + self.dropout2(cross))
        return self.norm3(x + self.dropout3(self._feed_forward(x)))


class LayerStack(nn.Module):
    """``layers`` + final ``norm``, named like the reference's transformer halves."""

    def __init__(self, layers: nn.ModuleList, d_model: int) -> None:
        super().__init__()
        self.layers = layers
        self.norm = nn.LayerNorm(d_model)


class SpaceTimeTransformer(nn.Module):
    """Encoder-decoder over (tracks x frames) tokens; the decoder's target is the input."""

    def __init__(self, cfg: MosegConfig) -> None:
        super().__init__()
        args = (cfg.d_model, cfg.nhead, cfg.dim_feedforward, cfg.dropout, cfg.attention_dropout)
        self.encoder = LayerStack(nn.ModuleList(
            [EncoderLayer(*args) for _ in range(cfg.num_encoder_layers)]), cfg.d_model)
        self.decoder = LayerStack(nn.ModuleList(
            [DecoderLayer(*args) for _ in range(cfg.num_decoder_layers)]), cfg.d_model)
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(self, x: Tensor, invisible: Tensor, mask_memory: bool,
                keys: Optional[Tensor] = None) -> Tensor:
        """X (N, T, E), invisible (N, T) bool -> (N, T, E); ``keys`` see :func:`key_tracks`."""
        pad_time = safe_padding(invisible)
        pad_space = safe_padding((invisible if keys is None else invisible[keys]).t())
        memory = x
        for layer in self.encoder.layers:
            memory = layer(memory, pad_time, pad_space, keys)
        memory = self.encoder.norm(memory)
        out = x
        pad_memory = pad_time if mask_memory else None
        for layer in self.decoder.layers:
            out = layer(out, memory, pad_time, pad_space, pad_memory, keys)
        return self.decoder.norm(out)


class PointEmbedding(nn.Module):
    """Linear lift of the motion feature to the MSDE width (named like the reference)."""

    def __init__(self, in_dim: int, dim: int) -> None:
        super().__init__()
        self.embedding = nn.Linear(in_dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        """Map (..., in_dim) to (..., dim)."""
        return self.embedding(x)


class MsdeEncoderBlock(nn.Module):
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
        """X (1, N, dim), feature (1, N, D) or None -> (1, N, dim)."""
        x = self.norm1(x + self.dropout(attend(self.attention, x, at_keys(x, keys))))
        inp = x if feature is None else torch.cat([x, feature], dim=-1)
        return self.norm2(x + self.dropout(self.ffn(inp)))


class MsdeDecoderBlock(nn.Module):
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
        """X, memory (1, N, dim) -> (1, N, dim)."""
        x = self.norm1(x + self.dropout(attend(self.self_attention, x, at_keys(x, keys))))
        cross = attend(self.cross_attention, x, at_keys(memory, keys))
        x = self.norm2(x + self.dropout(cross))
        return self.norm3(x + self.dropout(self.ffn(x)))
