"""The gateway's HTTP side: Voxtral-compatible REST with the gateway's own keys and credits,
the operational endpoints, and what the logs say (never a key or a token)."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.audio_checks import assert_speech, decode
from tests.conftest import Target
from tests.gateway_harness import Gateway, Received, receive_until, running_gateway
from voxgate.errors import UpstreamError
from voxgate.sessions.ledger import audit
from voxgate.upstream import SpeechRequest, Upstream, UpstreamConfig, VoiceUpdate
from voxgate.upstream.engine.app import EngineConfig

pytestmark = pytest.mark.engine_only

JANE = "82c99ee6-f932-423f-a4a3-d403c8914b8d"


@pytest.fixture(params=["memory", "redis"])
async def gateway(request: pytest.FixtureRequest, target: Target) -> AsyncIterator[Gateway]:
    redis_url = request.getfixturevalue("redis_url") if request.param == "redis" else ""
    async with running_gateway(
        target,
        redis_url=redis_url,
        api_keys=("vg_rest_key_0123456789:4500", "vg_other_key_0123456789:4500"),
    ) as gw:
        yield gw
        assert await audit(gw.services.ledger) == []


def client(gateway: Gateway, key: str | None = None) -> Upstream:
    """voxgate's own Voxtral client, pointed at the gateway: the drop-in claim, tested."""
    return Upstream(
        UpstreamConfig(base_url=f"{gateway.url}/api/tts", api_key=key or gateway.api_key)
    )


async def available(gateway: Gateway, key: str) -> int:
    """The balance once the gateway's settlements (made in the background) reached it."""
    assert await gateway.services.settlements.flushed(timeout_s=5)
    record = await gateway.services.keys.authenticate(key)
    return (await gateway.services.ledger.balance(record.account_id)).available


async def test_generate_and_stream_are_metered(gateway: Gateway) -> None:
    async with client(gateway) as tts:
        result = await tts.generate(
            SpeechRequest("Metered speech.", voice_id=JANE, response_format="wav")
        )
        assert result.credits_used == len("Metered speech.")
        assert_speech(decode(result.audio))
        pcm = b"".join(
            [c.data async for c in tts.stream(SpeechRequest("Streamed too.", voice_id=JANE))]
        )
        assert_speech(decode(pcm, fmt="pcm"))
    assert await available(gateway, gateway.api_key) == 4500 - len("Metered speech.") - len(
        "Streamed too."
    )


async def test_audio_url_is_the_gateways_own_and_serves_the_same_audio(gateway: Gateway) -> None:
    headers = {"Authorization": f"Bearer {gateway.api_key}"}
    speech = {"input": "Fetch me later.", "voice_id": JANE, "response_format": "wav"}
    async with aiohttp.ClientSession() as http:
        generated = await http.post(f"{gateway.url}/api/tts/generate", json=speech, headers=headers)
        data = (await generated.json())["data"]
        audio_url = data["audio_url"]
        assert audio_url == f"{gateway.url}/api/tts/audio/{data['generation_id']}"
        fetched = await http.get(audio_url, headers=headers)
        assert fetched.status == 200
        assert fetched.headers["Content-Type"] == "audio/wav"
        assert await fetched.read() == base64.b64decode(data["audio_data"])
        assert (await http.get(audio_url)).status == 401
        other = {"Authorization": "Bearer vg_other_key_0123456789"}
        foreign = await http.get(audio_url, headers=other)
        assert (foreign.status, (await foreign.json())["error"]) == (404, "not_found")
        unknown = await http.get(f"{gateway.url}/api/tts/audio/no-such-id", headers=headers)
        assert unknown.status == 404
        assert await unknown.json() == {
            "code": 404,
            "error": "not_found",
            "message": "no such generation (its audio is kept an hour)",
            "data": None,
        }


async def test_audio_the_upstream_forgot_is_not_found(gateway: Gateway) -> None:
    headers = {"Authorization": f"Bearer {gateway.api_key}"}
    async with aiohttp.ClientSession(f"{gateway.url}/api/tts/", headers=headers) as http:
        urls = []
        for _ in range(EngineConfig().audio_cache_entries + 1):  # the engine keeps that many
            generated = await http.post("generate", json={"input": "Hi.", "voice_id": JANE})
            urls.append((await generated.json())["data"]["audio_url"])
        forgotten = await http.get(urls[0])
        assert (forgotten.status, (await forgotten.json())["error"]) == (404, "not_found")
        assert (await http.get(urls[-1])).headers["Content-Type"] == "audio/mpeg"


async def test_insufficient_credit_costs_nothing(gateway: Gateway) -> None:
    async with client(gateway) as tts:
        with pytest.raises(UpstreamError) as caught:
            await tts.generate(SpeechRequest("x" * 5000, voice_id=JANE))
        assert caught.value.status == 402
        assert caught.value.upstream_code == 402
        with pytest.raises(UpstreamError) as bad:
            await tts.generate(SpeechRequest("Unknown voice.", voice_id="nope-nope"))
        assert bad.value.status == 404
    assert await available(gateway, gateway.api_key) == 4500


async def test_voices_are_kept_apart_per_account(gateway: Gateway) -> None:
    async with client(gateway) as tts, client(gateway, "vg_other_key_0123456789") as other:
        reference = (
            await tts.generate(
                SpeechRequest(
                    "A reference voice needs at least five seconds of speech to clone well.",
                    voice_id=JANE,
                    response_format="mp3",
                    speed=0.7,
                )
            )
        ).audio
        voice = await tts.clone_voice("Mine", reference, language="en", gender="female")
        (listed,) = [v async for v in tts.iter_voices()]
        assert listed.id == voice.id
        assert [v.id async for v in other.iter_voices()] == []
        # The reference audio comes through the gateway, to the voice's owner only.
        ref_url = f"{gateway.url}/api/tts/voices/{voice.id}/ref_audio"
        assert listed.ref_audio_url == ref_url
        async with aiohttp.ClientSession() as http:
            mine = {"Authorization": f"Bearer {gateway.api_key}"}
            fetched = await http.get(ref_url, headers=mine)
            assert fetched.status == 200
            assert await fetched.read() == reference
            assert (await http.get(ref_url)).status == 401
            theirs = {"Authorization": "Bearer vg_other_key_0123456789"}
            foreign = await http.get(ref_url, headers=theirs)
            assert (foreign.status, (await foreign.json())["error"]) == (404, "voice_not_found")
        with pytest.raises(UpstreamError) as foreign:
            await other.delete_voice(voice.id)
        assert foreign.value.status == 404
        renamed = await tts.update_voice(voice.id, VoiceUpdate(name="Renamed"))
        assert renamed.name == "Renamed"
        assert await tts.delete_voice(voice.id) == voice.id
        async with aiohttp.ClientSession() as http:
            gone = await http.get(ref_url, headers=mine)
            assert (gone.status, (await gone.json())["error"]) == (404, "voice_not_found")
        presets = await tts.list_presets()
        assert len(presets) == 17


async def test_rest_requires_a_gateway_key(gateway: Gateway, target: Target) -> None:
    async with Upstream(
        UpstreamConfig(base_url=f"{gateway.url}/api/tts", api_key=target.api_key)
    ) as engine_key:
        with pytest.raises(UpstreamError) as caught:
            await engine_key.generate(SpeechRequest("Hi.", voice_id=JANE))
    assert caught.value.status == 401


async def test_a_refused_request_is_named_as_the_upstream_named_it(gateway: Gateway) -> None:
    headers = {"Authorization": f"Bearer {gateway.api_key}"}
    not_audio = base64.b64encode(b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x00" * 30).decode()
    async with aiohttp.ClientSession(f"{gateway.url}/api/tts/", headers=headers) as http:
        clone = await http.post("voices/clone", json={"name": "Mine", "ref_audio": not_audio})
        assert clone.status == 422
        body = await clone.json()
        assert (body["code"], body["error"]) == (422, "undecodable_audio")
        assert "upstream answered 422" in body["message"]
        speech = {"input": "Hello.", "voice_id": "00000000-0000-0000-0000-000000000000"}
        unknown = await http.post("generate", json=speech)
        assert unknown.status == 404
        assert (await unknown.json())["error"] == "voice_not_found"
    assert await available(gateway, gateway.api_key) == 4500  # nothing was charged


async def test_an_upstream_refusing_the_gateway_is_a_bad_gateway(target: Target) -> None:
    # The gateway's own upstream key is wrong: the caller's request is not at fault.
    wrong = Target(target.base_url, "wrong-upstream-key-0123456789", target.engine)
    async with running_gateway(wrong, api_keys=("vg_rest_key_0123456789:100",)) as gw:
        async with client(gw) as tts:
            with pytest.raises(UpstreamError) as caught:
                await tts.generate(SpeechRequest("Hi.", voice_id=JANE))
        assert caught.value.status == 502
        assert caught.value.code == "upstream_error"
        assert await available(gw, gw.api_key) == 100


async def test_operational_endpoints(gateway: Gateway) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as http:
        assert (await http.get(f"{gateway.url}/healthz")).status == 200
        ready = await http.get(f"{gateway.url}/readyz")
        assert ready.status == 200
        assert (await ready.json())["data"] == {"store": "ok", "upstream": "ok"}
        ws = await http.ws_connect(
            gateway.ws_url, headers={"Authorization": f"Bearer {gateway.api_key}"}
        )
        received = await receive_until(ws, "session.created", Received())
        await ws.send_json({"type": "text.append", "text": "Count me."})
        await ws.send_json({"type": "context.close"})
        await receive_until(ws, "context.done", received)
        await ws.close()
        metrics = await (await http.get(f"{gateway.url}/metrics")).text()
        for name in (
            "voxgate_sessions_total 1.0",
            "voxgate_time_to_first_audio_seconds_count 1.0",
            "voxgate_upstream_first_byte_seconds_count",
            "voxgate_credits_committed_total",
            'voxgate_upstream_requests_total{outcome="ok"}',
        ):
            assert name in metrics
        spec = await (await http.get(f"{gateway.url}/openapi.json")).json()
        assert spec["openapi"].startswith("3.")
        assert "/api/tts/generate" in spec["paths"]
        assert "RealtimeClient" in spec["components"]["schemas"]


async def test_readyz_reports_an_unreachable_upstream(target: Target) -> None:
    import aiohttp

    async with (
        running_gateway(Target("http://127.0.0.1:9/api/tts", "k" * 10, None)) as gw,
        aiohttp.ClientSession() as http,
    ):
        ready = await http.get(f"{gw.url}/readyz")
        assert ready.status == 503
        assert "Upstream" in (await ready.json())["data"]["upstream"]


async def test_logs_never_contain_keys_or_tokens(
    target: Target, caplog: pytest.LogCaptureFixture
) -> None:
    import aiohttp

    caplog.set_level(logging.DEBUG)
    async with running_gateway(target) as gw, aiohttp.ClientSession() as http:
        minted = await http.post(
            f"{gw.url}/v1/client_tokens", json={}, headers={"Authorization": f"Bearer {gw.api_key}"}
        )
        token = (await minted.json())["data"]["token"]
        for attempt in range(2):  # the second use is refused, and logged
            ws = await http.ws_connect(gw.ws_url)
            await ws.send_json({"type": "auth", "token": token})
            await ws.receive()
            await ws.close()
            await asyncio.sleep(0.05 * attempt)
        wrong = await http.get(
            f"{gw.url}/api/tts/voices/mine",
            headers={"Authorization": "Bearer vg_wrong_key_42424242"},
        )
        assert wrong.status == 401
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert caplog.records
    for secret in (gw.api_key, token, token.removeprefix("vgct_"), "vg_wrong_key_42424242"):
        assert secret not in text


async def test_dev_token_endpoint_is_loopback_only_and_can_be_off(target: Target) -> None:
    import aiohttp

    async with running_gateway(target, api_keys=()) as gw, aiohttp.ClientSession() as http:
        assert gw.services.dev_api_key
        dev = await http.post(f"{gw.url}/v1/dev/client_token", json={})
        assert dev.status == 200
        assert (await dev.json())["data"]["token"].startswith("vgct_")
    async with (
        running_gateway(target, api_keys=(), dev_tokens="off") as gw,
        aiohttp.ClientSession() as http,
    ):
        off = await http.post(f"{gw.url}/v1/dev/client_token", json={})
        assert off.status == 401
        assert (await off.json())["error"] == "dev_tokens_off"
