"""Batches are drawn from one length bucket (small padding), requests queue enough sentences to
fill them, and the warm-up covers every (batch, bucket) shape on a GPU engine."""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

from runtime.serving.scheduler import (
    LENGTH_BUCKETS,
    Job,
    JobQueue,
    Scheduler,
    length_bucket,
    warmup_shapes,
)
from runtime.text.frontend import TextChunk


def job(phonemes: int, voice: str = "v") -> Job:
    return Job(voice=voice, chunk=TextChunk("x", tuple(range(phonemes))), speed=1.0)


def test_buckets() -> None:
    assert [length_bucket(n) for n in (1, 16, 17, 48, 49, 512, 513, 4000)] == [0, 0, 1, 2, 3, 9, 10, 10]
    # Within a bucket, padding to the longest sentence wastes at most half (smallest buckets) or a third.
    for low, high in itertools.pairwise(LENGTH_BUCKETS[1:]):
        assert 1 - (low + 1) / high <= 1 / 3 + 0.01


def test_a_batch_takes_only_its_bucket_and_voice() -> None:
    queue = JobQueue()
    for phonemes, voice in [(40, "v"), (200, "v"), (45, "v"), (42, "w"), (33, "v"), (47, "v"), (300, "v")]:
        queue.put(job(phonemes, voice))
    batch = queue.take(batching=True, window_s=0.0, max_batch=8)
    assert batch is not None
    assert [len(j.chunk.phoneme_ids) for j in batch] == [40, 45, 33, 47]
    lengths = [len(j.chunk.phoneme_ids) for j in batch]
    assert 1 - sum(lengths) / (len(lengths) * max(lengths)) < 0.2
    rest = [queue.take(batching=True, window_s=0.0, max_batch=8) for _ in range(2)]
    # 200 (192-256) and 300 (256-384) are neighbouring buckets: when the window closes short, the
    # batch is topped up from them rather than run alone.
    assert [[(len(j.chunk.phoneme_ids), j.voice) for j in b or []] for b in rest] == [
        [(200, "v"), (300, "v")], [(42, "w")]]
    assert len(queue) == 0


def test_far_buckets_never_share_a_batch() -> None:
    queue = JobQueue()
    for phonemes in (20, 300, 25, 500):
        queue.put(job(phonemes))
    first = queue.take(batching=True, window_s=0.0, max_batch=8)
    assert first is not None and [len(j.chunk.phoneme_ids) for j in first] == [20, 25]


def test_warmup_shapes_cover_every_bucket_and_batch_size() -> None:
    assert warmup_shapes(False, 8) == [(1, 0)]
    assert warmup_shapes(True, 1) == [(1, 0)]
    shapes = warmup_shapes(True, 32)
    assert {size for size, _ in shapes} == {1, 2, 4, 8, 16, 32}
    assert {edge for _, edge in shapes} == set(LENGTH_BUCKETS)
    assert len(shapes) == 6 * len(LENGTH_BUCKETS)
    assert {size for size, _ in warmup_shapes(True, 12)} == {1, 2, 4, 8, 12}


class RecordingChain:
    """Stands in for the engine chain: records the shapes it is asked to synthesize."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int, int]] = []
        self.lock = threading.Lock()

    def synthesize(self, worker: int, voice: str, chunks: list[TextChunk], speeds: list[float], **_: Any) -> list[Any]:
        with self.lock:
            self.calls.append((worker, len(chunks), max(len(c.phoneme_ids) for c in chunks)))
        return [None] * len(chunks)


def scheduler(chain: RecordingChain, workers: int, batching: bool, max_batch: int) -> Scheduler:
    from runtime.serving.metrics import RuntimeMetrics

    return Scheduler(chain, workers=workers, batching=batching, batch_window_ms=1,  # type: ignore[arg-type]
                     max_batch_size=max_batch, metrics=RuntimeMetrics(rss_bytes=lambda: 0.0))


def test_warm_up_runs_every_shape_on_every_worker_of_a_gpu_engine() -> None:
    chain = RecordingChain()
    sample = TextChunk("Warm up.", (1, 5, 9, 12, 2))
    calls = scheduler(chain, workers=2, batching=True, max_batch=4).warm_up("v", sample, batched_paths=True)
    assert calls == len(chain.calls) == 2 * 3 * len(LENGTH_BUCKETS)
    assert {(w, size, length) for w, size, length in chain.calls} == {
        (w, size, edge) for w in (0, 1) for size in (1, 2, 4) for edge in LENGTH_BUCKETS}


def test_warm_up_on_a_cpu_engine_is_one_sentence_per_worker() -> None:
    chain = RecordingChain()
    sample = TextChunk("Warm up.", (1, 5, 9, 12, 2))
    scheduler(chain, workers=3, batching=True, max_batch=8).warm_up("v", sample, batched_paths=False)
    assert chain.calls == [(0, 1, 5), (1, 1, 5), (2, 1, 5)]


def test_lookahead_fills_every_workers_batch() -> None:
    chain = RecordingChain()
    assert scheduler(chain, workers=2, batching=True, max_batch=16).lookahead() == 32
    assert scheduler(chain, workers=4, batching=False, max_batch=1).lookahead() == 4
    assert scheduler(chain, workers=1, batching=False, max_batch=1).lookahead() == 2


def test_the_window_is_waited_out_only_when_another_request_could_join() -> None:
    """Alone in the server a request's sentences are queued already: the batch window would only
    add latency. With other requests in flight the window waits for their sentences."""
    queue = JobQueue()
    queue.put(job(40))
    queue.put(job(300))  # the same request's next sentence, a neighbouring-but-one bucket
    started = time.monotonic()
    alone = queue.take(batching=True, window_s=5.0, max_batch=8, companions_possible=lambda: False)
    assert time.monotonic() - started < 2.5
    assert alone is not None and [len(j.chunk.phoneme_ids) for j in alone] == [40]
    assert [len(j.chunk.phoneme_ids) for j in queue.take(True, 5.0, 8, lambda: False) or []] == [300]

    queue.put(job(41))
    arrived = threading.Timer(0.3, lambda: queue.put(job(42)))  # another request's sentence
    arrived.start()
    shared = queue.take(batching=True, window_s=1.0, max_batch=2, companions_possible=lambda: True)
    arrived.join()
    assert shared is not None and [len(j.chunk.phoneme_ids) for j in shared] == [41, 42]
