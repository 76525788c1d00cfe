"""The embedded Voxtral-compatible engine: the reference API under ``/api/tts``, on espeak-ng.

Same paths, fields, limits, ``{code, data}`` envelopes and status codes as the public API,
with real speech, so voxgate and its tests run with no key and no network. Errors answer
``{"code": <HTTP status>, "error": <stable name>, "message": <text>, "data": null}``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import orjson
from aiohttp import web

from voxgate.envelope import envelope_errors, error_body, ok
from voxgate.errors import (
    InvalidInput,
)
from voxgate.upstream.engine import audio
from voxgate.upstream.engine.accounts import Account, Accounts
from voxgate.upstream.engine.espeak import Synthesizer
from voxgate.upstream.engine.stream_encoder import stream_encoder
from voxgate.upstream.engine.text import chunk_text, split_for_streaming
from voxgate.upstream.engine.validation import (
    SpeechParams,
    clone_params,
    paging,
    parse_json_object,
    speech_params,
    update_params,
)
from voxgate.upstream.engine.voice_store import VoiceStore
from voxgate.upstream.engine.voices import (
    Prosody,
    espeak_voice_for,
    find_voice,
    preset_catalogue,
    prosody_for_clone,
)

log = logging.getLogger(__name__)

API_PREFIX = "/api/tts"
ENGINE_KEY: web.AppKey[Engine] = web.AppKey("engine")
_MAX_BODY = 16 * 1024 * 1024
_MIME = {
    "mp3": "audio/mpeg",
    "wav": "audio/wav",
    "flac": "audio/flac",
    "opus": "audio/ogg",
    "pcm": "audio/L16",
}


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """``sample_rate`` is the rate of all output, PCM streams included (24 kHz like the API)."""

    sample_rate: int = 24000
    generate_chunk_chars: int = 1000
    stream_delta_seconds: float = 0.2
    audio_cache_entries: int = 32


@dataclass(frozen=True, slots=True)
class _Voice:
    prosody: Prosody
    language: str


class Engine:
    """The engine's state: accounts, saved voices, recent audio, and the synthesiser."""

    def __init__(self, accounts: Accounts, synthesizer: Synthesizer, config: EngineConfig) -> None:
        self.accounts = accounts
        self.synthesizer = synthesizer
        self.config = config
        self.voices = VoiceStore()
        self._recent: OrderedDict[str, tuple[bytes, str]] = OrderedDict()

    def routes(self) -> list[web.RouteDef]:
        p = API_PREFIX
        return [
            web.post(f"{p}/generate", self.generate),
            web.post(f"{p}/stream", self.stream),
            web.post(f"{p}/voices/clone", self.clone_voice),
            web.get(f"{p}/voices/mine", self.list_voices),
            web.get(f"{p}/voices/presets", self.list_presets),
            web.patch(f"{p}/voices/{{voice_id}}", self.update_voice),
            web.delete(f"{p}/voices/{{voice_id}}", self.delete_voice),
            web.get(f"{p}/voices/{{voice_id}}/ref_audio", self.voice_ref_audio),
            web.get(f"{p}/audio/{{generation_id}}", self.recent_audio),
            web.get("/healthz", self.health),
        ]

    # -- speech ---------------------------------------------------------------------------

    async def generate(self, request: web.Request) -> web.Response:
        account = self._auth(request)
        params = speech_params(await _body(request), default_format="mp3")
        voice = await self._voice(account, params)
        hold = self.accounts.hold(account, len(params.text))
        try:
            chunks = chunk_text(params.text, self.config.generate_chunk_chars)
            parts = [await self._synthesize(c, voice, params.speed) for c in chunks]
            pcm = np.concatenate(parts) if parts else np.zeros(0, np.int16)
            encoded = await asyncio.to_thread(
                audio.encode, pcm, self.config.sample_rate, params.response_format
            )
        except BaseException:
            self.accounts.release(hold)
            raise
        credits = self.accounts.charge(hold)
        generation_id = str(uuid.uuid4())
        self._remember(generation_id, encoded, params.response_format)
        return ok(
            {
                "audio_data": base64.b64encode(encoded).decode(),
                "format": params.response_format,
                "generation_id": generation_id,
                "audio_url": f"{_base_url(request)}/audio/{generation_id}",
                "chunks": len(chunks),
                "credits_used": credits,
            }
        )

    async def stream(self, request: web.Request) -> web.StreamResponse:
        account = self._auth(request)
        params = speech_params(await _body(request), default_format="pcm")
        voice = await self._voice(account, params)
        hold = self.accounts.hold(account, len(params.text))
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        charged = False
        try:
            await response.prepare(request)
            encoder = stream_encoder(params.response_format, self.config.sample_rate)
            async for pcm in self._sentences(params, voice):
                for piece in self._slices(pcm):
                    await _send_delta(response, encoder.encode(piece))
            await _send_delta(response, encoder.finish())
            credits = self.accounts.charge(hold)
            charged = True
            await response.write(_sse("speech.audio.done", {"credits_used": credits}))
        except ConnectionError:
            log.info("stream client went away before the end; nothing charged")
        except asyncio.CancelledError:
            log.info("stream cancelled before the end; nothing charged")
            raise
        except Exception as exc:
            log.exception("stream failed after it started")
            await _try_write(response, _sse("error", error_body(exc)))
        finally:
            if not charged:
                self.accounts.release(hold)
        return response

    async def _sentences(self, params: SpeechParams, voice: _Voice) -> AsyncIterator[Any]:
        """Synthesise piece by piece, one piece ahead of the one being sent."""
        sentences = split_for_streaming(params.text)
        pending: asyncio.Task[Any] | None = None
        try:
            for i, sentence in enumerate(sentences):
                current = pending or asyncio.ensure_future(
                    self._synthesize(sentence, voice, params.speed)
                )
                pending = None
                if i + 1 < len(sentences):
                    pending = asyncio.ensure_future(
                        self._synthesize(sentences[i + 1], voice, params.speed)
                    )
                yield await current
        finally:
            if pending is not None:
                pending.cancel()

    def _slices(self, pcm: Any) -> list[Any]:
        step = max(1, int(self.config.sample_rate * self.config.stream_delta_seconds))
        return [pcm[i : i + step] for i in range(0, len(pcm), step)] or [pcm]

    async def _synthesize(self, text: str, voice: _Voice, speed: float) -> Any:
        result = await self.synthesizer.synthesize(
            text, voice.prosody, speed, sample_rate=self.config.sample_rate
        )
        return result.pcm

    async def _voice(self, account: Account, params: SpeechParams) -> _Voice:
        if params.ref_audio is not None:
            language = params.language or "en"
            pitch = await _reference_pitch(params.ref_audio)
            return _Voice(prosody_for_clone(language, None, pitch), language)
        assert params.voice_id is not None
        found = find_voice(params.voice_id)
        if found is not None:
            preset, variant = found
            voice = _Voice(variant.prosody, preset.language)
        else:
            saved = self.voices.get(account.key_id, params.voice_id)
            if saved is None:
                raise InvalidInput(f"unknown voice_id {params.voice_id!r}", code="voice_not_found")
            voice = _Voice(saved.prosody, saved.language)
        if params.language and params.language != voice.language:
            spoken = replace(voice.prosody, espeak_voice=espeak_voice_for(params.language))
            voice = _Voice(spoken, params.language)
        return voice

    # -- voices ---------------------------------------------------------------------------

    async def clone_voice(self, request: web.Request) -> web.Response:
        account = self._auth(request)
        params = clone_params(await _body(request))
        self.voices.ensure_room(account.key_id)  # before the costly decode
        pitch = await _reference_pitch(params.ref_audio)
        voice = self.voices.add(
            account.key_id,
            name=params.name,
            language=params.language,
            gender=params.gender,
            prosody=prosody_for_clone(params.language, params.gender, pitch),
            pitch_hz=pitch,
            ref_audio=params.ref_audio,
        )
        body = voice.to_json(_base_url(request))
        body.pop("tags")
        body.pop("ref_audio_url")
        return ok(body)

    async def list_voices(self, request: web.Request) -> web.Response:
        account = self._auth(request)
        page, limit = paging(dict(request.query))
        voices, total = self.voices.page(account.key_id, page, limit)
        base = _base_url(request)
        return ok(
            {
                "voices": [v.to_json(base) for v in voices],
                "total": total,
                "page": page,
                "limit": limit,
            }
        )

    async def list_presets(self, request: web.Request) -> web.Response:
        return ok({"voices": preset_catalogue()})

    async def update_voice(self, request: web.Request) -> web.Response:
        account = self._auth(request)
        voice = self._saved(account, request)
        changes = update_params(await _body(request))
        if "language" in changes or "gender" in changes:
            language = changes.get("language", voice.language)
            gender = changes.get("gender", voice.gender)
            changes["prosody"] = prosody_for_clone(language, gender, voice.pitch_hz)
        updated = self.voices.update(voice, **changes)
        return ok(
            {
                "id": updated.id,
                "name": updated.name,
                "language": updated.language,
                "gender": updated.gender,
                "tags": list(updated.tags),
            }
        )

    async def delete_voice(self, request: web.Request) -> web.Response:
        account = self._auth(request)
        voice = self._saved(account, request)
        self.voices.delete(voice)
        return ok({"id": voice.id})

    async def voice_ref_audio(self, request: web.Request) -> web.Response:
        voice = self._saved(self._auth(request), request)
        return web.Response(body=voice.ref_audio, content_type="application/octet-stream")

    async def recent_audio(self, request: web.Request) -> web.Response:
        found = self._recent.get(request.match_info["generation_id"])
        if found is None:
            raise InvalidInput("no such generation (audio is kept briefly)", code="not_found")
        data, fmt = found
        return web.Response(body=data, content_type=_MIME[fmt])

    async def health(self, request: web.Request) -> web.Response:
        return ok({"status": "ok"})

    # -- helpers --------------------------------------------------------------------------

    def _auth(self, request: web.Request) -> Account:
        return self.accounts.authenticate(request.headers.get("Authorization"))

    def _saved(self, account: Account, request: web.Request) -> Any:
        voice = self.voices.get(account.key_id, request.match_info["voice_id"])
        if voice is None:
            raise InvalidInput("no saved voice with that id", code="voice_not_found")
        return voice

    def _remember(self, generation_id: str, data: bytes, fmt: str) -> None:
        self._recent[generation_id] = (data, fmt)
        while len(self._recent) > self.config.audio_cache_entries:
            self._recent.popitem(last=False)


def create_engine_app(
    accounts: Accounts,
    *,
    synthesizer: Synthesizer | None = None,
    config: EngineConfig | None = None,
) -> web.Application:
    """An aiohttp application serving the engine; it owns its synthesiser unless given one."""
    owned = synthesizer is None
    engine = Engine(accounts, synthesizer or Synthesizer(), config or EngineConfig())
    app = web.Application(middlewares=[envelope_errors], client_max_size=_MAX_BODY)
    app.add_routes(engine.routes())
    app[ENGINE_KEY] = engine

    async def close_synthesizer(_: web.Application) -> None:
        if owned:
            await engine.synthesizer.close()

    app.on_cleanup.append(close_synthesizer)
    return app


async def _body(request: web.Request) -> dict[str, Any]:
    return parse_json_object(await request.read())


def _base_url(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}{API_PREFIX}"


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


async def _send_delta(response: web.StreamResponse, data: bytes) -> None:
    if data:
        await response.write(
            _sse("speech.audio.delta", {"audio_data": base64.b64encode(data).decode()})
        )


async def _try_write(response: web.StreamResponse, data: bytes) -> None:
    with contextlib.suppress(ConnectionError):
        await response.write(data)


async def _reference_pitch(ref_audio: bytes) -> float | None:
    """Decode reference audio (5-30 s, any format PyAV reads) off the loop; its median F0."""

    def measure() -> float | None:
        samples, rate = audio.decode_reference(ref_audio)
        return audio.estimate_pitch_hz(samples, rate)

    return await asyncio.to_thread(measure)
