"""The solo-wide instance and a lone request (issue 20, item 3), at the scheduler: which instance
runs each sentence, seen from the engine chain's side (the server-level test with a real engine is
``test_runtime_scheduling.py::test_a_lone_request_runs_its_sentences_one_by_one_on_the_wide_instance``)."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np

from runtime.serving.metrics import RuntimeMetrics
from runtime.serving.scheduler import Job, Scheduler
from runtime.text.frontend import TextChunk


class GatedChain:
    """Stands in for the engine chain: records which instance each sentence ran on; a wide run
    waits for ``gate``."""

    def __init__(self) -> None:
        self.runs: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self.gate = threading.Event()
        self.wide_entered = threading.Event()

    def synthesize(self, worker: int, voice: str, chunks: list[TextChunk], speeds: list[float],
                   wide: bool = False, **_: Any) -> list[np.ndarray]:
        with self.lock:
            self.runs.append(("wide" if wide else f"worker {worker}", chunks[0].text))
        if wide:
            self.wide_entered.set()
            assert self.gate.wait(10)
        return [np.zeros(4, dtype=np.float32) for _ in chunks]


def sentence(text: str, lead: bool = False) -> Job:
    return Job(voice="v", chunk=TextChunk(text, (1, 2, 3)), speed=1.0, lead=lead)


def test_a_lone_requests_first_sentence_holds_the_wide_instance() -> None:
    chain = GatedChain()
    companions = [False]
    scheduler = Scheduler(chain, workers=2, batching=False, batch_window_ms=0, max_batch_size=1,  # type: ignore[arg-type]
                          metrics=RuntimeMetrics(rss_bytes=lambda: 0.0), solo_wide=True,
                          companions_possible=lambda: companions[0])
    scheduler.start()
    try:
        # One request alone, two sentences queued (its lookahead): the first takes the wide
        # instance and the second does not start beside it on the free one-thread worker.
        first, second = scheduler.submit(sentence("one", lead=True)), scheduler.submit(sentence("two"))
        assert chain.wide_entered.wait(5)
        time.sleep(0.3)
        assert chain.runs == [("wide", "one")]
        chain.gate.set()
        first.result(5), second.result(5)
        assert chain.runs == [("wide", "one"), ("wide", "two")]  # the last one, nothing waiting

        # A companion (another request in the server) releases the one-thread workers at once.
        chain.gate.clear()
        chain.wide_entered.clear()
        held = scheduler.submit(sentence("three", lead=True))
        assert chain.wide_entered.wait(5)
        companions[0] = True
        beside = scheduler.submit(sentence("other request"))
        beside.result(5)
        assert chain.runs[-1][0].startswith("worker") and chain.runs[-1][1] == "other request"
        chain.gate.set()
        held.result(5)
        assert ("wide", "three") in chain.runs
    finally:
        chain.gate.set()
        scheduler.stop()


def test_after_the_first_sentence_the_rest_run_on_the_one_thread_workers() -> None:
    """Once the first audio is out, a lone request's next sentences run side by side (more audio
    per CPU second than one wide run); only the last one, with nothing left waiting, may go wide."""
    chain = GatedChain()
    chain.gate.set()
    scheduler = Scheduler(chain, workers=2, batching=False, batch_window_ms=0, max_batch_size=1,  # type: ignore[arg-type]
                          metrics=RuntimeMetrics(rss_bytes=lambda: 0.0), solo_wide=True,
                          companions_possible=lambda: False)
    futures = [scheduler.submit(sentence("a", lead=True)), scheduler.submit(sentence("b")),
               scheduler.submit(sentence("c"))]
    scheduler.start()
    try:
        for future in futures:
            future.result(5)
        where = dict((text, instance) for instance, text in chain.runs)
        assert where["a"] == "wide" and where["b"].startswith("worker")
    finally:
        scheduler.stop()


def test_without_solo_wide_sentences_run_side_by_side() -> None:
    chain = GatedChain()
    scheduler = Scheduler(chain, workers=2, batching=False, batch_window_ms=0, max_batch_size=1,  # type: ignore[arg-type]
                          metrics=RuntimeMetrics(rss_bytes=lambda: 0.0), solo_wide=False,
                          companions_possible=lambda: False)
    scheduler.start()
    try:
        futures = [scheduler.submit(sentence(t)) for t in ("one", "two")]
        for future in futures:
            future.result(5)
        assert len(chain.runs) == 2 and all(where.startswith("worker") for where, _ in chain.runs)
        assert scheduler.wide_runs == 0
    finally:
        scheduler.stop()
