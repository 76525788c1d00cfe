"""A telephony bridge's side of voxgate: steady 20 ms packets, checked, then put into RTP.

What it shows, against ``/v1/realtime`` (see docs/protocol.md):

* asking for ``output_format: {"encoding": "opus"}`` (or, with ``--mulaw``, G.711 μ-law at
  8 kHz) and ``pacing: "realtime"``: one 20 ms packet per binary message, sent on the
  audio's own clock;
* parsing each frame's header (context id, seq, timestamp) and checking continuity (seq +1,
  timestamp + 960 for Opus at 48 kHz, + 160 for μ-law at 8 kHz) and cadence (arrival
  intervals against 20 ms, RFC 3550 interarrival jitter);
* mapping voxgate's per-turn numbering onto one RTP stream: voxgate starts seq and timestamp
  at 0 for every context, so the bridge keeps its own RTP sequence number, moves the RTP
  timestamp on by the silence between turns, and sets the marker bit on a turn's first packet;
* writing an RTP-like log (one JSON line per packet, with the RTP header it would send) and
  a playable dump: Ogg Opus (``.opus``) or raw μ-law (``.ulaw``, ``ffplay -f mulaw -ar 8000``).

With ``voxgate serve`` running::

    python examples/telephony_bridge.py --key KEY --dump call.opus --log rtp.jsonl
    python examples/telephony_bridge.py --key KEY --mulaw --dump call.ulaw
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import statistics
import struct
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import IO, Any

import aiohttp

PACKET_MS = 20
DEFAULT_TEXT = "Thank you for calling. Your appointment is confirmed for Tuesday at ten."


@dataclass(frozen=True)
class Codec:
    encoding: str  # voxgate's name
    code: int  # its code in byte 1 of a binary frame
    clock_rate: int  # RTP clock (RFC 7587: Opus is always 48 kHz)
    payload_type: int  # 0 is PCMU by RFC 3551; Opus takes a dynamic one, 111 by custom

    @property
    def ticks(self) -> int:
        return self.clock_rate * PACKET_MS // 1000


OPUS = Codec("opus", 3, 48000, 111)
PCMU = Codec("mulaw", 2, 8000, 0)


def parse_frame(data: bytes, codec: Codec) -> tuple[str, int, int, bytes]:
    """(context id, seq, timestamp, payload) of a binary voxgate v1 audio frame."""
    if len(data) < 11 or data[0] != 1 or data[1] != codec.code:
        raise ConnectionError(f"not a v1 {codec.encoding} audio frame: {data[:16].hex()}")
    end = 3 + data[2]
    seq, timestamp = struct.unpack_from(">II", data, end)
    return data[3:end].decode(), seq, timestamp, data[end + 8 :]


@dataclass(frozen=True)
class RtpPacket:
    header: bytes  # the 12 bytes that go in front of the payload
    seq: int
    timestamp: int
    marker: bool


@dataclass
class RtpStream:
    """One outgoing RTP stream (one SSRC) carrying every turn of the call."""

    codec: Codec
    ssrc: int = field(default_factory=lambda: random.getrandbits(32))
    seq: int = field(default_factory=lambda: random.getrandbits(16))
    base: int = field(default_factory=lambda: random.getrandbits(32))  # RTP ts of this turn's 0
    context: str | None = None
    next_ts: int = 0  # RTP timestamp right after the last packet sent
    last_at: float = 0.0

    def packet(self, context: str, timestamp: int, arrived: float) -> RtpPacket:
        """The RTP header fields for a voxgate packet of ``context`` at ``timestamp``."""
        marker = context != self.context
        if marker:  # a new turn: its timestamps restart at 0, after a silence on the wire
            if self.context is not None:
                silent_packets = max(0, round((arrived - self.last_at) * 1000 / PACKET_MS) - 1)
                self.base = self.next_ts + silent_packets * self.codec.ticks - timestamp
            self.context = context
        rtp_ts = (self.base + timestamp) & 0xFFFFFFFF
        second = (0x80 if marker else 0) | self.codec.payload_type
        packet = RtpPacket(
            struct.pack("!BBHII", 0x80, second, self.seq, rtp_ts, self.ssrc),
            self.seq,
            rtp_ts,
            marker,
        )
        self.seq = (self.seq + 1) & 0xFFFF
        self.next_ts, self.last_at = rtp_ts + self.codec.ticks, arrived
        return packet


@dataclass
class Cadence:
    """Continuity and timing of the packets of each context, as a jitter buffer sees them.

    voxgate sends a context's first ``LEAD_PACKETS`` packets at once (audio may run 80 ms
    ahead of its play time), then one every 20 ms; the cadence figures leave that lead out.
    """

    LEAD_PACKETS = 4

    codec: Codec
    packets: int = 0
    seq_gaps: int = 0
    timestamp_gaps: int = 0
    contexts: list[str] = field(default_factory=list)
    intervals_ms: list[float] = field(default_factory=list)  # after each context's lead
    jitter_ms: float = 0.0
    _in_context: int = 0  # packets of the current context so far
    _last: tuple[int, int, float] = (0, 0, 0.0)  # seq, timestamp, arrival of the previous one

    def add(self, context: str, seq: int, timestamp: int, arrived: float) -> float | None:
        """Record a packet; the interval since the previous one of its context, in ms."""
        self.packets += 1
        if not self.contexts or self.contexts[-1] != context:
            self.contexts.append(context)
            self._in_context = 0
        self._in_context += 1
        last_seq, last_ts, last_at = self._last
        self._last = (seq, timestamp, arrived)
        if self._in_context == 1:
            return None
        self.seq_gaps += seq != (last_seq + 1) & 0xFFFFFFFF
        self.timestamp_gaps += timestamp != (last_ts + self.codec.ticks) & 0xFFFFFFFF
        interval = (arrived - last_at) * 1000
        if self._in_context > self.LEAD_PACKETS + 1:
            self.intervals_ms.append(interval)
        # RFC 3550 6.4.1: D is the change in transit time, J moves 1/16 of the way to |D|.
        transit = interval - (timestamp - last_ts) * 1000 / self.codec.clock_rate
        self.jitter_ms += (abs(transit) - self.jitter_ms) / 16
        return interval

    def summary(self) -> dict[str, Any]:
        steady = self.intervals_ms or [0.0]
        deviation = sorted(abs(i - PACKET_MS) for i in steady)
        return {
            "packets": self.packets,
            "contexts": len(self.contexts),
            "seq_gaps": self.seq_gaps,
            "timestamp_gaps": self.timestamp_gaps,
            "interval_ms_median": round(statistics.median(steady), 2),
            "deviation_ms_p95": round(deviation[int(0.95 * (len(deviation) - 1))], 2),
            "deviation_ms_max": round(deviation[-1], 2),
            "bursts": sum(i < PACKET_MS / 4 for i in self.intervals_ms),  # after the lead
            "jitter_ms": round(self.jitter_ms, 2),
        }


class OggOpusDump:
    """Just enough of RFC 7845 to make the packets a file players open: one packet a page."""

    PRE_SKIP = 312  # libopus' lookahead at 48 kHz; the protocol does not carry it

    def __init__(self, out: IO[bytes]) -> None:
        self._out, self._serial, self._page, self._granule = out, random.getrandbits(32), 0, 0
        self._held: bytes | None = None  # the last page gets the end-of-stream flag
        head = b"OpusHead" + struct.pack("<BBHIhB", 1, 1, self.PRE_SKIP, 24000, 0, 0)
        self._write(head, 0, flags=0x02)
        self._write(b"OpusTags" + struct.pack("<I", 7) + b"voxgate" + struct.pack("<I", 0), 0)

    def add(self, packet: bytes) -> None:
        if self._held is not None:
            self._write(self._held, self._granule)
        self._held, self._granule = packet, self._granule + OPUS.ticks

    def close(self) -> None:
        if self._held is not None:
            self._write(self._held, self._granule, flags=0x04)

    def _write(self, packet: bytes, granule: int, flags: int = 0) -> None:
        lacing = b"\xff" * (len(packet) // 255) + bytes([len(packet) % 255])
        header = struct.pack(
            "<4sBBqIIIB", b"OggS", 0, flags, granule, self._serial, self._page, 0, len(lacing)
        )
        page = bytearray(header + lacing + packet)
        struct.pack_into("<I", page, 22, _ogg_crc(page))
        self._out.write(page)
        self._page += 1


def _ogg_crc(data: bytes | bytearray) -> int:
    crc = 0
    for byte in data:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ _CRC_TABLE[(crc >> 24) ^ byte]
    return crc


def _crc_entry(index: int) -> int:
    value = index << 24
    for _ in range(8):
        value = (value << 1) ^ 0x04C11DB7 if value & 0x80000000 else value << 1
    return value & 0xFFFFFFFF


_CRC_TABLE = [_crc_entry(i) for i in range(256)]


async def next_message(ws: aiohttp.ClientWebSocketResponse, kind: str) -> dict[str, Any]:
    while True:
        msg = await ws.receive()
        if msg.type is not aiohttp.WSMsgType.TEXT:
            raise ConnectionError(f"socket ended: {msg.type.name} {msg.data!r}")
        message: dict[str, Any] = json.loads(msg.data)
        if message["type"] == "error" and message["fatal"]:
            raise ConnectionError(f"{message['code']}: {message['message']}")
        if message["type"] == kind:
            return message


class Bridge:
    """What a bridge does with each packet: check it, give it an RTP header, keep it."""

    def __init__(self, codec: Codec, log: IO[str] | None, dump: IO[bytes] | None) -> None:
        self.codec, self.cadence, self.rtp = codec, Cadence(codec), RtpStream(codec)
        self._log, self._dump = log, dump
        self._ogg = OggOpusDump(dump) if dump is not None and codec is OPUS else None
        self._started = time.monotonic()

    def on_frame(self, frame: bytes, arrived: float) -> None:
        context, seq, timestamp, payload = parse_frame(frame, self.codec)
        interval = self.cadence.add(context, seq, timestamp, arrived)
        rtp = self.rtp.packet(context, timestamp, arrived)
        if self._ogg is not None:
            self._ogg.add(payload)
        elif self._dump is not None:
            self._dump.write(payload)  # raw mu-law: the RTP payload as is
        if self._log is not None:
            entry = {
                "t_ms": round((arrived - self._started) * 1000, 2),
                "context": context,
                "seq": seq,
                "timestamp": timestamp,
                "bytes": len(payload),
                "interval_ms": None if interval is None else round(interval, 2),
                "rtp": {"seq": rtp.seq, "timestamp": rtp.timestamp, "marker": rtp.marker},
                "rtp_header": rtp.header.hex(),
            }
            self._log.write(json.dumps(entry) + "\n")

    def close(self) -> None:
        if self._ogg is not None:
            self._ogg.close()


async def speak_turn(ws: aiohttp.ClientWebSocketResponse, bridge: Bridge, text: str) -> float:
    """One turn in a fresh context; its audio duration in ms, once ``context.done`` came."""
    context = f"call-turn-{uuid.uuid4().hex[:8]}"  # a context id is not reused
    await ws.send_json({"type": "text.append", "context_id": context, "text": text})
    await ws.send_json({"type": "context.close", "context_id": context})
    async for msg in ws:
        if msg.type is aiohttp.WSMsgType.BINARY:
            bridge.on_frame(msg.data, time.monotonic())
            continue
        if msg.type is not aiohttp.WSMsgType.TEXT:
            break
        message = json.loads(msg.data)
        if message["type"] in ("error", "chunk.failed"):
            print(f"{message['type']} {message['code']}: {message['message']}", file=sys.stderr)
        if message["type"] == "context.done" and message["context_id"] == context:
            audio_ms: float = message["usage"]["audio_ms"]
            return audio_ms
    raise ConnectionError(f"socket closed ({ws.close_code}) during the turn")


async def call(args: argparse.Namespace, bridge: Bridge) -> None:
    headers = {"Authorization": f"Bearer {args.key}"}
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(args.url, headers=headers, protocols=("voxgate.v1",)) as ws,
    ):
        await next_message(ws, "session.created")
        output_format = {"encoding": bridge.codec.encoding}
        update = {"type": "session.update", "output_format": output_format}
        await ws.send_json({**update, "pacing": "realtime"})
        await next_message(ws, "session.updated")
        for turn in range(1, args.turns + 1):
            audio_ms = await speak_turn(ws, bridge, args.text)
            print(f"turn {turn}: {audio_ms:.0f} ms of audio")


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--url", default="ws://127.0.0.1:8080/v1/realtime", help="%(default)s")
    parser.add_argument("--key", required=True, help="API key (voxgate serve prints a dev key)")
    parser.add_argument("--text", default=DEFAULT_TEXT, help="what each turn says")
    parser.add_argument("--turns", type=int, default=1, help="turns, one context each")
    parser.add_argument("--mulaw", action="store_true", help="G.711 μ-law 8 kHz instead of Opus")
    parser.add_argument("--log", help="RTP-like log, one JSON line per packet")
    parser.add_argument("--dump", help="the audio: Ogg Opus, or raw μ-law with --mulaw")
    args = parser.parse_args()
    codec = PCMU if args.mulaw else OPUS
    with contextlib.ExitStack() as files:
        log = files.enter_context(open(args.log, "w")) if args.log else None
        dump = files.enter_context(open(args.dump, "wb")) if args.dump else None
        bridge = Bridge(codec, log, dump)
        try:
            asyncio.run(call(args, bridge))
        except (ConnectionError, aiohttp.ClientError) as exc:
            print(f"telephony_bridge: {exc}", file=sys.stderr)
            return 1
        finally:
            bridge.close()
    summary = bridge.cadence.summary()
    ok = summary["packets"] > 0 and summary["seq_gaps"] == summary["timestamp_gaps"] == 0
    verdict = "continuous" if ok else "NOT continuous"
    print(
        f"{summary['packets']} packets in {summary['contexts']} turn(s): seq/timestamps {verdict}"
    )
    print(f"summary: {json.dumps(summary)}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
