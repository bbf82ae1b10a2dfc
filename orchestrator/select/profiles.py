"""Deployment profiles: schema, loading and validation of ``profiles/*.yaml``.

A profile says which machines it is meant for (match conditions) and how the runtime should
run there (engine, device, precision, threads, allocator, batching, memory headroom,
container). Built-in profiles ship in ``profiles/``; ``--profiles DIR`` adds a user's own, and
a user profile with the same name replaces the built-in one (recorded in ``overrides``).

Every problem is a :class:`ProfileError` naming the file, the line and the field.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from orchestrator.errors import ProfileError
from orchestrator.resources import profiles_dir
from orchestrator.yaml_doc import FieldReader, YamlDoc, load_yaml_document

_HINT = "fix the profile file; see the built-in profiles in profiles/ for the schema"

ENGINES = ("onnx", "torch")
DEVICES = ("cpu", "cuda")
PRECISIONS = ("fp32", "fp16", "bf16", "fp16-if-supported", "bf16-if-supported")
REQUIREMENT = ("required", "excluded", "any")
FLAVORS = ("cpu", "cuda", "l4t")
ALLOCATORS = ("jemalloc", "tcmalloc", "none")
ARCHITECTURES = ("x86_64", "aarch64")


def _error(message: str, hint: str) -> ProfileError:
    return ProfileError(message, hint)


def parse_version(text: str) -> tuple[int, ...] | None:
    """``(35, 4, 1)`` from ``R35.4.1``, ``35.4`` or ``8.6``; None when not a dotted version."""
    body = text.strip().lstrip("Rr")
    parts = body.split(".")
    if not body or not all(p.isdigit() for p in parts):
        return None
    return tuple(int(p) for p in parts)


@dataclass(frozen=True)
class MatchRules:
    """Conditions a machine must meet. Memory is effective RAM (cgroup-aware), VRAM the largest GPU."""

    min_memory_bytes: int | None
    max_memory_bytes: int | None
    min_vram_bytes: int | None
    max_vram_bytes: int | None
    min_compute_capability: str | None
    architectures: tuple[str, ...]
    gpu: str
    """``required`` (a discrete NVIDIA GPU reported by NVML), ``excluded`` or ``any``."""
    jetson: str
    """``required``, ``excluded`` or ``any``."""
    l4t_min: str | None
    l4t_max: str | None


@dataclass(frozen=True)
class ThreadPolicy:
    per_worker_max: int
    """Most intra-op threads one worker gets."""
    spread: str
    """How CPU-only plans split the CPUs: ``workers`` (as many 1-thread workers as CPUs first, then
    threads; best throughput for small voices) or ``threads`` (few wide workers; lowest latency for
    one request at a time)."""
    inter_op: int
    reserve_cpus: int
    """CPUs left to the HTTP server and the OS (never below one usable CPU)."""


@dataclass(frozen=True)
class AllocatorPolicy:
    malloc_arena_max: int
    preload: str
    """``jemalloc``, ``tcmalloc`` or ``none``; used only when the library exists on the host."""
    cuda_expandable_segments: bool
    ort_memory_arena: bool


@dataclass(frozen=True)
class BatchingPolicy:
    """Dynamic batching (``batching:`` in a profile): pays off on a GPU, adds latency on a CPU."""

    enabled: bool
    max_batch_size: int
    """Upper bound; the plan lowers it to what fits in memory per worker."""
    batch_window_ms: float


@dataclass(frozen=True)
class ConcurrencyPolicy:
    """``concurrency:``: how many workers at most and how deep the queue per slot."""

    max_workers: int
    queue_per_slot: int
    """Waiting requests allowed per concurrent slot (max_queue = slots x this)."""


@dataclass(frozen=True)
class MemoryPolicy:
    """``memory:``: what the plan keeps free for the OS and other processes."""

    headroom_fraction: float
    """Share of effective RAM kept free (capped at half of it)."""
    headroom_min_bytes: int
    """At least this much RAM kept free."""
    vram_headroom_fraction: float
    """Share of the GPU's memory kept free (CUDA context growth, fragmentation)."""


@dataclass(frozen=True)
class ContainerPolicy:
    """``container:``: which runtime image and how much /dev/shm."""

    flavor: str
    """``cpu``, ``cuda`` or ``l4t`` (templates/docker/Dockerfile.<flavor>.j2)."""
    shm_size_bytes: int


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    priority: int
    """Higher wins when several profiles fit; unique across the loaded set."""
    match: MatchRules
    engine: str
    device: str
    fallback: str
    """``ENGINE:VOICE[,ENGINE:VOICE]`` tried when the primary engine fails (TAILOR_FALLBACK)."""
    precision: str
    threads: ThreadPolicy
    allocator: AllocatorPolicy
    batching: BatchingPolicy
    concurrency: ConcurrencyPolicy
    memory: MemoryPolicy
    container: ContainerPolicy
    source: str
    """The file it came from."""
    priority_where: str = ""
    """``file:line`` of the priority key, for ambiguity errors."""


@dataclass(frozen=True)
class ProfileSet:
    profiles: tuple[Profile, ...]
    """Sorted by priority, highest first."""
    overrides: tuple[str, ...]
    """One sentence per user profile that replaced a built-in one."""

    def get(self, name: str) -> Profile:
        for profile in self.profiles:
            if profile.name == name:
                return profile
        raise ProfileError(f"no profile named {name!r}",
                           "choose one of: " + ", ".join(p.name for p in self.profiles))


_TOP = frozenset({"name", "description", "priority", "match", "engine", "device", "fallback",
                  "precision", "threads", "allocator", "batching", "concurrency", "memory",
                  "container"})


def parse_profile(doc: YamlDoc, stem: str) -> Profile:
    """Validate one composed profile document; ``stem`` is the file name without ``.yaml``."""
    top = FieldReader(doc, "", doc.data, _error, _HINT)
    top.reject_unknown(_TOP)
    name = top.text("name", default=stem)
    if name != stem:
        top.fail("name", f"{name!r} must match the file name {stem!r}")
    match = _parse_match(top.child("match"))
    engine = top.text("engine", choices=ENGINES)
    device = top.text("device", choices=DEVICES)
    precision = top.text("precision", default="fp32", choices=PRECISIONS)
    threads_r = top.child("threads")
    threads_r.reject_unknown(frozenset({"per_worker_max", "spread", "inter_op", "reserve_cpus"}))
    alloc_r = top.child("allocator")
    alloc_r.reject_unknown(frozenset({"malloc_arena_max", "preload", "cuda_expandable_segments",
                                      "ort_memory_arena"}))
    batch_r = top.child("batching")
    batch_r.reject_unknown(frozenset({"enabled", "max_batch_size", "batch_window_ms"}))
    conc_r = top.child("concurrency")
    conc_r.reject_unknown(frozenset({"max_workers", "queue_per_slot"}))
    mem_r = top.child("memory")
    mem_r.reject_unknown(frozenset({"headroom_fraction", "headroom_min", "vram_headroom_fraction"}))
    cont_r = top.child("container")
    cont_r.reject_unknown(frozenset({"flavor", "shm_size"}))
    profile = Profile(
        name=name,
        description=top.text("description", default=""),
        priority=top.integer("priority"),
        match=match,
        engine=engine,
        device=device,
        fallback=top.text("fallback", default=""),
        precision=precision,
        threads=ThreadPolicy(
            per_worker_max=threads_r.integer("per_worker_max", default=4, minimum=1),
            spread=threads_r.text("spread", default="threads", choices=("workers", "threads")),
            inter_op=threads_r.integer("inter_op", default=1, minimum=1),
            reserve_cpus=threads_r.integer("reserve_cpus", default=0),
        ),
        allocator=AllocatorPolicy(
            malloc_arena_max=alloc_r.integer("malloc_arena_max", default=2, minimum=1),
            preload=alloc_r.text("preload", default="none", choices=ALLOCATORS),
            cuda_expandable_segments=alloc_r.flag("cuda_expandable_segments", False),
            ort_memory_arena=alloc_r.flag("ort_memory_arena", True),
        ),
        batching=BatchingPolicy(
            enabled=batch_r.flag("enabled", False),
            max_batch_size=batch_r.integer("max_batch_size", default=1, minimum=1),
            batch_window_ms=batch_r.number("batch_window_ms", 5.0, maximum=1000.0),
        ),
        concurrency=ConcurrencyPolicy(
            max_workers=conc_r.integer("max_workers", default=4, minimum=1),
            queue_per_slot=conc_r.integer("queue_per_slot", default=4),
        ),
        memory=MemoryPolicy(
            headroom_fraction=mem_r.number("headroom_fraction", 0.2, maximum=0.9),
            headroom_min_bytes=mem_r.size("headroom_min", 512 * 1024**2) or 0,
            vram_headroom_fraction=mem_r.number("vram_headroom_fraction", 0.1, maximum=0.9),
        ),
        container=ContainerPolicy(
            flavor=cont_r.text("flavor", choices=FLAVORS),
            shm_size_bytes=cont_r.size("shm_size", 256 * 1024**2) or 0,
        ),
        source=doc.source,
        priority_where=doc.where("priority"),
    )
    _check_contradictions(profile, top)
    return profile


def _parse_match(r: FieldReader) -> MatchRules:
    r.reject_unknown(frozenset({"min_memory", "max_memory", "min_vram", "max_vram",
                                "min_compute_capability", "architectures", "gpu", "jetson",
                                "l4t_min", "l4t_max"}))
    for key in ("min_compute_capability", "l4t_min", "l4t_max"):
        value = r.optional_text(key)
        if value is not None and parse_version(value) is None:
            r.fail(f"match.{key}", f"expected a dotted version like 7.5 or R35.4.1, got {value!r}")
    return MatchRules(
        min_memory_bytes=r.size("min_memory"),
        max_memory_bytes=r.size("max_memory"),
        min_vram_bytes=r.size("min_vram"),
        max_vram_bytes=r.size("max_vram"),
        min_compute_capability=r.optional_text("min_compute_capability"),
        architectures=r.text_list("architectures", choices=ARCHITECTURES),
        gpu=r.text("gpu", default="any", choices=REQUIREMENT),
        jetson=r.text("jetson", default="excluded", choices=REQUIREMENT),
        l4t_min=r.optional_text("l4t_min"),
        l4t_max=r.optional_text("l4t_max"),
    )


def _check_contradictions(p: Profile, top: FieldReader) -> None:
    m = p.match
    pairs = (("min_memory", m.min_memory_bytes, "max_memory", m.max_memory_bytes),
             ("min_vram", m.min_vram_bytes, "max_vram", m.max_vram_bytes))
    for low_name, low, high_name, high in pairs:
        if low is not None and high is not None and low > high:
            top.fail(f"match.{low_name}", f"{low} bytes is above match.{high_name} ({high} bytes)")
    if m.l4t_min and m.l4t_max and (parse_version(m.l4t_min) or ()) > (parse_version(m.l4t_max) or ()):
        top.fail("match.l4t_min", f"{m.l4t_min} is above match.l4t_max ({m.l4t_max})")
    if (m.l4t_min or m.l4t_max) and m.jetson != "required":
        top.fail("match.l4t_min" if m.l4t_min else "match.l4t_max",
                 "an L4T range only makes sense with match.jetson: required")
    if m.gpu == "excluded" and (m.min_vram_bytes or m.min_compute_capability):
        top.fail("match.gpu", "excluded, yet match.min_vram / min_compute_capability ask for a GPU")
    if m.jetson == "required" and m.architectures and "aarch64" not in m.architectures:
        top.fail("match.architectures", "Jetson boards are aarch64, but it is not listed")
    if p.device == "cpu" and p.precision != "fp32":
        top.fail("precision", f"{p.precision} needs a CUDA device; device is cpu (use fp32)")
    if p.allocator.cuda_expandable_segments and m.jetson == "required":
        top.fail("allocator.cuda_expandable_segments",
                 "expandable_segments is not supported by the Jetson (L4T) CUDA allocator; set false")
    if p.allocator.cuda_expandable_segments and p.device != "cuda":
        top.fail("allocator.cuda_expandable_segments", "only applies to device cuda")
    if p.container.flavor == "l4t" and m.jetson != "required":
        top.fail("container.flavor", "the l4t image only runs on Jetson; set match.jetson: required")
    if p.container.flavor == "cpu" and p.device == "cuda":
        top.fail("container.flavor", "device cuda needs the cuda (or l4t) image flavor")
    if p.container.flavor == "cuda" and m.jetson == "required":
        top.fail("container.flavor", "Jetson needs the l4t image flavor")
    if p.device == "cuda" and m.gpu != "required" and m.jetson != "required":
        top.fail("device", "cuda needs match.gpu: required or match.jetson: required")
    if p.batching.enabled is False and p.batching.max_batch_size > 1:
        top.fail("batching.max_batch_size", "is above 1 while batching.enabled is false")


def load_profile_file(path: Path) -> Profile:
    doc = load_yaml_document(path, _error, _HINT)
    return parse_profile(doc, path.stem)


def _load_dir(directory: Path) -> list[Profile]:
    if not directory.is_dir():
        raise ProfileError(f"profiles directory {directory} does not exist",
                           "pass --profiles with a directory holding NAME.yaml files")
    return [load_profile_file(p) for p in sorted(directory.glob("*.yaml"))]


def load_profiles(extra_dirs: Sequence[Path] = (), builtin_dir: Path | None = None) -> ProfileSet:
    """Built-in profiles, then each extra directory in order (same name replaces, and says so)."""
    by_name: dict[str, Profile] = {p.name: p for p in _load_dir(builtin_dir or profiles_dir())}
    overrides: list[str] = []
    for directory in extra_dirs:
        for profile in _load_dir(directory):
            if profile.name in by_name:
                overrides.append(f"profile {profile.name} from {profile.source} replaces "
                                 f"the one from {by_name[profile.name].source}")
            by_name[profile.name] = profile
    if not by_name:
        raise ProfileError("no profiles found", "add NAME.yaml files to the profiles directory")
    seen: dict[int, Profile] = {}
    for profile in sorted(by_name.values(), key=lambda p: p.name):
        other = seen.get(profile.priority)
        if other is not None:
            raise ProfileError(
                f"{profile.priority_where}: field priority: {profile.priority} is also the priority "
                f"of {other.name} ({other.priority_where}); ranking would be ambiguous",
                "give every profile a distinct priority",
            )
        seen[profile.priority] = profile
    ordered = tuple(sorted(by_name.values(), key=lambda p: -p.priority))
    return ProfileSet(profiles=ordered, overrides=tuple(overrides))
