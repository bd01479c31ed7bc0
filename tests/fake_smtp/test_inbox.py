"""Captured messages: the bounded in-memory store, the Maildir copy, the HTTP inbox API."""

import mailbox
import smtplib
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
