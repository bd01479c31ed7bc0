"""Placeholder: being written."""

from __future__ import annotations

from diag.config import SmtpConfig
from diag.report import Finding


def finding_for(
    stage: str, kind: str, config: SmtpConfig, reply_code: int | None = None, server_text: str | None = None
) -> Finding:
    code = kind if "." in kind else f"{stage}.{kind}"
    return Finding(code, "unknown", "unknown")
