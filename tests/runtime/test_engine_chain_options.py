"""Which options each engine instance gets: workers spread over the GPUs, fallbacks with their own
options (fp32, own threads; CPU, or CUDA first where TAILOR_FALLBACK_DEVICE=cuda).

The factory records the options it is asked for and raises, as a failing engine would; the
point is what the chain asks for and in what order, so nothing is synthesized here.
"""

from __future__ import annotations

import pytest

from runtime.engines.base import EngineError, EngineOptions
from runtime.errors import StartupError
from runtime.serving.service import SpeechService
from runtime.settings import Settings

VOICE = "en_US-joe-medium"


def asked(env: dict[str, str]) -> list[tuple[str, EngineOptions]]:
    calls: list[tuple[str, EngineOptions]] = []

    def factory(name: str, _path: object, _rate: int, options: EngineOptions) -> object:
        calls.append((name, options))
        raise EngineError(f"{name} on {options.device}: injected load failure")

    service = SpeechService(Settings.from_environ(env), engine_factory=factory)
    with pytest.raises(StartupError):
        service.chain.load_default(VOICE)
    return calls


def test_workers_spread_over_gpus_and_fallback_on_cpu_with_its_own_threads() -> None:
    calls = asked({"TAILOR_ENGINE": "torch", "TAILOR_DEVICE": "cuda", "TAILOR_PRECISION": "bf16",
                   "TAILOR_WORKERS": "1", "TAILOR_GPUS": "2", "TAILOR_THREADS_PER_WORKER": "1",
                   "TAILOR_FALLBACK": f"onnx:{VOICE}", "TAILOR_FALLBACK_THREADS": "3"})
    torch_calls = [o for n, o in calls if n == "torch"]
    assert [(o.device, o.device_index, o.precision) for o in torch_calls] == [("cuda", 0, "bf16")]
    onnx_calls = [o for n, o in calls if n == "onnx"]
    assert [(o.device, o.precision, o.intra_op_threads, o.gpus) for o in onnx_calls] == [("cpu", "fp32", 3, 1)]


def test_four_workers_on_two_gpus() -> None:
    from runtime.engines.base import EngineOptions as Options

    options = Options(device="cuda", gpus=2)
    assert [options.for_worker(w).device_index for w in range(4)] == [0, 1, 0, 1]
    assert Options(device="cpu", gpus=2).for_worker(3).device_index == 0


def test_cuda_fallback_is_tried_first_then_the_cpu() -> None:
    calls = asked({"TAILOR_ENGINE": "torch", "TAILOR_DEVICE": "cuda", "TAILOR_PRECISION": "fp16",
                   "TAILOR_FALLBACK": f"onnx:{VOICE}", "TAILOR_FALLBACK_DEVICE": "cuda"})
    onnx_calls = [(o.device, o.precision) for n, o in calls if n == "onnx"]
    assert onnx_calls == [("cuda", "fp32"), ("cpu", "fp32")]


def test_fallback_threads_default_to_the_workers() -> None:
    calls = asked({"TAILOR_ENGINE": "torch", "TAILOR_THREADS_PER_WORKER": "2", "TAILOR_FALLBACK": f"onnx:{VOICE}"})
    assert [o.intra_op_threads for n, o in calls if n == "onnx"] == [2]
