"""Unit tests of the torch VITS building blocks and the ONNX weight loader (no real voice)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from runtime.engines.base import EngineError, EngineOptions  # noqa: E402
from runtime.families.piper.vits.hyperparams import derive_hyperparams  # noqa: E402
from runtime.families.piper.vits.onnx_weights import read_voice_weights  # noqa: E402
from runtime.families.piper.vits.spline import _knots, inverse_rational_quadratic  # noqa: E402
from runtime.families.piper.vits.text_encoder import relative_indices  # noqa: E402


@pytest.mark.parametrize(("length", "window"), [(1, 4), (3, 4), (12, 4), (7, 2)])
def test_relative_indices_follow_the_definition(length: int, window: int) -> None:
    key_index, band_index = relative_indices(length, window, torch.device("cpu"))
    for i in range(length):
        for j in range(length):
            expected = j - i + window if abs(j - i) <= window else 2 * window + 1
            assert int(key_index[i, j]) == expected
        for k in range(2 * window + 1):
            # Column i + k of the matrix padded by `window` on the left is key j = i + k - window.
            assert int(band_index[i, k]) == i + k


def _forward_spline(x: torch.Tensor, uw: torch.Tensor, uh: torch.Tensor, ud: torch.Tensor,
                    bound: float) -> torch.Tensor:
    """The forward rational-quadratic map, written independently of the module under test."""
    import math

    from torch.nn import functional as F

    widths, cw = _knots(uw, bound, 1e-3)
    heights, ch = _knots(uh, bound, 1e-3)
    edge = math.log(math.expm1(1 - 1e-3))
    d = 1e-3 + F.softplus(F.pad(ud, (1, 1), value=edge))
    out = x.clone()
    for idx in np.ndindex(*x.shape):
        v = float(x[idx])
        if not -bound <= v <= bound:
            continue
        k = max(b for b in range(widths.shape[-1]) if float(cw[idx][b]) <= v)
        theta = (v - float(cw[idx][k])) / float(widths[idx][k])
        s = float(heights[idx][k] / widths[idx][k])
        dk, dk1 = float(d[idx][k]), float(d[idx][k + 1])
        num = float(heights[idx][k]) * (s * theta**2 + dk * theta * (1 - theta))
        den = s + (dk1 + dk - 2 * s) * theta * (1 - theta)
        out[idx] = float(ch[idx][k]) + num / den
    return out


def test_spline_inverse_undoes_the_forward_map() -> None:
    gen = torch.Generator().manual_seed(0)
    shape, bins, bound = (2, 1, 9), 10, 5.0
    uw, uh = torch.randn(*shape, bins, generator=gen), torch.randn(*shape, bins, generator=gen)
    ud = torch.randn(*shape, bins - 1, generator=gen)
    x = torch.linspace(-7.0, 7.0, 18).reshape(shape).double()
    y = _forward_spline(x, uw.double(), uh.double(), ud.double(), bound)
    back = inverse_rational_quadratic(y, uw.double(), uh.double(), ud.double(), bound)
    torch.testing.assert_close(back, x, rtol=0, atol=1e-9)
    outside = x.abs() > bound
    assert outside.any()
    assert torch.equal(y[outside], x[outside])  # identity tails


def _tiny_graph(path: Path) -> None:
    """A graph shaped like a Piper export's naming, not a working voice."""
    rng = np.random.default_rng(0)

    def init(name: str, shape: tuple[int, ...]) -> TensorProto:
        return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)

    nodes = [
        helper.make_node("Gather", ["sid", "input"], ["emb"], name="/enc_p/emb/Gather"),
        helper.make_node("Transpose", ["emb"], ["embt"], name="/enc_p/Transpose", perm=[0, 2, 1]),
        helper.make_node("Conv", ["embt", "onnx::Conv_7", "flow.flows.0.enc.in_layers.0.bias"], ["c"],
                         name="/flow/flows.0/enc/in_layers.0/Conv", kernel_shape=[5], pads=[4, 4],
                         dilations=[2]),
        helper.make_node("Mul", ["c", "/dp/flows.0/Exp_output_0"], ["m"], name="/dp/flows.0/Mul"),
        helper.make_node("Add", ["m", "onnx::Conv_99"], ["a"], name="/odd/Add"),
        helper.make_node("Mul", ["a", "/Constant_output_0"], ["output"], name="/Mul"),
    ]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("input", TensorProto.INT64, [1, 3])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, None)],
        [init("sid", (10, 4)), init("onnx::Conv_7", (8, 4, 5)), init("flow.flows.0.enc.in_layers.0.bias", (8,)),
         init("/dp/flows.0/Exp_output_0", (8, 1)), init("onnx::Conv_99", (1, 8, 3)),
         numpy_helper.from_array(np.array(2.0, dtype=np.float32), "/Constant_output_0")],
    )
    onnx.save(helper.make_model(graph), str(path))


def test_loader_names_anonymous_tensors_after_their_consumers(tmp_path: Path) -> None:
    path = tmp_path / "tiny.onnx"
    _tiny_graph(path)
    weights = read_voice_weights(path)
    assert set(weights.tensors) == {
        "enc_p.emb.weight",
        "flow.flows.0.enc.in_layers.0.weight",
        "flow.flows.0.enc.in_layers.0.bias",
        "dp.flows.0.inv_scale",
    }
    assert tuple(weights.tensors["flow.flows.0.enc.in_layers.0.weight"].shape) == (8, 4, 5)
    assert weights.unmapped == ("onnx::Conv_99",)
    conv = weights.convs["flow.flows.0.enc.in_layers.0"]
    assert (conv.kernel_size, conv.dilation, conv.padding, conv.stride) == (5, 2, 4, 1)
    assert weights.input_names == ("input",)


def test_a_graph_that_is_not_vits_fails_with_the_missing_piece(tmp_path: Path) -> None:
    path = tmp_path / "tiny.onnx"
    _tiny_graph(path)
    weights = read_voice_weights(path)
    shapes = {k: tuple(v.shape) for k, v in weights.tensors.items()}
    with pytest.raises(EngineError, match=r"enc_p\.encoder\.attn_layers\.0\.emb_rel_k"):
        derive_hyperparams(shapes, weights.convs, n_speakers=1)


def test_torch_engine_rejects_a_non_vits_model(tmp_path: Path) -> None:
    from runtime.engines import create_engine

    path = tmp_path / "tiny.onnx"
    _tiny_graph(path)
    with pytest.raises(EngineError, match="Piper VITS export"):
        create_engine("torch", path, 22050, EngineOptions())


def test_missing_and_unreadable_files_are_engine_errors(tmp_path: Path) -> None:
    from runtime.engines import create_engine

    with pytest.raises(EngineError, match="does not exist"):
        create_engine("torch", tmp_path / "nope.onnx", 22050, EngineOptions())
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00\xffnot a protobuf at all" * 10)
    with pytest.raises(EngineError, match="not a readable ONNX model"):
        create_engine("torch", garbage, 22050, EngineOptions())


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (EngineOptions(precision="fp16"), "needs device=cuda"),
        (EngineOptions(precision="int8"), "unknown precision"),
        (EngineOptions(device="tpu"), "unknown device"),
    ],
)
def test_bad_options_are_engine_errors(tmp_path: Path, options: EngineOptions, message: str) -> None:
    from runtime.engines import create_engine

    with pytest.raises(EngineError, match=message):
        create_engine("torch", tmp_path / "any.onnx", 22050, options)


def test_cuda_without_a_gpu_is_an_engine_error(tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    from runtime.engines import create_engine

    with pytest.raises(EngineError, match="no CUDA device"):
        create_engine("torch", tmp_path / "any.onnx", 22050, EngineOptions(device="cuda"))
