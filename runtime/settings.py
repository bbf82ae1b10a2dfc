"""Every environment variable the runtime reads, declared once.

The orchestrator renders these (``.env``, compose, k8s, systemd) from a plan; the runtime
reads them from an injected mapping (``Settings.from_environ(os.environ)``). This module is
pure standard library so the orchestrator can import the declarations without the runtime's
heavy dependencies.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar


class SettingsError(ValueError):
    """An environment variable has a value the runtime cannot use."""

    def __init__(self, name: str, value: str, expected: str) -> None:
        super().__init__(f"environment variable {name}={value!r} is invalid: expected {expected}")
        self.name = name
        self.value = value
        self.expected = expected


@dataclass(frozen=True)
class _Bool:
    """true/false, also 1/0, yes/no, on/off."""

    type_name: ClassVar[str] = "bool"
    expected: ClassVar[str] = "one of 1/0, true/false, yes/no, on/off"
    allowed: ClassVar[str] = "true/false"

    def __call__(self, name: str, raw: str) -> bool:
        low = raw.strip().lower()
        if low in {"1", "true", "yes", "on"}:
            return True
        if low in {"0", "false", "no", "off", ""}:
            return False
        raise SettingsError(name, raw, self.expected)


@dataclass(frozen=True)
class _Number:
    """An int or a float within ``minimum`` .. ``maximum`` (inclusive; no maximum when None)."""

    type_name: str
    """``int`` or ``float``."""
    minimum: float
    maximum: float | None = None

    @property
    def allowed(self) -> str:
        low = f"{self.minimum:g}"
        return f">= {low}" if self.maximum is None else f"{low}-{self.maximum:g}"

    @property
    def expected(self) -> str:
        kind = "an integer" if self.type_name == "int" else "a number"
        return f"{kind} {self.allowed}" if self.maximum is None else f"{kind} from {self.allowed}"

    def __call__(self, name: str, raw: str) -> Any:
        try:
            value = int(raw.strip()) if self.type_name == "int" else float(raw.strip())
        except ValueError:
            raise SettingsError(name, raw, self.expected) from None
        # `not >=` also rejects NaN.
        if not value >= self.minimum or (self.maximum is not None and value > self.maximum):
            raise SettingsError(name, raw, self.expected)
        return value


@dataclass(frozen=True)
class _Choice:
    """One of ``choices`` (compared lower-case); with no choices, any text, kept as written."""

    choices: tuple[str, ...] = ()

    @property
    def type_name(self) -> str:
        return "choice" if self.choices else "text"

    @property
    def allowed(self) -> str:
        return ", ".join(self.choices)

    @property
    def expected(self) -> str:
        return "one of " + ", ".join(self.choices) if self.choices else "text"

    def __call__(self, name: str, raw: str) -> str:
        if not self.choices:
            return raw.strip()
        value = raw.strip().lower()
        if value not in self.choices:
            raise SettingsError(name, raw, self.expected)
        return value


@dataclass(frozen=True)
class _ChoiceList:
    """One or more of ``choices``, comma-separated (compared lower-case, kept in the order written,
    no repeats); parsed to the normalised text ``a,b``."""

    choices: tuple[str, ...]
    type_name: ClassVar[str] = "choice list"

    @property
    def allowed(self) -> str:
        return ", ".join(self.choices) + " (comma-separated, first is the default)"

    @property
    def expected(self) -> str:
        return "one or more of " + ", ".join(self.choices) + ", separated by commas"

    def __call__(self, name: str, raw: str) -> str:
        names = [part.strip().lower() for part in raw.split(",") if part.strip()]
        if not names or len(set(names)) != len(names) or any(n not in self.choices for n in names):
            raise SettingsError(name, raw, self.expected)
        return ",".join(names)


Parser = _Bool | _Number | _Choice | _ChoiceList
"""A variable's type and allowed range: parses a raw string and describes itself for docs."""

_bool = _Bool()
_text = _Choice()


def _int_at_least(minimum: int, maximum: int | None = None) -> _Number:
    return _Number("int", minimum, maximum)


def _float_at_least(minimum: float) -> _Number:
    return _Number("float", minimum)


def _choice(*choices: str) -> _Choice:
    return _Choice(tuple(choices))


MODEL_FAMILIES = ("piper", "kokoro-82m", "xtts-v2", "indextts2")
"""Values of TAILOR_MODEL: the names of runtime/families/catalog.py (a test checks they agree;
this module stays free of imports so the orchestrator can read it anywhere)."""

MODEL_VARIANTS = ("fp32", "int8-dynamic", "int8-dynamic-decoder", "int8-static-decoder",
                  "int8-static-upsampler", "int8-static")
"""Values of TAILOR_MODEL_VARIANT; runtime/families/piper/variants.py says how each one is made."""


@dataclass(frozen=True)
class EnvVar:
    """One runtime setting, declared once. Settings (checked against it at import), the plan's
    env, the config file's ``settings:`` keys, ``deploy env`` and the README table derive from it."""

    name: str
    """The environment variable."""
    field: str
    """The :class:`Settings` attribute."""
    default: str
    description: str
    parse: Parser
    """Type and allowed range (see :data:`Parser`)."""
    knob: str | None = None
    """Short name: key under ``settings:`` in a config file and in ``--set NAME=VALUE``; None: only
    by its variable name (``env:`` in a config file, ``--set TAILOR_...=``)."""
    unit: str = ""
    """``bytes``, ``s`` or ``ms``; empty for counts, names and flags."""
    secret: bool = False
    """Redacted in every printed plan, explanation and status unless ``--show-secrets``."""

    @property
    def type_name(self) -> str:
        return self.parse.type_name

    @property
    def allowed(self) -> str:
        """The allowed values or range, for docs (``1-65535``, ``>= 0``, ``onnx, torch``)."""
        return self.parse.allowed


VARIABLES: tuple[EnvVar, ...] = (
    EnvVar("TAILOR_HOST", "host", "127.0.0.1", "Address to bind. Loopback by default; 0.0.0.0 inside a container. `python -m runtime --host` overrides it.", _text, knob="host"),
    EnvVar("TAILOR_PORT", "port", "8000", "TCP port to listen on. `python -m runtime --port` overrides it.", _int_at_least(1, 65535), knob="port"),
    EnvVar("TAILOR_ENGINE", "engine", "onnx", "Inference engine: onnx or torch.", _choice("onnx", "torch"), knob="engine"),
    EnvVar("TAILOR_DEVICE", "device", "cpu", "cpu or cuda.", _choice("cpu", "cuda"), knob="device"),
    EnvVar("TAILOR_PRECISION", "precision", "fp32", "fp32, fp16, bf16 or int8 (fp16 only on CUDA; bf16 on CUDA, or with the torch engine on a CPU with AVX-512-BF16/AMX; int8 where the model family has an int8 model, as kokoro-82m's ONNX file on the CPU - Piper's int8 models are TAILOR_MODEL_VARIANT; `deploy models` lists each family's precisions).",
           _choice("fp32", "fp16", "bf16", "int8"), knob="precision"),
    EnvVar("TAILOR_MODEL", "model", "piper",
           "Model families this runtime serves, comma-separated: piper, kokoro-82m, xtts-v2 or indextts2 "
           "(`deploy models` lists them with their footprints); the first is the default for requests "
           "that name none (e.g. kokoro-82m,piper). Each family listed is loaded (its memory counts; the "
           "planner sizes the first and decides device, precision and reductions for it). A request picks "
           "one with its `model` field.",
           _ChoiceList(MODEL_FAMILIES), knob="model"),
    EnvVar("TAILOR_MODEL_MAP", "model_map", "",
           "OpenAI model names mapped to served families, comma-separated NAME=FAMILY (e.g. "
           "tts-1=piper,tts-1-hd=kokoro-82m). Names not listed go to the first family of TAILOR_MODEL.", _text),
    EnvVar("TAILOR_MODELS_DIR", "models_dir", "",
           "Directory of model files: families look for user-provided weights in a folder named after "
           "the family (e.g. kokoro-82m/) and assemble packaged ones there. Empty: /var/lib/tailor/models "
           "as root, else ~/.cache/tailor/models. Unwritable: assembled models are loaded from memory.", _text),
    EnvVar("TAILOR_MODEL_DROP", "model_drop", "",
           "Optional components of the model family left out, comma-separated (e.g. emotion for indextts2); planned when the model does not fit otherwise.", _text),
    EnvVar("TAILOR_MODEL_OFFLOAD", "model_offload", "",
           "Components of the model family run on the CPU while the rest runs on the GPU, comma-separated (e.g. w2v-bert for indextts2); planned when VRAM is short.", _text),
    EnvVar("TAILOR_MODEL_MMAP", "model_mmap", "false",
           "Load the model family's checkpoints memory-mapped instead of reading them (a lower RAM peak while loading; only families whose loader supports it).", _bool),
    EnvVar("TAILOR_VOICE", "default_voice", "en_US-joe-medium",
           "Voice used when a request names none (or names an OpenAI voice such as 'alloy').", _text, knob="voice"),
    EnvVar("TAILOR_MODEL_VARIANT", "model_variant", "fp32",
           "Model file variant of the default voice (onnx engine): fp32 (as shipped) or an int8 variant made "
           "on this machine by `deploy tune` / `python -m runtime.tools.variants make NAME`, cached next to the model. "
           "Shown in /readyz, /v1/models and the tailor_model_variant_info metric.", _choice(*MODEL_VARIANTS),
           knob="model_variant"),
    EnvVar("TAILOR_VOICES_DIR", "voices_dir", "",
           "Directory with extra Piper voices (NAME.onnx + NAME.onnx.json), loaded on first use. Empty: bundled voice only. Set but missing: start-up error.", _text),
    EnvVar("TAILOR_PROCESSES", "processes", "1",
           "Server processes behind the one port (each its own GIL, phonemizer and engines; on CUDA each its own "
           "CUDA context and weights). Above 1, `python -m runtime` is a parent that binds the port, starts this "
           "many server processes sharing it, restarts one that dies, and drains them all on SIGTERM; /readyz is "
           "ready only when every process is, /metrics sums them. TAILOR_WORKERS and TAILOR_RSS_SOFT_LIMIT_BYTES "
           "apply to each process.", _int_at_least(1, 64), knob="processes"),
    EnvVar("TAILOR_WORKERS", "workers", "1", "Synthesis workers (concurrent syntheses); each holds its own engine instance per loaded voice.", _int_at_least(1), knob="workers"),
    EnvVar("TAILOR_THREADS_PER_WORKER", "threads_per_worker", "1",
           "Intra-op threads per worker (onnxruntime / torch).", _int_at_least(1), knob="threads"),
    EnvVar("TAILOR_INTER_OP_THREADS", "inter_op_threads", "1", "Inter-op threads per worker.", _int_at_least(1), knob="inter_op_threads"),
    EnvVar("TAILOR_MAX_QUEUE", "max_queue", "16",
           "Requests allowed to wait for a worker: at most WORKERS + MAX_QUEUE speech requests are in flight; beyond that 429 with Retry-After.", _int_at_least(0), knob="max_queue"),
    EnvVar("TAILOR_BATCHING", "batching", "false",
           "Dynamic batching: concurrent sentences of the same voice go to engine.synthesize_batch together (meant for GPU; the onnx engine runs a batch item by item; speed is applied after synthesis).", _bool, knob="batching"),
    EnvVar("TAILOR_BATCH_WINDOW_MS", "batch_window_ms", "5", "Milliseconds a worker waits for more sentences to fill a batch (not waited when no other request is in the server).", _float_at_least(0.0), knob="batch_window_ms", unit="ms"),
    EnvVar("TAILOR_MAX_BATCH_SIZE", "max_batch_size", "8", "Largest batch (sentences per engine call).", _int_at_least(1), knob="max_batch_size"),
    EnvVar("TAILOR_REQUEST_TIMEOUT_S", "request_timeout_s", "60", "Per-request deadline in seconds. Admission (at the measured seconds per character) admits only work that fits 0.8 x this: 503 overloaded with Retry-After when it does not fit now, 413 input_too_long_for_timeout when it would not fit even on an idle server. Past it: 504 before the first byte (whole answers: FLAC, stream false), and a stream already started is cut (chunked: incomplete body; SSE: an error event).",
           _float_at_least(0.1), unit="s"),
    EnvVar("TAILOR_MAX_INPUT_CHARS", "max_input_chars", "4096", "Longest accepted input text (400 input_too_long above, as OpenAI answers). /readyz reports effective_max_input_chars: what fits TAILOR_REQUEST_TIMEOUT_S at the measured speed.",
           _int_at_least(1)),
    EnvVar("TAILOR_CACHE_BYTES", "cache_bytes", "67108864", "Byte budget of the LRU cache of finished responses (voice, engine, text, speed, format); 0 disables.",
           _int_at_least(0), knob="cache_bytes", unit="bytes"),
    EnvVar("TAILOR_RSS_SOFT_LIMIT_BYTES", "rss_soft_limit_bytes", "0",
           "Resident memory (bytes) above which new speech requests get 503 and a log line; 0 disables the watchdog.", _int_at_least(0), unit="bytes"),
    EnvVar("TAILOR_API_KEY", "api_key", "", "When set, /v1/* requests need 'Authorization: Bearer KEY' (401 otherwise); /healthz, /readyz, /metrics stay open.", _text, secret=True),
    EnvVar("TAILOR_FALLBACK", "fallback", "",
           "Fallback chain, comma-separated ENGINE:VOICE entries (e.g. onnx:en_US-joe-medium) tried in order when the primary fails to load or raises; shown in /readyz and metrics.",
           _text),
    EnvVar("TAILOR_FALLBACK_DEVICE", "fallback_device", "cpu",
           "Device of the TAILOR_FALLBACK engines: cpu (fp32, works when CUDA does not) or cuda (onnx through "
           "onnxruntime-gpu's CUDA provider, only where the image has it; else it falls back to cpu).",
           _choice("cpu", "cuda"), knob="fallback_device"),
    EnvVar("TAILOR_FALLBACK_THREADS", "fallback_threads", "0",
           "Intra-op threads of each fallback engine instance; 0: the same as TAILOR_THREADS_PER_WORKER.",
           _int_at_least(0), knob="fallback_threads"),
    EnvVar("TAILOR_GPUS", "gpus", "1",
           "CUDA devices the workers are spread over (worker i uses visible device i mod TAILOR_GPUS); "
           "with device cpu it is ignored.", _int_at_least(1), knob="gpus"),
    EnvVar("TAILOR_SOLO_WIDE", "solo_wide", "false",
           "With WORKERS > 1: when one sentence is the only work in the server, run it on an extra engine "
           "instance with WORKERS x THREADS_PER_WORKER intra-op threads, so a lone request uses every core "
           "(costs one more model instance in memory per loaded voice). A request alone in the server runs its "
           "sentences there one after another (none beside it on a one-thread worker); another request arriving "
           "releases the workers.", _bool),
    EnvVar("TAILOR_PRELOAD", "preload", "true",
           "Run a warm-up synthesis on every worker before reporting ready (the model always loads before ready).", _bool, knob="preload"),
    EnvVar("TAILOR_SHUTDOWN_GRACE_S", "shutdown_grace_s", "20",
           "Seconds in-flight requests get to finish after SIGTERM (readiness and new requests answer 503 meanwhile); then exit 0.", _float_at_least(0.0), unit="s"),
    EnvVar("TAILOR_ORT_EXECUTION_MODE", "ort_execution_mode", "sequential",
           "onnxruntime execution mode.", _choice("sequential", "parallel")),
    EnvVar("TAILOR_ORT_GRAPH_OPTIMIZATION", "ort_graph_optimization", "all",
           "onnxruntime graph optimisation level.", _choice("disable", "basic", "extended", "all")),
    EnvVar("TAILOR_ORT_MEMORY_ARENA", "ort_memory_arena", "true",
           "onnxruntime CPU memory arena (off saves RSS on small machines).", _bool),
    EnvVar("TAILOR_CUDNN_BENCHMARK", "cudnn_benchmark", "false", "torch.backends.cudnn.benchmark.", _bool),
    EnvVar("TAILOR_TORCH_COMPILE", "torch_compile", "false", "torch.compile the decoder where measured faster.",
           _bool),
    EnvVar("TAILOR_SHAPE_BUCKETS", "shape_buckets", "false",
           "Torch engine: pad each batch to bucket shapes (phoneme ids, frames, batch size; audio trimmed back exactly) "
           "and, on CUDA, warm every (batch, frame) bucket before ready, so cuDNN autotuning and CUDA graphs meet "
           "no new shape on the request path. Off until measured to pay on a GPU (benchmarks/bench_shape_buckets.py).",
           _bool),
    EnvVar("TAILOR_CUDA_GRAPHS", "cuda_graphs", "false",
           "Torch engine on CUDA with TAILOR_SHAPE_BUCKETS: replay the flow and generator as one CUDA graph per "
           "(batch, frame) bucket, captured at warm-up. Off until measured to pay (benchmarks/bench_shape_buckets.py).",
           _bool),
    EnvVar("TAILOR_SWITCH_INTERVAL_MS", "switch_interval_ms", "5",
           "Python's GIL switch interval in the runtime process (sys.setswitchinterval); 5 is CPython's default. "
           "A thread that releases the GIL often (the torch engine, once per operator) waits up to this long to get it "
           "back beside a busy thread; a lower value shortens that wait and switches threads more often "
           "(measurements: benchmarks/RESULTS.md).",
           _float_at_least(0.01), unit="ms"),
    EnvVar("TAILOR_LOG_LEVEL", "log_level", "info", "debug, info, warning or error.",
           _choice("debug", "info", "warning", "error"), knob="log_level"),
    EnvVar("TAILOR_INSTANCE_ID", "instance_id", "",
           "Identity of this runtime process, returned as header X-Tailor-Instance on every response and as 'instance' in /healthz and /readyz (the launcher counts readiness only when it matches). Empty: a random id is generated at start.", _text),
    EnvVar("TAILOR_NORMALIZE", "normalize", "on",
           "Text normalisation before phonemisation (numbers, currency, dates, times, units, abbreviations, SSML subset); off reads the text as written.", _bool),
    EnvVar("TAILOR_HEADER_TIMEOUT_S", "header_timeout_s", "10",
           "Seconds a client gets to send a request's headers (from connecting, or from the first byte of a keep-alive request); then the connection is closed.", _float_at_least(0.1), unit="s"),
    EnvVar("TAILOR_BODY_TIMEOUT_S", "body_timeout_s", "15",
           "Seconds a client gets to send a request body once its headers arrived; then 408.", _float_at_least(0.1), unit="s"),
    EnvVar("TAILOR_IDLE_TIMEOUT_S", "idle_timeout_s", "5",
           "Seconds an idle keep-alive connection stays open between requests.", _int_at_least(1), unit="s"),
    EnvVar("TAILOR_MAX_CONNECTIONS", "max_connections", "256",
           "Open TCP connections served at once; a connection beyond it gets a JSON 503 and is closed.", _int_at_least(1)),
    EnvVar("TAILOR_VOICE_MAP", "voice_map", "",
           "OpenAI voice names mapped to local voices, comma-separated NAME=VOICE (e.g. alloy=en_US-amy-medium,onyx=en_US-joe-medium). OpenAI names not listed map to TAILOR_VOICE.", _text),
    # IndexTTS2 runs as its own engine process(es) (runtime/families/indextts2): one per
    # TAILOR_WORKERS, on TAILOR_DEVICE (cuda: spread over TAILOR_GPUS), GPT in fp16 when
    # TAILOR_PRECISION is fp16.
    EnvVar("TAILOR_INDEXTTS2_PYTHON", "indextts2_python", "",
           "Interpreter of the IndexTTS2 engine environment (its own venv or image: Python < 3.12, torch 2.8, transformers 4.52.1, indextts). Empty: the runtime's own interpreter.",
           _text, knob="indextts2_python"),
    EnvVar("TAILOR_INDEXTTS2_ADAPTER", "indextts2_adapter", "real",
           "What the IndexTTS2 engine process runs: real (IndexTTS2) or standin (a model-free stand-in with the same protocol, for tests).",
           _choice("real", "standin")),
    EnvVar("TAILOR_INDEXTTS2_VOICES_DIR", "indextts2_voices_dir", "",
           "Reference recordings for IndexTTS2, one NAME.wav per voice (a few seconds of one speaker). Empty: MODEL_DIR/voices.", _text),
    EnvVar("TAILOR_INDEXTTS2_EMOTION", "indextts2_emotion", "false",
           "Load IndexTTS2's optional Qwen emotion model (~0.6 B parameters) and take each request's emotion from its text; off: the emotion follows the reference recording.",
           _bool, knob="indextts2_emotion"),
    EnvVar("TAILOR_INDEXTTS2_ARGS", "indextts2_args", "",
           "Extra command-line arguments for each IndexTTS2 engine process, shell-quoted (e.g. --cuda-kernel, --cfg PATH; `python -m runtime.families.indextts2.server --adapter real --help` lists them).",
           _text),
    EnvVar("TAILOR_INDEXTTS2_STARTUP_TIMEOUT_S", "indextts2_startup_timeout_s", "600",
           "Seconds an IndexTTS2 engine process gets to load its model and report ready; then start-up fails with its last output.",
           _float_at_least(1.0), unit="s"),
    EnvVar("TAILOR_INDEXTTS2_STALL_TIMEOUT_S", "indextts2_stall_timeout_s", "300",
           "Seconds without audio from an IndexTTS2 engine during a request before it is deemed hung, killed and restarted.",
           _float_at_least(1.0), unit="s"),
    EnvVar("TAILOR_INDEXTTS2_MAX_RESTARTS", "indextts2_max_restarts", "5",
           "Consecutive restarts of a crashed IndexTTS2 engine process (backoff 1 s, doubling, at most 30 s) before it is given up and the runtime reports not ready.",
           _int_at_least(0)),
)

_BY_NAME = {v.name: v for v in VARIABLES}


@dataclass(frozen=True)
class Settings:
    """The typed view of :data:`VARIABLES`: one field per variable, same name as its ``field``.
    Defaults live only in the table: :meth:`defaults` (or :meth:`from_environ`) applies them."""

    host: str
    port: int
    engine: str
    device: str
    precision: str
    model: str
    model_map: str
    models_dir: str
    model_drop: str
    model_offload: str
    model_mmap: bool
    default_voice: str
    model_variant: str
    voices_dir: str
    processes: int
    workers: int
    threads_per_worker: int
    inter_op_threads: int
    max_queue: int
    batching: bool
    batch_window_ms: float
    max_batch_size: int
    request_timeout_s: float
    max_input_chars: int
    cache_bytes: int
    rss_soft_limit_bytes: int
    api_key: str
    fallback: str
    fallback_device: str
    fallback_threads: int
    gpus: int
    solo_wide: bool
    preload: bool
    shutdown_grace_s: float
    ort_execution_mode: str
    ort_graph_optimization: str
    ort_memory_arena: bool
    cudnn_benchmark: bool
    torch_compile: bool
    shape_buckets: bool
    cuda_graphs: bool
    switch_interval_ms: float
    log_level: str
    instance_id: str
    normalize: bool
    header_timeout_s: float
    body_timeout_s: float
    idle_timeout_s: int
    max_connections: int
    voice_map: str
    indextts2_python: str
    indextts2_adapter: str
    indextts2_voices_dir: str
    indextts2_emotion: bool
    indextts2_args: str
    indextts2_startup_timeout_s: float
    indextts2_stall_timeout_s: float
    indextts2_max_restarts: int

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Settings:
        """Read every declared variable from ``environ``; unset ones take their default."""
        values: dict[str, Any] = {}
        for var in VARIABLES:
            raw = environ.get(var.name)
            values[var.field] = var.parse(var.name, var.default if raw is None else raw)
        return cls(**values)

    @classmethod
    def defaults(cls) -> Settings:
        """Every variable at its declared default."""
        return cls.from_environ({})

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def keyed_entries(spec: str, separator: str) -> Iterator[tuple[str, str, str, bool]]:
    """The non-empty entries of a comma-separated ``KEY<separator>VALUE`` list variable
    (``TAILOR_FALLBACK``, ``TAILOR_VOICE_MAP``), each as ``(entry, key, value, has_separator)``:
    the entry as written (stripped), its key stripped and lower-cased, its value stripped.
    Validation is the caller's: it knows what a key and a value may be."""
    for raw in spec.split(","):
        item = raw.strip()
        if item:
            key, sep, value = item.partition(separator)
            yield item, key.strip().lower(), value.strip(), bool(sep)


def variable(name: str) -> EnvVar:
    """The declaration of one variable (KeyError if it is not declared)."""
    return _BY_NAME[name]


def _check_declarations() -> None:
    """Settings is the typed view of VARIABLES: same fields, no defaults of its own, each
    declared default parses to its field's type, knob names unique."""
    fields = {f.name: f for f in dataclasses.fields(Settings)}
    declared = {v.field for v in VARIABLES}
    assert set(fields) == declared, f"Settings and VARIABLES disagree: {set(fields) ^ declared}"
    assert all(f.default is dataclasses.MISSING for f in fields.values()), "a Settings field has a default"
    types = typing.get_type_hints(Settings)
    for name, value in dataclasses.asdict(Settings.defaults()).items():
        assert type(value) is types[name], f"Settings.{name} is {types[name]}, its variable parses to {type(value)}"
    knobs = [v.knob for v in VARIABLES if v.knob is not None]
    assert len(knobs) == len(set(knobs)), "a knob name is declared twice"


_check_declarations()
