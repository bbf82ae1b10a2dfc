"""The per-request sentence stream: a job's chunks scheduled on its family's workers (a few
sentences ahead, see ``Scheduler.lookahead``), each synthesized (timed, for word timestamps, when
asked), shaped to the requested speed and yielded in order, token-chunk families block by block;
the deadline, the shutdown grace period and a client gone stop it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncGenerator, Awaitable, Callable

import numpy as np

from runtime.audio.timestretch import time_stretch
from runtime.errors import NotReady, RequestTimeout
from runtime.serving.engine_chain import StreamAbandoned
from runtime.serving.gate import SpeechJob
from runtime.serving.metrics import RuntimeMetrics
from runtime.serving.scheduler import Job
from runtime.serving.served import ServedFamily
from runtime.text.frontend import TextChunk
from runtime.text.timestamps import ChunkTiming

_LOG = logging.getLogger("tailor.runtime")

MIN_SPEED, MAX_SPEED = 0.1, 8.0
"""Bounds of request speed x SSML prosody rate (applied by time-stretching, see timestretch)."""


async def audio_blocks(
    job: SpeechJob,
    served: ServedFamily,
    metrics: RuntimeMetrics,
    request_timeout_s: float,
    aborted: threading.Event,
    take_off_backlog: Callable[[SpeechJob, int], None],
    is_disconnected: Callable[[], Awaitable[bool]] | None = None,
    timings: list[ChunkTiming] | None = None,
) -> AsyncGenerator[np.ndarray, None]:
    """Audio per chunk, in order, at the voice's sample rate.

    Raises RequestTimeout past the deadline; stops (cancelling queued work) when the
    client disconnects or the consumer stops iterating. With ``timings``, every chunk is
    synthesized with the model's durations and its :class:`ChunkTiming` is appended before
    its audio is yielded (word timestamps; never streamed by token chunks).

    ``served``: the family synthesizing it; ``aborted``: set when the shutdown grace period is
    over; ``take_off_backlog(job, characters)``: called as each chunk is done (admission's backlog).
    """
    cancelled = threading.Event()
    lookahead = served.scheduler.lookahead()
    pending: list[asyncio.Future[np.ndarray]] = []
    submitted: list[Job] = []
    partials: list[asyncio.Queue[np.ndarray] | None] = []
    """Per pending sentence of a token-chunk family: its blocks as the engine makes them."""
    jobs = iter(job.chunks)
    completed = 0
    offset = 0
    sample_rate = served.chain.voice_info(job.voice).sample_rate_hz
    streams = served.family.spec.streaming == "token-chunk" and timings is None
    loop = asyncio.get_running_loop()

    def block_sink(queue: asyncio.Queue[np.ndarray]) -> Callable[[np.ndarray], None]:
        def put(block: np.ndarray) -> None:  # on the worker thread
            if cancelled.is_set():
                raise StreamAbandoned("the request is gone")
            loop.call_soon_threadsafe(queue.put_nowait, block)
        return put

    def refill() -> None:
        while len(pending) < lookahead:
            chunk = next(jobs, None)
            if chunk is None:
                return
            queue: asyncio.Queue[np.ndarray] | None = asyncio.Queue() if streams else None
            # The engine speaks at the voice's own pace; speed is applied after (linear).
            work = Job(job.voice, chunk, 1.0, is_cancelled=cancelled.is_set, priority=job.deadline,
                       timed=timings is not None, lead=chunk is job.chunks[0],
                       on_block=block_sink(queue) if queue is not None else None)
            submitted.append(work)
            pending.append(asyncio.wrap_future(served.scheduler.submit(work)))
            partials.append(queue)

    async def shaped(samples: np.ndarray, speed: float, id_samples: np.ndarray | None = None,
                     chunk: TextChunk | None = None) -> np.ndarray:
        spoken = samples.size
        if speed != 1.0 and samples.size:
            samples = await asyncio.to_thread(time_stretch, samples, speed)
        if timings is not None and id_samples is not None and chunk is not None:
            # Time-stretching scales every position by the same factor.
            ends = np.rint(np.cumsum(id_samples) * (samples.size / max(1, spoken))).astype(np.int64)
            timings.append(ChunkTiming(chunk.text, chunk.phoneme_ids, offset, np.diff(ends, prepend=0)))
        metrics.audio_seconds.labels(job.voice).inc(samples.size / sample_rate)
        return samples

    try:
        refill()
        while pending:
            head, partial = pending[0], partials[0]
            chunk_now = job.chunks[completed]
            speed = min(MAX_SPEED, max(MIN_SPEED, job.speed * chunk_now.rate))
            streamed = 0
            while not head.done():
                if aborted.is_set():
                    raise NotReady("the server shut down before this request finished "
                                   "(TAILOR_SHUTDOWN_GRACE_S is over); retry on another replica",
                                   code="shutdown", headers={"Retry-After": "5"})
                remaining = job.deadline - time.monotonic()
                if remaining <= 0:
                    raise RequestTimeout(
                        f"synthesis took longer than {request_timeout_s:g} s "
                        "(TAILOR_REQUEST_TIMEOUT_S); send shorter input or retry",
                    )
                await asyncio.wait({head}, timeout=min(remaining, 0.1 if partial is None else 0.02))
                while partial is not None and not partial.empty():
                    streamed += 1
                    yield await shaped(partial.get_nowait(), speed)
                if not head.done() and is_disconnected is not None and await is_disconnected():
                    _LOG.info("client disconnected; cancelling %d queued sentences", len(pending))
                    return
            pending.pop(0)
            partials.pop(0)
            samples = head.result()
            id_samples = submitted.pop(0).id_samples
            completed += 1
            take_off_backlog(job, len(chunk_now.text))
            refill()
            while partial is not None and not partial.empty():
                streamed += 1
                yield await shaped(partial.get_nowait(), speed)
            # A streamed sentence went out block by block; only its pause is left to send.
            samples = (np.zeros(0, dtype=np.float32) if streamed
                       else await shaped(samples, speed, id_samples, chunk_now))
            if chunk_now.pause_after_s > 0:
                silence = np.zeros(round(chunk_now.pause_after_s * sample_rate), dtype=np.float32)
                metrics.audio_seconds.labels(job.voice).inc(silence.size / sample_rate)
                samples = np.concatenate([samples, silence])
            offset += samples.size
            if samples.size or not streamed:
                yield samples
            if is_disconnected is not None and pending and await is_disconnected():
                _LOG.info("client disconnected; cancelling %d queued sentences", len(pending))
                return
    finally:
        cancelled.set()
        for future in pending:
            future.cancel()
