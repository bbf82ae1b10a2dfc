"""The runtime's environment for a plan: every variable of ``runtime/settings.py`` plus the
thread, allocator and CUDA variables, each with where its value came from.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from orchestrator.plan.budget import plans_solo_wide
from orchestrator.probe.facts import HostFacts
from orchestrator.select.profiles import Profile
from runtime.families.catalog import DEFAULT_FAMILY
from runtime.settings import VARIABLES

SOURCES = ("cli", "env", "config", "profile", "default", "derived")
"""Where a value can come from, strongest first. A config file may carry another label
(``tuned`` for one `deploy tune` wrote); it ranks where ``config`` does."""
PLANNED_SOURCES = frozenset({"profile", "default", "derived"})
"""Sources that mean "Tailor chose it"; every other source is the user's own setting."""


SECRET_VARIABLES = frozenset(v.name for v in VARIABLES if v.secret)
"""Variables whose values are never printed unless the user asks (``--show-secrets``)."""
REDACTED = "***redacted***"


def redact(name: str, value: str, show_secrets: bool = False) -> str:
    """``value``, or :data:`REDACTED` for a non-empty secret variable (``TAILOR_API_KEY``)."""
    if name in SECRET_VARIABLES and value and not show_secrets:
        return REDACTED
    return value


def redact_env(env: Mapping[str, str], show_secrets: bool = False) -> dict[str, str]:
    """A copy of ``env`` with every secret value redacted (see :func:`redact`)."""
    return {name: redact(name, value, show_secrets) for name, value in env.items()}


def set_by_user(source: str) -> bool:
    """True for ``cli``, ``env``, ``config`` (or its label, such as ``tuned``)."""
    return source not in PLANNED_SOURCES and source != "plan"

JEMALLOC_CONF = "background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0"
"""Return freed pages to the OS within a second: RSS follows load instead of its peak."""
TCMALLOC_RELEASE_RATE = "5"


@dataclass(frozen=True)
class Provenance:
    name: str
    """A plan field (``workers``) or a variable (``OMP_NUM_THREADS``)."""
    value: str
    source: str
    """``cli``, ``env``, ``config``, ``profile``, ``default`` or ``derived``."""
    reason: str


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def build_env(*, facts: HostFacts, profile: Profile, user_values: Mapping[str, tuple[str, str]],
              engine: str, device: str, precision: str, workers: int, threads: int, inter_op: int,
              max_queue: int, batching: bool, max_batch: int, window_ms: float, preload: bool,
              cache_bytes: int, tight: bool, memory_limit_bytes: int, gpu_uuids: tuple[str, ...] = (),
              fallback_threads: int = 1, family: str = DEFAULT_FAMILY,
              model_env: Mapping[str, tuple[str, str, str]] | None = None,
              ) -> tuple[dict[str, str], tuple[Provenance, ...], tuple[str, ...]]:
    """(env sorted by name, provenance of each variable, warnings).

    The numbers passed in are already resolved (user values applied); their variables are
    recorded as ``derived`` unless the user set them.
    """
    planned: dict[str, tuple[str, str, str]] = {
        "TAILOR_ENGINE": (engine, "plan", "plan engine"),
        "TAILOR_DEVICE": (device, "plan", "plan device"),
        "TAILOR_PRECISION": (precision, "plan", "plan precision"),
        "TAILOR_WORKERS": (str(workers), "plan", "plan workers"),
        "TAILOR_THREADS_PER_WORKER": (str(threads), "plan", "plan threads per worker"),
        "TAILOR_INTER_OP_THREADS": (str(inter_op), "plan", "plan inter-op threads"),
        "TAILOR_MAX_QUEUE": (str(max_queue), "plan", "plan max_queue"),
        "TAILOR_BATCHING": (_bool(batching), "plan", "plan batching"),
        "TAILOR_MAX_BATCH_SIZE": (str(max_batch), "plan", "plan max_batch_size"),
        "TAILOR_BATCH_WINDOW_MS": (_num(window_ms), "plan", "plan batch_window_ms"),
        "TAILOR_PRELOAD": (_bool(preload), "plan", "plan preload"),
        "TAILOR_CACHE_BYTES": (str(cache_bytes), "plan", "plan cache_bytes"),
        "TAILOR_RSS_SOFT_LIMIT_BYTES": (str(memory_limit_bytes * 9 // 10), "derived",
                                        "90% of the memory limit: refuse new work before the OOM killer acts"),
    }
    if plans_solo_wide(device, workers, tight):
        planned["TAILOR_SOLO_WIDE"] = (
            "true", "derived",
            f"a lone sentence runs on one extra instance with {workers * threads} threads: one-thread workers "
            "serve load best, but a single request would otherwise use one CPU (measured, benchmarks/RESULTS.md)")
    planned["TAILOR_MODEL"] = (family, "plan", "plan model family")
    planned.update(model_env or {})
    fallback = profile.fallback
    first = family.split(",")[0].strip()  # TAILOR_MODEL may list several: the first is the default
    if fallback and first != DEFAULT_FAMILY:
        planned["TAILOR_FALLBACK"] = ("", "derived", f"the profile's fallback ({fallback}) names {DEFAULT_FAMILY} "
                                                     f"voices; no fallback is planned for {first}")
    elif fallback and all(item.split(":", 1)[0] == engine for item in fallback.split(",")):
        planned["TAILOR_FALLBACK"] = ("", "derived", f"the primary engine is already {engine}")
    else:
        planned["TAILOR_FALLBACK"] = (fallback, "profile", f"profile {profile.name}")
    if planned["TAILOR_FALLBACK"][0]:
        planned["TAILOR_FALLBACK_DEVICE"] = (
            "cpu", "derived", "the fallback must work when CUDA does not: onnx on the CPU in fp32")
        planned["TAILOR_FALLBACK_THREADS"] = (
            str(fallback_threads), "derived",
            "intra-op threads of each fallback instance: the CPUs the plan gives each worker"
            + (" (a CUDA worker needs few; a CPU fallback needs them all)" if device == "cuda" else ""))
    if device == "cuda" and gpu_uuids:
        planned["TAILOR_GPUS"] = (str(len(gpu_uuids)), "derived",
                                  f"the workers are spread over {len(gpu_uuids)} GPU(s), worker i on GPU i mod "
                                  f"{len(gpu_uuids)}")
        planned["CUDA_VISIBLE_DEVICES"] = (",".join(gpu_uuids), "derived",
                                           "the GPUs the plan uses, by UUID (containers get them through the "
                                           "device reservation instead)")
        planned["CUDA_DEVICE_ORDER"] = ("PCI_BUS_ID", "derived", "CUDA numbers the devices as NVML does")
    arena = profile.allocator.ort_memory_arena and not tight
    planned["TAILOR_ORT_MEMORY_ARENA"] = (
        _bool(arena), "derived" if tight and profile.allocator.ort_memory_arena else "profile",
        "memory is tight: no onnxruntime arena" if tight else f"profile {profile.name}")

    warnings: list[str] = []
    on_jetson = facts.jetson is not None
    planned.update(
        {name: (str(threads), "derived", "= threads per worker, so BLAS/OpenMP pools match the plan")
         for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")})
    if engine == "torch":
        planned["OMP_WAIT_POLICY"] = ("PASSIVE", "derived",
                                      "idle OpenMP threads sleep instead of spinning: measured 15 vs 4 audio-s/s "
                                      "with 2 torch threads on a shared 2-CPU host")
    planned["MALLOC_ARENA_MAX"] = (str(profile.allocator.malloc_arena_max), "profile",
                                   f"profile {profile.name}: fewer glibc arenas, lower RSS")
    if device == "cuda" and not on_jetson and profile.allocator.cuda_expandable_segments:
        planned["PYTORCH_CUDA_ALLOC_CONF"] = ("expandable_segments:True", "profile",
                                              "variable batch shapes fragment the CUDA cache less")
    wanted = profile.allocator.preload
    library = next((p for p in facts.allocator_libraries if f"lib{wanted}" in p.rsplit("/", 1)[-1]), None)
    if wanted != "none" and library is not None:
        planned["LD_PRELOAD"] = (library, "derived", f"{wanted} wanted by profile {profile.name}, "
                                                     f"found on the host at {library}")
        if wanted == "jemalloc":
            planned["MALLOC_CONF"] = (JEMALLOC_CONF, "derived", "jemalloc: return freed pages within 1 s")
        else:
            planned["TCMALLOC_RELEASE_RATE"] = (TCMALLOC_RELEASE_RATE, "derived", "tcmalloc: release memory sooner")

    env: dict[str, str] = {}
    prov: list[Provenance] = []
    for var in VARIABLES:
        value, source, reason = planned.get(var.name, (var.default, "default", "runtime default"))
        env[var.name] = value
        prov.append(Provenance(var.name, value, source, reason))
    for name in sorted(set(planned) - set(env)):
        value, source, reason = planned[name]
        env[name] = value
        prov.append(Provenance(name, value, source, reason))
    for name, (value, source) in user_values.items():
        if name == "PYTORCH_CUDA_ALLOC_CONF" and on_jetson:
            warnings.append("PYTORCH_CUDA_ALLOC_CONF is ignored on Jetson: the L4T CUDA allocator "
                            "does not support its options")
            env.pop(name, None)
            continue
        if name.startswith("TAILOR_") and name in planned and planned[name][1] == "plan":
            continue  # already applied with its source by make_plan
        env[name] = value
        prov = [p for p in prov if p.name != name]
        prov.append(Provenance(name, value, source, f"set by {source}"))
    # Variables resolved by make_plan carry make_plan's source; "plan" is only a placeholder.
    fixed = [Provenance(p.name, p.value, _plan_source(p, user_values), p.reason) for p in prov]
    return dict(sorted(env.items())), tuple(sorted(fixed, key=lambda p: p.name)), tuple(warnings)


def _plan_source(p: Provenance, user_values: Mapping[str, tuple[str, str]]) -> str:
    if p.source != "plan":
        return p.source
    return user_values[p.name][1] if p.name in user_values else "derived"
