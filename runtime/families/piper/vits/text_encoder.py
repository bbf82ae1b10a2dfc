"""The prior text encoder: phoneme embedding + transformer with windowed relative positions."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from runtime.families.piper.vits.hyperparams import VitsHyperparams
from runtime.families.piper.vits.layers import ChannelLayerNorm


def relative_indices(length: int, window: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Gather indices for windowed relative attention over ``length`` positions.

    ``key_index[i, j]`` is the column of the relative-embedding table used by query ``i`` and
    key ``j`` (``j - i + window``), or ``2 * window + 1`` (a zero column) outside the window.
    ``band_index[i, k]`` is the column of the zero-padded ``[length, length + 2 * window]``
    attention matrix that holds the weight of relative offset ``k - window`` for query ``i``.
    """
    pos = torch.arange(length, device=device)
    offset = pos.unsqueeze(0) - pos.unsqueeze(1)  # [i, j] = j - i
    inside = offset.abs() <= window
    key_index = torch.where(inside, offset + window, torch.full_like(offset, 2 * window + 1))
    band_index = pos.unsqueeze(1) + torch.arange(2 * window + 1, device=device).unsqueeze(0)
    return key_index, band_index


class RelativeSelfAttention(nn.Module):
    def __init__(self, channels: int, n_heads: int, window: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.k_channels = channels // n_heads
        self.window = window
        self.conv_q = nn.Conv1d(channels, channels, 1)
        self.conv_k = nn.Conv1d(channels, channels, 1)
        self.conv_v = nn.Conv1d(channels, channels, 1)
        self.conv_o = nn.Conv1d(channels, channels, 1)
        self.emb_rel_k = nn.Parameter(torch.zeros(1, 2 * window + 1, self.k_channels))
        self.emb_rel_v = nn.Parameter(torch.zeros(1, 2 * window + 1, self.k_channels))

    def forward(
        self,
        x: torch.Tensor,
        key_padding: torch.Tensor | None,
        key_index: torch.Tensor,
        band_index: torch.Tensor,
    ) -> torch.Tensor:
        b, c, t = x.shape
        h, kc, w = self.n_heads, self.k_channels, self.window
        q = self.conv_q(x).view(b, h, kc, t).transpose(2, 3) / math.sqrt(kc)
        k = self.conv_k(x).view(b, h, kc, t)
        v = self.conv_v(x).view(b, h, kc, t).transpose(2, 3)
        scores = torch.matmul(q, k)
        rel = torch.matmul(q, self.emb_rel_k.transpose(1, 2))  # [b, h, t, 2w+1]
        rel = F.pad(rel, (0, 1))
        scores = scores + torch.gather(rel, 3, key_index.expand(b, h, t, t))
        if key_padding is not None:
            scores = scores.masked_fill(key_padding, -1e4)
        p = torch.softmax(scores, dim=-1)
        out = torch.matmul(p, v)
        banded = torch.gather(F.pad(p, (w, w)), 3, band_index.expand(b, h, t, 2 * w + 1))
        out = out + torch.matmul(banded, self.emb_rel_v)
        result: torch.Tensor = self.conv_o(out.transpose(2, 3).reshape(b, c, t))
        return result


class FeedForward(nn.Module):
    def __init__(self, channels: int, filter_channels: int, kernel_size: int) -> None:
        super().__init__()
        self.conv_1 = nn.Conv1d(channels, filter_channels, kernel_size, padding=kernel_size // 2)
        self.conv_2 = nn.Conv1d(filter_channels, channels, kernel_size, padding=kernel_size // 2)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.conv_1(x * mask))
        result: torch.Tensor = self.conv_2(y * mask) * mask
        return result


class RelativeTransformer(nn.Module):
    def __init__(self, hp: VitsHyperparams) -> None:
        super().__init__()
        c = hp.hidden_channels
        self.window = hp.encoder_window
        self.attn_layers = nn.ModuleList(
            RelativeSelfAttention(c, hp.encoder_heads, hp.encoder_window) for _ in range(hp.encoder_layers)
        )
        self.norm_layers_1 = nn.ModuleList(ChannelLayerNorm(c) for _ in range(hp.encoder_layers))
        self.ffn_layers = nn.ModuleList(
            FeedForward(c, hp.encoder_filter_channels, hp.encoder_ffn_kernel) for _ in range(hp.encoder_layers)
        )
        self.norm_layers_2 = nn.ModuleList(ChannelLayerNorm(c) for _ in range(hp.encoder_layers))

    def forward(self, x: torch.Tensor, mask: torch.Tensor, padded: bool) -> torch.Tensor:
        t = x.shape[2]
        key_index, band_index = relative_indices(t, self.window, x.device)
        # Padded keys are masked out; padded queries produce values that are masked later.
        key_padding = (mask.unsqueeze(2) * mask.unsqueeze(3) == 0) if padded else None
        x = x * mask
        for attn, norm_1, ffn, norm_2 in zip(
            self.attn_layers, self.norm_layers_1, self.ffn_layers, self.norm_layers_2, strict=True
        ):
            x = norm_1(x + attn(x, key_padding, key_index, band_index))
            x = norm_2(x + ffn(x, mask))
        return x * mask


class TextEncoder(nn.Module):
    def __init__(self, hp: VitsHyperparams) -> None:
        super().__init__()
        self.hidden_channels = hp.hidden_channels
        # An explicit (uninitialised) weight skips nn.init.normal_, which on the meta device
        # imports ~800 modules (~70 MB of RSS, measured with torch 2.13) for nothing.
        self.emb = nn.Embedding(hp.n_vocab, hp.hidden_channels,
                                _weight=torch.empty(hp.n_vocab, hp.hidden_channels))
        self.encoder = RelativeTransformer(hp)
        self.proj = nn.Conv1d(hp.hidden_channels, 2 * hp.inter_channels, 1)

    def forward(
        self, ids: torch.Tensor, mask: torch.Tensor, padded: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns (hidden ``[b, hidden, t]``, prior mean, prior log-std ``[b, inter, t]``)."""
        x = (self.emb(ids) * math.sqrt(self.hidden_channels)).transpose(1, 2)
        x = self.encoder(x * mask, mask, padded)
        stats = self.proj(x) * mask
        m, logs = torch.split(stats, stats.shape[1] // 2, dim=1)
        return x, m, logs
