"""RTP egress: a live session's speech as RTP to a real receiver (ffmpeg), and on the wire.

ffmpeg reads the SDP the gateway answers and writes what it received to a WAV file, as a
media server would play it; a UDP socket in the test reads the packets themselves and the
RTCP beside them.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import struct
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest

from tests.audio_checks import Decoded, decode, ffprobe
from tests.conftest import Target
from tests.gateway_harness import Gateway, running_gateway
from tests.telephony_agent import LONG, SHORT, open_agent

pytestmark = [pytest.mark.engine_only, pytest.mark.timeout(120)]

KEY = "vg_rtp_key_0123456789abcdef"
OTHER_KEY = "vg_rtp_other_0123456789abc"


@pytest.fixture
async def gateway(target: Target) -> AsyncIterator[Gateway]:
    async with running_gateway(target, api_keys=(f"{KEY}:1000000", f"{OTHER_KEY}:1000000")) as gw:
        yield gw


def auth(key: str = KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def post_rtp(
    http: aiohttp.ClientSession, gateway: Gateway, session_id: str, body: Any, key: str = KEY
) -> tuple[int, dict[str, Any]]:
    url = f"{gateway.url}/v1/sessions/{session_id}/rtp"
    async with http.post(url, headers=auth(key), json=body) as response:
        return response.status, await response.json()


async def delete_rtp(
    http: aiohttp.ClientSession, gateway: Gateway, session_id: str, sink_id: str
) -> tuple[int, dict[str, Any]]:
    url = f"{gateway.url}/v1/sessions/{session_id}/rtp/{sink_id}"
    async with http.delete(url, headers=auth()) as response:
        return response.status, await response.json()


def free_port_pair() -> int:
    """An even UDP port p on loopback with p + 1 free too (RTP and RTCP)."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1]) & ~1
        if port < 1024 or port + 1 > 65535:
            continue
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a:
                a.bind(("0.0.0.0", port))
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as b:
                    b.bind(("0.0.0.0", port + 1))
        except OSError:
            continue
        return port
    raise AssertionError("no free UDP port pair")


# -- a real receiver: ffmpeg ------------------------------------------------------------


def udp_bound(port: int) -> bool:
    """Whether a socket is bound to UDP ``port`` (Linux), without binding it ourselves."""
    wanted = f"{port:04X}"
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        with contextlib.suppress(OSError), open(table) as lines:
            next(lines)  # the column names
            # The local address, ADDR:PORT in hex; the gateway's own sockets are connected
            # to the port, which shows in the remote address only.
            if any(line.split()[1].rsplit(":", 1)[1] == wanted for line in lines):
                return True
    return False


@dataclass
class Ffmpeg:
    process: asyncio.subprocess.Process
    out: Path

    @classmethod
    async def receive(cls, sdp: str, tmp: Path, port: int, *, seconds: float) -> Ffmpeg:
        (tmp / "stream.sdp").write_text(sdp)
        out = tmp / "out.wav"
        process = await asyncio.create_subprocess_exec(
            "ffmpeg",
            "-hide_banner",
            "-loglevel",
            "error",
            "-protocol_whitelist",
            "file,udp,rtp",
            "-i",
            str(tmp / "stream.sdp"),
            "-t",
            str(seconds),
            "-ac",
            "1",
            "-y",
            str(out),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(20):  # ffmpeg starts slowly on a busy machine
            while not (udp_bound(port) and udp_bound(port + 1)):
                assert process.returncode is None, "ffmpeg exited before listening"
                await asyncio.sleep(0.05)
        return cls(process, out)

    async def finished(self, timeout: float = 30) -> Decoded:
        """What ffmpeg wrote, once the stream's BYE ended it."""
        try:
            async with asyncio.timeout(timeout):
                _, stderr = await self.process.communicate()
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
            raise
        assert self.process.returncode == 0, stderr.decode()
        return decode(self.out.read_bytes())

    async def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()


def pauses_ms(decoded: Decoded, *, threshold: float = 1e-3, longer_than: float = 60) -> list[float]:
    """The runs of 5 ms windows below ``threshold`` RMS, longer than ``longer_than`` ms,
    between the first window above it and the last: a hole in the stream is digital
    silence, far below speech."""
    window = decoded.sample_rate // 200
    count = len(decoded.samples) // window
    frames = decoded.samples[: count * window].reshape(count, window)
    voiced = np.flatnonzero(np.sqrt(np.mean(frames**2, axis=1)) >= threshold)
    runs = (np.diff(voiced) - 1) * 5.0
    return [float(run) for run in runs if run > longer_than]


async def reference_pauses_ms(http: aiohttp.ClientSession, gateway: Gateway) -> list[float]:
    """The pauses the engine itself puts in ``SHORT`` (between its sentences), as PCM."""
    agent, _ = await open_agent(http, gateway)
    pcm = bytearray()
    ws = agent.ws
    agent._reader.cancel()
    await ws.send_json({"type": "text.append", "text": SHORT})
    await ws.send_json({"type": "context.close"})
    async with asyncio.timeout(30):
        async for msg in ws:
            if msg.type is aiohttp.WSMsgType.BINARY:
                pcm += msg.data[3 + msg.data[2] + 8 :]
            elif msg.type is aiohttp.WSMsgType.TEXT and msg.json()["type"] == "context.done":
                break
    await ws.close()
    samples = np.frombuffer(bytes(pcm), "<i2").astype(np.float32) / 32768
    return pauses_ms(Decoded(samples, 24000, "pcm_s16le"))


@pytest.mark.parametrize(("codec", "rate"), [("PCMU", 8000), ("opus", 48000), ("L16", 16000)])
async def test_ffmpeg_receives_the_turn_whole_from_the_sdp(
    http: aiohttp.ClientSession, gateway: Gateway, tmp_path: Path, codec: str, rate: int
) -> None:
    reference = await reference_pauses_ms(http, gateway)
    agent, _ = await open_agent(http, gateway)
    port = free_port_pair()
    status, created = await post_rtp(
        http, gateway, agent.session_id, {"host": "127.0.0.1", "port": port, "codec": codec}
    )
    assert status == 201, created
    sink = created["data"]
    assert sink["codec"] == codec
    sdp = sink["sdp"]
    assert "c=IN IP4 127.0.0.1" in sdp
    assert f"m=audio {port} RTP/AVP " in sdp
    attached = await agent.wait("telephony.attached")
    assert (attached["provider"], attached["stream_id"]) == ("rtp", sink["id"])
    ffmpeg = await Ffmpeg.receive(sdp, tmp_path, port, seconds=30)
    try:
        await agent.say(SHORT)
        await agent.wait("context.done")
        spoken_ms = agent.spoken_ms()
        await asyncio.sleep(0.3)  # the last 100 ms the leg sent ahead
        status, _ = await delete_rtp(http, gateway, agent.session_id, sink["id"])
        assert status == 200
        decoded = await ffmpeg.finished()  # the BYE ends ffmpeg's input
    finally:
        await ffmpeg.kill()
    assert decoded.sample_rate == rate
    assert ffprobe(ffmpeg.out.read_bytes(), "wav")["codec"] == "pcm_s16le"
    assert abs(decoded.duration * 1000 - spoken_ms) < 200, (decoded.duration, spoken_ms)
    assert decoded.rms > 0.01
    # No hole: the pauses are the engine's own (between sentences), each as long, none new.
    pauses = pauses_ms(decoded)
    assert len(pauses) == len(reference), (pauses, reference)
    assert all(abs(got - want) <= 60 for got, want in zip(pauses, reference, strict=True))
    assert not agent.audio_frames  # the audio went to the RTP receiver
    detached = await agent.wait("telephony.detached")
    assert detached["reason"] == "stop"
    await agent.close()


# -- on the wire ------------------------------------------------------------------------


@dataclass
class Packets(asyncio.DatagramProtocol):
    received: list[tuple[float, bytes]] = field(default_factory=list)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.received.append((time.monotonic(), data))


@dataclass(frozen=True)
class Rtp:
    at: float
    version: int
    marker: bool
    payload_type: int
    seq: int
    timestamp: int
    ssrc: int
    payload: bytes

    @classmethod
    def parse(cls, at: float, data: bytes) -> Rtp:
        first, second, seq, timestamp, ssrc = struct.unpack_from("!BBHII", data)
        return cls(
            at, first >> 6, bool(second & 0x80), second & 0x7F, seq, timestamp, ssrc, data[12:]
        )


def rtcp_packets(data: bytes) -> list[tuple[int, bytes]]:
    """The (packet type, packet) of each packet of a compound RTCP packet."""
    packets = []
    while data:
        first, packet_type, length = struct.unpack_from("!BBH", data)
        assert first >> 6 == 2
        size = (length + 1) * 4
        packets.append((packet_type, data[:size]))
        data = data[size:]
    return packets


@asynccontextmanager
async def receiver() -> AsyncIterator[tuple[int, Packets, Packets]]:
    loop = asyncio.get_running_loop()
    port = free_port_pair()
    rtp_transport, rtp = await loop.create_datagram_endpoint(Packets, ("127.0.0.1", port))
    rtcp_transport, rtcp = await loop.create_datagram_endpoint(Packets, ("127.0.0.1", port + 1))
    try:
        yield port, rtp, rtcp
    finally:
        rtp_transport.close()
        rtcp_transport.close()


async def wait_for(predicate: Any, timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


async def test_pcmu_packets_talkspurts_and_sender_reports(
    http: aiohttp.ClientSession, gateway: Gateway
) -> None:
    agent, _ = await open_agent(http, gateway)
    async with receiver() as (port, rtp, rtcp):
        status, created = await post_rtp(
            http, gateway, agent.session_id, {"host": "127.0.0.1", "port": port, "codec": "pcmu"}
        )
        assert status == 201, created
        sink = created["data"]
        assert sink["codec"] == "PCMU"
        assert "a=rtpmap:0 PCMU/8000" in sink["sdp"]
        await agent.say(SHORT, "t1")
        await agent.wait("context.done")
        await asyncio.sleep(0.8)  # the turn's last 100 ms go out, then a silence
        await agent.say(SHORT, "t2")
        await agent.wait("context.done", 2)
        first_at = rtp.received[0][0]
        await wait_for(
            lambda: any(p[1][1] == 200 for p in rtcp.received), first_at + 6.5 - time.monotonic()
        )
        status, stopped = await delete_rtp(http, gateway, agent.session_id, sink["id"])
        assert status == 200
        await wait_for(
            lambda: any(t == 203 for _, d in rtcp.received for t, _ in rtcp_packets(d)), 2
        )

    packets = [Rtp.parse(at, data) for at, data in rtp.received]
    assert {p.version for p in packets} == {2}
    assert {p.ssrc for p in packets} == {sink["ssrc"]}
    assert {p.payload_type for p in packets} == {0}
    assert {len(p.payload) for p in packets} == {160}
    assert all((b.seq - a.seq) % 65536 == 1 for a, b in itertools.pairwise(packets))
    assert packets[0].marker
    for a, b in itertools.pairwise(packets):
        step = (b.timestamp - a.timestamp) % 2**32
        # Within a talkspurt +160 each; a new one is marked and keeps its silence.
        assert step == 160 if not b.marker else step > 160, (a, b)
    # The second turn starts after the longest wait between two packets, marked.
    first_turn = 1 + max(range(len(packets) - 1), key=lambda i: packets[i + 1].at - packets[i].at)
    second = packets[first_turn]
    assert second.marker
    silence_ms = ((second.timestamp - packets[first_turn - 1].timestamp) % 2**32 - 160) / 8
    wall_ms = (second.at - packets[first_turn - 1].at) * 1000
    assert silence_ms > 300
    assert abs(silence_ms - (wall_ms - 20)) < 150  # the leg sends up to 100 ms ahead

    reports = [(at, pkt) for at, data in rtcp.received for t, pkt in rtcp_packets(data) if t == 200]
    at, report = reports[0]
    assert at - first_at < 6.5
    ssrc, ntp_high, _, rtp_ts, packet_count, octet_count = struct.unpack_from("!IIIIII", report, 4)
    assert ssrc == sink["ssrc"]
    assert abs(ntp_high - 2_208_988_800 - time.time()) < 60
    sent_before = [p for p in packets if p.at <= at]
    assert abs(packet_count - len(sent_before)) <= 2
    assert octet_count == packet_count * 160
    # The report's RTP time is the instant it was sent: packets are stamped with when they
    # play, up to the leg's 100 ms lead later; after a turn it runs on with the wall clock.
    lag = ((rtp_ts - sent_before[-1].timestamp + 2**31) % 2**32) - 2**31
    assert -8 * 150 < lag < 8000 * 6
    bye = [pkt for _, data in rtcp.received for t, pkt in rtcp_packets(data) if t == 203]
    assert struct.unpack_from("!I", bye[0], 4)[0] == sink["ssrc"]
    assert stopped["data"]["packets_sent"] == len(packets)
    await agent.close()


async def test_delete_mid_turn_stops_the_packets_and_detaches(
    http: aiohttp.ClientSession, gateway: Gateway
) -> None:
    agent, _ = await open_agent(http, gateway)
    async with receiver() as (port, rtp, _):
        _, created = await post_rtp(
            http,
            gateway,
            agent.session_id,
            {"host": "127.0.0.1", "port": port, "codec": "opus", "payload_type": 100},
        )
        sink = created["data"]
        assert "a=rtpmap:100 opus/48000/2" in sink["sdp"]
        await agent.say(LONG, close=False)
        await wait_for(lambda: len(rtp.received) >= 50, 30)  # a second of speech
        status, _ = await delete_rtp(http, gateway, agent.session_id, sink["id"])
        assert status == 200
        await asyncio.sleep(0.1)
        stopped_at = len(rtp.received)
        detached = await agent.wait("telephony.detached")
        assert detached == {
            **detached,
            "provider": "rtp",
            "stream_id": sink["id"],
            "reason": "stop",
        }
        interrupted = await agent.wait("interrupted")
        assert LONG.startswith(interrupted["heard"])
        await asyncio.sleep(0.5)
        assert len(rtp.received) == stopped_at
    packets = [Rtp.parse(at, data) for at, data in rtp.received]
    steps = {(b.timestamp - a.timestamp) % 2**32 for a, b in itertools.pairwise(packets)}
    assert steps == {960}
    # Gone: a second delete finds nothing, and the session can take another sink.
    status, body = await delete_rtp(http, gateway, agent.session_id, sink["id"])
    assert (status, body["error"]) == (404, "not_found")
    status, _ = await post_rtp(
        http, gateway, agent.session_id, {"host": "127.0.0.1", "port": port, "codec": "L16"}
    )
    assert status == 201
    await agent.close()


# -- refusals ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"port": 40000, "codec": "PCMU"}, "invalid_rtp_target"),
        ({"host": "127.0.0.1", "codec": "PCMU"}, "invalid_rtp_target"),
        ({"host": "127.0.0.1", "port": 0, "codec": "PCMU"}, "invalid_rtp_target"),
        ({"host": "127.0.0.1", "port": "40000", "codec": "PCMU"}, "invalid_rtp_target"),
        ({"host": "127.0.0.1", "port": 65535, "codec": "PCMU"}, "invalid_rtp_target"),
        (
            {"host": "127.0.0.1", "port": 40000, "rtcp_port": 40000, "codec": "PCMU"},
            "invalid_rtp_target",
        ),
        ({"host": "224.0.0.1", "port": 40000, "codec": "PCMU"}, "invalid_rtp_target"),
        ({"host": "0.0.0.0", "port": 40000, "codec": "PCMU"}, "invalid_rtp_target"),
        ({"host": "127.0.0.1", "port": 40000, "codec": "G729"}, "unsupported_codec"),
        ({"host": "127.0.0.1", "port": 40000}, "unsupported_codec"),
        (
            {"host": "127.0.0.1", "port": 40000, "codec": "PCMU", "payload_type": 200},
            "invalid_payload_type",
        ),
        (
            {"host": "127.0.0.1", "port": 40000, "codec": "opus", "payload_type": 0},
            "invalid_payload_type",
        ),
        (
            {"host": "127.0.0.1", "port": 40000, "codec": "L16", "payload_type": True},
            "invalid_payload_type",
        ),
        ([1, 2], "invalid_json"),
    ],
)
async def test_bad_targets_are_refused_400(
    http: aiohttp.ClientSession, gateway: Gateway, body: Any, code: str
) -> None:
    agent, _ = await open_agent(http, gateway)
    status, answer = await post_rtp(http, gateway, agent.session_id, body)
    assert (status, answer["error"]) == (400, code)
    assert answer["code"] == 400
    assert answer["data"] is None
    assert not agent.of("telephony.attached")
    await agent.close()


async def test_unknown_foreign_and_busy_sessions_are_refused(
    http: aiohttp.ClientSession, gateway: Gateway
) -> None:
    agent, _ = await open_agent(http, gateway)
    target = {"host": "127.0.0.1", "port": free_port_pair(), "codec": "PCMU"}
    status, answer = await post_rtp(http, gateway, "0" * 32, target)
    assert (status, answer["error"]) == (404, "not_found")
    status, answer = await post_rtp(http, gateway, agent.session_id, target, key=OTHER_KEY)
    assert (status, answer["error"]) == (403, "forbidden")
    url = f"{gateway.url}/v1/sessions/{agent.session_id}/rtp"
    async with http.post(url, json=target) as response:
        assert response.status == 401
    status, answer = await post_rtp(http, gateway, agent.session_id, target)
    assert status == 201
    status, busy = await post_rtp(http, gateway, agent.session_id, target)
    assert (status, busy["error"]) == (403, "sink_attached")
    url = f"{gateway.url}/v1/sessions/{agent.session_id}/rtp/{answer['data']['id']}"
    async with http.delete(url, headers=auth(OTHER_KEY)) as response:
        assert (response.status, (await response.json())["error"]) == (403, "forbidden")
    await agent.close()


async def test_a_session_that_ends_says_bye(http: aiohttp.ClientSession, gateway: Gateway) -> None:
    agent, _ = await open_agent(http, gateway)
    async with receiver() as (port, rtp, rtcp):
        _, created = await post_rtp(
            http, gateway, agent.session_id, {"host": "127.0.0.1", "port": port, "codec": "PCMU"}
        )
        await agent.say(SHORT)
        await wait_for(lambda: len(rtp.received) >= 10, 30)
        await agent.close()
        await wait_for(
            lambda: any(t == 203 for _, d in rtcp.received for t, _ in rtcp_packets(d)), 5
        )
    status, _ = await delete_rtp(http, gateway, agent.session_id, created["data"]["id"])
    assert status == 404
