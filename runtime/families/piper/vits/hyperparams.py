"""The sizes of one VITS voice, derived from its exported weights and conv attributes.

Nothing here is hard-coded for a particular voice: the sizes are read from the tensor shapes
and the Conv/ConvTranspose node attributes of the ONNX graph, so the same code builds a "low",
"medium" or "high" Piper voice. Only the spline's tail bound (5) is the architecture's constant.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from runtime.engines.base import EngineError


@dataclass(frozen=True)
class ConvAttributes:
    """Attributes of one exported Conv/ConvTranspose node. Source: the ONNX node's attributes."""

    kernel_size: int
    stride: int
    dilation: int
    padding: int
    groups: int


@dataclass(frozen=True)
class VitsHyperparams:
    n_vocab: int
    hidden_channels: int
    inter_channels: int
    encoder_layers: int
    encoder_heads: int
    encoder_window: int
    encoder_filter_channels: int
    encoder_ffn_kernel: int
    dp_filter_channels: int
    dp_kernel: int
    dp_layers: int
    dp_flow_keys: tuple[int, ...]
    """Indices of the ConvFlows in ``dp.flows`` (the first one is unused at inference)."""
    dp_num_bins: int
    dp_tail_bound: float
    flow_keys: tuple[int, ...]
    """Indices of the coupling layers in ``flow.flows`` (a Flip sits between them)."""
    flow_hidden_channels: int
    flow_kernel: int
    flow_layers: int
    flow_dilations: tuple[int, ...]
    dec_initial_channels: int
    dec_pre_kernel: int
    dec_post_kernel: int
    dec_post_bias: bool
    dec_ups: tuple[ConvAttributes, ...]
    dec_resblock_type: str
    """"1": three conv pairs per block; "2": two single convs per block."""
    dec_resblock_kernels: tuple[int, ...]
    dec_resblock_dilations: tuple[tuple[int, ...], ...]
    n_speakers: int

    @property
    def hop_samples(self) -> int:
        """Audio samples per spectrogram frame (product of the upsampling strides)."""
        hop = 1
        for up in self.dec_ups:
            hop *= up.stride
        return hop


def _indices(shapes: Mapping[str, tuple[int, ...]], pattern: str) -> tuple[int, ...]:
    regex = re.compile(pattern)
    found = {int(m.group(1)) for name in shapes if (m := regex.fullmatch(name))}
    return tuple(sorted(found))


def derive_hyperparams(
    shapes: Mapping[str, tuple[int, ...]],
    convs: Mapping[str, ConvAttributes],
    n_speakers: int,
) -> VitsHyperparams:
    """Read the architecture from tensor ``shapes`` (state-dict names) and conv ``convs``
    (module path -> attributes). Raises EngineError naming the first missing piece."""

    def shape(name: str) -> tuple[int, ...]:
        try:
            return shapes[name]
        except KeyError:
            raise EngineError(
                f"the voice has no tensor {name!r}; is it a Piper VITS export? "
                "Use TAILOR_ENGINE=onnx for models the torch engine cannot build."
            ) from None

    def conv(path: str) -> ConvAttributes:
        try:
            return convs[path]
        except KeyError:
            raise EngineError(f"the voice graph has no conv node for {path!r}") from None

    n_vocab, hidden = shape("enc_p.emb.weight")
    layers = _indices(shapes, r"enc_p\.encoder\.attn_layers\.(\d+)\.conv_q\.weight")
    rel_k = shape("enc_p.encoder.attn_layers.0.emb_rel_k")
    k_channels = rel_k[2]
    ffn = shape("enc_p.encoder.ffn_layers.0.conv_1.weight")
    dp_pre = shape("dp.pre.weight")
    dp_layers = _indices(shapes, r"dp\.convs\.convs_sep\.(\d+)\.weight")
    dp_flow_keys = _indices(shapes, r"dp\.flows\.(\d+)\.pre\.weight")
    if not dp_flow_keys:
        raise EngineError("the voice has no stochastic duration predictor flows (dp.flows.*)")
    dp_proj_out = shape(f"dp.flows.{dp_flow_keys[0]}.proj.weight")[0]
    flow_keys = _indices(shapes, r"flow\.flows\.(\d+)\.pre\.weight")
    if not flow_keys:
        raise EngineError("the voice has no coupling flows (flow.flows.*)")
    f0 = flow_keys[0]
    flow_layers = _indices(shapes, rf"flow\.flows\.{f0}\.enc\.in_layers\.(\d+)\.weight")
    ups = _indices(shapes, r"dec\.ups\.(\d+)\.weight")
    blocks = _indices(shapes, r"dec\.resblocks\.(\d+)\.(?:convs|convs1)\.0\.weight")
    if not ups or not blocks or len(blocks) % len(ups):
        raise EngineError("the voice's generator (dec.ups / dec.resblocks) is incomplete")
    per_up = len(blocks) // len(ups)
    block_type = "1" if "dec.resblocks.0.convs1.0.weight" in shapes else "2"
    first = "convs1" if block_type == "1" else "convs"
    kernels: list[int] = []
    dilations: list[tuple[int, ...]] = []
    for j in range(per_up):
        convs_in_block = _indices(shapes, rf"dec\.resblocks\.{j}\.{first}\.(\d+)\.weight")
        kernels.append(shape(f"dec.resblocks.{j}.{first}.0.weight")[2])
        dilations.append(tuple(conv(f"dec.resblocks.{j}.{first}.{i}").dilation for i in convs_in_block))
    dec_pre = shape("dec.conv_pre.weight")
    return VitsHyperparams(
        n_vocab=n_vocab,
        hidden_channels=hidden,
        inter_channels=shape("enc_p.proj.weight")[0] // 2,
        encoder_layers=len(layers),
        encoder_heads=hidden // k_channels,
        encoder_window=(rel_k[1] - 1) // 2,
        encoder_filter_channels=ffn[0],
        encoder_ffn_kernel=ffn[2],
        dp_filter_channels=dp_pre[0],
        dp_kernel=shape("dp.convs.convs_sep.0.weight")[2],
        dp_layers=len(dp_layers),
        dp_flow_keys=dp_flow_keys,
        dp_num_bins=(dp_proj_out + 1) // 3,
        dp_tail_bound=5.0,
        flow_keys=flow_keys,
        flow_hidden_channels=shape(f"flow.flows.{f0}.pre.weight")[0],
        flow_kernel=shape(f"flow.flows.{f0}.enc.in_layers.0.weight")[2],
        flow_layers=len(flow_layers),
        flow_dilations=tuple(conv(f"flow.flows.{f0}.enc.in_layers.{i}").dilation for i in flow_layers),
        dec_initial_channels=dec_pre[0],
        dec_pre_kernel=dec_pre[2],
        dec_post_kernel=shape("dec.conv_post.weight")[2],
        dec_post_bias="dec.conv_post.bias" in shapes,
        dec_ups=tuple(conv(f"dec.ups.{i}") for i in ups),
        dec_resblock_type=block_type,
        dec_resblock_kernels=tuple(kernels),
        dec_resblock_dilations=tuple(dilations),
        n_speakers=n_speakers,
    )
