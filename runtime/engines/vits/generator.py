"""HiFi-GAN generator: latent frames to waveform.

For batched inference the generator takes per-item frame counts and zeroes each item's padding
before every convolution, so a short item sees exactly the zero padding it would see alone and
its samples match single-item inference.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from runtime.engines.vits.hyperparams import VitsHyperparams
from runtime.engines.vits.layers import same_padding

SLOPE = 0.1


def _masked(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    return x if mask is None else x * mask


class ResBlockPairs(nn.Module):
    """Type 1: per dilation, LeakyReLU -> dilated conv -> LeakyReLU -> conv, plus a residual."""

    def __init__(self, channels: int, kernel_size: int, dilations: tuple[int, ...]) -> None:
        super().__init__()
        self.convs1 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel_size, dilation=d, padding=same_padding(kernel_size, d))
            for d in dilations
        )
        self.convs2 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel_size, padding=same_padding(kernel_size))
            for _ in dilations
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        for c1, c2 in zip(self.convs1, self.convs2, strict=True):
            y = c1(_masked(F.leaky_relu(x, SLOPE), mask))
            y = c2(_masked(F.leaky_relu(y, SLOPE), mask))
            x = x + y
        return x


class ResBlockSingles(nn.Module):
    """Type 2: per dilation, LeakyReLU -> dilated conv, plus a residual."""

    def __init__(self, channels: int, kernel_size: int, dilations: tuple[int, ...]) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel_size, dilation=d, padding=same_padding(kernel_size, d))
            for d in dilations
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        for conv in self.convs:
            x = x + conv(_masked(F.leaky_relu(x, SLOPE), mask))
        return x


class Generator(nn.Module):
    def __init__(self, hp: VitsHyperparams) -> None:
        super().__init__()
        ch = hp.dec_initial_channels
        self.conv_pre = nn.Conv1d(hp.inter_channels, ch, hp.dec_pre_kernel, padding=hp.dec_pre_kernel // 2)
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        self.strides = tuple(up.stride for up in hp.dec_ups)
        self.kernels_per_up = len(hp.dec_resblock_kernels)
        block = ResBlockPairs if hp.dec_resblock_type == "1" else ResBlockSingles
        for i, up in enumerate(hp.dec_ups):
            out = ch // (2 ** (i + 1))
            self.ups.append(
                nn.ConvTranspose1d(ch // (2**i), out, up.kernel_size, stride=up.stride, padding=up.padding)
            )
            for k, d in zip(hp.dec_resblock_kernels, hp.dec_resblock_dilations, strict=True):
                self.resblocks.append(block(out, k, d))
        last = ch // (2 ** len(hp.dec_ups))
        self.conv_post = nn.Conv1d(last, 1, hp.dec_post_kernel, padding=hp.dec_post_kernel // 2,
                                   bias=hp.dec_post_bias)

    def forward(self, z: torch.Tensor, frame_lengths: torch.Tensor | None = None) -> torch.Tensor:
        """``[b, inter, frames]`` -> ``[b, 1, frames * hop]`` in [-1, 1].

        ``frame_lengths`` (one per item) turns on padding masks; leave it out for one item.
        """
        mask = None
        if frame_lengths is not None:
            mask = _length_mask(frame_lengths, z.shape[2], z.dtype)
        x = self.conv_pre(_masked(z, mask))
        lengths = frame_lengths
        for i, up in enumerate(self.ups):
            x = up(_masked(F.leaky_relu(x, SLOPE), mask))
            if lengths is not None:
                lengths = lengths * self.strides[i]
                mask = _length_mask(lengths, x.shape[2], x.dtype)
            blocks = self.resblocks[i * self.kernels_per_up : (i + 1) * self.kernels_per_up]
            total = blocks[0](x, mask)
            for blk in blocks[1:]:
                total = total + blk(x, mask)
            x = total / self.kernels_per_up
        x = self.conv_post(_masked(F.leaky_relu(x), mask))
        return torch.tanh(x)


def _length_mask(lengths: torch.Tensor, size: int, dtype: torch.dtype) -> torch.Tensor:
    positions = torch.arange(size, device=lengths.device)
    return (positions.unsqueeze(0) < lengths.unsqueeze(1)).unsqueeze(1).to(dtype)
