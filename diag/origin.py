"""Where a check ran, for the report: the tool and its version, the host name, the source address and (in a
cluster) the pod. A report shared in a ticket is read by someone who did not run it: "it fails from here"
needs a "here". Nothing here talks to the network.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Final

from diag import __version__
from diag.report import Report

MAX_NAME: Final = 253


def source_address(destination: str, port: int) -> str | None:
    """The local address the kernel picks to reach `destination`: a UDP socket's connect() only chooses the
    route, it sends no packet. None when the destination is not an IP address or has no route."""
    try:
        address = ipaddress.ip_address(destination)
    except ValueError:
        return None
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.connect((str(address), port))
            return str(sock.getsockname()[0])
    except OSError:
        return None


def pod_name(environ: Mapping[str, str]) -> str | None:
    """The pod's name: POD_NAME when the downward API sets it, else the host name inside Kubernetes."""
    if environ.get("POD_NAME"):
        return environ["POD_NAME"][:MAX_NAME]
    if environ.get("KUBERNETES_SERVICE_HOST"):
        return socket.gethostname()[:MAX_NAME]
    return None


def origin_of(report: Report, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    environ = os.environ if environ is None else environ
    origin: dict[str, Any] = {"tool": f"smtp-diag {__version__}", "hostname": socket.gethostname()[:MAX_NAME]}
    connected = next((s.facts.get("connected_address") for s in report.stages if s.name == "connect"), None)
    port = report.config.get("port")
    if isinstance(connected, str) and isinstance(port, int):
        origin["source_address"] = source_address(connected, port)
    pod = pod_name(environ)
    if pod:
        origin["pod"] = pod
        if environ.get("POD_NAMESPACE"):
            origin["namespace"] = environ["POD_NAMESPACE"][:MAX_NAME]
    return origin


def with_origin(report: Report, environ: Mapping[str, str] | None = None) -> Report:
    return replace(report, origin=origin_of(report, environ))
