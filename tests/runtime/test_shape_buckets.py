"""Shape buckets (issue 20): the padded lengths a GPU batch is rounded up to."""

from __future__ import annotations

import itertools

from runtime.engines.shapes import (
    PHONEME_BUCKETS,
    batch_bucket,
    frame_bucket,
    frame_buckets,
    phoneme_bucket,
)
from runtime.families.piper.torch_engine import warm_frame_buckets
from runtime.serving.scheduler import LENGTH_BUCKETS, warmup_shapes


def test_phoneme_buckets_are_the_schedulers_and_round_up() -> None:
    assert LENGTH_BUCKETS == PHONEME_BUCKETS
    assert [phoneme_bucket(n) for n in (1, 16, 17, 100, 512, 513, 700)] == [16, 16, 32, 128, 512, 640, 768]


def test_frame_buckets_bound_the_padding() -> None:
    edges = frame_buckets()
    assert edges[0] == 32 and edges[-1] == 4096 and list(edges) == sorted(set(edges))
    assert all(edge % 16 == 0 for edge in edges)
    for low, high in itertools.pairwise(edges[2:]):  # past 64: at most ~a quarter is padding
        assert (high - low - 1) / high <= 0.25
    for frames in (1, 32, 33, 500, 4096, 4097, 9000):
        edge = frame_bucket(frames)
        assert edge >= frames and (edge in edges or edge % 512 == 0)


def test_batch_buckets_are_the_warmed_sizes() -> None:
    assert [batch_bucket(n) for n in (1, 2, 3, 5, 33, 64)] == [1, 2, 4, 8, 64, 64]
    # Every size the scheduler warms up pads to a power of two the warm-up also runs, so no batch
    # bucket is first met on a request.
    sizes = {size for size, _ in warmup_shapes(True, 64)}
    assert {batch_bucket(n) for n in range(1, 65)} <= sizes


def test_warm_frame_buckets_cover_the_longest_phoneme_bucket() -> None:
    warmed = warm_frame_buckets()
    assert warmed == tuple(e for e in frame_buckets() if e <= frame_bucket(4 * PHONEME_BUCKETS[-1]))
    assert frame_bucket(2 * 3 * 300) in warmed  # a 300-phoneme chunk (~600 ids) at 3 frames per id
