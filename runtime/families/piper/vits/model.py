"""The whole VITS inference pass: phoneme ids to waveforms."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from runtime.families.piper.vits.duration import StochasticDurationPredictor
from runtime.families.piper.vits.flows import CouplingFlow
from runtime.families.piper.vits.generator import Generator
from runtime.families.piper.vits.hyperparams import VitsHyperparams
from runtime.families.piper.vits.layers import sequence_mask
from runtime.families.piper.vits.text_encoder import TextEncoder


@dataclass(frozen=True)
class BatchAudio:
    audio: torch.Tensor
    """``[batch, samples]`` float32 on the model's device; item ``i`` is valid up to its length."""
    sample_lengths: torch.Tensor
    """``[batch]`` int64: exact number of samples of each item."""
    id_frames: torch.Tensor
    """``[batch, ids]`` float: frames (of ``hop_samples``) the model gave each phoneme id (0 for padding)."""


class VitsSynthesizer(nn.Module):
    """Text encoder + duration predictor + flow + generator, under the ONNX export's names.

    ``enc_p`` and ``dp`` decide the durations, so they always run in float32 (the audio length
    never depends on the precision). The flow also stays float32 (cheap, and half precision there
    doubles the error); the generator's upsampling stages may run in half precision
    (see :meth:`set_half_precision`).
    """

    def __init__(self, hp: VitsHyperparams) -> None:
        super().__init__()
        self.hp = hp
        self.enc_p = TextEncoder(hp)
        self.dp = StochasticDurationPredictor(hp)
        self.flow = CouplingFlow(hp)
        self.dec = Generator(hp)
        self.generator_compiled = False

    def set_half_precision(self, dtype: torch.dtype) -> None:
        """Run the generator's upsampling stages in ``dtype`` (float16 or bfloat16)."""
        self.dec.set_stage_dtype(dtype)

    def forward(
        self,
        ids: torch.Tensor,
        lengths: torch.Tensor,
        noise_scale: torch.Tensor,
        length_scale: torch.Tensor,
        noise_w: torch.Tensor,
        frame_edge: Callable[[int], int] | None = None,
        render: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, bool], torch.Tensor] | None = None,
    ) -> BatchAudio:
        """``ids`` ``[b, t]`` int64 (zero-padded), ``lengths`` ``[b]``; the scales are ``[b]``.

        ``frame_edge`` rounds the frame count up (shape buckets: the padding is masked, and
        every item keeps its exact length); ``render`` replaces :meth:`render` (a CUDA graph of
        it for this shape)."""
        b, t = ids.shape
        padded = bool((lengths < t).any())
        x_mask = sequence_mask(lengths, t)
        hidden, m_p, logs_p = self.enc_p(ids, x_mask, padded)
        logw = self.dp(hidden, x_mask, noise_w)
        durations = torch.ceil(torch.exp(logw) * x_mask * length_scale.view(b, 1, 1))
        frame_lengths = durations.sum(dim=(1, 2)).clamp_min(1).long()
        longest = int(frame_lengths.max())
        frames = frame_edge(longest) if frame_edge is not None else longest
        y_mask = sequence_mask(frame_lengths, frames)
        # Monotonic expansion: frame j belongs to the phoneme whose cumulative end first exceeds j.
        ends = torch.cumsum(durations.squeeze(1), dim=1).contiguous()
        positions = torch.arange(frames, device=ids.device, dtype=ends.dtype).expand(b, frames).contiguous()
        owner = torch.searchsorted(ends, positions, right=True).clamp_max(t - 1)
        index = owner.unsqueeze(1).expand(b, m_p.shape[1], frames)
        m = torch.gather(m_p, 2, index) * y_mask
        logs = torch.gather(logs_p, 2, index) * y_mask
        z_p = m + torch.randn_like(m) * torch.exp(logs) * noise_scale.view(b, 1, 1)
        masked = frames > longest or padded_frames(frame_lengths)
        audio = (render or self.render)(z_p, y_mask, frame_lengths, masked)
        return BatchAudio(audio=audio.squeeze(1), sample_lengths=frame_lengths * self.hp.hop_samples,
                          id_frames=durations.squeeze(1))

    def render(self, z_p: torch.Tensor, y_mask: torch.Tensor, frame_lengths: torch.Tensor, masked: bool) -> torch.Tensor:
        """Flow and generator: the prior's latent ``[b, c, frames]`` to audio ``[b, 1, samples]``.
        ``masked`` turns the generator's padding masks on (items shorter than ``frames``). No
        host synchronisation: a CUDA graph can capture it."""
        z = self.flow.reverse(z_p, y_mask)
        return self.dec(z * y_mask, frame_lengths if masked else None)  # type: ignore[no-any-return]


def padded_frames(frame_lengths: torch.Tensor) -> bool:
    """True when the items of a batch differ in length (the generator then needs masks)."""
    return bool((frame_lengths != frame_lengths.max()).any())
