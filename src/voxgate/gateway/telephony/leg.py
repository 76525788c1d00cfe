"""A call leg: a session's audio to a phone call, and what the phone says it played.

Audio is encoded in the dialect's codec into 20 ms frames and sent a little ahead of real
time: up to ``LEAD_MS`` ahead of where the phone's playout is, then one frame each 20 ms,
so that a ``clear`` drops little and what was sent is nearly what was heard. The phone's
playout is modelled from what was sent (it plays in real time from the first frame of a
talkspurt) and corrected by marks: one after each chunk and at least every ``MARK_EVERY_MS``
of audio, each naming its position on its context's timeline. The provider echoes a mark
once the audio before it has played, so the last echo plus the time since, plus the round
trip to the provider (the echo's way back, the clear's way there), is what the caller has
heard by the time a clear stops it. A ``clear`` makes the provider echo every pending mark
at once: the context's generation moves on first, so those echoes say nothing about the
next turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from voxgate.codecs.encoders import Encoder, OpusEncoder, make_encoder
from voxgate.codecs.opus_packets import OpusRun
from voxgate.codecs.output_format import OutputFormat
from voxgate.gateway.outbound import PcmFramer
from voxgate.gateway.telephony.dialect import Dialect

log = logging.getLogger(__name__)

LEAD_MS = 100.0
MARK_EVERY_MS = 500.0
FRAME_MS = 20.0
MAX_PENDING_MARKS = 1024  # a provider that never echoes must not grow the leg without bound
_EARLY_MS = 1.0  # a frame this early is sent now rather than after a sleep too short to take


class MediaSocket(Protocol):
    """Where a leg's messages go: a provider's WebSocket, or a UDP socket for RTP."""

    async def send_str(self, data: str) -> None: ...

    async def send_bytes(self, data: bytes) -> None: ...

    async def close(self, *, code: int = ..., message: bytes = ...) -> Any: ...


@dataclass(slots=True)
class _Turn:
    """One context's audio on this leg."""

    encoder: Encoder
    framer: PcmFramer | None  # linear PCM comes in pieces of any size: cut into 20 ms
    generation: int  # leg-wide; moves on at each interrupt: older marks and frames are stale
    ended: bool = False  # its last audio is pushed: the next push on its id is a new turn
    sent_ms: float = 0.0  # end of its audio sent to the phone, on its timeline
    marked_ms: float = 0.0  # where its last mark was placed
    first_sent_at: float | None = None
    heard: tuple[float, float] | None = None  # (position, when its mark was echoed)
    cut_at_ms: float | None = None  # frozen heard position once interrupted


@dataclass(frozen=True, slots=True)
class _Frame:
    turn: _Turn
    generation: int
    payload: bytes | None  # None: a mark at this point
    ms: float = FRAME_MS  # audio it carries: 20 ms, or a passed-through Opus packet's own


@dataclass(slots=True)
class LegStats:
    frames_sent: int = 0
    marks_sent: int = 0
    marks_echoed: int = 0
    clears: int = 0
    stale_marks: int = 0


@dataclass(frozen=True, slots=True)
class _Mark:
    turn: _Turn
    generation: int
    position_ms: float


class CallLeg:
    def __init__(
        self,
        ws: MediaSocket,
        dialect: Dialect,
        *,
        input_rate: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.dialect = dialect
        self.readyState = "live"
        self.stats = LegStats()
        self._ws = ws
        self._input_rate = input_rate
        self._clock = clock
        self._queue: deque[_Frame] = deque()
        self._turns: dict[str, _Turn] = {}
        self._marks: OrderedDict[str, _Mark] = OrderedDict()
        self._names = (f"vg{n}" for n in itertools.count(1))
        self._generations = itertools.count(1)
        self._clears = 0  # clears owed to the provider
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        # The network round trip to the provider, as its pongs time it (0: not known).
        self.round_trip_ms = 0.0
        self._sent_total_ms = 0.0  # all audio sent, on the phone's playout
        self._play_anchor: float | None = None  # when the phone would reach 0 of that
        self._sender: asyncio.Task[None] | None = asyncio.create_task(
            self._send_loop(), name="call-leg"
        )

    # -- what the session gives ------------------------------------------------------

    def push(self, pcm: bytes | memoryview, context_id: str, media_ms: float) -> int:
        """Take all of ``pcm`` (mono s16 at the session's rate); the caller waits on ``room``."""
        turn = self._turn(context_id)
        packets = turn.encoder.encode(bytes(pcm))
        for packet in turn.framer.frames(packets) if turn.framer else packets:
            self._queue.append(_Frame(turn, turn.generation, packet.data))
        self._wake.set()
        return len(pcm)

    @property
    def takes_opus(self) -> bool:
        """Whether the call's codec is Opus: it can take packets coded upstream as they are."""
        return self.dialect.encoding == "opus"

    def push_opus(self, run: OpusRun, context_id: str) -> int:
        """Take Opus packets coded upstream (only when :attr:`takes_opus`): sent as they
        are, each paced by its own duration."""
        turn = self._turn(context_id)
        encoder = turn.encoder
        assert isinstance(encoder, OpusEncoder)
        for packet in encoder.passthrough(run):
            self._queue.append(_Frame(turn, turn.generation, packet.data, packet.duration_ms))
        self._wake.set()
        return len(run.packets)

    def chunk_ended(self, context_id: str) -> None:
        """A chunk's audio is all pushed: a mark goes after it."""
        turn = self._turn(context_id)
        self._queue.append(_Frame(turn, turn.generation, None))
        self._wake.set()

    def end_of_turn(self, context_id: str) -> None:
        turn = self._turn(context_id)
        packets = turn.encoder.flush()
        if turn.framer is not None:
            packets = [*turn.framer.frames(packets), *turn.framer.rest()]
        for packet in packets:
            self._queue.append(_Frame(turn, turn.generation, packet.data))
        self._queue.append(_Frame(turn, turn.generation, None))
        turn.ended = True
        self._wake.set()

    def interrupt(self, context_id: str | None = None) -> None:
        """Stop a context's audio (every context's when None): queued frames go, and the
        provider is told to drop what it holds. Marks it echoes for it from now are stale."""
        for ctx, turn in self._turns.items():
            if context_id is not None and ctx != context_id:
                continue
            turn.cut_at_ms = self.played_ms(ctx)
            turn.generation = next(self._generations)
            turn.ended = True
        self._queue = deque(f for f in self._queue if f.turn.generation == f.generation)
        # Pending marks of the cut audio are dead: Twilio echoes them on clear (ignored as
        # unknown), Plivo never answers them; either way they need not be kept.
        self._marks = OrderedDict(
            (name, m) for name, m in self._marks.items() if m.turn.generation == m.generation
        )
        self._clears += 1
        self._wake.set()
        self._room.set()

    async def room(self) -> None:
        """Until less than ``LEAD_MS`` of audio waits here, unsent: the rest stays in the
        session, undelivered, so neither charged nor heard yet."""
        while self.readyState == "live" and len(self._queue) * FRAME_MS >= LEAD_MS:
            self._room.clear()
            await self._room.wait()

    # -- what the phone says ---------------------------------------------------------

    def marked(self, name: str) -> None:
        """The provider echoed mark ``name``: the audio before it has played."""
        mark = self._marks.pop(name, None)
        if mark is None:
            return
        if mark.turn.generation != mark.generation:
            self.stats.stale_marks += 1  # echoed by a clear, or of a turn already cut
            return
        self.stats.marks_echoed += 1
        mark.turn.heard = (mark.position_ms, self._clock())

    def played_ms(self, context_id: str) -> float:
        """How far into ``context_id``'s audio the caller has heard, on its timeline."""
        turn = self._turns.get(context_id)
        if turn is None:
            return 0.0
        if turn.cut_at_ms is not None:
            return turn.cut_at_ms
        if turn.first_sent_at is None:
            return 0.0
        now = self._clock()
        # The playout modelled from what was sent: the phone plays no sooner than audio
        # arrives, so it cannot be further than this, whatever the time since a mark.
        estimate = turn.sent_ms - (self._sent_total_ms - self._phone_ms(now))
        if turn.heard is not None:
            # An echoed mark is proof the phone got there; the time since it is playing
            # time only while there was audio to play. The phone was there when the echo
            # left it, and plays on until the clear reaches it: a round trip more.
            position, at = turn.heard
            since_ms = (now - at) * 1000 + self.round_trip_ms
            estimate = max(position, min(estimate, position + since_ms))
        elif self.dialect.marks:
            estimate = min(estimate, (now - turn.first_sent_at) * 1000)
        return max(0.0, min(turn.sent_ms, estimate))

    async def aclose(self) -> None:
        self.readyState = "ended"
        self._room.set()
        sender, self._sender = self._sender, None  # its traceback would refer back here
        if sender is not None:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)

    async def hang_up(self, reason: str) -> None:
        """The session is over: close the provider's socket (its stream ends)."""
        await self.aclose()
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self._ws.close(code=1000, message=reason.encode()[:120])

    # -- sending ---------------------------------------------------------------------

    async def _send_loop(self) -> None:
        try:
            while True:
                if self._clears:
                    self._clears = 0
                    self.stats.clears += 1
                    self._sent_total_ms = min(self._sent_total_ms, self._phone_ms())
                    clear = self.dialect.clear()
                    if clear is not None:
                        await self._ws.send_str(clear)
                    continue
                if not self._queue:
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                # A frame goes once it would end within the lead: one every 20 ms, never
                # two at once (checking the lead before the frame let pairs through).
                excess = self._sent_total_ms + self._queue[0].ms - self._phone_ms() - LEAD_MS
                if excess > _EARLY_MS:
                    await self._sleep(excess / 1000)
                    continue
                await self._send(self._queue.popleft())
        except (ConnectionError, RuntimeError) as exc:
            log.info("call leg closed: %r", exc)
        finally:
            self.readyState = "ended"
            self._room.set()

    async def _sleep(self, seconds: float) -> None:
        # An interrupt wakes the loop at once: its clear must not wait for a frame slot.
        self._wake.clear()
        try:
            async with asyncio.timeout(seconds):
                await self._wake.wait()
        except TimeoutError:
            pass

    async def _send(self, frame: _Frame) -> None:
        turn = frame.turn
        if turn.generation != frame.generation:
            return  # interrupted while queued
        if len(self._queue) * FRAME_MS < LEAD_MS:
            self._room.set()
        if frame.payload is None:
            if self.dialect.marks:
                await self._send_mark(turn)
            return
        now = self._clock()
        if self._play_anchor is None or self._phone_ms(now) >= self._sent_total_ms:
            # The phone has played everything: this frame starts a talkspurt now.
            self._play_anchor = now - self._sent_total_ms / 1000
        if turn.first_sent_at is None:
            turn.first_sent_at = now
        message = self.dialect.media(frame.payload)
        if isinstance(message, bytes):
            await self._ws.send_bytes(message)
        else:
            await self._ws.send_str(message)
        self.stats.frames_sent += 1
        self._sent_total_ms += frame.ms
        turn.sent_ms += frame.ms
        if self.dialect.marks and turn.sent_ms - turn.marked_ms >= MARK_EVERY_MS:
            await self._send_mark(turn)

    async def _send_mark(self, turn: _Turn) -> None:
        name = next(self._names)
        self._marks[name] = _Mark(turn, turn.generation, turn.sent_ms)
        if len(self._marks) > MAX_PENDING_MARKS:
            self._marks.popitem(last=False)
        turn.marked_ms = turn.sent_ms
        self.stats.marks_sent += 1
        await self._ws.send_str(self.dialect.mark(name))

    def _phone_ms(self, now: float | None = None) -> float:
        """Of all audio sent, how much the phone has played by now (the model)."""
        if self._play_anchor is None:
            return 0.0
        now = self._clock() if now is None else now
        return min(self._sent_total_ms, (now - self._play_anchor) * 1000)

    def _turn(self, context_id: str) -> _Turn:
        turn = self._turns.get(context_id)
        if turn is None or turn.ended:
            # A new turn (an id may be reused once its turn is over): its own timeline from
            # 0, its own encoder, while the last frames of the previous one still go out.
            fmt = OutputFormat(self.dialect.encoding, self.dialect.sample_rate)
            encoder = make_encoder(fmt, self._input_rate)
            framer = PcmFramer(fmt.sample_rate) if fmt.encoding == "pcm_s16le" else None
            turn = self._turns[context_id] = _Turn(encoder, framer, next(self._generations))
        return turn


__all__ = ["LEAD_MS", "MARK_EVERY_MS", "CallLeg", "LegStats"]
