"""Async client for the Voxtral TTS API: generate, SSE stream, and saved voices.

One ``Upstream`` holds one pooled ``httpx.AsyncClient``. Proxies from the environment are
ignored and redirects refused: the API key must never be sent anywhere but the base URL.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import email.utils
import re
import socket
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from voxgate.codecs.ogg_demux import OggOpusDemuxer
from voxgate.codecs.opus_packets import OpusRun
from voxgate.codecs.opus_toc import packet_samples
from voxgate.errors import (
    AudioError,
    ConfigError,
    InvalidInput,
    UpstreamConnectionError,
    UpstreamError,
    UpstreamStreamError,
    UpstreamTimeout,
)
from voxgate.upstream.models import (
    GeneratedSpeech,
    SpeechRequest,
    Voice,
    VoicePage,
    VoiceUpdate,
    voice_from_json,
)
from voxgate.upstream.pcm import PcmChunk, PcmStreamDecoder
from voxgate.upstream.sse import ServerSentEvent, SSEParser

DEFAULT_BASE_URL = "https://voxtral.com/api/tts"
# The kernel's receive buffer of an upstream connection. A stream the session stopped
# reading (its lookahead is full) leaves in the gateway what one read of the socket
# returned, up to asyncio's 256 KiB: this keeps that to tens of KiB per chunk in flight.
# 64 KiB still carries 1.3 MB/s at 50 ms RTT, some 20 times real-time 24 kHz PCM in SSE.
RECEIVE_BUFFER_BYTES = 65536


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    """Where the upstream is and how long to wait for it.

    ``first_byte_timeout`` bounds the wait for the response and its first audio;
    ``idle_timeout`` then bounds each silence of a stream, so one that stalls mid-stream
    fails in seconds; ``total_timeout`` bounds a whole request, however steadily a slow
    stream trickles.
    """

    base_url: str = DEFAULT_BASE_URL
    api_key: str | None = None
    pcm_sample_rate: int = 24000
    connect_timeout: float = 5.0
    first_byte_timeout: float = 15.0
    idle_timeout: float = 10.0
    total_timeout: float = 120.0
    max_connections: int = 64

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ConfigError(f"upstream base URL must be http(s): {self.base_url!r}")
        if self.pcm_sample_rate not in (8000, 16000, 22050, 24000, 32000, 44100, 48000):
            raise ConfigError(f"unsupported upstream PCM sample rate {self.pcm_sample_rate}")
        for name in ("connect_timeout", "first_byte_timeout", "idle_timeout", "total_timeout"):
            if not getattr(self, name) > 0:  # NaN too
                raise ConfigError(f"{name} must be positive")
        if not 1 <= self.max_connections <= 100_000:
            raise ConfigError("max_connections must be 1-100000")


class Upstream:
    """The Voxtral API, with typed results and typed errors (see ``voxgate.errors``)."""

    def __init__(
        self, config: UpstreamConfig, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.config = config
        headers = {"User-Agent": "voxgate/0.1", "Accept": "application/json"}
        if config.api_key:
            headers["Authorization"] = f"Bearer {config.api_key}"
        if transport is None:
            transport = httpx.AsyncHTTPTransport(
                limits=httpx.Limits(
                    max_connections=config.max_connections,
                    max_keepalive_connections=config.max_connections,
                ),
                socket_options=[(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER_BYTES)],
            )
        self._http = httpx.AsyncClient(
            base_url=config.base_url.rstrip("/") + "/",
            headers=headers,
            timeout=httpx.Timeout(config.total_timeout, connect=config.connect_timeout),
            trust_env=False,
            follow_redirects=False,
            transport=transport,
        )

    async def __aenter__(self) -> Upstream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- speech -------------------------------------------------------------------------

    async def generate(self, request: SpeechRequest) -> GeneratedSpeech:
        data = await self._call("POST", "generate", json=request.to_json())
        try:
            audio = base64.b64decode(data["audio_data"], validate=True)
            return GeneratedSpeech(
                audio=audio,
                format=str(data.get("format") or request.response_format or "mp3"),
                generation_id=str(data.get("generation_id", "")),
                audio_url=data.get("audio_url"),
                chunks=int(data.get("chunks", 1)),
                credits_used=int(data.get("credits_used", 0)),
            )
        except (KeyError, TypeError, ValueError, binascii.Error) as exc:
            raise UpstreamError(f"malformed generate response: {exc}", status=200) from exc

    async def stream(self, request: SpeechRequest) -> AsyncIterator[PcmChunk]:
        """Stream PCM as the upstream produces it; raises unless ``speech.audio.done`` came."""
        if request.response_format not in (None, "pcm"):
            raise ConfigError("stream() yields PCM; use stream_encoded() for other formats")
        decoder = PcmStreamDecoder(self.config.pcm_sample_rate)
        streamed_s = 0.0
        try:
            async for delta in self.stream_encoded(request):
                for chunk in decoder.feed(delta):
                    streamed_s += chunk.duration
                    yield chunk
        except _Stalled as stall:
            # Only the decoded PCM knows how much audio that was (a WAV header sets its rate).
            raise UpstreamTimeout(stall.after(f"{streamed_s * 1000:.0f} ms")) from stall
        decoder.finish()

    async def stream_opus(self, request: SpeechRequest) -> AsyncIterator[OpusRun]:
        """Stream the Opus packets of an Ogg Opus ``/stream``, as they arrive, undecoded.

        Raises unless ``speech.audio.done`` came and the Ogg stream ended on a whole page.
        A stream that is not Ogg Opus is malformed, and is not retried.
        """
        demuxer = OggOpusDemuxer()
        streamed = 0  # 48 kHz samples
        opus = dataclasses.replace(request, response_format="opus")
        try:
            async for delta in self.stream_encoded(opus):
                packets = demuxer.feed(delta)
                if packets:
                    run = OpusRun(tuple(packets), tuple(packet_samples(p) for p in packets))
                    streamed += run.total_samples
                    yield run
            demuxer.finish()
        except _Stalled as stall:
            raise UpstreamTimeout(stall.after(f"{streamed / 48:.0f} ms")) from stall
        except AudioError as exc:
            raise UpstreamStreamError(
                f"malformed Ogg Opus stream: {exc.message}", retryable=False
            ) from exc

    async def stream_encoded(self, request: SpeechRequest) -> AsyncIterator[bytes]:
        """Stream the raw audio bytes of each ``speech.audio.delta``, in the requested format."""
        deadline = _Deadlines(self.config)
        http_request = self._http.build_request(
            "POST", "stream", json=request.to_json(), headers={"Accept": "text/event-stream"}
        )
        response = await deadline.wait(self._send(http_request, stream=True))
        try:
            await self._raise_for_status(response, deadline)
            async for delta in self._audio_deltas(response, deadline):
                yield delta
        finally:
            # Closing the response closes the HTTP stream, which is how an in-flight
            # synthesis is aborted on interrupt.
            await response.aclose()

    async def _audio_deltas(
        self, response: httpx.Response, deadline: _Deadlines
    ) -> AsyncIterator[bytes]:
        parser = SSEParser()
        raw = response.aiter_raw()
        while True:
            try:
                piece = await deadline.wait(anext(raw))
            except StopAsyncIteration:
                break
            for event in parser.feed(piece):
                if event.event == "speech.audio.done":
                    return
                delta = _handle_event(event)
                if delta:
                    deadline.audio(len(delta))
                    yield delta
        raise UpstreamStreamError("stream ended without speech.audio.done", retryable=True)

    # -- voices -------------------------------------------------------------------------

    async def clone_voice(
        self,
        name: str,
        ref_audio: bytes,
        *,
        language: str | None = None,
        gender: str | None = None,
    ) -> Voice:
        body: dict[str, Any] = {"name": name, "ref_audio": base64.b64encode(ref_audio).decode()}
        if language is not None:
            body["language"] = language
        if gender is not None:
            body["gender"] = gender
        return voice_from_json(await self._call("POST", "voices/clone", json=body))

    async def list_voices(self, *, page: int = 1, limit: int = 50) -> VoicePage:
        data = await self._call("GET", "voices/mine", params={"page": page, "limit": limit})
        try:
            return VoicePage(
                voices=tuple(voice_from_json(v) for v in data["voices"]),
                total=int(data["total"]),
                page=int(data.get("page", page)),
                limit=int(data.get("limit", limit)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise UpstreamError(f"malformed voice list: {exc}", status=200) from exc

    async def iter_voices(self, *, limit: int = 50) -> AsyncIterator[Voice]:
        """Every saved voice, page after page."""
        page, seen = 1, 0
        while True:
            result = await self.list_voices(page=page, limit=limit)
            for voice in result.voices:
                yield voice
            seen += len(result.voices)
            if not result.voices or seen >= result.total:
                return
            page += 1

    async def update_voice(self, voice_id: str, update: VoiceUpdate) -> Voice:
        path = f"voices/{_path_segment(voice_id)}"
        return voice_from_json(await self._call("PATCH", path, json=update.to_json()))

    async def delete_voice(self, voice_id: str) -> str:
        data = await self._call("DELETE", f"voices/{_path_segment(voice_id)}")
        return str(data.get("id", voice_id))

    async def list_presets(self) -> list[dict[str, Any]]:
        """The preset catalogue. The embedded engine serves it; the public API documents none."""
        data = await self._call("GET", "voices/presets")
        voices = data.get("voices")
        if not isinstance(voices, list):
            raise UpstreamError("malformed preset list", status=200)
        return voices

    # -- plumbing -----------------------------------------------------------------------

    async def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        deadline = _Deadlines(self.config)
        request = self._http.build_request(method, path, **kwargs)
        response = await deadline.wait(self._send(request, stream=True))
        try:
            await self._raise_for_status(response, deadline)
            body = await deadline.wait(response.aread())
        finally:
            await response.aclose()
        return _unwrap_envelope(body, response.status_code)

    async def _send(self, request: httpx.Request, *, stream: bool) -> httpx.Response:
        try:
            return await self._http.send(request, stream=stream)
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout(f"upstream timed out: {type(exc).__name__}") from exc
        except httpx.HTTPError as exc:
            raise UpstreamConnectionError(f"upstream unreachable: {exc!r}") from exc

    async def _raise_for_status(self, response: httpx.Response, deadline: _Deadlines) -> None:
        status = response.status_code
        if 200 <= status < 300:
            return
        retry_after = _retry_after(response.headers)
        if 300 <= status < 400:
            raise UpstreamError(
                f"upstream redirected ({status}); redirects are refused",
                status=status,
                retryable=False,
            )
        try:
            body = await deadline.wait(response.aread())
        except UpstreamError:
            body = b""
        code, message, name = _error_fields(body)
        raise UpstreamError(
            f"upstream answered {status}: {message}",
            status=status,
            upstream_code=code,
            retry_after=retry_after,
            refusal=name,
        )


class _Deadlines:
    """One request's deadlines, on the event loop's clock: its first audio within the
    first-byte timeout, then no silence longer than the idle timeout, and no more than the
    total timeout spent waiting in all.

    Only a wait in progress is timed: while the caller does not read (its listener is
    behind, or away until it resumes), the stream waits in TCP's flow control, and neither
    silence nor the total counts that time. The total bounds what the upstream takes.
    """

    def __init__(self, config: UpstreamConfig) -> None:
        self._config = config
        self._first_byte_at = time.monotonic() + config.first_byte_timeout
        self._waited = 0.0  # seconds spent in ``wait``
        self._audio_bytes: int | None = None  # None until the first audio

    def audio(self, nbytes: int) -> None:
        """Audio arrived: from now on each wait is bounded by the idle timeout."""
        self._audio_bytes = (self._audio_bytes or 0) + nbytes

    async def wait(self, awaitable: Any) -> Any:
        now = time.monotonic()
        if self._audio_bytes is None:
            limit, which = self._first_byte_at - now, "first-byte"
        else:
            limit, which = self._config.idle_timeout, "idle"
        total_left = self._config.total_timeout - self._waited
        if total_left <= limit:
            limit, which = total_left, "total"
        try:
            async with asyncio.timeout(max(limit, 0.0)):
                return await awaitable
        except TimeoutError as exc:
            raise self._expired(which) from exc
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout(f"upstream timed out: {type(exc).__name__}") from exc
        except httpx.HTTPError as exc:
            raise UpstreamConnectionError(f"upstream connection broke: {exc!r}") from exc
        finally:
            self._waited += time.monotonic() - now

    def _expired(self, which: str) -> UpstreamTimeout:
        if which == "idle":
            return _Stalled(self._config.idle_timeout, self._audio_bytes or 0)
        limit = self._config.total_timeout if which == "total" else self._config.first_byte_timeout
        return UpstreamTimeout(f"upstream exceeded the {which} deadline of {limit:g} s")


class _Stalled(UpstreamTimeout):
    """The stream went silent for the idle timeout after its audio had started."""

    def __init__(self, idle_timeout: float, audio_bytes: int) -> None:
        self.idle_timeout = idle_timeout
        super().__init__(self.after(f"{audio_bytes} bytes"))

    def after(self, audio: str) -> str:
        return f"upstream stalled after {audio} of audio: nothing for {self.idle_timeout:g} s"


def _handle_event(event: ServerSentEvent) -> bytes:
    if event.event == "speech.audio.delta":
        payload = _json_object(event.data)
        audio = payload.get("audio_data")
        if not isinstance(audio, str):
            raise UpstreamStreamError("speech.audio.delta without audio_data", retryable=False)
        try:
            return base64.b64decode(audio, validate=True)
        except binascii.Error as exc:
            raise UpstreamStreamError(
                "speech.audio.delta with bad base64", retryable=False
            ) from exc
    if event.event == "error":
        code, message, _ = _error_fields(event.data.encode())
        raise UpstreamError(
            f"upstream failed mid-stream: {message}", status=200, upstream_code=code, retryable=True
        )
    return b""  # unknown events are ignored, as SSE clients do


def _json_object(text: str | bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise UpstreamStreamError(f"malformed JSON from upstream: {exc}", retryable=False) from exc
    if not isinstance(value, dict):
        raise UpstreamStreamError("upstream JSON is not an object", retryable=False)
    return value


def _unwrap_envelope(body: bytes, status: int) -> dict[str, Any]:
    try:
        envelope = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise UpstreamError(
            f"upstream sent non-JSON ({status})", status=status, retryable=False
        ) from exc
    if not isinstance(envelope, dict) or "code" not in envelope:
        raise UpstreamError(
            "upstream response lacks the {code, data} envelope", status=status, retryable=False
        )
    if envelope["code"] != 0:
        code, message, _ = _error_fields(body)
        raise UpstreamError(
            f"upstream error {code}: {message}", status=status, upstream_code=code, retryable=False
        )
    data = envelope.get("data")
    return data if isinstance(data, dict) else {}


_ERROR_NAME = re.compile(r"[a-z][a-z0-9_]{2,63}")


def _error_fields(body: bytes) -> tuple[int | str | None, str, str | None]:
    """Pull ``code``, a message and the error's snake_case name (``error`` or ``type``: the
    engine's envelope says "error", other APIs "type") out of whatever shape the upstream
    used."""
    try:
        value = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return None, body[:200].decode("utf-8", "replace") or "no details", None
    if not isinstance(value, dict):
        return None, "no details", None
    code = value.get("code")
    data = value.get("data")
    nested: dict[str, Any] = data if isinstance(data, dict) else {}
    error = value.get("error")
    message = (
        value.get("message")
        or (error.get("message") if isinstance(error, dict) else error)
        or nested.get("message")
        or "no details"
    )
    names = (value.get(field) for field in ("error", "type"))
    name = next((n for n in names if isinstance(n, str) and _ERROR_NAME.fullmatch(n)), None)
    return (code if isinstance(code, int | str) else None), str(message), name


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def _path_segment(voice_id: str) -> str:
    # Voice ids are UUIDs or opaque tokens; refuse anything that could change the path.
    if not voice_id or any(c in voice_id for c in "/?#%") or voice_id in (".", ".."):
        raise InvalidInput(f"invalid voice id {voice_id!r}", code="invalid_voice_id")
    return voice_id
