"""HiFi-GAN generator: latent frames to waveform.

For batched inference the generator takes per-item frame counts and zeroes each item's padding
before every convolution, so a short item sees exactly the zero padding it would see alone and
its samples match single-item inference.

The convolutions run either as plain 1-D convolutions over ``[b, c, t]`` or as 2-D convolutions
over ``[b, c, 1, t]`` tensors in channels-last layout (:meth:`Generator.use_channels_last_kernels`
reshapes the loaded weights once, in place). On CPU the 2-D form is 2-4x faster for these
channel counts (torch 2.13: oneDNN reorders 1-D inputs on every call). On CUDA it depends on the
precision (measured on an H200, torch 2.11, cuDNN heuristics, mixed sentence lengths): in bf16
the 2-D form is faster (1,650 vs 1,236 audio-s/s at batch 32; 29.8 vs 50.1 ms at batch 1), in
fp32 the 1-D form (1,654 vs 1,344 at batch 32; 24.5 vs 29.6 ms at batch 1); fp16 is a tie.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from runtime.families.piper.vits.hyperparams import VitsHyperparams
from runtime.families.piper.vits.layers import same_padding

SLOPE = 0.1


def _masked(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    return x if mask is None else x * mask


def _conv(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Apply a Conv1d or ConvTranspose1d: as a 1-D op, or as a 2-D op over ``[b, c, 1, t]`` once
    :func:`_to_channels_last` made its weight 4-D."""
    assert isinstance(module, nn.Conv1d | nn.ConvTranspose1d)
    padding, stride, dilation = module.padding[0], module.stride[0], module.dilation[0]
    assert isinstance(padding, int)
    transposed = isinstance(module, nn.ConvTranspose1d)
    if module.weight.dim() == 3:
        op = F.conv_transpose1d if transposed else F.conv1d
        return op(x, module.weight, module.bias, stride=stride, padding=padding, dilation=dilation)
    op = F.conv_transpose2d if transposed else F.conv2d
    return op(x, module.weight, module.bias, stride=(1, stride), padding=(0, padding), dilation=(1, dilation))


def _to_channels_last(conv: nn.Conv1d | nn.ConvTranspose1d) -> None:
    weight = conv.weight.detach().unsqueeze(2).contiguous(memory_format=torch.channels_last)
    conv.weight = nn.Parameter(weight, requires_grad=False)


def _dilated_convs(channels: int, kernel_size: int, dilations: tuple[int, ...]) -> nn.ModuleList:
    """One same-length conv per dilation: the first conv of every residual unit, in both types."""
    return nn.ModuleList(
        nn.Conv1d(channels, channels, kernel_size, dilation=d, padding=same_padding(kernel_size, d))
        for d in dilations
    )


class ResBlockPairs(nn.Module):
    """Type 1: per dilation, LeakyReLU -> dilated conv -> LeakyReLU -> conv, plus a residual."""

    def __init__(self, channels: int, kernel_size: int, dilations: tuple[int, ...]) -> None:
        super().__init__()
        self.convs1 = _dilated_convs(channels, kernel_size, dilations)
        self.convs2 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel_size, padding=same_padding(kernel_size))
            for _ in dilations
        )

    def forward(self, x: torch.Tensor, act: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """``act`` is ``leaky_relu(x)`` (masked), shared by all blocks of a stage."""
        for i, (c1, c2) in enumerate(zip(self.convs1, self.convs2, strict=True)):
            y = _conv(c1, act if i == 0 else _masked(F.leaky_relu(x, SLOPE), mask))
            y = _conv(c2, _masked(F.leaky_relu_(y, SLOPE), mask))
            x = y.add_(x)  # y is fresh; x may be the stage input other blocks still read
        return x


class ResBlockSingles(nn.Module):
    """Type 2: per dilation, LeakyReLU -> dilated conv, plus a residual."""

    def __init__(self, channels: int, kernel_size: int, dilations: tuple[int, ...]) -> None:
        super().__init__()
        self.convs = _dilated_convs(channels, kernel_size, dilations)

    def forward(self, x: torch.Tensor, act: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """``act`` is ``leaky_relu(x)`` (masked), shared by all blocks of a stage."""
        for i, conv in enumerate(self.convs):
            y = _conv(conv, act if i == 0 else _masked(F.leaky_relu(x, SLOPE), mask))
            x = y.add_(x)  # y is fresh; x may be the stage input other blocks still read
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
        self.stage_dtype = torch.float32
        self.channels_last = False
        last = ch // (2 ** len(hp.dec_ups))
        self.conv_post = nn.Conv1d(last, 1, hp.dec_post_kernel, padding=hp.dec_post_kernel // 2,
                                   bias=hp.dec_post_bias)

    def set_stage_dtype(self, dtype: torch.dtype) -> None:
        """Run the upsampling stages (transposed convs and resblocks, almost all of the work) in
        ``dtype``. ``conv_pre`` and ``conv_post`` stay float32: measured on the default voice,
        half precision there alone triples the waveform error (relative L2 ~3% instead of ~0.1%
        for float16, ~0.5% for bfloat16)."""
        self.ups.to(dtype)
        self.resblocks.to(dtype)
        self.stage_dtype = dtype

    def use_channels_last_kernels(self) -> None:
        """Reshape every (loaded) conv weight to ``[out, in, 1, k]`` channels-last, once."""
        for module in self.modules():
            if isinstance(module, nn.Conv1d | nn.ConvTranspose1d):
                _to_channels_last(module)
        self.channels_last = True

    def use_conv1d_kernels(self) -> None:
        """Undo :meth:`use_channels_last_kernels`: every conv weight back to ``[out, in, k]``."""
        for module in self.modules():
            if isinstance(module, nn.Conv1d | nn.ConvTranspose1d) and module.weight.dim() == 4:
                module.weight = nn.Parameter(module.weight.detach().squeeze(2).contiguous(), requires_grad=False)
        self.channels_last = False

    def forward(self, z: torch.Tensor, frame_lengths: torch.Tensor | None = None) -> torch.Tensor:
        """``[b, inter, frames]`` -> ``[b, 1, frames * hop]`` in [-1, 1].

        ``frame_lengths`` (one per item) turns on padding masks; leave it out for one item.
        """
        four_d = self.channels_last
        mask = None
        if frame_lengths is not None:
            mask = _length_mask(frame_lengths, z.shape[2], z.dtype, four_d)
        x = z.unsqueeze(2).contiguous(memory_format=torch.channels_last) if four_d else z
        x = _conv(self.conv_pre, _masked(x, mask)).to(self.stage_dtype)
        if mask is not None:
            mask = mask.to(self.stage_dtype)
        lengths = frame_lengths
        # Activations are fresh tensors at every step below, so in-place ops save allocations.
        for i, up in enumerate(self.ups):
            x = _conv(up, _masked(F.leaky_relu_(x, SLOPE), mask))
            if lengths is not None:
                lengths = lengths * self.strides[i]
                mask = _length_mask(lengths, x.shape[-1], self.stage_dtype, four_d)
            act = _masked(F.leaky_relu(x, SLOPE), mask)
            blocks = self.resblocks[i * self.kernels_per_up : (i + 1) * self.kernels_per_up]
            total = blocks[0](x, act, mask)
            for blk in blocks[1:]:
                total.add_(blk(x, act, mask))
            x = total.div_(self.kernels_per_up)
        x = _conv(self.conv_post, _masked(F.leaky_relu_(x), mask).float())
        return torch.tanh(x).squeeze(2) if four_d else torch.tanh(x)


def _length_mask(lengths: torch.Tensor, size: int, dtype: torch.dtype, four_d: bool) -> torch.Tensor:
    """``[b, 1, 1, size]`` (channels-last 2-D activations) or ``[b, 1, size]`` mask."""
    positions = torch.arange(size, device=lengths.device)
    mask = positions.unsqueeze(0) < lengths.unsqueeze(1)
    return (mask.view(-1, 1, 1, size) if four_d else mask.view(-1, 1, size)).to(dtype)
