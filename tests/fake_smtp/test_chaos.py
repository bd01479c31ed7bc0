"""Repeatable chaos: faults with a probability and ranged delays drawn from a seed, replayed exactly, and
switched while running through the HTTP API (GET/PUT /chaos)."""

from __future__ import annotations

import smtplib
from collections.abc import Callable

import httpx
import pytest

from fake_smtp import FakeSMTP, FaultPlan, parse_fault
from tests.fake_smtp.clients import make_message

Factory = Callable[..., FakeSMTP]


def outcomes(srv: FakeSMTP, count: int) -> list[int]:
    """The MAIL FROM reply code of `count` sessions, one after the other."""
    codes = []
    for _ in range(count):
        with smtplib.SMTP(srv.host, srv.port, timeout=5) as smtp:
            smtp.ehlo()
            codes.append(smtp.mail("a@example.test")[0])
    return codes


def test_a_seed_replays_the_same_failures_over_real_sessions(fake_smtp_factory: Factory) -> None:
    rule = [parse_fault("mail_from@0.5=reply:451")]
    first = outcomes(fake_smtp_factory(faults=rule, seed=7), 16)
    again = outcomes(fake_smtp_factory(faults=rule, seed=7), 16)
    other = outcomes(fake_smtp_factory(faults=rule, seed=8), 16)
    assert first == again
    assert set(first) == {250, 451}  # chance, not always or never
    assert other != first


def test_without_a_seed_one_is_chosen_and_replays(fake_smtp_factory: Factory) -> None:
    rule = [parse_fault("mail_from@0.5=reply:451")]
    srv = fake_smtp_factory(faults=rule)
    first = outcomes(srv, 12)
    assert outcomes(fake_smtp_factory(faults=rule, seed=srv.seed), 12) == first


def test_a_miss_does_not_use_up_times_and_ranged_delays_stay_in_range() -> None:
    plan = FaultPlan([parse_fault("rcpt_to#2@0.5=reply:451"), parse_fault("data=delay:0.1-0.3")], seed=3)
    fired = [bool(plan.take("rcpt_to")) for _ in range(40)]
    hits = [index for index, hit in enumerate(fired) if hit]
    assert len(hits) == 2 and hits[1] > 1  # a miss came before the second hit and did not use it up
    delays = [plan.take("data")[0].seconds for _ in range(50)]
    assert all(d is not None and 0.1 <= d <= 0.3 for d in delays)
    assert len(set(delays)) > 1


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("mail_from@=reply:451", "must be a number"),
        ("mail_from@0=reply:451", "probability must be > 0"),
        ("mail_from@1.5=reply:451", "probability must be > 0"),
        ("data=delay:0.5-0.1", "delay range must go up"),
        ("data=delay:0.1-x", "delay needs seconds or MIN-MAX"),
    ],
)
def test_bad_chaos_text(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_fault(text)


def test_text_form_round_trips() -> None:
    for text in ("mail_from#2@0.25=reply:451:4.7.1 Try later", "data@0.5=delay:0.1-0.5", "ehlo@1=disconnect"):
        assert str(parse_fault(text)) == text


def test_the_http_api_lists_and_switches_chaos_while_running(fake_smtp_factory: Factory) -> None:
    srv = fake_smtp_factory(http_port=0, faults=[parse_fault("data=delay:0.01")], seed=5,
                            address_rules=["rcpt:*@bounce.test=550 5.1.1"])
    with httpx.Client(base_url=str(srv.http_url), timeout=5) as http:
        assert http.get("/chaos").json() == {
            "seed": 5, "faults": ["data=delay:0.01"],
            "rules": ["rcpt:*@bounce.test=550 5.1.1 <{rcpt}>: Recipient address rejected"],
        }
        changed = http.put("/chaos", json={"faults": ["mail_from=reply:421:4.7.0 Try again later"], "seed": 9,
                                           "rules": []})
        assert changed.status_code == 200
        assert changed.json() == {"seed": 9, "faults": ["mail_from=reply:421:4.7.0 Try again later"], "rules": []}
        assert outcomes(srv, 1) == [421]
        assert http.put("/chaos", json={"faults": []}).json()["faults"] == []
        assert outcomes(srv, 1) == [250]
        seed_only = http.put("/chaos", json={"seed": 11}).json()
        assert seed_only["seed"] == 11 and srv.seed == 11


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"faults": ["data=stall", "mail_from=reply:99"]}, 422, "faults[1]"),
        ({"rules": ["to:*=550"]}, 422, "rules[0]"),
        ({"faults": "data=stall"}, 422, "faults"),
        ({"seed": True}, 422, "seed"),
        ({"seed": -1}, 422, "seed"),
        ({"fault": []}, 422, "fault"),
        ([1, 2], 400, "body"),
    ],
)
def test_bad_input_gets_a_4xx_naming_the_field_and_changes_nothing(
    fake_smtp_factory: Factory, body: object, status: int, field: str
) -> None:
    srv = fake_smtp_factory(http_port=0, faults=[parse_fault("data=stall")], seed=1)
    with httpx.Client(base_url=str(srv.http_url), timeout=5) as http:
        answer = http.put("/chaos", json=body)
        assert (answer.status_code, answer.json()["field"]) == (status, field), answer.text
        assert http.get("/chaos").json()["faults"] == ["data=stall"] and srv.seed == 1


def test_not_json_and_too_large(fake_smtp_factory: Factory) -> None:
    srv = fake_smtp_factory(http_port=0)
    with httpx.Client(base_url=str(srv.http_url), timeout=5) as http:
        assert http.put("/chaos", content=b"{nope").status_code == 400
        big = http.put("/chaos", content=b'{"faults": [' + b'"data=stall",' * 6000 + b'"data=stall"]}')
        assert (big.status_code, big.json()["field"]) == (413, "body")


def test_the_chaos_switch_needs_the_inbox_token(fake_smtp_factory: Factory) -> None:
    srv = fake_smtp_factory(http_port=0, inbox_token="tok-123456")
    with httpx.Client(base_url=str(srv.http_url), timeout=5) as http:
        assert http.put("/chaos", json={"faults": ["greeting=reply:554"]}).status_code == 401
        assert srv.faults == []
        ok = http.put("/chaos", json={"faults": ["greeting=reply:554"]},
                      headers={"Authorization": "Bearer tok-123456"})
        assert ok.status_code == 200 and [str(f) for f in srv.faults] == ["greeting=reply:554"]


def test_a_message_still_goes_through_unchanged_rules(fake_smtp_factory: Factory) -> None:
    srv = fake_smtp_factory(faults=[parse_fault("mail_from@1=delay:0-0.01")], seed=2)
    with smtplib.SMTP(srv.host, srv.port, timeout=5) as smtp:
        smtp.send_message(make_message(subject="through"))
    assert [m.subject for m in srv.messages] == ["through"]
