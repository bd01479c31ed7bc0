"""Captured messages: the bounded in-memory store, the Maildir copy, the HTTP inbox API."""

import mailbox
import smtplib
import socket
import threading
from pathlib import Path

import httpx
import pytest

from fake_smtp import FakeSMTP, Mailbox
from tests.fake_smtp.clients import make_message


def send(srv: FakeSMTP, subject: str) -> None:
    with smtplib.SMTP(srv.host, srv.port, timeout=5) as smtp:
        smtp.send_message(make_message(subject=subject))


def test_oldest_messages_are_dropped_past_the_limit() -> None:
    with FakeSMTP(max_messages=3) as srv:
        for index in range(5):
            send(srv, f"n{index}")
        assert [m.subject for m in srv.messages] == ["n2", "n3", "n4"]
        assert [m.id for m in srv.messages] == [3, 4, 5]


def test_mailbox_is_thread_safe_and_wait_for_wakes_up() -> None:
    box = Mailbox(max_messages=1000)
    waiter_result: list[int] = []
    waiter = threading.Thread(target=lambda: waiter_result.append(len(box.wait_for(400, timeout=10))))
    waiter.start()

    def add_many() -> None:
        for _ in range(100):
            box.add(mail_from="a@x.test", rcpt_tos=["b@x.test"], raw=b"x", auth_user=None, tls=False, peer="p")

    writers = [threading.Thread(target=add_many) for _ in range(4)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    waiter.join()
    assert waiter_result == [400]
    assert sorted(m.id for m in box.snapshot()) == list(range(1, 401))
    with pytest.raises(TimeoutError):
        box.wait_for(401, timeout=0.05)


def test_messages_are_written_to_a_maildir(tmp_path: Path) -> None:
    with FakeSMTP(maildir=tmp_path / "inbox") as srv:
        send(srv, "to disk")
        send(srv, "again")
    stored = mailbox.Maildir(tmp_path / "inbox", create=False)
    assert sorted(str(message["subject"]) for message in stored) == ["again", "to disk"]


def test_inbox_http_api() -> None:
    with FakeSMTP(http_port=0) as srv:
        assert srv.http_url is not None
        send(srv, "first")
        send(srv, "second")
        with httpx.Client(base_url=srv.http_url, timeout=5) as http:
            listed = http.get("/messages").json()
            assert [m["subject"] for m in listed] == ["first", "second"]
            assert listed[0]["mail_from"] == "sender@example.test"
            assert listed[0]["rcpt_tos"] == ["rcpt@example.test"]
            one = http.get(f"/messages/{listed[1]['id']}").json()
            assert "Subject: second" in one["raw"]
            raw = http.get(f"/messages/{listed[1]['id']}/raw")
            assert raw.headers["content-type"].startswith("message/rfc822")
            assert b"Subject: second" in raw.content
            assert http.get("/messages/999").status_code == 404
            assert http.delete("/messages").json() == {"deleted": 2}
            assert http.get("/messages").json() == []
        assert srv.messages == []


def test_oldest_messages_are_dropped_past_the_byte_bound_and_counted() -> None:
    with FakeSMTP(http_port=0, max_size=4096, max_inbox_bytes=10_000) as srv:
        assert srv.http_url is not None
        for index in range(5):
            send(srv, f"big{index} " + "x" * 3000)
        size = srv.messages[-1].size
        assert 3000 < size <= 4096 and all(m.size == size for m in srv.messages)
        kept = 10_000 // size  # 3 of the 5
        assert [m.subject[:4] for m in srv.messages if m.subject] == [f"big{i}" for i in range(5 - kept, 5)]
        with httpx.Client(base_url=srv.http_url, timeout=5) as http:
            listed = http.get("/messages")
            # The plain list stays what clients read; the counts ride along in headers.
            assert [m["id"] for m in listed.json()] == list(range(6 - kept, 6))
            assert listed.headers["x-inbox-dropped"] == str(5 - kept)
            assert listed.headers["x-inbox-bytes"] == str(kept * size)
            assert listed.headers["x-inbox-max-bytes"] == "10000"
            meta = http.get("/messages", params={"meta": "1"}).json()
            assert [m["id"] for m in meta["messages"]] == list(range(6 - kept, 6))
            assert meta["dropped"] == 5 - kept and meta["dropped_bytes"] == (5 - kept) * size
            assert meta["bytes"] == kept * size and meta["max_bytes"] == 10_000
            # Deleting on request empties the inbox but is not a drop.
            assert http.delete("/messages").json() == {"deleted": kept}
            meta = http.get("/messages", params={"meta": "1"}).json()
            assert meta["messages"] == [] and meta["bytes"] == 0 and meta["dropped"] == 5 - kept


def test_drops_by_count_are_counted_too() -> None:
    box = Mailbox(max_messages=2, max_bytes=1000)
    for _ in range(5):
        box.add(mail_from="a@x.test", rcpt_tos=["b@x.test"], raw=b"12345", auth_user=None, tls=False, peer="p")
    stats = box.stats()
    assert (stats.held, stats.bytes, stats.dropped, stats.dropped_bytes) == (2, 10, 3, 15)


def test_a_message_larger_than_the_whole_bound_is_dropped_at_once() -> None:
    box = Mailbox(max_bytes=10)
    box.add(mail_from="a@x.test", rcpt_tos=["b@x.test"], raw=b"123", auth_user=None, tls=False, peer="p")
    box.add(mail_from="a@x.test", rcpt_tos=["b@x.test"], raw=b"x" * 11, auth_user=None, tls=False, peer="p")
    assert [m.raw for m in box.snapshot()] == [b"123"]  # kept: dropping it would not have made room
    stats = box.stats()
    assert (stats.held, stats.bytes, stats.dropped, stats.dropped_bytes) == (1, 3, 1, 11)


def test_the_byte_bound_cannot_be_smaller_than_one_message() -> None:
    with pytest.raises(ValueError, match=r"max_inbox_bytes \(1000\) must be at least max_size \(4096\)"):
        FakeSMTP(max_size=4096, max_inbox_bytes=1000)


def test_one_message_comes_with_its_headers_text_and_html() -> None:
    from email.message import EmailMessage

    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "a@example.test", "b@example.test", "parts"
    message.set_content("the text\n")
    message.add_alternative("<p>the html</p>\n", subtype="html")
    with FakeSMTP(http_port=0) as srv:
        with smtplib.SMTP(srv.host, srv.port, timeout=5) as smtp:
            smtp.send_message(message)
        body = httpx.get(f"{srv.http_url}/messages/1", timeout=5).json()
    assert (body["text"], body["html"], body["truncated"]) == ("the text\r\n", "<p>the html</p>\r\n", False)
    assert ["Subject", "parts"] in body["headers"]
    assert body["raw"].startswith("From: a@example.test")


def test_inbox_peer_is_host_and_port_fields_and_every_error_is_json() -> None:
    with FakeSMTP(http_port=0) as srv:
        assert srv.http_url is not None
        send(srv, "first")
        [message] = srv.messages
        assert isinstance(message.rcpt_tos, list)
        with httpx.Client(base_url=srv.http_url, timeout=5) as http:
            [listed] = http.get("/messages").json()
            assert listed["peer"]["host"] == "127.0.0.1"
            assert isinstance(listed["peer"]["port"], int) and listed["peer"]["port"] > 0
            for response in (http.get("/nothing-here"), http.get("/messages/abc"), http.put("/messages")):
                assert response.status_code in (404, 405)
                assert response.headers["content-type"] == "application/json"
                assert "error" in response.json()


def test_a_port_in_use_is_named_in_the_error() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=f"smtp port {port} on 127.0.0.1: already in use"):
            FakeSMTP(port=port).start()
        # The inbox's own socket said only "[Errno 98] Address already in use", naming no port at all.
        with pytest.raises(OSError, match=f"http port {port} on 127.0.0.1: already in use"):
            FakeSMTP(http_port=port).start()
