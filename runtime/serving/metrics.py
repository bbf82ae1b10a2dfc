"""Every metric the runtime exports, on ``prometheus_client``.

One :class:`RuntimeMetrics` (with its own ``CollectorRegistry``) per app, so tests never share
state. The registry also carries prometheus_client's process collector (``process_*``: CPU
seconds, resident/virtual memory, open file descriptors, start time) and platform collector
(``python_info``). Metric names are the stable interface for dashboards; see the README.

Who records what:

* the request middleware: ``tailor_requests_total`` (status ``499`` when the client went away
  before the response was complete, never counted as a server error);
* the speech route: latency, time to first audio, audio seconds, cache counters;
* the scheduler: ``tailor_queue_depth``, ``tailor_batch_size`` and
  ``tailor_batch_padding_fraction`` (``observe_batch``);
* the engine chain: model load times, fallbacks, ``tailor_engine_info`` (``set_engine_in_use``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client import disable_created_metrics as _disable_created_metrics
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector

_disable_created: Callable[[], None] = _disable_created_metrics  # untyped upstream
_disable_created()  # no ``*_created`` series: they double every counter for no use here

LATENCY_BUCKETS_S = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
PADDING_BUCKETS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0)
CONTENT_TYPE = CONTENT_TYPE_LATEST


_Metric = TypeVar("_Metric", Counter, Gauge, Histogram, Info)


class _ProcessLocal:
    """The metrics a multiprocess view cannot merge (info, the process and platform
    collectors), taken from one process's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterable[Metric]:
        for metric in self.registry.collect():
            if metric.type == "info" or metric.name.startswith("process_") or metric.name == "python_info":
                yield metric


class RuntimeMetrics:
    """Every metric the runtime exports."""

    def __init__(self, rss_bytes: Callable[[], float]) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        # One row a metric: attribute, kind, name, help, label names, buckets (histograms).
        m = self._metric
        self.requests = m(Counter, "tailor_requests_total",
                          "HTTP requests by route and status code (499: the client disconnected first).",
                          ("route", "status"))
        self.latency = m(Histogram, "tailor_request_duration_seconds", "Speech request latency until the last byte.",
                         ("route",), LATENCY_BUCKETS_S)
        self.ttfa = m(Histogram, "tailor_time_to_first_audio_seconds",
                      "Time from request to the first audio being ready.", (), LATENCY_BUCKETS_S)
        self.queue_depth = m(Gauge, "tailor_queue_depth", "Sentence jobs waiting for a synthesis worker.",
                             mode="livesum")
        self.in_flight = m(Gauge, "tailor_requests_in_flight", "Admitted speech requests not finished yet.",
                           mode="livesum")
        self.audio_seconds = m(Counter, "tailor_audio_seconds_total", "Seconds of audio synthesized.", ("voice",))
        self.rss = m(Gauge, "tailor_process_resident_memory_bytes",
                     "Resident set size of the server process (with TAILOR_PROCESSES > 1: the sum over them).",
                     mode="livesum")
        self.rss.set_function(rss_bytes)
        self.model_load = m(Gauge, "tailor_model_load_seconds", "Time to load each engine instance's model.",
                            ("engine", "voice"), mode="livemax")
        self.cache_hits = m(Counter, "tailor_cache_hits_total", "Audio cache hits.")
        self.cache_misses = m(Counter, "tailor_cache_misses_total", "Audio cache misses.")
        self.cache_bytes = m(Gauge, "tailor_cache_bytes", "Bytes held by the audio cache (summed over processes).",
                            mode="livesum")
        self.fallbacks = m(Counter, "tailor_engine_fallbacks_total",
                           "Times a fallback engine served work the primary could not.", ("reason", "to_engine"))
        self.engine_active = m(Gauge, "tailor_engine_active",
                               "1 for the engine:voice entry currently serving the default voice.", ("engine", "voice"),
                               mode="livemax")
        self.engine_info = m(Info, "tailor_engine",
                             "The engine serving the default voice: engine, voice, device, precision, "
                             "role (primary or fallback).")
        self.batch_size = m(Histogram, "tailor_batch_size", "Sentences per engine call.", (), BATCH_SIZE_BUCKETS)
        self.batch_padding = m(Histogram, "tailor_batch_padding_fraction",
                               "Share of an engine call's phoneme slots that are padding (0 for a single sentence).",
                               (), PADDING_BUCKETS)
        self.ready = m(Gauge, "tailor_ready", "1 when the server reports ready (every server process).",
                   mode="livemin")
        self.model_variant = m(Gauge, "tailor_model_variant_info",
                               "1 for the model file variant serving the default voice (TAILOR_MODEL_VARIANT).",
                               ("voice", "variant"), mode="livemax")
        self.admission_rejections = m(Counter, "tailor_admission_rejections_total",
                                      "Speech requests refused at admission, by reason (queue_full, deadline: not now, "
                                      "too_long: not even on an idle server).",
                                      ("reason",))
        self.seconds_per_char = m(Gauge, "tailor_estimated_seconds_per_character",
                                  "Seconds of one worker per input character under load (the upper quantile "
                                  "admission uses).", mode="livemax")
        self.effective_max_input_chars = m(Gauge, "tailor_effective_max_input_chars",
                                           "Longest input that finishes within the admission budget on an idle "
                                           "server at the measured rate (at most TAILOR_MAX_INPUT_CHARS).", mode="livemin")
        self.stream_cuts = m(Counter, "tailor_stream_cuts_total",
                             "Responses cut after their first byte, by reason (timeout, engine_failed, shutdown).",
                             ("reason",))

    def _metric(self, kind: type[_Metric], name: str, documentation: str, labels: Sequence[str] = (),
                buckets: Sequence[float] = (), mode: str = "") -> _Metric:
        """One metric in this app's registry (``buckets``: a histogram's, else none; ``mode``: how
        a gauge's values from several server processes combine, prometheus_client's
        ``multiprocess_mode``)."""
        extra: dict[str, Any] = {"buckets": buckets} if buckets else {}
        if mode:
            extra["multiprocess_mode"] = mode
        return kind(name, documentation, labels, registry=self.registry, **extra)

    def render(self) -> bytes:
        """The exposition text. With several server processes (``PROMETHEUS_MULTIPROC_DIR`` set
        by the parent, ``runtime/serving/processes.py``) the ``tailor_*`` counters, histograms
        and gauges are merged from every process's files; the info metric and the
        ``process_*``/``python_info`` collectors are the answering process's own."""
        directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if not directory:
            return generate_latest(self.registry)
        merged = CollectorRegistry(auto_describe=False)
        MultiProcessCollector(merged, path=directory)  # type: ignore[no-untyped-call]
        merged.register(_ProcessLocal(self.registry))
        return generate_latest(merged)

    def observe_batch(self, phoneme_lengths: Sequence[int]) -> None:
        """One engine call: its size, and the share of padding when items are padded to the
        longest (``1 - sum(lengths) / (len * max)``)."""
        if not phoneme_lengths:
            return
        self.batch_size.observe(len(phoneme_lengths))
        longest = max(phoneme_lengths)
        padded = len(phoneme_lengths) * longest
        self.batch_padding.observe(1.0 - sum(phoneme_lengths) / padded if padded else 0.0)

    def set_engine_in_use(self, engine: str, voice: str, device: str, precision: str, role: str) -> None:
        self.engine_info.info(
            {"engine": engine, "voice": voice, "device": device, "precision": precision, "role": role})

    def value(self, name: str, labels: dict[str, str] | None = None) -> float:
        """A sample's current value (0 when absent): for tests and the soak benchmark."""
        found = self.registry.get_sample_value(name, labels or {})
        return 0.0 if found is None else float(found)
