"""Schemathesis fuzzing of the live server against its own OpenAPI document: no 5xx, ever.

Each operation gets schema-conforming (positive) and schema-violating (negative) cases from
schemathesis' hypothesis strategies; bounded examples keep it cheap on two cores. The live
server's input limit is 200 characters, so generated texts stay short to synthesize.
"""

from __future__ import annotations

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from tests.runtime.conftest import API_KEY, LiveServer

pytestmark = pytest.mark.slow
EXAMPLES = {"POST /v1/audio/speech": 50}
AUTH = {"Authorization": f"Bearer {API_KEY}"}


def fuzz(live_server: LiveServer, operation: object, mode: GenerationMode, seen: list[int]) -> None:
    label = f"{operation.method.upper()} {operation.path}"  # type: ignore[attr-defined]

    @settings(max_examples=EXAMPLES.get(label, 10), deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))  # type: ignore[attr-defined]
    def run(case: schemathesis.Case) -> None:
        response = case.call(base_url=live_server.base_url, headers=AUTH, timeout=60)
        seen.append(response.status_code)
        assert response.status_code < 500, (
            f"{label} body={case.body!r} -> {response.status_code}: {response.text[:300]}")
        if response.status_code >= 400:
            error = response.json()["error"]
            assert error["message"] and error["type"] and error["code"]

    run()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_server_errors(live_server: LiveServer, mode: GenerationMode) -> None:
    schema = schemathesis.openapi.from_url(f"{live_server.base_url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {f"{op.method.upper()} {op.path}" for op in operations} >= {
        "POST /v1/audio/speech", "GET /v1/models", "GET /v1/audio/voices", "GET /readyz"}
    seen: list[int] = []
    for operation in operations:
        # Operations without parameters or body cannot be made schema-violating.
        if mode == GenerationMode.POSITIVE or operation.method.upper() == "POST":
            fuzz(live_server, operation, mode, seen)
    assert len(seen) >= 50
    print(mode, "status codes seen:", {code: seen.count(code) for code in sorted(set(seen))})
    assert httpx.get(f"{live_server.base_url}/readyz").status_code == 200
