"""Shape buckets: the lengths a padded batch is rounded up to, so that a GPU engine meets a small,
fixed set of tensor shapes (cuDNN autotuning and CUDA graphs pay only for shapes seen before).

Three dimensions: phoneme ids (:data:`PHONEME_BUCKETS`, also the scheduler's batch-composition
buckets), frames (:func:`frame_bucket`: a geometric series, at most a quarter padding past 64) and the
batch size (:func:`batch_bucket`: powers of two). Rounding only adds masked padding; every item is
trimmed back to its exact length.
"""

from __future__ import annotations

import bisect
import functools

PHONEME_BUCKETS: tuple[int, ...] = (16, 32, 48, 64, 96, 128, 192, 256, 384, 512)
"""Upper edges (phoneme ids) of the length buckets. Within one bucket at most a third of a
padded length is padding (a half in the two smallest); past the last edge, multiples of 128."""

FRAME_BUCKET_RATIO = 1.25
FRAME_BUCKET_FIRST = 32
FRAME_BUCKET_LAST = 4096
"""Frames (hops of the voice's vocoder: 256 samples, ~11.6 ms at 22.05 kHz) are rounded up to a
geometric series from 32 by at most 1.25 (multiples of 16) up to 4096 (~47 s; the front end's
300-phoneme chunks stay far below); past it, multiples of 512."""


@functools.cache
def frame_buckets() -> tuple[int, ...]:
    """Every frame edge up to :data:`FRAME_BUCKET_LAST` (24 of them)."""
    edges = [FRAME_BUCKET_FIRST]
    while edges[-1] < FRAME_BUCKET_LAST:
        grown = int(edges[-1] * FRAME_BUCKET_RATIO) // 16 * 16
        edges.append(min(FRAME_BUCKET_LAST, max(edges[-1] + 16, grown)))
    return tuple(edges)


def _round_up(value: int, edges: tuple[int, ...], step: int) -> int:
    index = bisect.bisect_left(edges, value)
    if index < len(edges):
        return edges[index]
    return -(-value // step) * step


def phoneme_bucket(ids: int) -> int:
    """The padded length (phoneme ids) of a batch whose longest item has ``ids``."""
    return _round_up(ids, PHONEME_BUCKETS, 128)


def frame_bucket(frames: int) -> int:
    """The padded frame count of a batch whose longest item has ``frames``."""
    return _round_up(frames, frame_buckets(), 512)


def batch_bucket(size: int) -> int:
    """The padded batch size: the next power of two."""
    return 1 << max(0, size - 1).bit_length()
