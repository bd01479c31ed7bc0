"""`smtp-diag explain`: lines from arguments or stdin, text and --json output, exit codes, usage errors.

In-process through `main(argv, ...)`: explaining a line touches no network and no peer exists for it.
"""

from __future__ import annotations

import io
import json

import pytest

from diag.cli import main
from diag.explain import MAX_TEXT_CHARS

PASTED = (
    "2026-12-04T10:00:01Z ERROR dial tcp 10.0.0.5:587: i/o timeout\n"
    "\n"
    '{"level":"error","error":"tls: first record does not look like a TLS handshake"}\n'
    "reconciling cluster profile\n"
)


def run(argv: list[str], stdin: str = "") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(argv, stdin=io.StringIO(stdin), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_json_is_an_array_with_one_object_per_non_blank_line_in_the_issues_shape() -> None:
    code, out, _ = run(["explain", "--json"], PASTED)
    answers = json.loads(out)
    assert code == 0
    assert [a["code"] for a in answers] == ["connect.timeout", "tls.not_tls", None]
    for answer in answers:
        assert set(answer) == {"line", "stage", "code", "cause", "fix", "facts", "inferences", "confirm"}
    assert answers[0]["stage"] == "connect" and answers[0]["facts"] == {"address": "10.0.0.5", "port": 587}
    assert answers[0]["confirm"]["command"] == "smtp-diag check --host 10.0.0.5 --port 587 --from-email FROM"
    assert answers[2]["stage"] is None and answers[2]["fix"] is None


def test_an_argument_is_a_line_and_exit_1_when_nothing_was_recognised() -> None:
    code, out, _ = run(["explain", "--json", "hello world", "panic: oops"])
    assert code == 1
    assert [a["line"] for a in json.loads(out)] == ["hello world", "panic: oops"]


def test_text_output_names_stage_finding_facts_inferences_and_the_command() -> None:
    code, out, _ = run(["explain", "failed to ping email server: unencrypted connection"])
    assert code == 0
    assert "stage: tls   finding: tls.starttls_not_offered" in out
    assert "product=Harbor" in out
    assert "password never left" in out
    assert "confirm with: smtp-diag check --host HOST --port PORT --from-email FROM --username USERNAME" in out


def test_an_unknown_line_says_so_in_text() -> None:
    code, out, _ = run(["explain", "all good"])
    assert code == 1 and "does not recognise this line" in out and "finding:" not in out


def test_a_pasted_password_never_reaches_the_output() -> None:
    line = 'msg="send" password="pw-41c-Planted" error="535 5.7.8 Error: authentication failed"'
    for argv in (["explain", line], ["explain", "--json", line]):
        code, out, err = run(argv)
        assert code == 0 and "pw-41c-Planted" not in out + err


def test_control_characters_in_a_line_do_not_reach_the_terminal() -> None:
    _, out, _ = run(["explain", "EOF\x1b]0;owned\x07"])
    assert "\x1b" not in out and "\x07" not in out


@pytest.mark.parametrize(("argv", "stdin", "message"), [
    (["explain"], "", "stdin: contains no log line"),
    (["explain"], "x" * (MAX_TEXT_CHARS + 10), "stdin: must be at most"),
    (["explain", "  "], "", "LINE: contains no log line"),
    (["explain", "--profile", "nope", "EOF"], "", "--profile: must be one of"),
])
def test_unusable_input_is_a_usage_error(argv: list[str], stdin: str, message: str) -> None:
    code, out, err = run(argv, stdin)
    assert code == 2 and out == "" and message in err
