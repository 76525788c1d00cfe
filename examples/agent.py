"""A voice agent's client of voxgate: LLM tokens in, speech out, with an optional barge-in.

What it shows, against ``/v1/realtime`` (see docs/protocol.md):

* connecting with an API key (``Authorization: Bearer``) and the ``voxgate.v1`` subprotocol;
* streaming an LLM-like token stream into one context (``text.append`` with ``seq``) at a
  set rate, then ``context.close`` at the end of the turn;
* receiving binary PCM frames and the chunk events, and measuring time to first audio;
* barge-in (``--interrupt-after``): ``interrupt`` with the listener's ``played_ms``, and what
  the gateway reports as heard and unheard;
* saving the audio the listener heard to a WAV file with the standard ``wave`` module.

With ``voxgate serve`` running::

    python examples/agent.py --key KEY --text "Sure! Your order shipped on Monday." \\
        --tokens-per-second 30 --out answer.wav
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import struct
import sys
import time
import uuid
import wave
from dataclasses import dataclass, field
from typing import Any

import aiohttp

Message = dict[str, Any]
DEFAULT_TEXT = (
    "Sure! I found your order. It shipped on Monday from our Lyon warehouse, "
    "and the carrier expects to deliver it on Thursday before noon."
)


class GatewayError(Exception):
    """A fatal ``error`` message, or a socket that ended before the turn did."""


@dataclass(frozen=True, slots=True)
class AudioFrame:
    """A binary message: ``version | encoding | id length | context id | seq | ts | audio``."""

    context_id: str
    seq: int
    timestamp: int
    payload: bytes

    @classmethod
    def parse(cls, data: bytes) -> AudioFrame:
        if len(data) < 11 or data[0] != 1:
            raise GatewayError(f"not a voxgate v1 audio frame: {data[:16].hex()}")
        end = 3 + data[2]
        seq, timestamp = struct.unpack_from(">II", data, end)
        return cls(data[3:end].decode(), seq, timestamp, data[end + 8 :])


@dataclass
class Turn:
    """One context: what was sent, what came back, and where the listener is."""

    context_id: str
    sample_rate: int
    started: float = field(default_factory=time.monotonic)
    first_text_at: float | None = None
    first_audio_at: float | None = None
    audio_started: asyncio.Event = field(default_factory=asyncio.Event)
    tokens_sent: int = 0
    acks: int = 0
    pcm: bytearray = field(default_factory=bytearray)
    stopped: bool = False  # no more text: interrupted, or the turn is over

    def ms(self) -> str:
        return f"[{(time.monotonic() - self.started) * 1000:6.0f} ms]"

    def received_ms(self) -> float:
        return len(self.pcm) / 2 / self.sample_rate * 1000

    def played_ms(self) -> float:
        """A local player starts with the first audio and plays in real time."""
        if self.first_audio_at is None:
            return 0.0
        return min(self.received_ms(), (time.monotonic() - self.first_audio_at) * 1000)


def llm_tokens(text: str) -> list[str]:
    """Split text the way an LLM streams it: short pieces, each with its leading space."""
    return re.findall(r"\s*\S{1,4}", text)


async def next_message(ws: aiohttp.ClientWebSocketResponse, kind: str) -> Message:
    """The next text message of ``kind``; an ``error`` (the setup failed) or a close raises."""
    while True:
        msg = await ws.receive()
        if msg.type is not aiohttp.WSMsgType.TEXT:
            raise GatewayError(f"socket ended: {msg.type.name} {msg.data!r} {msg.extra or ''}")
        message: Message = json.loads(msg.data)
        if message["type"] == "error":
            raise GatewayError(f"{message['code']}: {message['message']}")
        if message["type"] == kind:
            return message


async def feed_tokens(
    ws: aiohttp.ClientWebSocketResponse, turn: Turn, tokens: list[str], rate: float
) -> None:
    """Send the tokens at ``rate`` per second, as an LLM would, then close the context."""
    for seq, token in enumerate(tokens):
        if turn.stopped:
            return
        message = {"type": "text.append", "context_id": turn.context_id, "seq": seq}
        await ws.send_json({**message, "text": token})
        turn.first_text_at = turn.first_text_at or time.monotonic()
        turn.tokens_sent += 1
        await asyncio.sleep(1 / rate)
    if not turn.stopped:
        await ws.send_json({"type": "context.close", "context_id": turn.context_id})
        print(f"{turn.ms()} sent {len(tokens)} tokens, then context.close")


async def barge_in(ws: aiohttp.ClientWebSocketResponse, turn: Turn, after_s: float) -> None:
    """The user starts talking ``after_s`` seconds into the answer: stop the agent."""
    await turn.audio_started.wait()
    await asyncio.sleep(after_s)
    turn.stopped = True
    played = round(turn.played_ms(), 1)
    received = turn.received_ms()
    print(f"{turn.ms()} barge-in: interrupt at played_ms={played:.0f} (received {received:.0f} ms)")
    await ws.send_json({"type": "interrupt", "context_id": turn.context_id, "played_ms": played})


def on_event(turn: Turn, message: Message) -> None:
    kind = message["type"]
    if kind == "text.ack":
        turn.acks += 1
    elif kind == "chunk.started":
        print(f'{turn.ms()} chunk {message["chunk_index"]} started: "{message["text"]}"')
    elif kind == "chunk.ended":
        length = message["end_ms"] - message["start_ms"]
        print(f"{turn.ms()} chunk {message['chunk_index']} ended: {length:.0f} ms of audio")
    elif kind == "chunk.failed":
        print(f"{turn.ms()} chunk {message['chunk_index']} failed: {message['code']}")
    elif kind == "error":
        print(f"{turn.ms()} error {message['code']}: {message['message']}", file=sys.stderr)
        if message["fatal"]:
            raise GatewayError(message["code"])


def on_audio(turn: Turn, frame: AudioFrame) -> None:
    if frame.context_id != turn.context_id:
        return
    if turn.first_audio_at is None:
        turn.first_audio_at = time.monotonic()
        turn.audio_started.set()
        ttfa = (turn.first_audio_at - (turn.first_text_at or turn.started)) * 1000
        print(f"{turn.ms()} time to first audio: {ttfa:.0f} ms after the first token")
    turn.pcm += frame.payload


async def receive(ws: aiohttp.ClientWebSocketResponse, turn: Turn) -> Message:
    """Audio and events until the turn's ``context.done`` or ``interrupted``."""
    async for msg in ws:
        if msg.type is aiohttp.WSMsgType.BINARY:
            on_audio(turn, AudioFrame.parse(msg.data))
            continue
        if msg.type is not aiohttp.WSMsgType.TEXT:
            break
        message: Message = json.loads(msg.data)
        on_event(turn, message)
        ended = message["type"] in ("context.done", "interrupted")
        if ended and message["context_id"] == turn.context_id:
            return message
    raise GatewayError(f"socket closed ({ws.close_code}) before the turn ended")


def report(turn: Turn, result: Message) -> None:
    usage = result["usage"]
    print(f"{turn.ms()} {result['type']}: {turn.acks}/{turn.tokens_sent} tokens acknowledged")
    if result["type"] == "interrupted":
        print(f"  played_ms: {result['played_ms']:.0f}")
        print(f"  heard:   {result['heard']!r}")
        print(f"  unheard: {result['unheard']!r}")
    chars, audio_ms = usage["characters"], usage["audio_ms"]
    print(f"  usage: {chars} credits, {audio_ms:.0f} ms of audio delivered")


def save_wav(path: str, pcm: bytes, sample_rate: int) -> None:
    with wave.open(path, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(pcm)


async def run(args: argparse.Namespace) -> int:
    turn = Turn(f"turn-{uuid.uuid4().hex[:8]}", args.sample_rate)  # one id per turn, for logs
    headers = {"Authorization": f"Bearer {args.key}"}
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(args.url, headers=headers, protocols=("voxgate.v1",)) as ws,
    ):
        created = await next_message(ws, "session.created")
        print(f"session {created['session_id']}, limits {created['limits']}")
        output_format = {"encoding": "pcm_s16le", "sample_rate": args.sample_rate}
        update = {"type": "session.update", "output_format": output_format}
        await ws.send_json({**update, "pacing": args.pacing})
        await next_message(ws, "session.updated")
        tasks = [asyncio.create_task(feed_tokens(ws, turn, llm_tokens(args.text), args.tps))]
        if args.interrupt_after is not None:
            tasks.append(asyncio.create_task(barge_in(ws, turn, args.interrupt_after)))
        try:
            result = await receive(ws, turn)
        finally:
            turn.stopped = True
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    report(turn, result)
    if args.interrupt_after is not None and result["type"] == "context.done":
        # Fast pacing can deliver a whole turn before the listener has heard it: the gateway
        # has nothing left to stop, and the agent's own player must stop itself.
        print("the turn was complete before the barge-in; try --pacing realtime")
    pcm = bytes(turn.pcm)
    if result["type"] == "interrupted":  # keep only what the listener heard
        pcm = pcm[: int(result["played_ms"] * args.sample_rate / 1000) * 2]
    save_wav(args.out, pcm, args.sample_rate)
    print(f"saved {len(pcm) / 2 / args.sample_rate:.2f} s of audio to {args.out}")
    return 0 if pcm else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--url", default="ws://127.0.0.1:8080/v1/realtime", help="%(default)s")
    parser.add_argument("--key", required=True, help="API key (voxgate serve prints a dev key)")
    parser.add_argument("--text", default=DEFAULT_TEXT, help="the LLM answer to speak")
    parser.add_argument(
        "--tokens-per-second", dest="tps", type=float, default=30.0, help="%(default)s"
    )
    parser.add_argument("--out", default="answer.wav", help="WAV file (%(default)s)")
    parser.add_argument(
        "--sample-rate", type=int, default=24000, choices=(8000, 16000, 24000, 48000)
    )
    parser.add_argument(
        "--pacing",
        choices=("fast", "realtime"),
        default="fast",
        help="fast: audio as soon as it exists; realtime: sent at playback speed",
    )
    parser.add_argument(
        "--interrupt-after",
        type=float,
        metavar="SECONDS",
        help="barge in this long after the first audio, and report what was heard",
    )
    args = parser.parse_args()
    if args.tps <= 0:
        parser.error("--tokens-per-second must be positive")
    try:
        return asyncio.run(run(args))
    except (GatewayError, aiohttp.ClientError) as exc:
        print(f"agent: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
