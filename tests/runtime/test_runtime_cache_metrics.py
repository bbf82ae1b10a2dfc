"""Byte-bounded LRU cache and the Prometheus exposition."""

from __future__ import annotations

import pytest

from runtime.cache import AudioCache, CacheKey
from runtime.metrics import Counter, Histogram, Registry, RuntimeMetrics


def key(text: str, fmt: str = "mp3") -> CacheKey:
    return CacheKey("v", "onnx", text, 1.0, fmt)


def test_cache_evicts_least_recently_used_within_budget() -> None:
    cache = AudioCache(budget_bytes=250)
    assert cache.put(key("a"), b"x" * 100)
    assert cache.put(key("b"), b"y" * 100)
    assert cache.get(key("a")) == b"x" * 100  # a is now most recent
    assert cache.put(key("c"), b"z" * 100)  # evicts b
    assert cache.get(key("b")) is None
    assert cache.get(key("a")) is not None and cache.get(key("c")) is not None
    assert cache.size_bytes <= 250
    assert (cache.hits, cache.misses) == (3, 1)


def test_cache_key_includes_format_and_speed() -> None:
    cache = AudioCache(budget_bytes=1000)
    cache.put(key("a", "mp3"), b"mp3")
    assert cache.get(key("a", "wav")) is None
    assert cache.get(CacheKey("v", "onnx", "a", 1.5, "mp3")) is None


def test_cache_refuses_oversized_entries_and_can_be_disabled() -> None:
    assert not AudioCache(budget_bytes=10).put(key("a"), b"x" * 100)
    off = AudioCache(budget_bytes=0)
    assert not off.put(key("a"), b"x")
    assert off.get(key("a")) is None and len(off) == 0


def test_exposition_format() -> None:
    registry = Registry()
    counter = registry.add(Counter("c_total", "A counter.", ("route", "status")))
    hist = registry.add(Histogram("h_seconds", "A histogram.", buckets=(0.1, 1.0)))
    counter.inc(labels=("/x", "200"))
    counter.inc(2, labels=("/x", "200"))
    hist.observe(0.05)
    hist.observe(0.5)
    text = registry.render()
    assert "# TYPE c_total counter" in text
    assert 'c_total{route="/x",status="200"} 3' in text
    assert 'h_seconds_bucket{le="0.1"} 1' in text
    assert 'h_seconds_bucket{le="1"} 2' in text
    assert 'h_seconds_bucket{le="+Inf"} 2' in text
    assert "h_seconds_count 2" in text and "h_seconds_sum 0.55" in text


def test_label_count_is_checked() -> None:
    with pytest.raises(ValueError, match="takes labels"):
        Counter("c", "help", ("a",)).inc(labels=())


def test_runtime_metrics_reads_rss_at_scrape() -> None:
    metrics = RuntimeMetrics(rss_bytes=lambda: 123456.0)
    assert "tailor_process_resident_memory_bytes 123456" in metrics.registry.render()
