"""Byte-bounded LRU cache and the Prometheus exposition."""

from __future__ import annotations

import pytest

from runtime.serving.cache import AudioCache, CacheKey
from runtime.serving.metrics import RuntimeMetrics


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


def test_batch_observation_records_size_and_padding() -> None:
    metrics = RuntimeMetrics(rss_bytes=lambda: 0.0)
    metrics.observe_batch([10, 10, 10, 30])  # 60 of 120 slots used
    metrics.observe_batch([7])
    assert metrics.value("tailor_batch_size_count") == 2
    assert metrics.value("tailor_batch_size_sum") == 5
    assert metrics.value("tailor_batch_padding_fraction_sum") == pytest.approx(0.5)
    assert metrics.value("tailor_batch_padding_fraction_bucket", {"le": "0.0"}) == 1


def test_runtime_metrics_reads_rss_at_scrape() -> None:
    metrics = RuntimeMetrics(rss_bytes=lambda: 123456.0)
    assert b"tailor_process_resident_memory_bytes 123456.0" in metrics.render()
    assert metrics.value("tailor_process_resident_memory_bytes") == 123456.0
