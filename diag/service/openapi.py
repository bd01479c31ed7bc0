"""The OpenAPI 3.1 document. The request schema comes from the config field table (diag/config.py), the
same rows parse_config checks with, so the two cannot drift; the responses are written here, and
tests/service/test_api_schema.py validates real responses against them.
"""

from __future__ import annotations

from typing import Any, Final

from diag import __version__
from diag.config import CONFIG_FIELDS
from diag.explain import DEFAULT_PROFILE, MAX_LINES, MAX_TEXT_CHARS, PROFILES
from diag.report import STAGE_NAMES, VERDICTS, Status
from diag.service.api import LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX, MAX_HOST_FILTER_LENGTH


def config_schema() -> dict[str, Any]:
    """The request body, from the field table: exactly what parse_config accepts."""
    required = [f.name for f in CONFIG_FIELDS if f.required]
    schema: dict[str, Any] = {
        "type": "object",
        "additionalProperties": False,
        "required": required,
        "properties": {f.name: f.json_schema() for f in CONFIG_FIELDS},
    }
    needs = [f for f in CONFIG_FIELDS if f.needs is not None]
    if needs:
        schema["allOf"] = [
            {
                "if": {"properties": {f.name: {"const": True}}, "required": [f.name]},
                "then": {
                    "required": [f.needs.other],
                    "properties": {f.needs.other: {"type": "string", "minLength": 1}},
                },
            }
            for f in needs
            if f.needs is not None
        ]
    return schema


CONFIG_SCHEMA: Final = config_schema()

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
        "status": {"type": "string", "enum": [s.value for s in Status]},
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
        "product_log": {
            "type": "string",
            "description": "For a failure under a Go profile (palette, palette-vertex): the error text the "
            "product's client would log, with this run's host, address, port and reply filled in.",
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
STAGE_STARTED: Final = {
    "type": "object",
    "required": ["run_id", "name"],
    "properties": {"run_id": {"type": "string"}, "name": {"type": "string", "enum": list(STAGE_NAMES)}},
}
STAGE_FINISHED: Final = {
    "allOf": [
        {"$ref": "#/components/schemas/StageResult"},
        {"type": "object", "required": ["run_id"], "properties": {"run_id": {"type": "string"}}},
    ]
}
# The event stream's events (diag/report.py's event types) and the schema of each one's data.
EVENTS: Final = {"stage_started": "StageStarted", "stage_finished": "StageFinished", "run_finished": "Report"}
REPORT: Final = {
    "type": "object",
    "required": ["id", "verdict", "started_at", "duration_ms", "config", "stages"],
    "properties": {
        "id": {"type": "string"},
        "verdict": {"type": "string", "enum": list(VERDICTS)},
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
        "verdict": {"type": "string", "enum": list(VERDICTS)},
        "failed_stage": {"type": ["string", "null"]},
        "finding_code": {"type": ["string", "null"]},
        "duration_ms": {"type": "number"},
    },
}
EXPLANATION: Final = {
    "type": "object",
    "description": "One pasted line explained (diag/explain.py); stage and code are null for a line smtp-diag "
    "does not know.",
    "required": ["line", "stage", "code", "cause", "fix", "facts", "inferences", "confirm"],
    "properties": {
        "line": {"type": "string", "description": "The line as redacted (passwords, AUTH payloads, tokens)."},
        "stage": {"type": ["string", "null"]},
        "code": {"type": ["string", "null"], "description": "A finding code of the findings table."},
        "cause": {"type": "string"},
        "fix": {"type": ["string", "null"]},
        "facts": {"type": "object", "description": "What the line says: host, address, port, resolver, "
                  "reply_code, names (a certificate's), product..."},
        "inferences": {"type": "array", "items": {"type": "string"}},
        "confirm": {
            "type": ["object", "null"],
            "required": ["config", "command", "missing"],
            "properties": {
                "config": {"type": "object", "description": "The fields the line gave, to prefill a diagnosis."},
                "command": {"type": "string", "description": "The smtp-diag check command that confirms it."},
                "missing": {"type": "array", "items": {"type": "string"}},
            },
        },
    },
}
EXPLAIN_REQUEST: Final = {
    "type": "object",
    "required": ["text"],
    "additionalProperties": False,
    "properties": {
        "text": {"type": "string", "maxLength": MAX_TEXT_CHARS,
                 "description": f"Log lines, one answer per non-blank line (at most {MAX_LINES})."},
        "profile": {"type": "string", "enum": list(PROFILES), "default": DEFAULT_PROFILE},
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
            "version": __version__,
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
                            "content": {
                                **_json("Report"),
                                "text/event-stream": {
                                    "schema": {"type": "string"},
                                    # OpenAPI has no word for SSE frames: each event's data, by event name.
                                    "x-events": {
                                        name: {"$ref": f"#/components/schemas/{schema}"}
                                        for name, schema in EVENTS.items()
                                    },
                                },
                            },
                        },
                        "400": _error("The body is not a JSON object."),
                        "401": UNAUTHORIZED,
                        "413": _error("The body is larger than the limit (64 KiB)."),
                        "415": _error("The body is not application/json."),
                        "422": FIELD_ERROR_RESPONSE,
                        "429": _error("Rate limit for this client, this target server or this recipient domain; or "
                                      "this client has too many runs in flight.", retry_after=True),
                        "503": _error("Too many runs in flight: the run queue is full, or no slot came free within "
                                      "its wait (with PostgreSQL admission: at once).", retry_after=True),
                    },
                },
                "get": {
                    "operationId": "listDiagnostics",
                    "summary": "Stored reports, newest first.",
                    "parameters": [
                        {
                            "name": "host",
                            "in": "query",
                            "schema": {"type": "string", "maxLength": MAX_HOST_FILTER_LENGTH},
                        },
                        {"name": "verdict", "in": "query", "schema": {"type": "string", "enum": list(VERDICTS)}},
                        {
                            "name": "limit",
                            "in": "query",
                            "schema": {
                                "type": "integer",
                                "minimum": 1,
                                "maximum": LIST_LIMIT_MAX,
                                "default": LIST_LIMIT_DEFAULT,
                            },
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
            "/api/explain": {
                "post": {
                    "operationId": "explainLogLines",
                    "summary": "Explain SMTP error lines pasted from a product's logs (no network: text in, text out).",
                    "requestBody": {"required": True, "content": _json("ExplainRequest")},
                    "responses": {
                        "200": {
                            "description": "One explanation per non-blank line.",
                            "content": {"application/json": {"schema": {
                                "type": "object",
                                "required": ["recognised", "explanations"],
                                "properties": {
                                    "recognised": {"type": "boolean"},
                                    "explanations": {"type": "array",
                                                     "items": {"$ref": "#/components/schemas/Explanation"}},
                                },
                            }}},
                        },
                        "400": _error("The body is not a JSON object."),
                        "401": UNAUTHORIZED,
                        "413": _error("The body is larger than the limit (64 KiB)."),
                        "415": _error("The body is not JSON."),
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
                "StageStarted": STAGE_STARTED,
                "StageFinished": STAGE_FINISHED,
                "Finding": FINDING,
                "ReportSummary": SUMMARY,
                "Error": ERROR,
                "Explanation": EXPLANATION,
                "ExplainRequest": EXPLAIN_REQUEST,
                "FieldErrors": FIELD_ERRORS,
            },
        },
    }
