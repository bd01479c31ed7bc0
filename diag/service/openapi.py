"""The OpenAPI 3.1 document, written by hand so the request schema says exactly what parse_config accepts.

tests/service/test_openapi.py checks it against diag.config (every field, no extra) so the two cannot drift.
"""

from __future__ import annotations

from typing import Any, Final

from diag.config import DEFAULT_TIMEOUT_S, MAX_CA_BUNDLE_LENGTH, MAX_FIELD_LENGTH, MAX_TIMEOUT_S, TlsMode
from diag.report import STAGE_NAMES

# No CR, LF or NUL anywhere (SMTP command injection): parse_config rejects them with a 422.
SAFE_TEXT: Final = "^[^\\r\\n\\u0000]*$"


def _text(description: str, *, required: bool = False) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "string",
        "maxLength": MAX_FIELD_LENGTH,
        "pattern": SAFE_TEXT,
        "description": description,
    }
    if required:
        # Blank counts as missing; a value of spaces only is reported by the config stage, not rejected.
        schema["minLength"] = 1
        schema["pattern"] = "^[^\\r\\n\\u0000]*[^\\s\\u0000][^\\r\\n\\u0000]*$"
    return schema


CONFIG_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["host", "port", "from_email"],
    "properties": {
        "host": _text("Outgoing server: a host name or IP address, without a port.", required=True),
        "port": {
            "description": "Outgoing port (a whole number; a string of digits is accepted too).",
            "oneOf": [
                {"type": "integer", "minimum": 1, "maximum": 65535},
                {"type": "string", "pattern": "^[0-9]{1,5}$"},
            ],
        },
        "from_email": _text("The From address the application sends as.", required=True),
        "username": {**_text("SMTP username; leave out for anonymous SMTP."), "type": ["string", "null"]},
        "password": {
            **_text("SMTP password; never stored, logged or returned."),
            "type": ["string", "null"],
            "writeOnly": True,
        },
        "insecure_skip_tls_verify": {
            "type": ["boolean", "null"],
            "default": False,
            "description": "Report certificate problems as warnings instead of failures.",
        },
        "tls_mode": {
            "type": ["string", "null"],
            "enum": [m.value for m in TlsMode] + [None],
            "default": TlsMode.AUTO.value,
            "description": "auto: implicit TLS on 465, STARTTLS elsewhere.",
        },
        "ca_bundle": {
            "type": ["string", "null"],
            "maxLength": MAX_CA_BUNDLE_LENGTH,
            "allOf": [{"pattern": "-----BEGIN CERTIFICATE-----"}, {"pattern": "^[^\\u0000]*$"}],
            "description": "PEM certificates to trust for this server (a private CA or a self-signed one).",
        },
        "timeout_s": {
            "type": ["number", "null"],
            "minimum": 0.1,
            "maximum": MAX_TIMEOUT_S,
            "default": DEFAULT_TIMEOUT_S,
            "description": "Timeout of each network step, in seconds.",
        },
        "dns_servers": {
            "type": ["array", "null"],
            "maxItems": 8,
            "items": {"type": "string", "anyOf": [{"format": "ipv4"}, {"format": "ipv6"}]},
            "description": "Resolvers to ask instead of the system's (addresses as strings); each is vetted by "
            "the egress policy, and the field is refused unless the operator allows it (DIAG_ALLOW_CUSTOM_DNS).",
        },
        "recipient": {**_text("A test recipient for RCPT TO."), "type": ["string", "null"]},
        "send_test_message": {
            "type": ["boolean", "null"],
            "default": False,
            "description": "Send a real test message (fixed text) to the recipient; refused unless the operator "
            "allows it (DIAG_ALLOW_SEND).",
        },
        "helo_name": {
            **_text("The name to greet with in EHLO; refused unless the operator allows it (DIAG_ALLOW_CUSTOM_HELO)."),
            "type": ["string", "null"],
        },
    },
    "if": {"properties": {"send_test_message": {"const": True}}, "required": ["send_test_message"]},
    "then": {"required": ["recipient"], "properties": {"recipient": {"type": "string", "minLength": 1}}},
}

FINDING: Final = {
    "type": ["object", "null"],
    "required": ["code", "cause", "fix"],
    "properties": {"code": {"type": "string"}, "cause": {"type": "string"}, "fix": {"type": "string"}},
}
STAGE_RESULT: Final = {
    "type": "object",
    "required": ["name", "status", "duration_ms", "summary", "facts", "finding", "additional_findings", "transcript"],
    "properties": {
        "name": {"type": "string", "enum": list(STAGE_NAMES)},
        "status": {"type": "string", "enum": ["passed", "warning", "failed", "skipped"]},
        "duration_ms": {"type": "number"},
        "summary": {"type": "string"},
        "facts": {"type": "object"},
        "finding": {"$ref": "#/components/schemas/Finding"},
        "additional_findings": {
            "type": "array",
            "description": "Further warnings of the same stage, after `finding` (e.g. anonymous SMTP and "
            "Insecure Skip TLS Verify together).",
            "items": {"$ref": "#/components/schemas/Finding"},
        },
        "transcript": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["t_ms", "dir", "text"],
                "properties": {
                    "t_ms": {"type": "number"},
                    "dir": {"type": "string", "enum": ["C", "S", "*"]},
                    "text": {"type": "string"},
                },
            },
        },
    },
}
REPORT: Final = {
    "type": "object",
    "required": ["id", "verdict", "started_at", "duration_ms", "config", "stages"],
    "properties": {
        "id": {"type": "string"},
        "verdict": {"type": "string", "enum": ["valid", "invalid"]},
        "started_at": {"type": "string", "format": "date-time"},
        "duration_ms": {"type": "number"},
        "config": {"type": "object", "description": "The config as given, with password_set instead of it."},
        "stages": {"type": "array", "items": {"$ref": "#/components/schemas/StageResult"}},
        "transcript_lines_dropped": {
            "type": "integer",
            "minimum": 0,
            "description": "Transcript lines not recorded because the run's transcript was full (400 lines).",
        },
    },
}
SUMMARY: Final = {
    "type": "object",
    "required": ["id", "started_at", "host", "port", "verdict", "failed_stage", "finding_code", "duration_ms"],
    "properties": {
        "id": {"type": "string"},
        "started_at": {"type": "string"},
        "host": {"type": "string"},
        "port": {"type": "integer"},
        "verdict": {"type": "string", "enum": ["valid", "invalid"]},
        "failed_stage": {"type": ["string", "null"]},
        "finding_code": {"type": ["string", "null"]},
        "duration_ms": {"type": "number"},
    },
}
ERROR: Final = {
    "type": "object",
    "required": ["error", "message"],
    "properties": {"error": {"type": "string"}, "message": {"type": "string"}},
}
FIELD_ERRORS: Final = {
    "type": "object",
    "required": ["errors"],
    "properties": {
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["field", "message"],
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        }
    },
}


def _json(ref: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}


def _error(description: str, *, retry_after: bool = False) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description, "content": _json("Error")}
    if retry_after:
        response["headers"] = {
            "Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer", "minimum": 1}}
        }
    return response


UNAUTHORIZED: Final = _error("A token is configured and the request did not present it.")
FIELD_ERROR_RESPONSE: Final = {"description": "Invalid parameters, each named.", "content": _json("FieldErrors")}


def openapi_document(token_required: bool) -> dict[str, Any]:
    security: list[dict[str, list[str]]] = [{"bearer": []}] if token_required else []
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "smtp-diag",
            "version": "0.1.0",
            "description": "Staged SMTP configuration diagnostics: why a configuration fails, and the fix.",
        },
        "security": security,
        "paths": {
            "/api/diagnostics": {
                "post": {
                    "operationId": "createDiagnostic",
                    "summary": "Diagnose an SMTP configuration (JSON report, or live events with "
                    "Accept: text/event-stream).",
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SmtpConfig"}}},
                    },
                    "responses": {
                        "201": {
                            "description": "The run's report (stored). With Accept: text/event-stream, events "
                            "stage_started, stage_finished and run_finished.",
                            "headers": {
                                "Location": {"description": "The stored report.", "schema": {"type": "string"}}
                            },
                            "content": {**_json("Report"), "text/event-stream": {"schema": {"type": "string"}}},
                        },
                        "400": _error("The body is not a JSON object."),
                        "401": UNAUTHORIZED,
                        "413": _error("The body is larger than the limit (64 KiB)."),
                        "415": _error("The body is not application/json."),
                        "422": FIELD_ERROR_RESPONSE,
                        "429": _error("Rate limit for this client, this target server or this recipient domain; or "
                                      "this client has too many runs in flight.", retry_after=True),
                        "503": _error("Too many runs in flight.", retry_after=True),
                    },
                },
                "get": {
                    "operationId": "listDiagnostics",
                    "summary": "Stored reports, newest first.",
                    "parameters": [
                        {"name": "host", "in": "query", "schema": {"type": "string", "maxLength": 1024}},
                        {"name": "verdict", "in": "query", "schema": {"type": "string", "enum": ["valid", "invalid"]}},
                        {
                            "name": "limit",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 50},
                        },
                    ],
                    "responses": {
                        "200": {
                            "description": "Summaries.",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "required": ["items"],
                                        "properties": {
                                            "items": {
                                                "type": "array",
                                                "items": {"$ref": "#/components/schemas/ReportSummary"},
                                            }
                                        },
                                    }
                                }
                            },
                        },
                        "401": UNAUTHORIZED,
                        "422": FIELD_ERROR_RESPONSE,
                    },
                },
            },
            "/api/diagnostics/{report_id}": {
                "get": {
                    "operationId": "getDiagnostic",
                    "summary": "A stored report, as JSON or as Markdown for a ticket.",
                    "parameters": [
                        {"name": "report_id", "in": "path", "required": True, "schema": {"type": "string"}},
                        {"name": "format", "in": "query", "schema": {"type": "string", "enum": ["json", "markdown"]}},
                    ],
                    "responses": {
                        "200": {
                            "description": "The report.",
                            "content": {**_json("Report"), "text/markdown": {"schema": {"type": "string"}}},
                        },
                        "401": UNAUTHORIZED,
                        "404": _error("No such report (or it expired)."),
                        "422": FIELD_ERROR_RESPONSE,
                    },
                }
            },
            "/healthz": {
                "get": {
                    "operationId": "health",
                    "security": [],
                    "responses": {"200": {"description": "The process is up."}},
                }
            },
            "/readyz": {
                "get": {
                    "operationId": "ready",
                    "security": [],
                    "responses": {
                        "200": {"description": "The store answers."},
                        "503": {"description": "The store does not answer."},
                    },
                }
            },
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "SmtpConfig": CONFIG_SCHEMA,
                "Report": REPORT,
                "StageResult": STAGE_RESULT,
                "Finding": FINDING,
                "ReportSummary": SUMMARY,
                "Error": ERROR,
                "FieldErrors": FIELD_ERRORS,
            },
        },
    }
