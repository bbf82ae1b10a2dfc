"""The model families' declarations and memory model (runtime/families/catalog.py, spec.py).

Each field figure quoted in issue 18 is held here against the memory model, so a change to a
family's numbers that drifts from what was reported fails.
"""

from __future__ import annotations

import pytest

from runtime.families.catalog import DEFAULT_FAMILY, FAMILIES, UnknownFamilyError, family
from runtime.families.spec import MIB, FamilySpec, Placement, PlacementError
from runtime.settings import MODEL_FAMILIES, variable

GB = 10**9


def est(name: str, engine: str, device: str, precision: str, *, drop: tuple[str, ...] = (),
        offload: tuple[str, ...] = (), mmap: bool = False):  # type: ignore[no-untyped-def]
    return family(name).estimate(Placement(engine, device, precision, frozenset(drop), frozenset(offload), mmap))


def test_the_catalog_declares_the_four_families_with_their_loaders() -> None:
    assert list(FAMILIES) == ["piper", "kokoro-82m", "xtts-v2", "indextts2"]
    assert DEFAULT_FAMILY == "piper"
    assert {f.name: f.loader for f in FAMILIES.values()} == {
        "piper": "runtime.families.piper.loader:load",
        "kokoro-82m": "runtime.families.kokoro.loader:load",
        "xtts-v2": "runtime.families.xtts.family:load",
        "indextts2": "runtime.families.indextts2.family:load",
    }
    assert {f.name: f.sample_rate_hz for f in FAMILIES.values()} == {
        "piper": 22050, "kokoro-82m": 24000, "xtts-v2": 24000, "indextts2": 22050}
    assert {f.name: f.streaming for f in FAMILIES.values()} == {
        "piper": "sentence", "kokoro-82m": "sentence", "xtts-v2": "token-chunk", "indextts2": "token-chunk"}
    assert [f.name for f in FAMILIES.values() if not f.concurrent_safe] == ["xtts-v2", "indextts2"]
    assert [f.name for f in FAMILIES.values() if f.separate_process] == ["indextts2"]
    assert family("xtts-v2").install == "tailor-deploy[xtts]" and family("kokoro-82m").install == "tailor-deploy[kokoro]"
    assert not family("xtts-v2").commercial_use and "Coqui Public Model License" in family("xtts-v2").licence


def test_the_runtime_variable_accepts_exactly_the_catalogs_names() -> None:
    assert tuple(FAMILIES) == MODEL_FAMILIES
    assert variable("TAILOR_MODEL").default == DEFAULT_FAMILY
    assert variable("TAILOR_MODEL").parse("TAILOR_MODEL", "XTTS-v2") == "xtts-v2"


def test_an_unknown_name_suggests_the_nearest() -> None:
    with pytest.raises(UnknownFamilyError) as caught:
        family("kokoro")
    assert caught.value.suggestion == "kokoro-82m"
    assert "did you mean 'kokoro-82m'" in str(caught.value)
    assert family(" IndexTTS2 ").name == "indextts2"
    with pytest.raises(UnknownFamilyError) as far:
        family("wavenet")
    assert far.value.suggestion is None and "piper, kokoro-82m" in str(far.value)


def test_parameter_counts_are_the_reported_ones() -> None:
    assert family("xtts-v2").params == 466_900_000
    assert family("kokoro-82m").params == 81_800_000
    assert family("piper").params == 15_600_000
    index = {c.name: c.params for c in family("indextts2").components}
    assert index["gpt"] == 990_000_000 and index["w2v-bert"] == 580_000_000 and index["s2mel"] == 100_000_000
    assert index["semantic-codec"] == 44_000_000 and index["campplus"] == 6_800_000
    assert family("indextts2").component("bigvgan").weight_bytes("fp16") == 429 * MIB  # stays fp32
    assert family("indextts2").optional_components == ("emotion",)


def test_piper_keeps_the_budget_figures_it_had() -> None:
    """Piper's plans must not move: the numbers orchestrator/plan/budget.py used before families."""
    piper = family("piper")
    cpu = piper.footprint(Placement("onnx", "cpu", "fp32"))
    assert (cpu.overhead_ram_bytes, cpu.weights_ram_per_worker_bytes, cpu.per_request_ram_bytes) == (
        350 * MIB, 89 * MIB, 192 * MIB)
    assert piper.footprint(Placement("torch", "cpu", "fp32")).overhead_ram_bytes == 900 * MIB
    for precision, weights, item in (("fp32", 63_201_294, 192 * MIB), ("fp16", 31_600_647, 96 * MIB),
                                     ("bf16", 31_600_647, 96 * MIB)):
        gpu = piper.footprint(Placement("torch", "cuda", precision))
        assert (gpu.overhead_ram_bytes, gpu.weights_ram_shared_bytes, gpu.per_request_ram_bytes,
                gpu.cuda_context_bytes, gpu.weights_vram_per_worker_bytes, gpu.per_item_vram_bytes,
                gpu.weights_ram_per_worker_bytes) == (900 * MIB, 64 * MIB, 48 * MIB, 500 * MIB, weights, item, 0)


def test_indextts2_reproduces_the_8gb_t4_report() -> None:
    """~6 GB resident after loading on an 8 GB RAM + T4 box, and a 7.8 GB peak while loading."""
    full = est("indextts2", "torch", "cuda", "fp16")
    assert full.ram_after_load_bytes == pytest.approx(6.0 * GB, rel=0.05)
    assert full.ram_load_peak_bytes == pytest.approx(7.8 * GB, rel=0.03)
    mapped = est("indextts2", "torch", "cuda", "fp16", mmap=True)
    assert mapped.ram_load_peak_bytes == mapped.ram_after_load_bytes < full.ram_load_peak_bytes


def test_indextts2_reproduces_the_rtx3070_peak_vram() -> None:
    """Peak VRAM 7.35-7.46 GB on an 8 GB RTX 3070: fp16 GPT, no emotion model (its web UI below 10 GB)."""
    low = est("indextts2", "torch", "cuda", "fp16", drop=("emotion",))
    assert 7.35 * GB <= low.vram_peak_bytes <= 7.46 * GB


def test_indextts2_fp32_loads_on_a_12gb_card_but_a_sentence_overflows_it() -> None:
    full = est("indextts2", "torch", "cuda", "fp32")
    card = 12 * 1024**3
    assert full.vram_after_load_bytes < card < full.vram_peak_bytes


def test_use_fp16_halves_only_the_gpt() -> None:
    spec = family("indextts2")
    fp32 = spec.footprint(Placement("torch", "cuda", "fp32", frozenset({"emotion"})))
    fp16 = spec.footprint(Placement("torch", "cuda", "fp16", frozenset({"emotion"})))
    assert fp32.weights_vram_per_worker_bytes - fp16.weights_vram_per_worker_bytes == 990_000_000 * 2
    halved = {w.component for w in fp16.weights if w.precision == "fp16"}
    assert halved == {"gpt"}


def test_indextts2_offloading_moves_weights_from_vram_to_ram() -> None:
    on_gpu = est("indextts2", "torch", "cuda", "fp16", drop=("emotion",))
    moved = est("indextts2", "torch", "cuda", "fp16", drop=("emotion",), offload=("w2v-bert",))
    w2v = 580_000_000 * 4  # runs in fp32 on the CPU
    assert on_gpu.vram_peak_bytes - moved.vram_peak_bytes == w2v
    assert moved.ram_after_load_bytes - on_gpu.ram_after_load_bytes == w2v


def test_xtts_reproduces_the_reported_ram_and_vram() -> None:
    """4.6-5 GB of RAM and ~2.1 GB of VRAM after loading; does not fit a 2 GB GTX 1050."""
    assert family("xtts-v2").component("gpt").weight_bytes("fp32") + family("xtts-v2").component(
        "hifigan").weight_bytes("fp32") == pytest.approx(1.87 * GB, rel=0.01)
    cpu = est("xtts-v2", "torch", "cpu", "fp32")
    assert 4.6 * GB <= cpu.ram_after_load_bytes <= 5.0 * GB
    gpu = est("xtts-v2", "torch", "cuda", "fp32")
    assert gpu.vram_after_load_bytes == pytest.approx(2.1 * GB, rel=0.05)
    assert gpu.vram_after_load_bytes > 2048 * MIB  # more than a GTX 1050 has, before any sentence
    # fp16 is autocast: the weights stay fp32, only the working memory halves.
    half = est("xtts-v2", "torch", "cuda", "fp16")
    assert half.vram_after_load_bytes == gpu.vram_after_load_bytes > half.vram_peak_bytes - (
        gpu.vram_peak_bytes - gpu.vram_after_load_bytes)


def test_kokoro_reproduces_the_reported_gpu_figures() -> None:
    """About 1 GB of VRAM per process; ~1.8 GB RSS after the first sentence on the fp32 torch path."""
    gpu = est("kokoro-82m", "torch", "cuda", "fp32")
    assert 0.9 * GB <= gpu.vram_peak_bytes <= 1.15 * GB
    assert gpu.ram_serving_bytes == pytest.approx(1.8 * GB, rel=0.15)


def test_kokoro_int8_on_the_cpu_is_the_file_plus_a_session_plus_the_server() -> None:
    """The figure a measurement of the real int8 model is compared with (within 25 %)."""
    spec = family("kokoro-82m")
    int8 = spec.estimate(Placement("onnx", "cpu", "int8"))
    assert int8.weights_bytes == 92_361_271
    session = int(92_361_271 * 89 * MIB / 63_201_294)  # Piper's measured session/file ratio
    assert int8.ram_after_load_bytes == 110 * MIB + session  # the server's measured overhead
    assert int8.ram_serving_bytes == 110 * MIB + session + 270 * MIB  # one 200-symbol call
    assert int8.ram_serving_bytes < 1 * GB < est("kokoro-82m", "torch", "cuda", "fp32").ram_serving_bytes
    assert spec.estimate(Placement("onnx", "cpu", "fp32")).weights_bytes == 81_800_000 * 4


@pytest.mark.parametrize("spec", list(FAMILIES.values()), ids=lambda f: f.name)
def test_every_declared_placement_has_a_footprint(spec: FamilySpec) -> None:
    for placement in spec.placements():
        e = spec.estimate(placement, workers=2, streams=3)
        assert 0 < e.ram_after_load_bytes <= e.ram_serving_bytes
        assert e.ram_after_load_bytes <= e.ram_load_peak_bytes
        assert (e.vram_peak_bytes > e.vram_after_load_bytes > 0) == (placement.device == "cuda")
        one, two = spec.estimate(placement), spec.estimate(placement, workers=2)
        assert (two.ram_after_load_bytes, two.vram_after_load_bytes) > (one.ram_after_load_bytes, one.vram_after_load_bytes)


@pytest.mark.parametrize(("name", "placement", "words"), [
    ("piper", Placement("torch", "cuda", "int8"), "no int8 on cuda"),
    ("kokoro-82m", Placement("torch", "cpu", "int8"), "does not run with the torch engine on cpu"),
    ("xtts-v2", Placement("torch", "cuda", "fp32", frozenset({"gpt"})), "gpt cannot be dropped"),
    ("indextts2", Placement("torch", "cuda", "fp16", offloaded=frozenset({"gpt"})), "gpt cannot run on the CPU"),
    ("indextts2", Placement("torch", "cpu", "fp32", offloaded=frozenset({"w2v-bert"})), "only applies on cuda"),
    ("indextts2", Placement("torch", "cuda", "fp16", frozenset({"nonsense"})), "has no component 'nonsense'"),
    ("xtts-v2", Placement("torch", "cpu", "fp32", mmap=True), "cannot map its weights"),
])
def test_impossible_placements_are_refused_with_the_reason(name: str, placement: Placement, words: str) -> None:
    with pytest.raises(PlacementError, match=words):
        family(name).footprint(placement)
