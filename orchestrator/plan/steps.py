"""The steps of make_plan: the user's choices by precedence, then each group of decisions.

:class:`Choices` ranks what the user set (config < env < command line, plus step-down values)
and types it with the knob table; :class:`Planning` decides engine and precision, memory pools,
workers x threads, then batching, concurrency and preload, recording every value's source.
:func:`orchestrator.plan.planner.make_plan` runs these steps in order and assembles the Plan.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from orchestrator.errors import UsageError
from orchestrator.plan.budget import slots_that_fit, workers_that_fit
from orchestrator.plan.input_limits import decide_limits, speed_for
from orchestrator.plan.runtime_env import Provenance
from orchestrator.plan.user_config import (
    PASS_THROUGH,
    UserConfig,
    Value,
    parse_value,
    value_text,
    variable_for,
)
from orchestrator.probe.facts import HostFacts
from orchestrator.select.fit import ModelFit, Pools, memory_pools
from orchestrator.select.gpus import GpuChoice
from orchestrator.select.profiles import Profile, parse_version
from orchestrator.select.selection import (
    compute_capability,
    cpu_bf16_supported,
    precision_supported,
    resolve_precision,
)
from orchestrator.units import format_size
from runtime.families.catalog import DEFAULT_FAMILY, family
from runtime.families.spec import FamilySpec, Footprint
from runtime.settings import VARIABLES, Settings

T = TypeVar("T")
RUNTIME_DEFAULTS = Settings.defaults()
"""The runtime's own defaults, typed (from the knob table)."""


class Choices:
    """Values set for runtime variables, by precedence: cli > env > config (and step-down values).

    Each is parsed once, where it enters (the config file when it was read, the environment and
    the command line here), and held typed; :meth:`get` gives its text for env and provenance."""

    def __init__(self, overrides: Mapping[str, str], environ: Mapping[str, str], config: UserConfig | None,
                 stepped: Mapping[str, Value], step_reason: str) -> None:
        self.typed_values: dict[str, tuple[Value, str]] = {}
        self.reasons: dict[str, str] = {}
        if config is not None:
            for name, value in config.values.items():
                self._set(name, value, config.label, f"set in {config.where.get(name, config.source)}")
        for name, raw in sorted(environ.items()):
            if name in _PASS or name in _DECLARED:
                self._set(name, parse_value(name, raw, "environment"), "env", "already set in the environment")
        for key, raw in overrides.items():
            name = variable_for(key)
            self._set(name, parse_value(name, str(raw), f"command line ({key})"), "cli", "set on the command line")
        for name, value in stepped.items():
            self._set(name, value, "derived", step_reason)

    def _set(self, name: str, value: Value, source: str, reason: str) -> None:
        self.typed_values[name] = (value, source)
        self.reasons[name] = reason

    @property
    def values(self) -> dict[str, tuple[str, str]]:
        """name -> (text, source): what the env and the provenance write."""
        return {k: (value_text(v), source) for k, (v, source) in self.typed_values.items()}

    def get(self, name: str) -> tuple[str, str] | None:
        chosen = self.typed_values.get(name)
        return None if chosen is None else (value_text(chosen[0]), chosen[1])

    def typed(self, name: str) -> Any:
        """The user's value for runtime variable ``name``, typed by the knob table, or None."""
        chosen = self.typed_values.get(name)
        return None if chosen is None else chosen[0]

    def user_set(self) -> dict[str, tuple[str, str]]:
        return {k: v for k, v in sorted(self.values.items()) if v[1] != "derived"}


_PASS = frozenset(PASS_THROUGH)
# Only the runtime's declared variables are read from the environment; other TAILOR_* names
# (TAILOR_DEBUG, the launcher's own) belong to the orchestrator.
_DECLARED = frozenset(v.name for v in VARIABLES)


@dataclass(frozen=True)
class Sizing:
    workers: int
    threads: int
    cache_bytes: int
    tight: bool
    """Memory is short: cache/arena off, lazy model load."""


@dataclass(frozen=True)
class Batching:
    inter_op: int
    batching: bool
    max_batch: int
    concurrency: int
    max_queue: int
    window_ms: float
    preload: bool
    tight: bool


class Planning:
    """One make_plan call's working state: the user's choices, and every value's provenance,
    warnings and reasons as they are decided. Each step below is one group of decisions."""

    def __init__(self, facts: HostFacts, profile: Profile, user: Choices, warnings: list[str],
                 gpus: GpuChoice, fit: ModelFit | None = None) -> None:
        self.facts = facts
        self.profile = profile
        self.user = user
        self.warnings = warnings
        self.reasons: list[str] = []
        self.prov: dict[str, Provenance] = {}
        self.gpus = gpus
        """The selection's GPU choice (see orchestrator/select/gpus.py); trimmed when fewer workers than GPUs."""
        self.devices = 1
        """Discrete GPUs the workers are spread over (1 without one, and on Jetson)."""
        self.fit = fit
        """Where the model family fits (select/fit.py); None: the profile's engine and device as they are."""
        self.family: FamilySpec = family(fit.family if fit is not None else DEFAULT_FAMILY)

    def decide(self, name: str, field_name: str, value: T, source: str, reason: str) -> T:
        """``value`` (typed), unless the user set ``name``: then theirs, typed by the knob table."""
        chosen = self.user.get(name)
        if chosen is not None:
            value = self.user.typed(name)
            source, reason = chosen[1], self.user.reasons[name]
        self.prov[field_name] = Provenance(field_name, value_text(value), source, reason)
        return value

    def from_profile(self, name: str, field_name: str, value: T) -> T:
        return self.decide(name, field_name, value, "profile", f"profile {self.profile.name}")

    def device_and_precision(self) -> tuple[str, str, str]:
        """(engine, device, precision), with warnings about the GPU the plan relies on."""
        facts, profile, warnings, fit = self.facts, self.profile, self.warnings, self.fit
        if fit is None or fit.engine == profile.engine:
            engine: str = self.from_profile("TAILOR_ENGINE", "engine", profile.engine)
        else:
            engine = self.decide("TAILOR_ENGINE", "engine", fit.engine, "derived",
                                 f"{fit.family} runs with {fit.engine} on {fit.device}")
        if fit is None or fit.device == profile.device:
            device: str = self.from_profile("TAILOR_DEVICE", "device", profile.device)
        else:
            step = next((s for s in fit.steps if s.reduction == "cpu"), None)
            device = self.decide("TAILOR_DEVICE", "device", fit.device, "derived",
                                 step.detail if step else f"{fit.family} runs on {fit.device}")
        gpus = self.gpus
        cc = compute_capability(facts, gpus)
        on_gpu = device == "cuda"
        if on_gpu and cc is None:
            warnings.append("device cuda is planned but this machine has no usable NVIDIA GPU"
                            + (f" ({gpus.summary()})" if facts.gpus else ""))
        for verdict in gpus.verdicts:
            self.reasons.append(verdict.sentence())
            # A MIG parent is no device of its own: its instances get verdicts instead. Without
            # instances, nothing of that card is planned, and the operator must hear why.
            has_instances = any(g.mig_parent_index == verdict.gpu.index for g in facts.gpus)
            if not verdict.used and not (verdict.gpu.mig_mode == "enabled" and has_instances):
                warnings.append(f"{verdict.gpu.label} ({verdict.gpu.name}) is not used: {verdict.reason}")
        warnings.extend(gpus.warnings)
        if gpus.stack is not None and on_gpu:
            self.reasons.append(f"image: {gpus.stack.base_image} with {gpus.stack.reason}")
        if facts.gpus and not gpus.used and device == "cpu":
            self.reasons.append("device cpu: no NVIDIA GPU is usable (see above), so the model runs on the CPU")
        if facts.jetson is not None and device == "cpu" and (parse_version(facts.jetson.l4t_release) or (0,)) < (36,):
            warnings.append(_jetson_cpu_reason(facts.jetson.l4t_release, facts.jetson.jetpack_version))
        if on_gpu and facts.container.docker_reachable and not facts.container.nvidia_runtime:
            warnings.append("Docker has no nvidia runtime registered: the container backend cannot reach the GPU "
                            "(install nvidia-container-toolkit, or use the process backend)")
        policy_precision, why = resolve_precision(profile.precision, device, cc)
        if not precision_supported(policy_precision, device, cc) and device == profile.device:
            warnings.append(f"profile {profile.name} asks for {policy_precision}, not supported here; using fp32")
            policy_precision, why = "fp32", f"fp32: {profile.precision} is not supported by this device"
        if fit is not None and fit.precision != policy_precision:
            step = next((s for s in reversed(fit.steps) if s.reduction == "precision"), None)
            note = next((n for n in fit.notes if n.startswith(f"precision {fit.precision}")), None)
            policy_precision, why = fit.precision, (step.detail if step else note or
                                                    f"{fit.precision}: {fit.family}'s precision on {fit.device}")
        precision = self.decide("TAILOR_PRECISION", "precision", policy_precision,
                                "profile" if profile.precision == policy_precision else "derived", why)
        if not (precision_supported(precision, device, cc)
                or cpu_bf16_supported(precision, device, engine, facts.cpu.isa_flags)
                or (precision == "int8" and device == "cpu" and "int8" in self.family.devices.get("cpu", ()))):
            raise UsageError(f"precision {precision} ({self.prov['precision'].source}) is not supported on "
                             f"device {device}" + (f" with compute capability {cc[0]}.{cc[1]}" if cc else ""),
                             "use fp32, or fp16 (CC >= 7.0) / bf16 (CC >= 8.0) on CUDA, or bf16 with the torch "
                             "engine on a CPU with AVX-512-BF16 or AMX")
        return engine, device, precision

    def pools(self, on_gpu: bool) -> Pools:
        """RAM (minus the profile's headroom) and VRAM the plan may fill; one pool on Jetson
        (the same rule the model fit used: select/fit.py ``memory_pools``)."""
        pools, self.devices, reason = memory_pools(self.facts, self.profile, self.gpus, on_gpu)
        self.reasons.append(reason)
        return pools

    def workers_and_threads(self, pools: Pools, footprint: Footprint, on_gpu: bool) -> Sizing:
        """workers x threads within the effective CPUs and the memory budget (cache first to go)."""
        facts, profile, user, warnings = self.facts, self.profile, self.user, self.warnings
        cpus = facts.cpu.effective_cpus
        usable = max(1, cpus - profile.threads.reserve_cpus)
        self.reasons.append(f"{usable} usable CPU(s): {cpus} effective ({facts.cpu.effective_cpus_source}) "
                            f"minus {cpus - usable} reserved for the server")
        cache = self.decide("TAILOR_CACHE_BYTES", "cache_bytes", RUNTIME_DEFAULTS.cache_bytes, "default",
                            "runtime default")
        user_workers = user.get("TAILOR_WORKERS")
        user_threads = user.get("TAILOR_THREADS_PER_WORKER")
        max_workers = profile.concurrency.max_workers
        tight = False
        devices = self.devices
        if on_gpu and devices > 1:
            workers = max(1, min(max_workers, usable // devices)) * devices
            w_reason = (f"{devices} GPUs x min(profile max_workers {max_workers}, {usable} usable CPUs // {devices} "
                        f"GPUs) per GPU: the workers are spread over the GPUs, worker i on GPU i mod {devices}")
        elif on_gpu:
            workers = min(max_workers, usable)
            w_reason = f"min(profile max_workers {max_workers}, {usable} usable CPUs)"
        if on_gpu:
            fitting = workers_that_fit(pools, footprint, workers, devices)
            if 1 <= fitting < workers:
                w_reason += (f", memory holds {fitting} instance(s) of {self.family.name} "
                             f"({format_size(footprint.weights_vram_per_worker_bytes)} of weights each on the GPU)")
                workers = fitting
        elif profile.threads.spread == "workers" and user_threads is None:
            workers = min(max_workers, usable)
            w_reason = (f"min(profile max_workers {max_workers}, {usable} usable CPUs): "
                        "spread over workers first, for throughput")
        else:
            wanted = user.typed("TAILOR_THREADS_PER_WORKER") if user_threads else profile.threads.per_worker_max
            threads_guess = max(1, min(wanted, usable))
            workers = max(1, min(usable // threads_guess, max_workers))
            w_reason = f"{usable} usable CPUs // {threads_guess} threads, at most profile max_workers {max_workers}"
        slots = slots_that_fit(pools, footprint, workers, cache, on_gpu, devices)
        if slots < (1 if on_gpu else workers) and user.get("TAILOR_CACHE_BYTES") is None and cache:
            cache, tight = 0, True
            self.prov["cache_bytes"] = Provenance("cache_bytes", "0", "derived", "memory is tight: audio cache disabled")
            slots = slots_that_fit(pools, footprint, workers, cache, on_gpu, devices)
        if not on_gpu and slots < workers:
            tight = True
            w_reason += f", memory fits {max(slots, 1)}"
            workers = max(1, slots)
        w_source = "derived"
        if user_workers is not None:
            workers, w_source, w_reason = user.typed("TAILOR_WORKERS"), user_workers[1], user.reasons["TAILOR_WORKERS"]
        if workers > usable:
            warnings.append(f"workers {workers} exceeds the {usable} usable CPUs; using {usable}")
            workers, w_source, w_reason = usable, "derived", f"clamped to {usable} usable CPUs"
        threads = max(1, min(profile.threads.per_worker_max, usable // workers))
        t_source = "derived"
        t_reason = f"min(profile per_worker_max {profile.threads.per_worker_max}, {usable} usable CPUs // {workers} workers)"
        if user_threads is not None:
            threads, t_source = user.typed("TAILOR_THREADS_PER_WORKER"), user_threads[1]
            t_reason = user.reasons["TAILOR_THREADS_PER_WORKER"]
            if workers * threads > cpus:
                clamp = max(1, cpus // workers)
                warnings.append(f"{workers} workers x {threads} threads exceeds the {cpus} effective CPUs; "
                                f"using {clamp} threads per worker")
                threads, t_source, t_reason = clamp, "derived", f"clamped: {workers} workers x threads <= {cpus} CPUs"
        if on_gpu and workers < devices:
            # Fewer workers than GPUs (set by the user, or an OOM step-down): reserve only the GPUs they use.
            warnings.append(f"{workers} worker(s) for {devices} usable GPUs: only the first {workers} GPU(s) are "
                            "used and reserved; raise --workers to use every GPU")
            self.gpus = dataclasses.replace(self.gpus, used=self.gpus.used[:workers])
            self.devices = workers
        self.prov["workers"] = Provenance("workers", str(workers), w_source, w_reason)
        self.prov["threads"] = Provenance("threads", str(threads), t_source, t_reason)
        self.reasons.append(f"workers={workers}: {w_reason}")
        self.reasons.append(f"threads={threads} per worker: {t_reason}")
        return Sizing(workers, threads, cache, tight)

    def batching(self, pools: Pools, footprint: Footprint, on_gpu: bool, sizing: Sizing) -> Batching:
        """Batch size from the memory left per worker (GPU only), then concurrency, queue, preload."""
        profile, workers, tight = self.profile, sizing.workers, sizing.tight
        inter_op = self.from_profile("TAILOR_INTER_OP_THREADS", "inter_op_threads", profile.threads.inter_op)
        if self.family.batches or not profile.batching.enabled:
            batching = self.from_profile("TAILOR_BATCHING", "batching", profile.batching.enabled)
        else:
            batching = self.decide("TAILOR_BATCHING", "batching", False, "derived",
                                   f"{self.family.name} does not batch (one sentence per engine call)")
            if batching:
                self.warnings.append(f"TAILOR_BATCHING=true ({self.user.reasons['TAILOR_BATCHING']}) does not apply: "
                                     f"{self.family.name} does not batch; planned with batching off")
                batching = False
                self.prov["batching"] = Provenance("batching", "false", "derived",
                                                   f"{self.family.name} does not batch")
        slots = slots_that_fit(pools, footprint, workers, sizing.cache_bytes, on_gpu, self.devices)
        if on_gpu and batching:
            by_memory = max(1, slots // workers)
            batch_default = min(profile.batching.max_batch_size, by_memory)
            b_reason = (f"min(profile max_batch_size {profile.batching.max_batch_size}, "
                        f"{by_memory} per worker fit in memory)")
            tight = tight or (by_memory < profile.batching.max_batch_size and by_memory <= 1)
        else:
            batch_default, b_reason = 1, "no batching" if not batching else "batching only pays off on a GPU"
        max_batch = self.decide("TAILOR_MAX_BATCH_SIZE", "max_batch_size", batch_default, "derived", b_reason)
        self.reasons.append(f"max_batch_size={max_batch}: {self.prov['max_batch_size'].reason}")
        per_worker = max_batch if batching else 1
        concurrency = workers * per_worker
        self.reasons.append(f"max_concurrency={concurrency}: {workers} workers x {per_worker} per worker")
        self.prov["max_concurrency"] = Provenance("max_concurrency", str(concurrency), "derived", self.reasons[-1])
        per_slot = profile.concurrency.queue_per_slot
        max_queue = self.decide("TAILOR_MAX_QUEUE", "max_queue", concurrency * per_slot, "derived",
                                f"{concurrency} slots x profile queue_per_slot {per_slot}")
        window = self.from_profile("TAILOR_BATCH_WINDOW_MS", "batch_window_ms", float(profile.batching.batch_window_ms))
        preload = self.decide("TAILOR_PRELOAD", "preload", not tight, "derived",
                              "memory is tight: load on first request, no warm-up at start"
                              if tight else "memory allows loading and a warm-up before ready")
        return Batching(inter_op, batching, max_batch, concurrency, max_queue, window, preload, tight)


    def input_limits(self, device: str, workers: int) -> dict[str, tuple[str, str, str]]:
        """TAILOR_MAX_INPUT_CHARS and TAILOR_REQUEST_TIMEOUT_S consistent with the measured speed
        (plan/input_limits.py), as env entries (value, source, reason); the user's own values are
        kept (build_env writes them) and only warned about."""
        speed = speed_for(self.family.name, device, self.facts.jetson is not None)
        if speed is None:
            self.reasons.append(f"max_input_chars and request_timeout_s: the runtime defaults; no speed of "
                                f"{self.family.name} on {device}{' (Jetson)' if self.facts.jetson else ''} was "
                                "measured (the runtime's start-up calibration reports effective_max_input_chars)")
            return {}
        user_chars, user_timeout = self.user.typed("TAILOR_MAX_INPUT_CHARS"), self.user.typed("TAILOR_REQUEST_TIMEOUT_S")
        limits = decide_limits(speed, workers, default_chars=RUNTIME_DEFAULTS.max_input_chars,
                               default_timeout_s=RUNTIME_DEFAULTS.request_timeout_s,
                               user_chars=user_chars, user_timeout_s=user_timeout)
        if limits.warning is not None:
            self.warnings.append(limits.warning)
        planned: dict[str, tuple[str, str, str]] = {}
        if user_chars is None:
            planned["TAILOR_MAX_INPUT_CHARS"] = (str(limits.max_input_chars), "derived", limits.max_input_reason)
            self.reasons.append(f"max_input_chars={limits.max_input_chars}: {limits.max_input_reason}")
        if user_timeout is None and limits.timeout_s != RUNTIME_DEFAULTS.request_timeout_s:
            planned["TAILOR_REQUEST_TIMEOUT_S"] = (value_text(limits.timeout_s), "derived", limits.timeout_reason)
            self.reasons.append(f"request_timeout_s={value_text(limits.timeout_s)}: {limits.timeout_reason}")
        return planned


def _jetson_cpu_reason(release: str, jetpack: str | None) -> str:
    """Why a Jetson plan runs on the CPU, and the fix."""
    return (f"L4T {release} (JetPack {jetpack or 'unknown'}): the model runs with onnx on the CPU, not the GPU: "
            "NVIDIA's torch and onnxruntime-gpu builds for this release need its Python (3.8 on JetPack 5, 3.6 on "
            "JetPack 4) and the runtime needs Python >= 3.10; upgrade to JetPack 6 (L4T R36) for the GPU")
