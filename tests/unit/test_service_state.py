"""The runtime service's lifecycle states keep the bare strings that ``/readyz``, the process
group's state files and log lines carried before they became an Enum."""

from __future__ import annotations

import json
import logging

import pytest

from runtime.serving.lifecycle import ServiceState


@pytest.mark.parametrize("state", list(ServiceState))
def test_a_state_serialises_as_its_bare_value(state: ServiceState, caplog: pytest.LogCaptureFixture) -> None:
    assert json.dumps({"state": state}) == json.dumps({"state": state.value})
    assert (str(state), f"{state}") == (state.value, state.value)
    caplog.set_level(logging.INFO, logger="tailor.test")
    logging.getLogger("tailor.test").info("state %s", state)
    assert caplog.records[-1].getMessage() == f"state {state.value}"


def test_the_values_are_the_ones_clients_read() -> None:
    assert [s.value for s in ServiceState] == ["starting", "ready", "draining", "failed"]
    assert ServiceState("draining") is ServiceState.DRAINING and ServiceState.READY == "ready"
