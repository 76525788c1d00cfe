"""WHEP: a real aiortc peer plays a session's audio, over loopback, against a real gateway."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import numpy as np
import pytest
from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from tests.conftest import Target
from tests.gateway_harness import Gateway, Received, receive_until, running_gateway

pytestmark = [pytest.mark.engine_only, pytest.mark.timeout(120)]

TEXT = "Hello from the gateway. This audio travels over WebRTC, twenty milliseconds at a time."


@pytest.fixture(params=[True, False], ids=["passthrough", "encode"])
async def gateway(target: Target, request: pytest.FixtureRequest) -> AsyncIterator[Gateway]:
    """Both audio paths: the upstream's Opus sent as it is, and PCM coded by the track."""
    async with running_gateway(
        target, stun_urls=("stun:stun.example.net:3478",), opus_passthrough=request.param
    ) as gw:
        yield gw


class Listener:
    """A browser-like receiver: offers recvonly audio, collects decoded frames."""

    def __init__(self, *, data_channel: bool = False, codecs: tuple[str, ...] = ()) -> None:
        self.pc = RTCPeerConnection()
        transceiver = self.pc.addTransceiver("audio", direction="recvonly")
        if codecs:  # offered in this order of preference, and only these
            capabilities = RTCRtpReceiver.getCapabilities("audio").codecs
            by_name = {c.mimeType.lower(): c for c in capabilities}
            transceiver.setCodecPreferences([by_name[f"audio/{name}"] for name in codecs])
        self.channel = self.pc.createDataChannel("voxgate") if data_channel else None
        self.frames: list[tuple[float, np.ndarray]] = []
        self.sample_rates: set[int] = set()
        self.stamped: list[tuple[int, float]] = []  # (RTP timestamp, RMS)
        self.timestamps: list[int] = []
        self._reader: asyncio.Task[None] | None = None
        self.pc.on("track", self._on_track)

    def _on_track(self, track: Any) -> None:
        self._reader = asyncio.ensure_future(self._read(track))

    async def _read(self, track: Any) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            self.timestamps.append(frame.pts)
            self.sample_rates.add(frame.sample_rate)
            samples = frame.to_ndarray().reshape(-1)
            self.frames.append((loop.time(), samples))
            rms = float(np.sqrt(np.mean((samples.astype(np.float32) / 32768) ** 2)))
            self.stamped.append((frame.pts, rms))

    async def offer(self) -> str:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return str(self.pc.localDescription.sdp)

    async def answer(self, sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))

    def energy_since(self, when: float) -> list[float]:
        return [
            float(np.sqrt(np.mean((f.astype(np.float32) / 32768) ** 2)))
            for t, f in self.frames
            if t >= when
        ]

    async def close(self) -> None:
        await self.pc.close()
        if self._reader is not None:
            self._reader.cancel()


async def post_offer(
    http: aiohttp.ClientSession, url: str, sdp: str, key: str, content_type: str = "application/sdp"
) -> aiohttp.ClientResponse:
    return await http.post(
        url, data=sdp, headers={"Authorization": f"Bearer {key}", "Content-Type": content_type}
    )


async def open_session(
    http: aiohttp.ClientSession, gateway: Gateway
) -> tuple[aiohttp.ClientWebSocketResponse, Received, str]:
    """A realtime socket with the gateway's key, its events so far and its session id."""
    ws = await http.ws_connect(
        gateway.ws_url, headers={"Authorization": f"Bearer {gateway.api_key}"}
    )
    received = await receive_until(ws, "session.created", Received())
    return ws, received, received.of("session.created")[0]["session_id"]


async def offer_to_session(
    http: aiohttp.ClientSession, gateway: Gateway, session_id: str, listener: Listener
) -> aiohttp.ClientResponse:
    """``listener``'s offer posted to the session's WHEP endpoint."""
    url = f"{gateway.url}/v1/sessions/{session_id}/whep"
    return await post_offer(http, url, await listener.offer(), gateway.api_key)


async def wait_for(condition: Any, timeout: float = 10) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


async def test_session_audio_over_whep(gateway: Gateway) -> None:
    async with aiohttp.ClientSession() as http:
        ws, received, session_id = await open_session(http, gateway)
        listener = Listener()
        response = await offer_to_session(http, gateway, session_id, listener)
        assert response.status == 201, await response.text()
        assert response.headers["Content-Type"] == "application/sdp"
        location = response.headers["Location"]
        assert location.startswith("/v1/whep/")
        assert response.headers["ETag"]
        assert response.headers.getall("Link") == ['<stun:stun.example.net:3478>; rel="ice-server"']
        answer = await response.text()
        assert "a=sendonly" in answer
        assert "sprop-stereo=0" in answer
        await listener.answer(answer)
        await wait_for(lambda: listener.pc.connectionState == "connected")

        await ws.send_json({"type": "text.append", "text": TEXT})
        await ws.send_json({"type": "context.close"})
        await receive_until(ws, "context.done", received, timeout=30)
        assert not received.frames  # audio went over WebRTC, not the socket
        spoken_ms = received.of("chunk.ended")[-1]["end_ms"]
        await asyncio.sleep(spoken_ms / 1000 * 0.2 + 0.5)
        loud = [e for e in listener.energy_since(0) if e > 0.01]
        assert len(loud) * 20 > 0.5 * spoken_ms  # most of the speech arrived as audio
        stamps = listener.timestamps
        steps = [b - a for a, b in itertools.pairwise(stamps)]
        # One packet per 20 ms while the turn plays (+960); between turns DTX frames and a
        # re-timed start may step further, never back into the last packet.
        assert all(step >= 120 for step in steps)
        assert sum(step == 960 for step in steps) >= len(steps) - 4
        scraped = await (await http.get(f"{gateway.url}/metrics")).text()
        assert "voxgate_webrtc_peers 1.0" in scraped
        sent = re.search(r"^voxgate_webrtc_packets_sent (\S+)$", scraped, re.M)
        assert sent is not None
        assert float(sent.group(1)) >= len(stamps)
        assert 'voxgate_webrtc_underruns{cause="gateway"}' in scraped
        passed = re.search(r"^voxgate_opus_passthrough_seconds_total (\S+)$", scraped, re.M)
        assert passed is not None
        # Every second of the turn went as the upstream coded it, or none did.
        if gateway.services.settings.opus_passthrough:
            assert float(passed.group(1)) * 1000 == pytest.approx(spoken_ms, abs=1)
        else:
            assert float(passed.group(1)) == 0
        assert "voxgate_media_clock_late_p99_seconds" in scraped

        patch = await http.patch(
            f"{gateway.url}{location}", headers={"Authorization": f"Bearer {gateway.api_key}"}
        )
        assert patch.status == 405
        deleted = await http.delete(
            f"{gateway.url}{location}", headers={"Authorization": f"Bearer {gateway.api_key}"}
        )
        assert deleted.status == 200
        await listener.close()
        await ws.close()


async def test_interrupt_silences_webrtc_and_reports_what_was_played(gateway: Gateway) -> None:
    async with aiohttp.ClientSession() as http:
        ws, received, session_id = await open_session(http, gateway)
        listener = Listener()
        response = await offer_to_session(http, gateway, session_id, listener)
        await listener.answer(await response.text())
        await wait_for(lambda: listener.pc.connectionState == "connected")
        long_text = " ".join(["This sentence plays for a while over the peer connection."] * 5)
        await ws.send_json({"type": "text.append", "text": long_text})
        await ws.send_json({"type": "text.flush"})
        await wait_for(lambda: sum(e > 0.01 for e in listener.energy_since(0)) > 50)  # ~1 s
        track = gateway.services.live_sessions[session_id].webrtc
        await ws.send_json({"type": "interrupt"})
        await receive_until(ws, "interrupted", received)
        # The track had been told when this message went out: its packets from then on.
        cut = track.stats.timestamp
        result = received.of("interrupted")[0]
        assert result["heard"] + result["unheard"] == long_text
        assert 800 < result["played_ms"] < 4000
        assert result["heard"].startswith("This sentence")
        # Charged: what the track sent (what was heard), not what synthesis had ready.
        assert result["usage"]["characters"] <= len(result["heard"].strip()) + 10
        await asyncio.sleep(0.5)
        # Within 2 frames of the interrupt, the stream is silent (RTP clock: 960 per frame):
        # 200 ms of silence packets, then DTX frames every 400 ms (aiortc's jitter buffer
        # still holds the last 4 packets it got).
        later = [rms for pts, rms in listener.stamped if pts > cut + 2 * 960]
        assert len(later) >= 3
        assert max(later) < 0.003
        await listener.close()
        await ws.close()


async def test_whep_creates_a_session_driven_over_a_data_channel(gateway: Gateway) -> None:
    async with aiohttp.ClientSession() as http:
        listener = Listener(data_channel=True)
        assert listener.channel is not None
        messages: list[dict[str, Any]] = []
        listener.channel.on("message", lambda m: messages.append(json.loads(m)))
        response = await post_offer(
            http, f"{gateway.url}/v1/whep", await listener.offer(), gateway.api_key
        )
        assert response.status == 201, await response.text()
        await listener.answer(await response.text())
        await wait_for(lambda: listener.channel.readyState == "open")  # type: ignore[union-attr]
        await wait_for(lambda: any(m["type"] == "session.created" for m in messages))
        listener.channel.send(json.dumps({"type": "text.append", "text": "Over the channel."}))
        listener.channel.send(json.dumps({"type": "context.close"}))
        await wait_for(lambda: any(m["type"] == "context.done" for m in messages), timeout=20)
        await asyncio.sleep(1.5)
        assert sum(e > 0.01 for e in listener.energy_since(0)) > 20
        session_id = next(m for m in messages if m["type"] == "session.created")["session_id"]
        assert session_id in gateway.services.live_sessions
        await listener.close()
        await wait_for(lambda: session_id not in gateway.services.live_sessions, timeout=15)


@pytest.mark.parametrize(
    ("path", "body", "content_type", "status", "error"),
    [
        ("/v1/sessions/nope/whep", None, "application/sdp", 404, "not_found"),
        ("/v1/sessions/{id}/whep", "not sdp", "application/sdp", 400, "bad_sdp"),
        ("/v1/sessions/{id}/whep", None, "application/json", 415, "unsupported_media_type"),
        ("/v1/sessions/{id}/whep", "datachannel-only", "application/sdp", 400, "no_audio"),
        ("/v1/sessions/{id}/whep", "pcmu-only", "application/sdp", 400, "no_opus"),
        ("/v1/whep", None, "application/sdp", 400, "no_data_channel"),
    ],
)
async def test_whep_errors(
    gateway: Gateway, path: str, body: str | None, content_type: str, status: int, error: str
) -> None:
    async with aiohttp.ClientSession() as http:
        ws, _, session_id = await open_session(http, gateway)
        if body is None:
            listener = Listener()
            body = await listener.offer()
            await listener.close()
        elif body == "pcmu-only":
            listener = Listener(codecs=("pcmu",))
            body = await listener.offer()
            await listener.close()
        elif body == "datachannel-only":
            pc = RTCPeerConnection()
            pc.createDataChannel("voxgate")
            await pc.setLocalDescription(await pc.createOffer())
            body = pc.localDescription.sdp
            await pc.close()
        response = await post_offer(
            http,
            gateway.url + path.replace("{id}", session_id),
            body,
            gateway.api_key,
            content_type,
        )
        assert response.status == status
        assert (await response.json())["error"] == error
        unauthorized = await http.post(
            gateway.url + path.replace("{id}", session_id),
            data=body,
            headers={"Content-Type": "application/sdp"},
        )
        assert unauthorized.status == 401
        await ws.close()
    assert gateway.services.live_sessions == {} or all(
        c.webrtc is None for c in gateway.services.live_sessions.values()
    )


async def test_an_offer_preferring_another_codec_gets_opus_alone(gateway: Gateway) -> None:
    async with aiohttp.ClientSession() as http:
        ws, received, session_id = await open_session(http, gateway)
        listener = Listener(codecs=("pcmu", "opus", "pcma"))
        response = await offer_to_session(http, gateway, session_id, listener)
        assert response.status == 201, await response.text()
        answer = await response.text()
        audio = next(line for line in answer.splitlines() if line.startswith("m=audio"))
        opus = re.search(r"^a=rtpmap:(\d+) opus/48000/2", answer, re.M)
        assert opus is not None
        assert audio.split()[3:] == [opus.group(1)]  # the only payload type answered
        await listener.answer(answer)
        await wait_for(lambda: listener.pc.connectionState == "connected")
        await ws.send_json({"type": "text.append", "text": "Opus, whatever came first."})
        await ws.send_json({"type": "context.close"})
        await receive_until(ws, "context.done", received)
        await wait_for(lambda: sum(e > 0.01 for e in listener.energy_since(0)) > 10)
        assert listener.sample_rates == {48000}  # decoded as Opus, not as 8 kHz PCMU
        await listener.close()
        await ws.close()


async def test_a_client_token_is_spent_only_on_a_session_that_exists(gateway: Gateway) -> None:
    async with aiohttp.ClientSession() as http:
        minted = await http.post(
            f"{gateway.url}/v1/client_tokens",
            json={},
            headers={"Authorization": f"Bearer {gateway.api_key}"},
        )
        token = (await minted.json())["data"]["token"]
        ws, _, session_id = await open_session(http, gateway)
        listener = Listener()
        offer = await listener.offer()
        missing = await post_offer(http, f"{gateway.url}/v1/sessions/nope/whep", offer, token)
        assert missing.status == 404
        assert (await missing.json())["error"] == "not_found"
        not_sdp = await post_offer(
            http, f"{gateway.url}/v1/sessions/{session_id}/whep", "not sdp", token
        )
        assert (await not_sdp.json())["error"] == "bad_sdp"
        url = f"{gateway.url}/v1/sessions/{session_id}/whep"
        attached = await post_offer(http, url, offer, token)
        assert attached.status == 201, await attached.text()
        await listener.answer(await attached.text())
        await wait_for(lambda: listener.pc.connectionState == "connected")
        second = Listener()
        again = await post_offer(http, url, await second.offer(), token)
        assert (again.status, (await again.json())["error"]) == (401, "token_used")
        await second.close()
        await listener.close()
        await ws.close()


async def test_opus_settings_and_dtx_off_reach_the_track(target: Target) -> None:
    async with (
        running_gateway(
            target, webrtc_opus_bitrate=16000, webrtc_opus_complexity=1, webrtc_dtx=False
        ) as gateway,
        aiohttp.ClientSession() as http,
    ):
        ws, _, session_id = await open_session(http, gateway)
        listener = Listener()
        response = await offer_to_session(http, gateway, session_id, listener)
        assert "maxaveragebitrate=16000" in await response.text()
        await listener.answer(await response.text())
        await wait_for(lambda: listener.pc.connectionState == "connected")
        await asyncio.sleep(1.0)  # idle, DTX off: a packet every 20 ms all the same
        track = gateway.services.live_sessions[session_id].webrtc
        assert track is not None
        assert (track.options.bitrate, track.options.complexity) == (16000, 1)
        assert track.stats.dtx_slots == 0
        assert track.stats.silent_packets > 40
        await listener.close()
        await ws.close()
