"""The Voxtral REST API, drop-in, metered with the gateway's own keys and credits.

Same paths under ``/api/tts``, same request fields, same envelopes: an application that
talks to Voxtral only changes its base URL and key. Requests are validated here exactly
as the upstream would (so a bad request costs nothing and never leaves the gateway),
credits are reserved before the upstream is called and committed only on success, and
saved voices are kept apart per account.

A generation's ``audio_url`` is the gateway's own ``/api/tts/audio/{id}``: the upstream's
URL may point where callers cannot go (the embedded engine's loopback port), so the
gateway remembers it for an hour and streams that audio to the account that made it. A
saved voice's ``ref_audio_url`` is likewise ``/api/tts/voices/{id}/ref_audio``, streamed
from the upstream's URL to the voice's owner.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from voxgate.envelope import error_body, ok
from voxgate.errors import (
    InvalidInput,
    LimitExceeded,
    StoreUnavailable,
    UpstreamConnectionError,
    UpstreamError,
)
from voxgate.gateway.access.principal import Principal
from voxgate.sessions.settlements import Action, SettlementOrder
from voxgate.store import StoreRedis, redis_client
from voxgate.upstream import SpeechRequest, VoiceUpdate
from voxgate.upstream.engine.validation import (
    clone_params,
    paging,
    parse_json_object,
    speech_params,
    update_params,
)
from voxgate.upstream.models import MAX_SAVED_VOICES, Voice

log = logging.getLogger(__name__)

API_PREFIX = "/api/tts"
AUDIO_KEPT_S = 3600.0  # how long a generation's audio_url answers
_AUDIO_KEPT_IN_MEMORY = 10_000  # links, without Redis; the oldest is forgotten first


class VoiceOwners:
    """Which account saved which voice (the upstream sees one account: the gateway's)."""

    def __init__(self, redis: StoreRedis | None = None, prefix: str = "voxgate:") -> None:
        self._redis = redis
        self._prefix = prefix
        self._memory: dict[str, list[str]] = {}

    async def add(self, account_id: str, voice_id: str) -> None:
        if self._redis is not None:
            await self._redis.rpush(self._key(account_id), voice_id)
        else:
            self._memory.setdefault(account_id, []).append(voice_id)

    async def remove(self, account_id: str, voice_id: str) -> None:
        if self._redis is not None:
            await self._redis.lrem(self._key(account_id), 0, voice_id)
        elif voice_id in self._memory.get(account_id, []):
            self._memory[account_id].remove(voice_id)

    async def voices(self, account_id: str) -> list[str]:
        if self._redis is not None:
            return [str(v) for v in await self._redis.lrange(self._key(account_id), 0, -1)]
        return list(self._memory.get(account_id, []))

    async def aclose(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()

    def _key(self, account_id: str) -> str:
        return f"{self._prefix}voices:{{{account_id}}}"


@dataclass(frozen=True, slots=True)
class AudioLink:
    """Where the upstream serves one generation's audio, and whose it is."""

    url: str
    account_id: str


class AudioLinks:
    """The upstream's audio URL of each recent generation, by id, for ``AUDIO_KEPT_S``."""

    def __init__(self, redis: StoreRedis | None = None, prefix: str = "voxgate:") -> None:
        self._redis = redis
        self._prefix = prefix
        self._memory: OrderedDict[str, tuple[float, AudioLink]] = OrderedDict()

    async def add(self, audio_id: str, link: AudioLink) -> None:
        if self._redis is not None:
            value = orjson.dumps({"url": link.url, "account_id": link.account_id})
            await self._redis.set(self._key(audio_id), value, ex=int(AUDIO_KEPT_S))
            return
        self._memory[audio_id] = (time.monotonic() + AUDIO_KEPT_S, link)
        while len(self._memory) > _AUDIO_KEPT_IN_MEMORY:
            self._memory.popitem(last=False)

    async def get(self, audio_id: str) -> AudioLink | None:
        if self._redis is not None:
            value = await self._redis.get(self._key(audio_id))
            return AudioLink(**orjson.loads(value)) if value is not None else None
        until, link = self._memory.get(audio_id, (0.0, None))
        return link if until > time.monotonic() else None

    def _key(self, audio_id: str) -> str:
        return f"{self._prefix}audio:{audio_id}"


class VoxtralCompatible:
    def __init__(self, services: Any) -> None:
        self.services = services
        settings = services.settings
        redis = (
            redis_client(
                settings.redis_url,
                max_connections=16,
                blocking=True,
                timeout_s=settings.redis_timeout_s,
            )
            if settings.redis_url
            else None
        )
        self._redis = redis
        self.owners = VoiceOwners(redis)
        self.audio_links = AudioLinks(redis)

    async def aclose(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()

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
            web.get(f"{p}/audio/{{audio_id}}", self.audio),
        ]

    async def generate(self, request: web.Request) -> web.Response:
        principal = await self._auth(request)
        speech = await self._speech(request, principal, default_format="mp3")
        op_id = await self._reserve(principal, speech)
        try:
            result = await self.services.upstream_client.generate(speech)
        except BaseException:
            self._settle(principal, op_id, len(speech.input), "refund")
            raise
        self._settle(principal, op_id, len(speech.input), "commit")
        audio_url = None
        if result.audio_url:
            audio_id = result.generation_id or uuid.uuid4().hex
            await self.audio_links.add(audio_id, AudioLink(result.audio_url, principal.account_id))
            audio_url = f"{api_base(request)}/audio/{audio_id}"
        return ok(
            {
                "audio_data": base64.b64encode(result.audio).decode(),
                "format": result.format,
                "generation_id": result.generation_id,
                "audio_url": audio_url,
                "chunks": result.chunks,
                "credits_used": len(speech.input),
            }
        )

    async def stream(self, request: web.Request) -> web.StreamResponse:
        principal = await self._auth(request)
        speech = await self._speech(request, principal, default_format="pcm")
        op_id = await self._reserve(principal, speech)
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        committed = False
        try:
            # Opened before answering, so an upstream refusal is still a proper HTTP error.
            deltas = self.services.upstream_client.stream_encoded(speech)
            first = await anext(deltas, None)
            await response.prepare(request)
            if first is not None:
                await _send(response, "speech.audio.delta", {"audio_data": _b64(first)})
            async for delta in deltas:
                await _send(response, "speech.audio.delta", {"audio_data": _b64(delta)})
            self._settle(principal, op_id, len(speech.input), "commit")
            committed = True
            await _send(response, "speech.audio.done", {"credits_used": len(speech.input)})
        except ConnectionError:
            log.info("REST stream client went away; refunded")
        except Exception as exc:
            if not response.prepared:
                raise
            with contextlib.suppress(ConnectionError):
                await _send(response, "error", error_body(exc))
        finally:
            if not committed:
                self._settle(principal, op_id, len(speech.input), "refund")
        return response

    async def audio(self, request: web.Request) -> web.StreamResponse:
        """A recent generation's audio, streamed from the upstream with its content type."""
        principal = await self._auth(request)
        link = await self.audio_links.get(request.match_info["audio_id"])
        if link is None or link.account_id != principal.account_id:
            raise InvalidInput("no such generation (its audio is kept an hour)", code="not_found")
        return await self._relay_from(request, link.url)

    async def voice_ref_audio(self, request: web.Request) -> web.StreamResponse:
        """The reference audio a saved voice was cloned from, to the voice's owner."""
        principal = await self._auth(request)
        voice_id = await self._owned(principal, request)
        url = None
        async for voice in self.services.upstream_client.iter_voices():
            if voice.id == voice_id:
                url = voice.ref_audio_url
                break
        if url is None:
            raise InvalidInput("the upstream keeps no reference audio for it", code="not_found")
        return await self._relay_from(request, url)

    async def _relay_from(self, request: web.Request, url: str) -> web.StreamResponse:
        """Stream the upstream's audio at ``url`` to the caller, as it comes."""
        config = self.services.upstream_client.config
        # The upstream's key goes only to its own base URL, never where it redirects.
        own = url.startswith(config.base_url.rstrip("/") + "/")
        headers = {"Accept-Encoding": "identity"}  # relayed as is, Content-Length and all
        if own and config.api_key:
            headers["Authorization"] = f"Bearer {config.api_key}"
        timeout = aiohttp.ClientTimeout(
            total=config.total_timeout, sock_connect=config.connect_timeout
        )
        async with aiohttp.ClientSession(timeout=timeout, trust_env=False) as http:
            try:
                upstream = await http.get(url, headers=headers, allow_redirects=not own)
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise UpstreamConnectionError(f"upstream audio unreachable: {exc!r}") from exc
            async with upstream:
                return await _relay(request, upstream)

    async def clone_voice(self, request: web.Request) -> web.Response:
        principal = await self._auth(request)
        return ok(await self.clone_for(principal, parse_json_object(await request.read())))

    async def clone_for(self, principal: Principal, body: dict[str, Any]) -> dict[str, Any]:
        """Clone a voice for ``principal``'s account from a Voxtral clone request body."""
        params = clone_params(body)
        if len(await self.owners.voices(principal.account_id)) >= MAX_SAVED_VOICES:
            raise LimitExceeded(
                f"you already have {MAX_SAVED_VOICES} saved voices, the maximum; delete one",
                code="voice_limit_reached",
            )
        voice = await self.services.upstream_client.clone_voice(
            params.name, params.ref_audio, language=params.language, gender=params.gender
        )
        await self.owners.add(principal.account_id, voice.id)
        return {
            "id": voice.id,
            "name": voice.name,
            "mistral_voice_id": voice.mistral_voice_id,
            "language": voice.language,
            "gender": voice.gender,
            "created_at": voice.created_at,
        }

    async def list_voices(self, request: web.Request) -> web.Response:
        principal = await self._auth(request)
        page, limit = paging(dict(request.query))
        return ok(await self.voices_of(principal, page, limit, api_base(request)))

    async def voices_of(
        self, principal: Principal, page: int, limit: int, base: str
    ) -> dict[str, Any]:
        """A page of ``principal``'s saved voices, newest first, as /voices/mine lists them.

        A voice's ``ref_audio_url`` is the gateway's own, under ``base`` (see ``api_base``).
        """
        mine = list(reversed(await self.owners.voices(principal.account_id)))  # newest first
        wanted = mine[(page - 1) * limit : page * limit]
        found = {
            v.id: v async for v in self.services.upstream_client.iter_voices() if v.id in wanted
        }
        voices = [_voice_json(found[v], base) for v in wanted if v in found]
        return {"voices": voices, "total": len(mine), "page": page, "limit": limit}

    async def list_presets(self, request: web.Request) -> web.Response:
        return ok({"voices": await self.services.upstream_client.list_presets()})

    async def update_voice(self, request: web.Request) -> web.Response:
        principal = await self._auth(request)
        voice_id = await self._owned(principal, request)
        changes = update_params(parse_json_object(await request.read()))
        tags = changes.get("tags")
        voice = await self.services.upstream_client.update_voice(
            voice_id,
            VoiceUpdate(
                name=changes.get("name"),
                language=changes.get("language"),
                gender=changes.get("gender"),
                tags=tuple(tags) if tags is not None else None,
            ),
        )
        return ok(
            {
                "id": voice.id,
                "name": voice.name,
                "language": voice.language,
                "gender": voice.gender,
                "tags": list(voice.tags),
            }
        )

    async def delete_voice(self, request: web.Request) -> web.Response:
        principal = await self._auth(request)
        voice_id = await self._owned(principal, request)
        await self.services.upstream_client.delete_voice(voice_id)
        await self.owners.remove(principal.account_id, voice_id)
        return ok({"id": voice_id})

    # -- helpers ----------------------------------------------------------------------

    async def _auth(self, request: web.Request) -> Principal:
        principal: Principal = await self.services.authenticate_bearer(
            request.headers.get("Authorization")
        )
        return principal

    async def _speech(
        self, request: web.Request, principal: Principal, *, default_format: str
    ) -> SpeechRequest:
        body = parse_json_object(await request.read())
        params = speech_params(body, default_format=default_format)  # the upstream's own rules
        # Saved voice ids are unguessable UUIDs: holding one is permission to speak with it,
        # as on the upstream. Listing, renaming and deleting are kept to the owner.
        return SpeechRequest(
            input=params.text,
            voice_id=params.voice_id,
            ref_audio=body.get("ref_audio"),
            response_format=params.response_format,  # type: ignore[arg-type]
            speed=params.speed,
        )

    async def _owned(self, principal: Principal, request: web.Request) -> str:
        voice_id = request.match_info["voice_id"]
        if voice_id not in await self.owners.voices(principal.account_id):
            raise InvalidInput("no saved voice with that id", code="voice_not_found")
        return voice_id

    async def _reserve(self, principal: Principal, speech: SpeechRequest) -> str:
        op_id = f"rest:{uuid.uuid4().hex}"
        try:
            await self.services.ledger.reserve(
                principal.account_id, _rest_session(principal), len(speech.input), op_id, 300.0
            )
        except StoreUnavailable:  # the reserve may have reached Redis after all
            self._settle(principal, op_id, len(speech.input), "void")
            raise
        return op_id

    def _settle(self, principal: Principal, op_id: str, amount: int, action: Action) -> None:
        """Commit (all of it), refund or void in the background: the queue owns it until the
        store acknowledges it, so the answer never waits on the store."""
        charge = amount if action == "commit" else 0
        session = _rest_session(principal)
        order = SettlementOrder(op_id, principal.account_id, session, action, amount, charge)
        self.services.settlements.submit(order)
        if charge:
            self.services.metrics.credits_committed.inc(charge)


def _rest_session(principal: Principal) -> str:
    return f"rest:{principal.key_id}"


def api_base(request: web.Request) -> str:
    """This API's URL as ``request`` reached it: where its own audio links point."""
    return f"{request.scheme}://{request.host}{API_PREFIX}"


def _voice_json(voice: Voice, base: str) -> dict[str, Any]:
    # The upstream's own URL may be unreachable for callers, or carry its credentials.
    ref_audio_url = f"{base}/voices/{voice.id}/ref_audio" if voice.ref_audio_url else None
    return {
        "id": voice.id,
        "name": voice.name,
        "mistral_voice_id": voice.mistral_voice_id,
        "ref_audio_url": ref_audio_url,
        "language": voice.language,
        "gender": voice.gender,
        "tags": list(voice.tags),
        "created_at": voice.created_at,
    }


async def _relay(request: web.Request, upstream: aiohttp.ClientResponse) -> web.StreamResponse:
    if upstream.status in (404, 410):
        raise InvalidInput("the upstream no longer has this audio", code="not_found")
    if upstream.status != 200:
        raise UpstreamError(f"upstream audio answered {upstream.status}", status=upstream.status)
    response = web.StreamResponse(
        headers={"Content-Type": upstream.headers.get("Content-Type", "application/octet-stream")}
    )
    if upstream.content_length is not None and "Content-Encoding" not in upstream.headers:
        response.content_length = upstream.content_length
    await response.prepare(request)
    try:
        async for piece in upstream.content.iter_any():
            await response.write(piece)
    except (aiohttp.ClientError, TimeoutError):
        log.warning("upstream audio broke off; the caller's connection is dropped")
        if request.transport is not None:
            request.transport.close()  # a cut body must not look whole
        return response
    await response.write_eof()
    return response


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def _send(response: web.StreamResponse, event: str, data: dict[str, Any]) -> None:
    await response.write(b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n")
