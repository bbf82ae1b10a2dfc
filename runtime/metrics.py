"""Prometheus metrics, written in the text exposition format (version 0.0.4) without a library.

Counters, gauges and histograms with labels; thread-safe, because synthesis workers and the
event loop both record. One :class:`Registry` per app, so tests never share state.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

LabelValues = tuple[str, ...]

LATENCY_BUCKETS_S = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _format_labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class _Metric:
    kind = "untyped"

    def __init__(self, name: str, help_text: str, label_names: Sequence[str] = ()) -> None:
        self.name = name
        self.help = help_text
        self.label_names = tuple(label_names)
        self._lock = threading.Lock()

    def _key(self, labels: Sequence[str]) -> LabelValues:
        if len(labels) != len(self.label_names):
            raise ValueError(f"{self.name} takes labels {self.label_names}, got {tuple(labels)}")
        return tuple(str(v) for v in labels)

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]

    def samples(self) -> list[str]:
        raise NotImplementedError


class Counter(_Metric):
    kind = "counter"

    def __init__(self, name: str, help_text: str, label_names: Sequence[str] = ()) -> None:
        super().__init__(name, help_text, label_names)
        self._values: dict[LabelValues, float] = {}
        if not self.label_names:
            self._values[()] = 0.0

    def inc(self, amount: float = 1.0, labels: Sequence[str] = ()) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, labels: Sequence[str] = ()) -> float:
        with self._lock:
            return self._values.get(self._key(labels), 0.0)

    def samples(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        return [f"{self.name}{_format_labels(self.label_names, k)} {_number(v)}" for k, v in items]


class Gauge(Counter):
    kind = "gauge"

    def __init__(
        self,
        name: str,
        help_text: str,
        label_names: Sequence[str] = (),
        read: Callable[[], float] | None = None,
    ) -> None:
        super().__init__(name, help_text, label_names)
        self._read = read

    def set(self, value: float, labels: Sequence[str] = ()) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = float(value)

    def samples(self) -> list[str]:
        if self._read is not None:
            self.set(self._read())
        return super().samples()


class Histogram(_Metric):
    kind = "histogram"

    def __init__(
        self,
        name: str,
        help_text: str,
        label_names: Sequence[str] = (),
        buckets: Sequence[float] = LATENCY_BUCKETS_S,
    ) -> None:
        super().__init__(name, help_text, label_names)
        self.buckets = (*sorted(buckets), math.inf)
        self._counts: dict[LabelValues, list[int]] = {}
        self._sums: dict[LabelValues, float] = {}

    def observe(self, value: float, labels: Sequence[str] = ()) -> None:
        key = self._key(labels)
        with self._lock:
            counts = self._counts.setdefault(key, [0] * len(self.buckets))
            for i, bound in enumerate(self.buckets):
                if value <= bound:
                    counts[i] += 1
            self._sums[key] = self._sums.get(key, 0.0) + value

    def count(self, labels: Sequence[str] = ()) -> int:
        with self._lock:
            return self._counts.get(self._key(labels), [0] * len(self.buckets))[-1]

    def samples(self) -> list[str]:
        lines: list[str] = []
        with self._lock:
            items = sorted(self._counts.items())
            sums = dict(self._sums)
        for key, counts in items:
            for bound, count in zip(self.buckets, counts, strict=True):
                le = 'le="' + _number(bound) + '"'
                lines.append(f"{self.name}_bucket{_format_labels(self.label_names, key, le)} {count}")
            lines.append(f"{self.name}_sum{_format_labels(self.label_names, key)} {_number(sums[key])}")
            lines.append(f"{self.name}_count{_format_labels(self.label_names, key)} {counts[-1]}")
        return lines


M = TypeVar("M", bound=_Metric)


class Registry:
    def __init__(self) -> None:
        self._metrics: list[_Metric] = []

    def add(self, metric: M) -> M:
        self._metrics.append(metric)
        return metric

    def render(self) -> str:
        lines: list[str] = []
        for metric in self._metrics:
            lines.extend(metric.header())
            lines.extend(metric.samples())
        return "\n".join(lines) + "\n"


class RuntimeMetrics:
    """Every metric the runtime exports; names are the stable interface for dashboards."""

    def __init__(self, rss_bytes: Callable[[], float]) -> None:
        r = self.registry = Registry()
        self.requests = r.add(Counter(
            "tailor_requests_total", "HTTP requests by route and status code.", ("route", "status")))
        self.latency = r.add(Histogram(
            "tailor_request_duration_seconds", "Speech request latency until the last byte.", ("route",)))
        self.ttfa = r.add(Histogram(
            "tailor_time_to_first_audio_seconds", "Time from request to the first audio being ready."))
        self.queue_depth = r.add(Gauge(
            "tailor_queue_depth", "Sentence jobs waiting for a synthesis worker."))
        self.in_flight = r.add(Gauge(
            "tailor_requests_in_flight", "Admitted speech requests not finished yet."))
        self.audio_seconds = r.add(Counter(
            "tailor_audio_seconds_total", "Seconds of audio synthesized.", ("voice",)))
        self.rss = r.add(Gauge(
            "tailor_process_resident_memory_bytes", "Resident set size of the server process.",
            read=rss_bytes))
        self.model_load = r.add(Gauge(
            "tailor_model_load_seconds", "Time to load each engine instance's model.", ("engine", "voice")))
        self.cache_hits = r.add(Counter("tailor_cache_hits_total", "Audio cache hits."))
        self.cache_misses = r.add(Counter("tailor_cache_misses_total", "Audio cache misses."))
        self.cache_bytes = r.add(Gauge("tailor_cache_bytes", "Bytes held by the audio cache."))
        self.fallbacks = r.add(Counter(
            "tailor_engine_fallbacks_total", "Times a fallback engine served work the primary could not.",
            ("reason", "to_engine")))
        self.engine_active = r.add(Gauge(
            "tailor_engine_active", "1 for the engine:voice entry currently serving the default voice.",
            ("engine", "voice")))
        self.batch_size = r.add(Histogram(
            "tailor_batch_size", "Sentence jobs per engine call.", buckets=(1, 2, 4, 8, 16, 32)))
        self.ready = r.add(Gauge("tailor_ready", "1 when the server reports ready."))
