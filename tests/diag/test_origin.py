"""Where a check ran: the report's `origin`, from this machine (no mocks: the real host name and routing)."""

from __future__ import annotations

import socket

from diag.origin import origin_of, pod_name, source_address
from diag.report import Report, StageResult, Status


def report_connected_to(address: str | None) -> Report:
    facts = {"connected_address": address} if address else {}
    stages = (StageResult("connect", Status.PASSED, 1.0, "Connected.", facts=facts),)
    return Report("r", "2026-01-01T00:00:00Z", 1.0, {"host": "h", "port": 25}, stages)


def test_origin_names_the_tool_the_host_and_the_source_address_toward_the_server() -> None:
    origin = origin_of(report_connected_to("127.0.0.1"), environ={})
    assert origin["tool"].startswith("smtp-diag ")
    assert origin["hostname"] == socket.gethostname()
    assert origin["source_address"] == "127.0.0.1"  # loopback is reached from loopback
    assert "pod" not in origin


def test_no_connection_no_source_address_and_a_name_is_not_an_address() -> None:
    assert "source_address" not in origin_of(report_connected_to(None), environ={})
    assert source_address("smtp.example.com", 25) is None


def test_the_pod_comes_from_the_downward_api_or_the_host_name_in_kubernetes() -> None:
    assert pod_name({"POD_NAME": "diag-7f9c"}) == "diag-7f9c"
    assert pod_name({"KUBERNETES_SERVICE_HOST": "10.96.0.1"}) == socket.gethostname()
    assert pod_name({}) is None
    origin = origin_of(report_connected_to(None), environ={"POD_NAME": "diag-1", "POD_NAMESPACE": "mail"})
    assert (origin["pod"], origin["namespace"]) == ("diag-1", "mail")
