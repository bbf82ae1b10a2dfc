"""Schemathesis, with all of its checks, against the live server's own OpenAPI document.

The checks include: no 5xx; every status code, content type, header and body as documented
(errors in the OpenAI shape); schema-valid requests accepted and schema-violating ones refused;
authentication enforced where documented; 405 with ``Allow`` for other methods; SSE events as
documented. A fixed seed and a bounded number of examples keep the run reproducible and short
on two cores (the live server's input limit is 200 characters).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.runtime.conftest import API_KEY, LiveServer

pytestmark = pytest.mark.slow
MAX_EXAMPLES = 40
SEED = 7


def test_schemathesis_all_checks_pass(live_server: LiveServer, tmp_path: Path) -> None:
    document = httpx.get(f"{live_server.base_url}/openapi.json").json()
    assert {f"{m.upper()} {p}" for p, ops in document["paths"].items() for m in ops} >= {
        "POST /v1/audio/speech", "GET /v1/models", "GET /v1/audio/voices", "GET /readyz",
        "GET /healthz", "GET /metrics"}
    done = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "run", f"{live_server.base_url}/openapi.json",
         "--checks", "all", "--header", f"Authorization: Bearer {API_KEY}",
         "--max-examples", str(MAX_EXAMPLES), "--seed", str(SEED), "--request-timeout", "120",
         "--max-response-time", "120",  # the live server's TAILOR_REQUEST_TIMEOUT_S: in time is fine
         "--no-color"],
        capture_output=True, text=True, timeout=400, cwd=tmp_path,  # its .schemathesis/ cache
    )
    report = done.stdout + done.stderr
    assert done.returncode == 0 and "No issues found" in report, report[-6000:]
    assert httpx.get(f"{live_server.base_url}/readyz").status_code == 200
