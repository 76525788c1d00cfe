"""The OpenAPI document served at ``/openapi.json``, built from the same declarations the
gateway validates with (the realtime message Structs), so it cannot drift from the code."""

from __future__ import annotations

from typing import Any

from voxgate import __version__
from voxgate.gateway.protocol import json_schema

_ERROR = {"$ref": "#/components/schemas/Error"}
_BEARER: list[dict[str, list[str]]] = [{"bearer": []}]


def _op(
    summary: str,
    *,
    body: dict[str, Any] | None = None,
    ok: str = "OK",
    secured: bool = True,
    stream: bool = False,
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary,
        "responses": {
            "200": {
                "description": ok,
                "content": {
                    "text/event-stream" if stream else "application/json": {
                        "schema": {"type": "object"}
                    }
                },
            },
            "4XX": {
                "description": "A typed error",
                "content": {"application/json": {"schema": _ERROR}},
            },
        },
    }
    if secured:
        operation["security"] = _BEARER
    if body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": body}},
        }
    return operation


_SPEECH = {
    "type": "object",
    "required": ["input"],
    "properties": {
        "input": {"type": "string", "minLength": 1, "maxLength": 5000},
        "voice_id": {"type": "string"},
        "ref_audio": {"type": "string", "format": "byte"},
        "response_format": {"enum": ["mp3", "wav", "flac", "opus", "pcm"]},
        "speed": {"type": "number", "minimum": 0.25, "maximum": 4.0},
    },
}
_CLONE = {
    "type": "object",
    "required": ["name", "ref_audio"],
    "properties": {
        "name": {"type": "string", "maxLength": 100},
        "ref_audio": {"type": "string", "format": "byte"},
        "language": {"enum": ["en", "fr", "es", "pt", "it", "nl", "de", "hi", "ar"]},
        "gender": {"enum": ["male", "female"]},
    },
}
_UPDATE = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "language": {"type": "string"},
        "gender": {"type": "string"},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
}
_TOKEN = {
    "type": "object",
    "properties": {
        "voice_id": {"type": "string"},
        "max_credits": {"type": "integer", "minimum": 1},
        "ttl_s": {"type": "number", "minimum": 1, "maximum": 3600},
        "session_id": {"type": "string"},
    },
}


def openapi_document() -> dict[str, Any]:
    realtime = json_schema()
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "voxgate",
            "version": __version__,
            "description": "Real-time voice gateway in front of the Voxtral TTS API. "
            "The realtime WebSocket protocol is in docs/protocol.md; its "
            "client messages are under components.schemas.RealtimeClient.",
        },
        "paths": {
            "/v1/realtime": {
                "get": _op(
                    "Realtime WebSocket (upgrade); see docs/protocol.md", ok="Switching protocols"
                )
            },
            "/v1/client_tokens": {
                "post": _op("Mint a single-use client token for a browser", body=_TOKEN)
            },
            "/api/tts/generate": {"post": _op("Voxtral-compatible generate", body=_SPEECH)},
            "/api/tts/stream": {
                "post": _op("Voxtral-compatible SSE stream", body=_SPEECH, stream=True)
            },
            "/api/tts/voices/clone": {"post": _op("Clone a voice", body=_CLONE)},
            "/api/tts/voices/mine": {"get": _op("Your saved voices (page, limit)")},
            "/api/tts/voices/presets": {"get": _op("Preset voices", secured=False)},
            "/api/tts/voices/{voice_id}": {
                "patch": _op("Update a saved voice", body=_UPDATE),
                "delete": _op("Delete a saved voice"),
            },
            "/healthz": {"get": _op("Liveness", secured=False)},
            "/readyz": {"get": _op("Readiness: store and upstream reachable", secured=False)},
            "/metrics": {"get": _op("Prometheus metrics", secured=False)},
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["code", "error", "message"],
                    "properties": {
                        "code": {"type": "integer"},
                        "error": {"type": "string"},
                        "message": {"type": "string"},
                        "data": {"type": "null"},
                    },
                },
                "RealtimeClient": realtime,
            },
        },
    }
