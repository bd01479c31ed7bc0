"""Fault rules: the CLI text form, validation, and counting with times=N."""

import pytest

from fake_smtp import Fault, FaultPlan, parse_fault


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("greeting=reply:554", Fault("greeting", "reply", code=554)),
        ("auth=reply:534:5.7.9 Application-specific password required",
         Fault("auth", "reply", code=534, text="5.7.9 Application-specific password required")),
        ("mail_from=delay:2", Fault("mail_from", "delay", seconds=2.0)),
        ("ehlo=disconnect", Fault("ehlo", "disconnect")),
        ("data=stall", Fault("data", "stall")),
        ("ehlo=no-starttls", Fault("ehlo", "no-starttls")),
        ("ehlo=no-auth", Fault("ehlo", "no-auth")),
        ("rcpt_to#2=reply:451:4.7.1 Greylisted: try again", Fault("rcpt_to", "reply", code=451,
                                                             text="4.7.1 Greylisted: try again", times=2)),
        ("end_of_data=reply:554", Fault("end_of_data", "reply", code=554)),
    ],
)
def test_parse_fault(text: str, expected: Fault) -> None:
    assert parse_fault(text) == expected
    assert parse_fault(str(expected)) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("auth", "expected STEP=ACTION"),
        ("=reply:535", "expected STEP=ACTION"),
        ("login=reply:535", "unknown step 'login'"),
        ("auth=explode", "unknown fault action 'explode'"),
        ("auth=reply", "3-digit code"),
        ("auth=reply:53", "3-digit code"),
        ("auth=reply:700", "200-599"),
        ("greeting=reply:250", "4xx or 5xx"),
        ("mail_from=delay:soon", "delay needs seconds"),
        ("mail_from=delay:-1", ">= 0"),
        ("mail_from=delay:nan", "finite"),
        ("auth=no-auth", "applies to step 'ehlo' only"),
        ("ehlo=stall:3", "takes no argument"),
        ("auth#x=reply:535", "whole number"),
        ("auth#0=reply:535", "times must be >= 1"),
    ],
)
def test_bad_fault_text_raises_a_clear_value_error(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason) as caught:
        parse_fault(text)
    assert repr(text) in str(caught.value)


def test_reply_text_is_realistic_with_an_enhanced_status_code() -> None:
    assert parse_fault("auth=reply:535").reply_line() == "535 5.7.8 Error: authentication failed"
    assert parse_fault("greeting=reply:421").reply_line().startswith("421 4.3.2 ")
    assert parse_fault("rcpt_to=reply:550").reply_line().startswith("550 5.1.1 ")
    assert parse_fault("mail_from=reply:599").reply_line() == "599 5.0.0 Permanent failure"
    assert parse_fault("auth=reply:534:custom words").reply_line() == "534 custom words"


def test_reply_text_cannot_inject_a_line() -> None:
    with pytest.raises(ValueError, match="CR, LF"):
        Fault("auth", "reply", code=535, text="5.7.8 no\r\n250 ok")


def test_plan_counts_occurrences_against_times() -> None:
    plan = FaultPlan([parse_fault("mail_from#2=reply:451"), parse_fault("mail_from=delay:0")])
    taken = [[f.action for f in plan.take("mail_from")] for _ in range(3)]
    assert taken == [["reply", "delay"], ["reply", "delay"], ["delay"]]
    assert plan.take("rcpt_to") == []


def test_plan_rejects_non_fault_items() -> None:
    with pytest.raises(TypeError, match="expected Fault"):
        FaultPlan(["auth=reply:535"])  # type: ignore[list-item]
