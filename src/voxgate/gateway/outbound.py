"""What goes to one realtime client: encoded, framed, paced, and purged on barge-in.

The pump turns Session events into wire messages (encoding audio per context); the sender
writes them to the socket, as fast as they come or paced to real time. Both sides of an
interrupt meet here: the pump purges every queued frame of the interrupted context
before it queues the ``interrupted`` message, and wakes a sender waiting on a purged frame.

What the socket took goes into a replay ring (when the session is resumable): if the
socket drops, the client's ``last_seq`` picks what goes back at the head of the queue for
the next socket (``resend``), and paced timelines start again from there (``rebase``).
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections import deque
from dataclasses import dataclass

from voxgate.codecs.encoded_audio import WRAP, PacketClock
from voxgate.codecs.encoders import (
    EncodedAudio,
    Encoder,
    OggOpusEncoder,
    OpusEncoder,
    OutputFormat,
    make_encoder,
)
from voxgate.codecs.opus_packets import OpusRun
from voxgate.gateway import protocol as p
from voxgate.gateway.replay import ReplayRing

# In real-time pacing, audio may go out this far ahead of its play time, so network
# jitter does not starve the client's buffer.
PACING_LEAD_S = 0.08
# Encoded audio allowed to wait for the socket; the rest waits in the Session.
MAX_AHEAD_MS = 200.0


@dataclass(slots=True)
class Outgoing:
    payload: str | bytes
    context_id: str | None = None
    media_s: float | None = None  # play time of audio on its context's timeline
    audio_ms: float = 0.0
    final: bool = False  # the context's last message: its stream can go once this is sent
    seq: int | None = None  # an audio frame's, in the session's count (unwrapped)
    resent: bool = False  # sent before, on a socket that dropped: its stream knows it


class ContextStream:
    """One context's encoder and clock."""

    def __init__(self, context_id: str, fmt: OutputFormat, *, frames: bool) -> None:
        self.context_id = context_id
        self.encoder: Encoder = make_encoder(fmt)
        self.media_s = 0.0
        self.started_at: float | None = None  # monotonic time its first audio was sent
        self.sent_ms = 0.0  # end of its audio the socket has taken, on its timeline
        self.timestamp_base = 0  # where this turn's clock starts: after the previous turn's
        # Paced PCM goes out in 20 ms frames, numbered here, so pacing is smooth.
        self._framer = PcmFramer(fmt.sample_rate) if frames else None

    def encode(self, pcm: bytes) -> list[EncodedAudio]:
        packets = self.encoder.encode(pcm)
        return self._framer.frames(packets) if self._framer else packets

    def passthrough(self, run: OpusRun) -> list[EncodedAudio]:
        """Opus packets coded upstream, as they are (see ``Outbound.opus_as_is``)."""
        encoder = self.encoder
        assert isinstance(encoder, OpusEncoder | OggOpusEncoder)
        return encoder.passthrough(run)

    def flush(self) -> list[EncodedAudio]:
        packets = self.encoder.flush()
        if self._framer is None:
            return packets
        return [*self._framer.frames(packets), *self._framer.rest()]


class PcmFramer:
    """Re-cuts PCM payloads of any size into 20 ms frames with their own numbering."""

    def __init__(self, rate: int) -> None:
        self._clock = PacketClock(rate)
        self._frame_bytes = rate // 50 * 2
        self._held = b""

    def frames(self, packets: list[EncodedAudio]) -> list[EncodedAudio]:
        data = self._held + b"".join(p.data for p in packets)
        whole = len(data) - len(data) % self._frame_bytes
        self._held = data[whole:]
        step = self._frame_bytes
        return [self._clock.stamp(data[i : i + step], step // 2) for i in range(0, whole, step)]

    def rest(self) -> list[EncodedAudio]:
        held, self._held = self._held, b""
        return [self._clock.stamp(held, len(held) // 2)] if held else []


class Outbound:
    def __init__(
        self,
        fmt: OutputFormat,
        *,
        binary: bool,
        realtime: bool,
        replay_bytes: int | None = None,
        opus_as_is: bool = False,
    ) -> None:
        self.format = fmt
        # The client's Opus format names no bitrate or complexity of its own: the upstream's
        # Opus packets go out as they are, with no decode or encode (Opus passthrough).
        self.opus_as_is = opus_as_is and fmt.encoding in ("opus", "ogg_opus")
        self.binary = binary
        self.realtime = realtime
        # What the socket took, to send again after a resume; None: the session cannot resume.
        self.ring: ReplayRing[Outgoing] | None = (
            ReplayRing(replay_bytes) if replay_bytes is not None else None
        )
        self._queue: deque[Outgoing] = deque()
        self._writing: Outgoing | None = None  # taken by the sender, not yet written
        self._written = asyncio.Event()
        self._changed = asyncio.Event()
        self._room = asyncio.Event()
        self._streams: dict[str, ContextStream] = {}
        self._next_seq = 0
        self._next_timestamp = 0

    # -- pump side --------------------------------------------------------------------

    def message(self, message: p._Message, *, final: bool = False) -> None:
        context_id = getattr(message, "context_id", None)
        self._push(Outgoing(p.encode_server_message(message), context_id, final=final))

    def audio(self, context_id: str, chunk_index: int, pcm: bytes) -> None:
        stream = self._stream(context_id)
        for packet in stream.encode(pcm):
            self._push_audio(stream, chunk_index, packet)

    def opus(self, context_id: str, chunk_index: int, run: OpusRun) -> None:
        """Opus packets coded upstream; only when ``opus_as_is``."""
        stream = self._stream(context_id)
        for packet in stream.passthrough(run):
            self._push_audio(stream, chunk_index, packet)

    def end_of_context(self, context_id: str, chunk_index: int) -> None:
        """Flush the encoder's tail (a last partial frame is padded) before ``context.done``."""
        stream = self._streams.get(context_id)
        if stream is not None:
            for packet in stream.flush():
                self._push_audio(stream, chunk_index, packet)

    def purge(self, context_id: str) -> None:
        """Drop every queued frame of a context, and what its encoder held back."""
        self._queue = deque(o for o in self._queue if o.context_id != context_id)
        self._room.set()
        self._written.set()
        stream = self._streams.pop(context_id, None)
        if stream is not None:
            stream.encoder.reset()
        self._changed.set()

    async def written(self, context_id: str) -> None:
        """Until the socket has taken every audio frame of ``context_id`` queued so far."""
        while any(self._is_audio_of(o, context_id) for o in (*self._queue, self._writing)):
            self._written.clear()
            await self._written.wait()

    @staticmethod
    def _is_audio_of(item: Outgoing | None, context_id: str) -> bool:
        return item is not None and item.context_id == context_id and item.media_s is not None

    def queued_audio_ms(self) -> float:
        return sum(o.audio_ms for o in self._queue)

    async def room(self) -> None:
        """Until the queue holds less than ``MAX_AHEAD_MS`` of audio.

        The pump waits here, so audio stays in the Session (undelivered, not yet paid
        for) until the socket can take it; only a sliver sits encoded in between.
        """
        while self.queued_audio_ms() >= MAX_AHEAD_MS + (
            PACING_LEAD_S * 1000 if self.realtime else 0
        ):
            self._room.clear()
            await self._room.wait()

    # -- sender side ------------------------------------------------------------------

    async def next(self) -> Outgoing:
        """The next message, when it is due."""
        while True:
            self._changed.clear()
            if not self._queue:
                await self._changed.wait()
                continue
            head = self._queue[0]
            delay = self._delay(head)
            if delay <= 0:
                self._room.set()
                self._writing = self._queue.popleft()
                return self._writing
            try:
                async with asyncio.timeout(delay):
                    await self._changed.wait()  # a purge may have removed the head
            except TimeoutError:
                pass

    def sent(self, item: Outgoing) -> None:
        if item is self._writing:
            self._writing = None
            self._written.set()
        if self.ring is not None:
            self.ring.append(item)
        if item.context_id is None or item.resent:
            return
        if item.final:
            self._streams.pop(item.context_id, None)
        elif item.media_s is not None:
            stream = self._streams.get(item.context_id)
            if stream is not None:
                if stream.started_at is None:
                    stream.started_at = time.monotonic() - item.media_s
                stream.sent_ms = item.media_s * 1000 + item.audio_ms

    def unsent(self, item: Outgoing) -> None:
        """The sender took ``item`` but the socket was gone: it goes first to the next one."""
        if item is self._writing:
            self._writing = None
        self._queue.appendleft(item)
        self._written.set()
        self._changed.set()

    def resend(self, last_seq: int | None) -> int:
        """Put back at the head of the queue what was sent after frame ``last_seq``.

        Raises ``resume_gap`` if the ring no longer holds all of it (nothing changes then).
        How many messages go again.
        """
        assert self.ring is not None
        items = self.ring.take_after(last_seq)
        for item in items:
            item.resent = True
            item.final = False  # its stream went when it was first sent
        self._queue.extendleft(reversed(items))
        self._changed.set()
        return len(items)

    def next_seq(self) -> int:
        """The seq the next audio frame sent will carry (wrapped, as on the wire)."""
        queued = next((o.seq for o in self._queue if o.seq is not None), self._next_seq)
        return queued % WRAP

    def rebase(self) -> None:
        """Paced timelines start again now, each from its first audio still to send.

        After a socket dropped, the client's player is empty: each context goes on as if
        it started at that audio, its first ``PACING_LEAD_S`` at once, then in real time.
        """
        now = time.monotonic()
        for stream in self._streams.values():
            if stream.started_at is None:
                continue
            first = next(
                (
                    o.media_s
                    for o in self._queue
                    if o.context_id == stream.context_id and o.media_s is not None
                ),
                stream.media_s,
            )
            stream.started_at = now - first
        self._changed.set()

    def sent_ms(self, context_id: str) -> float | None:
        """How far into a context's audio the socket has taken it; None if not known.

        The frame the sender is writing counts: its write may wait for the client to read,
        but it is never taken back, so the client gets it before anything queued now.
        """
        stream = self._streams.get(context_id)
        if stream is None:
            return None
        writing = self._writing
        if writing is not None and self._is_audio_of(writing, context_id):
            assert writing.media_s is not None
            return max(stream.sent_ms, writing.media_s * 1000 + writing.audio_ms)
        return stream.sent_ms

    # -- helpers ----------------------------------------------------------------------

    def _stream(self, context_id: str) -> ContextStream:
        stream = self._streams.get(context_id)
        if stream is None:
            frames = self.realtime and self.format.encoding == "pcm_s16le"
            stream = self._streams[context_id] = ContextStream(
                context_id, self.format, frames=frames
            )
            stream.timestamp_base = self._next_timestamp
        return stream

    def _push_audio(self, stream: ContextStream, chunk_index: int, packet: EncodedAudio) -> None:
        encoding = self.format.encoding
        # One continuous numbering per session, whatever the turn: what an RTP bridge needs;
        # frames of contexts playing at once take turns in it, so a seq names one frame.
        seq_count = self._next_seq
        self._next_seq += 1
        seq = seq_count % WRAP
        timestamp = (stream.timestamp_base + packet.timestamp) % WRAP
        self._next_timestamp = stream.timestamp_base + packet.timestamp + packet.ticks
        if self.binary:
            payload: str | bytes = p.pack_audio_frame(
                encoding, stream.context_id, seq, timestamp, packet.data
            )
        else:
            payload = p.encode_server_message(
                p.AudioMessage(
                    context_id=stream.context_id,
                    chunk_index=chunk_index,
                    seq=seq,
                    timestamp=timestamp,
                    offset_ms=stream.media_s * 1000,
                    duration_ms=packet.duration_ms,
                    encoding=encoding,
                    audio=base64.b64encode(packet.data).decode(),
                )
            )
        self._push(
            Outgoing(payload, stream.context_id, stream.media_s, packet.duration_ms, seq=seq_count)
        )
        stream.media_s += packet.duration_ms / 1000

    def _push(self, item: Outgoing) -> None:
        self._queue.append(item)
        self._changed.set()

    def _delay(self, item: Outgoing) -> float:
        if not self.realtime or item.context_id is None or item.media_s is None:
            return 0.0
        stream = self._streams.get(item.context_id)
        if stream is None or stream.started_at is None:
            return 0.0
        return stream.started_at + item.media_s - PACING_LEAD_S - time.monotonic()
