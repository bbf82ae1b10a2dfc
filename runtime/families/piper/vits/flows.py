"""The normalising flow between the prior and the decoder's latent, inference direction."""

from __future__ import annotations

import torch
from torch import nn

from runtime.families.piper.vits.hyperparams import VitsHyperparams
from runtime.families.piper.vits.layers import same_padding


class WaveNetStack(nn.Module):
    """Non-causal WaveNet: gated tanh/sigmoid units with residual and skip outputs."""

    def __init__(self, hidden: int, kernel_size: int, dilations: tuple[int, ...]) -> None:
        super().__init__()
        self.hidden = hidden
        self.in_layers = nn.ModuleList(
            nn.Conv1d(hidden, 2 * hidden, kernel_size, dilation=d, padding=same_padding(kernel_size, d))
            for d in dilations
        )
        last = len(dilations) - 1
        self.res_skip_layers = nn.ModuleList(
            nn.Conv1d(hidden, hidden if i == last else 2 * hidden, 1) for i in range(len(dilations))
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.hidden
        skip = torch.zeros_like(x)
        last = len(self.in_layers) - 1
        for i, (conv_in, conv_rs) in enumerate(zip(self.in_layers, self.res_skip_layers, strict=True)):
            pre = conv_in(x)
            acts = torch.tanh(pre[:, :h]) * torch.sigmoid(pre[:, h:])
            rs = conv_rs(acts)
            if i < last:
                x = (x + rs[:, :h]) * mask
                skip = skip + rs[:, h:]
            else:
                skip = skip + rs
        return skip * mask


class MeanOnlyCoupling(nn.Module):
    """Affine coupling with the scale fixed to 1: the second half is shifted by f(first half)."""

    def __init__(self, channels: int, hidden: int, kernel_size: int, dilations: tuple[int, ...]) -> None:
        super().__init__()
        self.half_channels = channels // 2  # not `half`: nn.Module.half() exists
        self.pre = nn.Conv1d(self.half_channels, hidden, 1)
        self.enc = WaveNetStack(hidden, kernel_size, dilations)
        self.post = nn.Conv1d(hidden, self.half_channels, 1)

    def reverse(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x0, x1 = x[:, : self.half_channels], x[:, self.half_channels :]
        h = self.enc(self.pre(x0) * mask, mask)
        shift = self.post(h) * mask
        return torch.cat([x0, (x1 - shift) * mask], dim=1)


class CouplingFlow(nn.Module):
    """Coupling layers at even indices with a channel Flip after each (odd indices)."""

    def __init__(self, hp: VitsHyperparams) -> None:
        super().__init__()
        self.flows = nn.ModuleDict(
            {
                str(k): MeanOnlyCoupling(hp.inter_channels, hp.flow_hidden_channels, hp.flow_kernel,
                                         hp.flow_dilations)
                for k in hp.flow_keys
            }
        )
        self.reverse_keys = tuple(str(k) for k in sorted(hp.flow_keys, reverse=True))

    def reverse(self, z: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        for key in self.reverse_keys:
            layer = self.flows[key]
            assert isinstance(layer, MeanOnlyCoupling)
            z = layer.reverse(torch.flip(z, [1]), mask)
        return z
