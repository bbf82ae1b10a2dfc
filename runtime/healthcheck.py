"""``python -m runtime.healthcheck [--port N] [--host H]``: exit 0 when ``/readyz`` answers 200.

Used as the container healthcheck, so it is standard library only (``runtime.settings`` is too)
and fast (one request, 2 s timeout). Host and port default to ``TAILOR_HOST``/``TAILOR_PORT``; a wildcard bind
address (0.0.0.0, ::) is checked through loopback.
"""

from __future__ import annotations

import argparse
import http.client
import os
import sys
from collections.abc import Mapping, Sequence

from runtime.settings import SettingsError, variable

WILDCARDS = {"", "0.0.0.0", "::", "[::]"}


def check(host: str, port: int, timeout_s: float = 2.0) -> tuple[bool, str]:
    """(ready, one-line reason)."""
    if host in WILDCARDS:
        host = "127.0.0.1"
    connection = http.client.HTTPConnection(host.strip("[]"), port, timeout=timeout_s)
    try:
        connection.request("GET", "/readyz")
        response = connection.getresponse()
        body = response.read(2048).decode("utf-8", "replace")
    except OSError as exc:
        return False, f"http://{host}:{port}/readyz unreachable: {exc}"
    finally:
        connection.close()
    return response.status == 200, f"/readyz answered {response.status}: {body[:200]}"


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    env = os.environ if environ is None else environ
    parser = argparse.ArgumentParser(prog="python -m runtime.healthcheck", description=__doc__)
    parser.add_argument("--host", default=env.get("TAILOR_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--timeout", type=float, default=2.0, help="seconds (default 2)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    port = args.port
    if port is None:
        declared = variable("TAILOR_PORT")  # its default and range are declared once, in settings
        try:
            port = int(declared.parse(declared.name, env.get(declared.name, declared.default).strip()))
        except SettingsError as exc:
            print(exc, file=sys.stderr)
            return 1
    ready, reason = check(args.host, port, args.timeout)
    if not args.quiet:
        print(reason, file=sys.stdout if ready else sys.stderr)
    return 0 if ready else 1


if __name__ == "__main__":
    sys.exit(main())
