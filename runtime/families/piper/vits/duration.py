"""The stochastic duration predictor, inference direction only.

Noise ``[b, 2, t]`` (scaled by ``noise_w``) is pushed backwards through the flows conditioned on
the text encoding; the first channel of the result is the log-duration of each phoneme.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from runtime.families.piper.vits.hyperparams import VitsHyperparams
from runtime.families.piper.vits.layers import ChannelLayerNorm, same_padding
from runtime.families.piper.vits.spline import inverse_rational_quadratic


class DilatedDepthSeparableConv(nn.Module):
    def __init__(self, channels: int, kernel_size: int, n_layers: int) -> None:
        super().__init__()
        self.convs_sep = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel_size, groups=channels, dilation=kernel_size**i,
                      padding=same_padding(kernel_size, kernel_size**i))
            for i in range(n_layers)
        )
        self.convs_1x1 = nn.ModuleList(nn.Conv1d(channels, channels, 1) for _ in range(n_layers))
        self.norms_1 = nn.ModuleList(ChannelLayerNorm(channels) for _ in range(n_layers))
        self.norms_2 = nn.ModuleList(ChannelLayerNorm(channels) for _ in range(n_layers))

    def forward(self, x: torch.Tensor, mask: torch.Tensor, g: torch.Tensor | None = None) -> torch.Tensor:
        if g is not None:
            x = x + g
        for sep, norm_1, pointwise, norm_2 in zip(
            self.convs_sep, self.norms_1, self.convs_1x1, self.norms_2, strict=True
        ):
            y = F.gelu(norm_1(sep(x * mask)))
            y = F.gelu(norm_2(pointwise(y)))
            x = x + y
        return x * mask


class ConvFlow(nn.Module):
    """Coupling layer whose second half goes through a rational-quadratic spline."""

    def __init__(self, hp: VitsHyperparams) -> None:
        super().__init__()
        fc = hp.dp_filter_channels
        self.filter_channels = fc
        self.num_bins = hp.dp_num_bins
        self.bound = hp.dp_tail_bound
        self.pre = nn.Conv1d(1, fc, 1)
        self.convs = DilatedDepthSeparableConv(fc, hp.dp_kernel, hp.dp_layers)
        self.proj = nn.Conv1d(fc, 3 * hp.dp_num_bins - 1, 1)

    def reverse(self, x: torch.Tensor, mask: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        x0, x1 = x[:, :1], x[:, 1:]
        h = self.convs(self.pre(x0), mask, g)
        h = self.proj(h) * mask
        b, _, t = x0.shape
        h = h.reshape(b, 1, -1, t).permute(0, 1, 3, 2)  # [b, 1, t, 3 * bins - 1]
        nb, scale = self.num_bins, math.sqrt(self.filter_channels)
        x1 = inverse_rational_quadratic(
            x1, h[..., :nb] / scale, h[..., nb : 2 * nb] / scale, h[..., 2 * nb :], self.bound
        )
        return torch.cat([x0, x1], dim=1) * mask


class ElementwiseAffine(nn.Module):
    """``y = m + x * exp(logs)``; the export keeps ``exp(-logs)``, which is what reversing needs."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.m = nn.Parameter(torch.zeros(channels, 1))
        self.inv_scale = nn.Parameter(torch.ones(channels, 1))

    def reverse(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return (x - self.m) * self.inv_scale * mask


class StochasticDurationPredictor(nn.Module):
    def __init__(self, hp: VitsHyperparams) -> None:
        super().__init__()
        fc = hp.dp_filter_channels
        self.pre = nn.Conv1d(hp.hidden_channels, fc, 1)
        self.convs = DilatedDepthSeparableConv(fc, hp.dp_kernel, hp.dp_layers)
        self.proj = nn.Conv1d(fc, fc, 1)
        flows: dict[str, nn.Module] = {"0": ElementwiseAffine(2)}
        flows.update({str(k): ConvFlow(hp) for k in hp.dp_flow_keys})
        self.flows = nn.ModuleDict(flows)
        # Training runs flows 0 (affine), 1 (ConvFlow), 2 (Flip), 3 (ConvFlow), ...; the reverse
        # pass skips ConvFlow 1 (exports usually drop it) and has a Flip before every ConvFlow.
        self.reverse_keys = tuple(str(k) for k in sorted(hp.dp_flow_keys, reverse=True) if k != 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, noise_w: torch.Tensor) -> torch.Tensor:
        """Log-durations ``[b, 1, t]``; ``noise_w`` is one value per batch item."""
        g = self.proj(self.convs(self.pre(x), mask)) * mask
        b, _, t = x.shape
        z = torch.randn(b, 2, t, device=x.device, dtype=x.dtype) * noise_w.view(b, 1, 1)
        for key in self.reverse_keys:
            flow = self.flows[key]
            assert isinstance(flow, ConvFlow)
            z = flow.reverse(torch.flip(z, [1]), mask, g)
        affine = self.flows["0"]
        assert isinstance(affine, ElementwiseAffine)
        z = affine.reverse(torch.flip(z, [1]), mask)
        return z[:, :1]
