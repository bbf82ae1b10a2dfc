"""``python -m runtime [--host H] [--port P]``: serve the speech runtime with uvicorn.

Configuration comes from the ``TAILOR_*`` environment variables (``runtime/settings.py``);
the two flags override ``TAILOR_HOST``/``TAILOR_PORT``. SIGTERM/SIGINT drain: readiness turns
503, new requests get 503, in-flight requests get ``TAILOR_SHUTDOWN_GRACE_S`` seconds to
finish, then the process exits 0. A second signal exits at once. Exit codes
(``runtime.errors``): 0 after a drain, 2 for invalid settings, 4 when the model or the
configuration is broken (a corrupt or missing model file, a missing TAILOR_VOICES_DIR, an
unknown voice: restarting cannot help), 3 for other start-up failures (the port, a device, a
warm-up: a restart may help).

With ``TAILOR_PROCESSES`` > 1 this process becomes the parent of that many server processes
sharing its listening socket (``runtime/serving/processes.py``); each of them runs this same
``main`` as a child.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from types import FrameType

from runtime.errors import (
    EXIT_BAD_SETTINGS,
    EXIT_BROKEN,
    EXIT_START_FAILED,
    BrokenConfig,
    StartFailed,
    StartupError,
    broken_model_file,
)
from runtime.settings import Settings, SettingsError

_LOG = logging.getLogger("tailor.runtime")
ABORT_WAIT_S = 3.0
"""After the grace period, how long aborted requests get to send their 503."""


class _CutStreamFilter(logging.Filter):
    """A stream cut on purpose (deadline, shutdown; see ``runtime.errors.StreamCut``) ends
    without its final chunk, which uvicorn reports as an error; the access line already says
    ``outcome: cut:<code>``, so that one message is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "returned without completing response" not in record.getMessage()



def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m runtime", description="Tailor speech runtime.")
    parser.add_argument("--host", help="address to bind (overrides TAILOR_HOST)")
    parser.add_argument("--port", type=int, help="TCP port (overrides TAILOR_PORT)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    args = _parse_args(argv)
    try:
        settings = Settings.from_environ(os.environ if environ is None else environ)
    except SettingsError as exc:
        print(f"error: {exc}\nhint: see the TAILOR_* variables in the README", file=sys.stderr)
        return EXIT_BAD_SETTINGS
    if args.host:
        settings = settings.replace(host=args.host)
    if args.port is not None:
        if not 0 < args.port < 65536:
            print(f"error: --port {args.port} is not a TCP port (1-65535)", file=sys.stderr)
            return EXIT_BAD_SETTINGS
        settings = settings.replace(port=args.port)
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )

    from runtime.serving import processes

    if settings.processes > 1 and not processes.is_child():
        return processes.run_parent(settings)  # binds the port, runs the server processes
    child = processes.ChildContext.from_environ() if processes.is_child() else None

    from runtime.serving.memory import limit_heap_fragmentation

    if not limit_heap_fragmentation():
        _LOG.info("could not pin the malloc mmap threshold (not glibc?); memory may fragment more")

    import uvicorn

    from runtime.http.app import create_app

    try:
        app = create_app(settings)
    except StartupError as exc:  # voices, voice config, variant, voice map, fallback: configuration
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_START_FAILED if isinstance(exc, StartFailed) else EXIT_BROKEN
    service = app.state.service
    failed = threading.Event()
    failure: list[str] = []

    class DrainingServer(uvicorn.Server):
        """First SIGTERM/SIGINT drains, then exits; the signal is not re-raised (exit 0)."""

        draining = False
        drain_started = 0.0

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            if self.draining and child is not None and time.monotonic() - self.drain_started < processes.SAME_STOP_S:
                return  # the parent's forward of a stop the process group or cgroup delivered too
            if self.draining:
                self.force_exit = True
                self.should_exit = True
                return
            self.draining = True
            self.drain_started = time.monotonic()
            _LOG.info("signal %s: draining for up to %gs", signal.Signals(sig).name, settings.shutdown_grace_s)
            service.begin_drain()

            def finish() -> None:
                if not service.wait_idle(settings.shutdown_grace_s):
                    _LOG.warning("grace period over with %d requests in flight: ending them with 503",
                                 service.in_flight)
                    service.abort_in_flight()
                    if not service.wait_idle(ABORT_WAIT_S):
                        _LOG.warning("%d requests still in flight after the abort", service.in_flight)
                self.should_exit = True

            threading.Thread(target=finish, name="tailor-drain", daemon=True).start()

    from runtime.http.connections import protocol_class

    logging.getLogger("uvicorn.error").addFilter(_CutStreamFilter())
    config = uvicorn.Config(
        app if child is None else child.wrap(app),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,  # one structured line per request comes from the tailor.access logger
        lifespan="on",
        timeout_graceful_shutdown=2,
        timeout_keep_alive=settings.idle_timeout_s,
        http=protocol_class(settings.header_timeout_s, settings.max_connections, service.instance_id),
    )
    server = DrainingServer(config)
    apply_switch_interval(settings)

    def on_start_failed() -> None:
        failure.append(service.state_detail)  # before the drain replaces it with "shutting down"
        failed.set()
        server.should_exit = True

    service.on_start_failed = on_start_failed
    if child is not None:
        from runtime.serving.memory import process_rss_bytes

        child.start_reporting(service.readiness, lambda: service.metrics.rss.set(process_rss_bytes()))
    try:
        server.run(sockets=None if child is None else [child.sock])
    except OSError as exc:
        print(f"error: cannot serve on {settings.host}:{settings.port}: {exc}", file=sys.stderr)
        return EXIT_START_FAILED
    if failed.is_set():
        detail = failure[0] if failure else service.state_detail
        if isinstance(service.start_error, BrokenConfig):  # a missing model or library stays missing
            print(f"error: {service.start_error}", file=sys.stderr)
            return EXIT_BROKEN
        broken = broken_model_file(detail)
        if broken is not None:  # a file that cannot load now will not load on a restart either
            print(f"error: {broken}", file=sys.stderr)
            return EXIT_BROKEN
        print(f"error: start-up failed: {detail}", file=sys.stderr)
        return EXIT_START_FAILED
    return 0


def apply_switch_interval(settings: Settings) -> None:
    """TAILOR_SWITCH_INTERVAL_MS: how long a thread waiting for the GIL lets the holder run on."""
    sys.setswitchinterval(settings.switch_interval_ms / 1000.0)


if __name__ == "__main__":
    sys.exit(main())
