"""A small authoritative DNS server for tests: a real peer on 127.0.0.1 (UDP and TCP, one ephemeral port).

    zone = {"smtp.test.": {"A": ["127.0.0.1"], "AAAA": ["::1"]},
            "maildomain.test.": {"MX": ["10 mx.maildomain.test."]}}
    with DnsResponder(zone, servfail={"broken.test."}, drop={"slow.test."}) as dns:
        ...  # query dns.address on dns.port, or point_dns_stage_at(dns, monkeypatch) for the dns stage

Unknown names get NXDOMAIN, a known name without the asked type an empty NOERROR answer, names in
`servfail` SERVFAIL, names in `refused` REFUSED, and names in `drop` no answer at all (to produce
timeouts). An entry "name TYPE" (e.g. "half.test. AAAA") applies to that record type only. A "CNAME"
entry is followed one step when its target is in the zone. Every question received is recorded
in `queries` as (name, type, transport) so tests can check what the client asked.
"""

from __future__ import annotations

import socket
import socketserver
import struct
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

Zone = Mapping[str, Mapping[str, Iterable[str]]]

TTL = 60
MAX_TCP_MESSAGE = 65535


def _name(text: str) -> dns.name.Name:
    return dns.name.from_text(text)  # relative text is made absolute against the root


class DnsResponder:
    def __init__(
        self,
        zone: Zone,
        *,
        servfail: Iterable[str] = (),
        refused: Iterable[str] = (),
        drop: Iterable[str] = (),
        address: str = "127.0.0.1",
    ) -> None:
        self.zone: dict[dns.name.Name, dict[str, list[str]]] = {
            _name(name): {rdtype.upper(): list(values) for rdtype, values in records.items()}
            for name, records in zone.items()
        }
        self.servfail = _rules(servfail)
        self.refused = _rules(refused)
        self.drop = _rules(drop)
        self.address = address
        self.port = 0
        self.queries: list[tuple[str, str, str]] = []
        self._lock = threading.Lock()
        self._servers: list[socketserver.BaseServer] = []
        self._threads: list[threading.Thread] = []

    # -- answering -------------------------------------------------------------------------------

    def answer(self, wire: bytes, transport: str) -> bytes | None:
        """The response to one query in wire format, or None to stay silent."""
        try:
            query = dns.message.from_wire(wire)
        except Exception:
            return None  # not DNS: a real server would drop it too
        if not query.question:
            return None
        question = query.question[0]
        qname, qtype = question.name, question.rdtype
        with self._lock:
            self.queries.append((qname.to_text(), dns.rdatatype.to_text(qtype), transport))
        rule_keys = {(qname, None), (qname, dns.rdatatype.to_text(qtype))}
        if rule_keys & self.drop:
            return None
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        if rule_keys & self.servfail:
            response.set_rcode(dns.rcode.SERVFAIL)
        elif rule_keys & self.refused:
            response.set_rcode(dns.rcode.REFUSED)
        elif qname not in self.zone:
            response.set_rcode(dns.rcode.NXDOMAIN)
        else:
            self._fill(response, qname, dns.rdatatype.to_text(qtype))
        # Records go out in zone order (dnspython shuffles by default), so tests can check order is kept.
        return response.to_wire(want_shuffle=False)

    def _fill(self, response: dns.message.Message, qname: dns.name.Name, qtype: str) -> None:
        records = self.zone[qname]
        if qtype in records:
            response.answer.append(dns.rrset.from_text_list(qname, TTL, "IN", qtype, records[qtype]))
            return
        if "CNAME" in records:
            target_text = records["CNAME"][0]
            response.answer.append(dns.rrset.from_text_list(qname, TTL, "IN", "CNAME", [target_text]))
            target = _name(target_text)
            values = self.zone.get(target, {}).get(qtype)
            if values:
                response.answer.append(dns.rrset.from_text_list(target, TTL, "IN", qtype, values))

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> DnsResponder:
        responder = self

        class UdpHandler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                data, sock = self.request
                reply = responder.answer(data, "udp")
                if reply is not None:
                    sock.sendto(reply, self.client_address)

        class TcpHandler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                conn: socket.socket = self.request
                conn.settimeout(5.0)  # bounded: a stuck client must not hold the thread
                try:
                    while True:
                        header = _recv_exactly(conn, 2)
                        if header is None:
                            return
                        (length,) = struct.unpack("!H", header)
                        wire = _recv_exactly(conn, length)
                        if wire is None:
                            return
                        reply = responder.answer(wire, "tcp")
                        if reply is None:
                            continue
                        conn.sendall(struct.pack("!H", len(reply)) + reply)
                except OSError:
                    return

        udp = socketserver.ThreadingUDPServer((self.address, 0), UdpHandler)
        udp.daemon_threads = True
        self.port = udp.server_address[1]
        self._servers.append(udp)
        tcp: socketserver.ThreadingTCPServer | None = None
        try:
            tcp = socketserver.ThreadingTCPServer(
                (self.address, self.port), TcpHandler, bind_and_activate=False
            )
            tcp.daemon_threads = True
            tcp.server_bind()
            tcp.server_activate()
            self._servers.append(tcp)
        except OSError:
            if tcp is not None:
                tcp.server_close()  # the port is taken for TCP: UDP alone serves every test here
        for server in self._servers:
            thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
            )
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._servers.clear()
        self._threads.clear()

    def __enter__(self) -> DnsResponder:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def asked(self, name: str) -> list[str]:
        """The record types asked for `name`, in arrival order."""
        wanted = _name(name).to_text()
        with self._lock:
            return [qtype for qname, qtype, _ in self.queries if qname == wanted]


def point_dns_stage_at(
    responder: DnsResponder, monkeypatch: pytest.MonkeyPatch, system_dir: Path | None = None
) -> None:
    """Make the runs' resolvers (diag.resolver, built from the environment) ask `responder`: for configs with
    dns_servers=("127.0.0.1",), and, when `system_dir` is given, also for configs without dns_servers (a
    resolv.conf written there)."""
    from diag import resolver

    monkeypatch.setenv(resolver.DNS_PORT_ENV, str(responder.port))
    if system_dir is not None:
        resolv_conf = system_dir / "resolv.conf"
        resolv_conf.write_text(f"nameserver {responder.address}\n")
        monkeypatch.setenv(resolver.RESOLV_CONF_ENV, str(resolv_conf))


def _rules(entries: Iterable[str]) -> set[tuple[dns.name.Name, str | None]]:
    """ "name" applies to every type, "name TYPE" to that type only."""
    rules: set[tuple[dns.name.Name, str | None]] = set()
    for entry in entries:
        name, _, rdtype = entry.strip().partition(" ")
        rules.add((_name(name), rdtype.strip().upper() or None))
    return rules


def _recv_exactly(conn: socket.socket, size: int) -> bytes | None:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = conn.recv(size - len(chunks))
        if not chunk:
            return None
        chunks += chunk
    return bytes(chunks)
