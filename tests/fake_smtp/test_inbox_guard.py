"""The inbox API's guard over real HTTP: the bearer token (401), the Host header check (400) and the bound
on a request head (400)."""

import contextlib
import pickle
import smtplib
import socket
from collections.abc import Iterator

import httpx
import pytest

from fake_smtp import FakeSMTP
from fake_smtp.inbox_guard import InboxToken
from tests.fake_smtp.clients import make_message

TOKEN = "inbox-T0ken-unique-9c1e"


def send(srv: FakeSMTP, subject: str) -> None:
    with smtplib.SMTP(srv.host, srv.port, timeout=5) as smtp:
        smtp.send_message(make_message(subject=subject))


@pytest.fixture
def guarded() -> Iterator[FakeSMTP]:
    with FakeSMTP(http_port=0, inbox_token=TOKEN) as srv:
        send(srv, "secret reset link")
        yield srv


def inbox(srv: FakeSMTP) -> httpx.Client:
    assert srv.http_url is not None
    return httpx.Client(base_url=srv.http_url, timeout=5)


ROUTES = [("GET", "/messages"), ("GET", "/messages/1"), ("GET", "/messages/1/raw"), ("DELETE", "/messages")]


@pytest.mark.parametrize(("method", "path"), ROUTES)
@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-token", f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", f"Basic {TOKEN}", "Bearer", TOKEN],
)
def test_every_inbox_route_needs_the_token(
    guarded: FakeSMTP, method: str, path: str, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    with inbox(guarded) as http:
        answer = http.request(method, path, headers=headers)
    assert answer.status_code == 401
    assert answer.json()["field"] == "Authorization"
    assert answer.headers["www-authenticate"].startswith("Bearer")
    assert TOKEN not in answer.text
    assert len(guarded.messages) == 1  # DELETE without the token deleted nothing


def test_the_right_token_opens_every_route(guarded: FakeSMTP) -> None:
    with inbox(guarded) as http:
        http.headers["Authorization"] = f"Bearer {TOKEN}"
        assert [m["subject"] for m in http.get("/messages").json()] == ["secret reset link"]
        assert http.get("/messages/1").json()["subject"] == "secret reset link"
        assert b"secret reset link" in http.get("/messages/1/raw").content
        assert http.request("DELETE", "/messages", headers={"authorization": f"bearer  {TOKEN}"}).json() == {
            "deleted": 1
        }
    assert guarded.messages == []


def test_the_token_never_shows() -> None:
    token = InboxToken(TOKEN)
    assert TOKEN not in repr(token) + str(token)
    with pytest.raises(TypeError):
        pickle.dumps(token)
    with FakeSMTP(http_port=0, inbox_token=TOKEN) as srv:
        assert TOKEN not in repr(srv) + repr(vars(srv))
        assert srv.inbox_token_set


def test_a_bad_token_is_refused_without_quoting_it() -> None:
    with pytest.raises(ValueError, match="inbox_token") as raised:
        FakeSMTP(http_port=0, inbox_token=f"has a space {TOKEN}")
    assert TOKEN not in str(raised.value)
    with pytest.raises(ValueError, match="inbox_token"):
        FakeSMTP(http_port=0, inbox_token="")
    with pytest.raises(ValueError, match="needs http_port"):
        FakeSMTP(inbox_token=TOKEN)


@pytest.mark.parametrize(
    "host",
    [
        "evil.example",  # DNS rebinding: the attacker's name pointed at 127.0.0.1
        "evil.example:8025",
        "127.0.0.1.evil.example",
        "localhost.evil.example",
        "192.0.2.10",  # not a loopback address, and the server is bound to loopback
        "[2001:db8::1]:8025",
        "[::1",
        "::1",
        "localhost:http",
        "",
    ],
)
def test_a_loopback_inbox_refuses_other_host_headers(host: str) -> None:
    with FakeSMTP(http_port=0, inbox_token=TOKEN) as srv, inbox(srv) as http:
        # No token sent either: the Host check answers first, so the refusal names the Host.
        answer = http.get("/messages", headers={"Host": host})
    assert answer.status_code == 400
    assert answer.json()["field"] == "Host"


@pytest.mark.parametrize(
    "host", ["localhost", "LOCALHOST.", "localhost:{port}", "127.0.0.1:{port}", "127.9.9.9", "[::1]:{port}",
             "fake-smtp.test", "Fake-SMTP.test:{port}"],
)
def test_a_loopback_inbox_answers_loopback_and_listed_names(host: str) -> None:
    with FakeSMTP(http_port=0, inbox_allowed_hosts=["fake-smtp.test"]) as srv, inbox(srv) as http:
        answer = http.get("/messages", headers={"Host": host.format(port=srv.http_port)})
    assert answer.status_code == 200
    assert answer.json() == []


def test_a_request_without_a_host_header_is_refused() -> None:
    with FakeSMTP(http_port=0) as srv:
        assert srv.http_port is not None
        with socket.create_connection((srv.host, srv.http_port), timeout=5) as raw:
            raw.sendall(b"GET /messages HTTP/1.0\r\n\r\n")
            answer = b""
            while chunk := raw.recv(4096):
                answer += chunk
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert b'"field": "Host"' in answer


def test_a_bad_allowed_host_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="'bad host'"):
        FakeSMTP(http_port=0, inbox_allowed_hosts=["bad host"])


def test_an_unfinished_request_head_past_16_kib_is_refused_and_closed() -> None:
    """The inbox runs on h11, which bounds a request head that is still coming; httptools (installed for
    `smtp-diag serve`, and what uvicorn would pick by itself) holds it however long it grows."""
    with FakeSMTP(http_port=0) as srv:
        assert srv.http_port is not None
        with socket.create_connection(("127.0.0.1", srv.http_port), timeout=5) as sock:
            sock.sendall(b"GET /messages HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"b" * 20 * 1024)
            answer = b""
            with contextlib.suppress(ConnectionResetError):
                while chunk := sock.recv(4096):  # a hang would raise TimeoutError at 5 s
                    answer += chunk
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
