"""The OpenAPI document served at ``/openapi.json``, built from the same declarations the
gateway validates with (the realtime message Structs, the upstream's limits), so it cannot
drift from the code. Every route the gateway registers is in it; a test walks the router."""

from __future__ import annotations

from typing import Any

import orjson

from voxgate import __version__
from voxgate.gateway.protocol import json_schema
from voxgate.gateway.telephony.endpoint import other_dialects
from voxgate.upstream.engine.validation import MAX_NAME_CHARS, MAX_REF_AUDIO_B64
from voxgate.upstream.models import (
    AUDIO_FORMATS,
    GENDERS,
    LANGUAGES,
    MAX_INPUT_CHARS,
    MAX_SPEED,
    MIN_SPEED,
)

_ERROR = {"$ref": "#/components/schemas/Error"}
_BEARER: list[dict[str, list[str]]] = [{"bearer": []}]
_BEARER_OR_NONE: list[dict[str, list[str]]] = [{"bearer": []}, {}]
_JSON = "application/json"
_SDP = "application/sdp"


_RTP_TARGET: dict[str, Any] = {
    "type": "object",
    "required": ["host", "port", "codec"],
    "properties": {
        "host": {"type": "string"},
        "port": {"type": "integer", "minimum": 1, "maximum": 65535},
        "codec": {"type": "string", "enum": ["PCMU", "opus", "L16"]},
        "payload_type": {"type": "integer", "minimum": 0, "maximum": 127},
        "rtcp_port": {"type": "integer", "minimum": 1, "maximum": 65535},
    },
}


def _op(
    summary: str,
    *,
    body: dict[str, Any] | None = None,
    body_type: str = _JSON,
    ok: str = "OK",
    status: str = "200",
    answer: str | None = _JSON,
    secured: bool = True,
    optional_auth: bool = False,
    headers: tuple[str, ...] = (),
) -> dict[str, Any]:
    success: dict[str, Any] = {"description": ok}
    if answer is not None:
        schema = {"type": "object"} if answer == _JSON else {"type": "string"}
        success["content"] = {answer: {"schema": schema}}
    if headers:
        success["headers"] = {name: {"schema": {"type": "string"}} for name in headers}
    operation: dict[str, Any] = {
        "summary": summary,
        "responses": {
            status: success,
            "4XX": {"description": "A typed error", "content": {_JSON: {"schema": _ERROR}}},
        },
    }
    if secured:
        operation["security"] = _BEARER_OR_NONE if optional_auth else _BEARER
    if body is not None:
        operation["requestBody"] = {"required": True, "content": {body_type: {"schema": body}}}
    return operation


def _with_path_parameters(path: str, item: dict[str, Any]) -> dict[str, Any]:
    names = [part[1:-1] for part in path.split("/") if part.startswith("{")]
    if names:
        item["parameters"] = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in names
        ]
    return item


_REF_AUDIO = {
    "type": "string",
    "format": "byte",
    "maxLength": MAX_REF_AUDIO_B64,
    "description": "Base64 reference audio (5-30 s of speech; a data: URL prefix is "
    "accepted) to clone the voice from, for this request only.",
}
_SPEECH = {
    "type": "object",
    "required": ["input"],
    "description": "Give exactly one of voice_id and ref_audio (else voice_selection).",
    "properties": {
        "input": {"type": "string", "minLength": 1, "maxLength": MAX_INPUT_CHARS},
        "voice_id": {"type": "string", "description": "A preset or saved voice"},
        "ref_audio": _REF_AUDIO,
        "response_format": {"enum": list(AUDIO_FORMATS)},
        "speed": {"type": "number", "minimum": MIN_SPEED, "maximum": MAX_SPEED},
    },
}
_CLONE = {
    "type": "object",
    "required": ["name", "ref_audio"],
    "properties": {
        "name": {"type": "string", "maxLength": MAX_NAME_CHARS},
        "ref_audio": _REF_AUDIO | {"description": "Base64 reference audio to clone from"},
        "language": {"enum": list(LANGUAGES)},
        "gender": {"enum": list(GENDERS)},
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
_DEV_TOKEN = {
    "type": "object",
    "properties": {
        "max_credits": {"type": "integer", "minimum": 1, "maximum": 20_000},
        "session_id": {"type": "string"},
    },
}
_OFFER = {"type": "string", "description": "An SDP offer (v=0 ...), at most 64 KiB"}
_WHEP_CREATED = ("Location", "ETag", "Link")


def _paths() -> dict[str, dict[str, Any]]:
    whep_options = _op(
        "WHEP: what the endpoint accepts (Accept-Post), and the ICE servers (Link)",
        status="204",
        ok="No content",
        answer=None,
        secured=False,
        headers=("Allow", "Accept-Post", "Link"),
    )
    return {
        "/v1/realtime": {
            "get": _op(
                "Realtime WebSocket (upgrade); see docs/protocol.md. Without a bearer key: "
                "a client token in the subprotocol or the first message",
                ok="Switching protocols",
                status="101",
                answer=None,
                optional_auth=True,
            )
        },
        "/v1/telephony/twilio": {
            "get": _op(
                "Twilio Media Streams (bidirectional, TwiML <Connect><Stream>) WebSocket "
                "(upgrade): attaches the call to the live session named by the stream's "
                "customParameters session_id and token; see docs/telephony.md",
                ok="Switching protocols",
                status="101",
                answer=None,
                optional_auth=True,
            )
        },
        **{
            f"/v1/telephony/{name}": {
                "get": _op(
                    f"{name.capitalize()} media stream WebSocket (upgrade): attaches the call "
                    "to the live session its stream parameters name (session_id and token); "
                    "see docs/telephony.md",
                    ok="Switching protocols",
                    status="101",
                    answer=None,
                    optional_auth=True,
                )
            }
            for name in other_dialects()
        },
        "/v1/sessions/{session_id}/rtp": {
            "post": _op(
                "RTP egress: send a live session's audio as RTP (PCMU, opus, L16) to a SIP "
                "media server, RTCP sender reports to rtcp_port; answers the stream's SDP; "
                "see docs/telephony.md",
                body=_RTP_TARGET,
                status="201",
                ok="The stream: id, ssrc, codec, sdp",
                headers=("Location",),
            )
        },
        "/v1/sessions/{session_id}/rtp/{sink_id}": {
            "delete": _op("RTP egress: stop the stream (RTCP BYE); the session's audio returns")
        },
        "/v1/client_tokens": {
            "post": _op("Mint a single-use client token for a browser", body=_TOKEN)
        },
        "/v1/sessions/{session_id}/whep": {
            "post": _op(
                "WHEP: play a live session's audio over WebRTC; see docs/webrtc.md",
                body=_OFFER,
                body_type=_SDP,
                status="201",
                ok="The SDP answer",
                answer=_SDP,
                headers=_WHEP_CREATED,
            ),
            "options": whep_options,
        },
        "/v1/whep": {
            "post": _op(
                "WHEP: a new session, its text over the offer's data channel 'voxgate'",
                body=_OFFER,
                body_type=_SDP,
                status="201",
                ok="The SDP answer",
                answer=_SDP,
                headers=_WHEP_CREATED,
            ),
            "options": whep_options,
        },
        "/v1/whep/{resource_id}": {
            "delete": _op(
                "WHEP: hang up (the resource URL is the credential without Authorization)",
                answer=None,
                optional_auth=True,
            ),
            "patch": _op(
                "WHEP: refused with 405 (no trickle ICE, no ICE restart)",
                status="405",
                ok="Not supported",
                answer="text/plain",
                secured=False,
                headers=("Allow",),
            ),
        },
        "/api/tts/generate": {"post": _op("Voxtral-compatible generate", body=_SPEECH)},
        "/api/tts/stream": {
            "post": _op("Voxtral-compatible SSE stream", body=_SPEECH, answer="text/event-stream")
        },
        "/api/tts/audio/{audio_id}": {
            "get": _op(
                "A generation's audio (its audio_url), for an hour, to the account that made it",
                ok="The audio, with the upstream's content type",
                answer="audio/*",
            )
        },
        "/api/tts/voices/clone": {"post": _op("Clone a voice", body=_CLONE)},
        "/api/tts/voices/mine": {"get": _op("Your saved voices (page, limit)")},
        "/api/tts/voices/presets": {"get": _op("Preset voices", secured=False)},
        "/api/tts/voices/{voice_id}": {
            "patch": _op("Update a saved voice", body=_UPDATE),
            "delete": _op("Delete a saved voice"),
        },
        "/api/tts/voices/{voice_id}/ref_audio": {
            "get": _op(
                "The reference audio a saved voice was cloned from (its ref_audio_url)",
                ok="The audio, with the upstream's content type",
                answer="audio/*",
            )
        },
        "/v1/dev/client_token": {
            "post": _op(
                "Demo page: a client token from the dev key (loopback callers, dev tokens on)",
                body=_DEV_TOKEN,
                secured=False,
            )
        },
        "/v1/dev/voices": {
            "get": _op("Demo page: preset and saved voices, and the balance", secured=False)
        },
        "/v1/dev/voices/clone": {
            "post": _op("Demo page: clone a voice with the dev key", body=_CLONE, secured=False)
        },
        "/": {"get": _op("The demo page", answer="text/html", secured=False)},
        "/demo/{name}": {
            "get": _op(
                "The demo page's scripts and styles", answer="text/javascript", secured=False
            )
        },
        "/healthz": {"get": _op("Liveness", secured=False)},
        "/readyz": {"get": _op("Readiness: store and upstream reachable", secured=False)},
        "/metrics": {"get": _op("Prometheus metrics", answer="text/plain", secured=False)},
        "/openapi.json": {"get": _op("This document", secured=False)},
    }


def _realtime_schemas() -> dict[str, Any]:
    """The client messages' JSON Schema, its ``$defs`` moved under components.schemas."""
    schema = orjson.loads(
        orjson.dumps(json_schema()).replace(b'"#/$defs/', b'"#/components/schemas/')
    )
    defs: dict[str, Any] = schema.pop("$defs")
    return {**defs, "RealtimeClient": schema}


def openapi_document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "voxgate",
            "version": __version__,
            "description": "Real-time voice gateway in front of the Voxtral TTS API. "
            "The realtime WebSocket protocol is in docs/protocol.md, WebRTC in "
            "docs/webrtc.md; the realtime client messages are under "
            "components.schemas.RealtimeClient.",
        },
        "paths": {path: _with_path_parameters(path, item) for path, item in _paths().items()},
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
                **_realtime_schemas(),
            },
        },
    }
