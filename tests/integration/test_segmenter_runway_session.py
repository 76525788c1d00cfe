"""The later-chunk time bound over a real session: it fires only when the listener is about
to run out of audio. What is asserted is what a client sees: the chunks' texts
(``chunk.started``) and, for a stall, that the next chunk was sent upstream before the audio
the client already had (``chunk.ended``'s ``end_ms``, played from the first frame on, as
fast pacing delivers it) ran out: its ``chunk.started`` came within the upstream's time to
first audio of that moment."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest

from tests.gateway_harness import Gateway

pytestmark = pytest.mark.engine_only

RATE = 30.0  # LLM tokens a second
FIRST = "Sure, let me check on that for you. "
# Audio queued ahead of the listener: several seconds of speech, sent at once.
AHEAD = (
    "Your order was placed on Monday morning. It was packed the same day. "
    "The courier collected it in the afternoon. It is now on its way to you. "
    "You will get a message when it is close. "
)
# One sentence of about 330 characters: over two seconds of tokens at 30 a second, longer
# than the time bound used while the runway is unknown.
LONG = (
    "The parcel left our warehouse this morning and is now with the courier who covers "
    "your area, which means that it should reach your door by Thursday afternoon unless "
    "the weather gets in the way or the address on the label turns out to be missing a "
    "flat number or a postcode that the driver needs to find you. "
)
STALLED = "I am looking up the tracking number in our system and"


class Client:
    """A socket's messages and when each arrived; audio frames are counted, not kept."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.messages: list[tuple[float, dict[str, Any]]] = []
        self.first_frame_at: float | None = None
        self.sent: list[tuple[float, str]] = []  # when each text.append left
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        async for msg in self.ws:
            if msg.type is aiohttp.WSMsgType.TEXT:
                self.messages.append((loop.time(), json.loads(msg.data)))
            elif msg.type is aiohttp.WSMsgType.BINARY and self.first_frame_at is None:
                self.first_frame_at = loop.time()

    def of(self, kind: str) -> list[tuple[float, dict[str, Any]]]:
        return [(at, m) for at, m in self.messages if m["type"] == kind]

    async def until(self, kind: str, count: int = 1, timeout: float = 30) -> None:
        async with asyncio.timeout(timeout):
            while len(self.of(kind)) < count:
                assert not self._reader.done(), "the socket ended"
                await asyncio.sleep(0.005)

    async def stream(self, text: str, context_id: str) -> None:
        """``text`` as LLM tokens (a word and its space) at RATE."""
        words = text.split(" ")
        for token in [w + " " for w in words[:-1]] + [words[-1]]:
            if token:
                await self.append(token, context_id)
            await asyncio.sleep(1 / RATE)

    async def append(self, text: str, context_id: str) -> None:
        self.sent.append((asyncio.get_running_loop().time(), text))
        await self.ws.send_json({"type": "text.append", "text": text, "context_id": context_id})

    async def close(self) -> None:
        await self.ws.close()
        await self._reader


async def connect(gateway: Gateway, http: aiohttp.ClientSession) -> Client:
    ws = await http.ws_connect(
        gateway.ws_url, headers={"Authorization": f"Bearer {gateway.api_key}"}
    )
    client = Client(ws)
    await client.until("session.created")
    return client


def chunk_texts(client: Client) -> list[str]:
    started = sorted((m["chunk_index"], m["text"]) for _, m in client.of("chunk.started"))
    return [text for _, text in started]


async def test_a_steady_stream_with_a_long_runway_is_cut_only_at_sentence_ends(
    gateway: Gateway,
) -> None:
    async with aiohttp.ClientSession() as http:
        client = await connect(gateway, http)
        await client.append(FIRST + AHEAD, "t1")
        await client.until("chunk.ended")  # the runway is known once audio came back
        await client.stream(LONG + "Thanks for waiting.", "t1")
        await client.ws.send_json({"type": "context.close", "context_id": "t1"})
        await client.until("context.done")
        await client.close()
    texts = chunk_texts(client)
    assert "".join(texts) == FIRST + AHEAD + LONG + "Thanks for waiting."
    assert any(LONG in text for text in texts), texts  # the long sentence is one chunk's
    for text in texts[:-1]:
        assert text.endswith(". "), texts  # every later cut at a sentence end


async def test_a_stalled_stream_gets_its_chunk_out_before_the_audio_runs_out(
    gateway: Gateway,
) -> None:
    async with aiohttp.ClientSession() as http:
        client = await connect(gateway, http)
        await client.stream(FIRST + STALLED, "t1")  # then nothing: a tool call, say
        await client.until("chunk.started", count=2)
        ended = client.of("chunk.ended")
        await client.ws.send_json({"type": "context.close", "context_id": "t1"})
        await client.until("context.done")
        await client.close()
    # Out at its last complete word ("and" might go on: "and the"); the rest at the close.
    assert chunk_texts(client) == [FIRST, STALLED.removesuffix("and"), "and"]
    assert ended, "the first chunk's audio had not all come when the stalled one started"
    first = next(m for _, m in ended if m["chunk_index"] == 0)
    assert client.first_frame_at is not None
    audio_out_at = client.first_frame_at + first["end_ms"] / 1000
    second_at = next(at for at, m in client.of("chunk.started") if m["chunk_index"] == 1)
    # The chunk leaves when the audio is about to run out, less the upstream's time to first
    # audio; that time, as this client saw it for the first chunk (released when "I" came),
    # bounds when its audio may come. A loaded machine's upstream varies by a few frames.
    released_first_at = next(at for at, text in client.sent if text == "I ")
    first_audio_s = client.first_frame_at - released_first_at
    assert second_at < audio_out_at + first_audio_s + 0.1, (second_at - audio_out_at, first_audio_s)
