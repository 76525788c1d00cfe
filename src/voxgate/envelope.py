"""The Voxtral API's ``{code, data}`` envelope, and typed errors mapped to HTTP answers.

Shared by the embedded engine and the gateway's REST endpoints, so both answer alike:
success is ``{"code": 0, "data": {...}}``; an error is
``{"code": <HTTP status>, "error": <stable name>, "message": <text>, "data": null}``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from voxgate.errors import (
    AudioError,
    AuthError,
    InvalidInput,
    LimitExceeded,
    ProtocolViolation,
    QuotaExceeded,
    StoreUnavailable,
    UpstreamError,
    UpstreamTimeout,
    VoxgateError,
    refuses_the_request,
)

log = logging.getLogger(__name__)

_STATUS_BY_CODE = {
    "voice_not_found": 404,
    "not_found": 404,
    "ref_audio_too_large": 413,
    "too_many_sessions": 429,
    "rate_limited": 429,
    "draining": 503,
    "store_unavailable": 503,
    "node_unavailable": 503,
    "unsupported_media_type": 415,
    "forbidden": 403,
}
_STATUS_BY_TYPE: tuple[tuple[type[VoxgateError], int], ...] = (
    (AuthError, 401),
    (QuotaExceeded, 402),
    (LimitExceeded, 403),
    (AudioError, 422),
    (InvalidInput, 400),
    (ProtocolViolation, 400),
    (UpstreamTimeout, 504),
    (UpstreamError, 502),
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def status_of(exc: VoxgateError) -> int:
    if isinstance(exc, UpstreamError) and refuses_the_request(exc.status):
        return exc.status  # the upstream refused the request itself: pass its verdict on
    if exc.code in _STATUS_BY_CODE:
        return _STATUS_BY_CODE[exc.code]
    for kind, status in _STATUS_BY_TYPE:
        if isinstance(exc, kind):
            return status
    return 500


def ok(data: dict[str, Any]) -> web.Response:
    return web.Response(
        body=orjson.dumps({"code": 0, "data": data}), content_type="application/json"
    )


def error_response(status: int, name: str, message: str) -> web.Response:
    body = {"code": status, "error": name, "message": message, "data": None}
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


def error_body(exc: Exception) -> dict[str, Any]:
    """The fields of an error event sent after a stream has started."""
    if isinstance(exc, VoxgateError):
        return {"code": status_of(exc), "error": exc.code, "message": exc.message}
    return {"code": 500, "error": "internal_error", "message": "synthesis failed"}


@web.middleware
async def envelope_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error of an HTTP handler answered in the envelope, with its status."""
    try:
        return await handler(request)
    except StoreUnavailable as exc:  # an outage the caller can wait out: no traceback
        response = error_response(status_of(exc), exc.code, exc.message)
        response.headers["Retry-After"] = str(exc.retry_after_s)
        return response
    except VoxgateError as exc:
        return error_response(status_of(exc), exc.code, exc.message)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        name = "not_found" if exc.status == 404 else exc.reason.lower().replace(" ", "_")
        return error_response(exc.status, name, exc.reason)
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return error_response(500, "internal_error", "the server failed; see its log")
