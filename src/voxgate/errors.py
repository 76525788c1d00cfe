"""The exceptions voxgate raises, by meaning.

Callers catch by what went wrong, not by where::

    VoxgateError
    ├── ConfigError                 settings that cannot work (bad URL, bad number)
    ├── AuthError                   missing, unknown, expired or revoked credentials
    ├── QuotaExceeded               not enough credits for the text at hand
    ├── LimitExceeded               an explicit limit: message size, voices, contexts, sessions
    ├── ProtocolViolation           a client sent something the protocol does not allow
    │   └── InvalidInput            a field with a bad value (too long, out of range, bad base64)
    ├── AudioError                  audio that cannot be decoded or encoded
    ├── StoreUnavailable            Redis (credits, keys, tokens) cannot be reached; retryable
    │   └── NodeUnavailable         the node that owns a session cannot be reached; retryable
    └── UpstreamError               the TTS upstream failed; .status, .code, .retryable
        ├── UpstreamTimeout         no first byte, or no end, within the deadline
        ├── UpstreamConnectionError the connection could not be made or broke
        └── UpstreamStreamError     the SSE stream was malformed or ended without `done`

Every error carries a stable machine-readable ``code`` (a short snake_case string) that the
gateway puts on the wire; messages are for people and may change.
"""

from __future__ import annotations


class VoxgateError(Exception):
    """Base class of every error voxgate raises on purpose."""

    code: str = "internal_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class ConfigError(VoxgateError):
    code = "config_error"


class AuthError(VoxgateError):
    code = "unauthorized"


class QuotaExceeded(VoxgateError):
    code = "insufficient_credits"

    def __init__(self, message: str, *, needed: int, available: int) -> None:
        super().__init__(message)
        self.needed = needed
        self.available = available


class LimitExceeded(VoxgateError):
    code = "limit_exceeded"


class ProtocolViolation(VoxgateError):
    code = "protocol_violation"


class InvalidInput(ProtocolViolation):
    code = "invalid_input"


class AudioError(VoxgateError):
    code = "audio_error"


class StoreUnavailable(VoxgateError):
    """The store (Redis) could not be reached in time; the same call may succeed shortly.

    Nothing was changed on the caller's behalf that the gateway will not settle itself:
    a chunk whose reserve failed is voided, a settlement is retried until Redis answers.
    """

    code = "store_unavailable"
    retryable = True

    def __init__(self, message: str, *, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class NodeUnavailable(StoreUnavailable):
    """Another gateway node owns the session, and it did not answer a forwarded request.

    Either it is dying (its lease lapses within ``VOXGATE_NODE_LEASE``, and then the session
    is lost) or the network between the nodes failed; the same request may succeed shortly.
    """

    code = "node_unavailable"


class UpstreamError(VoxgateError):
    """The upstream answered with an error, or could not be used.

    ``status`` is the HTTP status (0 when no response arrived), ``upstream_code`` the
    ``code`` field of the upstream's envelope when it sent one, and ``retry_after`` the
    seconds the upstream asked us to wait (``Retry-After``), if any. ``refusal`` is the
    upstream's own name for what was wrong with the request (``undecodable_audio``, say)
    when the status says the request itself was refused (:func:`refuses_the_request`): it
    becomes ``code``, so the caller learns what to fix in its input.
    """

    code = "upstream_error"

    def __init__(
        self,
        message: str,
        *,
        status: int = 0,
        upstream_code: int | str | None = None,
        retryable: bool | None = None,
        retry_after: float | None = None,
        refusal: str | None = None,
    ) -> None:
        super().__init__(message, code=refusal if refuses_the_request(status) else None)
        self.status = status
        self.upstream_code = upstream_code
        self.retryable = is_retryable_status(status) if retryable is None else retryable
        self.retry_after = retry_after

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, status={self.status}, "
            f"upstream_code={self.upstream_code!r}, retryable={self.retryable})"
        )


class UpstreamTimeout(UpstreamError):
    code = "upstream_timeout"

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=True)


class UpstreamConnectionError(UpstreamError):
    code = "upstream_unavailable"

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=True)


class UpstreamStreamError(UpstreamError):
    """A stream that broke the SSE contract: malformed event, or no ``speech.audio.done``.

    A stream cut short is worth retrying; a malformed one is not, it would come back the same.
    """

    code = "upstream_stream_error"

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message, retryable=retryable)


_REQUEST_REFUSALS = frozenset({400, 404, 409, 410, 413, 415, 422})


def refuses_the_request(status: int) -> bool:
    """Whether an upstream status blames the request itself (its text, voice or audio).

    Not 401/403 (the gateway's own upstream credentials), 402 (its upstream account), 408
    or 429 (load): those are the gateway's business, never the caller's input.
    """
    return status in _REQUEST_REFUSALS


def is_retryable_status(status: int) -> bool:
    """5xx, 408 and 429 are worth another try; other 4xx would fail the same way again."""
    return status >= 500 or status in (408, 429) or status == 0
