"""The playout buffer: bursty PCM in, exactly one frame per frame period out. Pure, no I/O.

The upstream delivers audio in bursts, faster or slower than real time; a WebRTC track (or a
paced WebSocket or telephony sink) must send one 20 ms frame every 20 ms. Feed audio with
:meth:`PlayoutBuffer.push`, mark a turn's end with :meth:`PlayoutBuffer.end_of_stream`, and
call :meth:`PlayoutBuffer.pull` at :meth:`PlayoutBuffer.next_due`; time is always passed in
(seconds of a monotonic clock), nothing here sleeps or reads a clock.

**Clock.** Frame ``k`` is due at ``start + k * frame_ms``; the grid never moves, so no drift
accumulates. ``seq`` rises by 1 per frame returned. ``timestamp`` is the RTP clock of the
frame's slot (``k * clock_rate * frame_ms / 1000``, 960 per 20 ms slot at 48 kHz), so it
advances by exactly one frame per frame on time.

**Stalls.** ``pull`` returns at most one frame, however late it is called. When whole slots
were missed (the event loop stalled), they are skipped, not caught up: the frame goes out in
the current slot, ``timestamp`` jumps by the skipped slots while ``seq`` stays contiguous
(``Frame.skipped`` says how many). A receiver then sees a pause, exactly as with DTX, instead
of packets arriving late against their timestamps, which NetEq would turn into a lasting
increase of its delay. No audio is dropped: the frame sent after a stall carries the next
unplayed audio, so the turn finishes later by the stall's length and ``media_ms`` stays exact.

**Starting at once.** A sender that goes quiet between turns (Opus DTX) need not wait for
the next slot when a turn's audio arrives: :meth:`PlayoutBuffer.pull_now` hands out the
turn's first frame in the slot that went by last (pulled as idle silence, never sent), due
the moment it is asked for. The sender re-times its RTP clock there; the following frames
come on the grid as before, at most a frame sooner than that re-timed clock says.

**Turns and padding.** A turn is a run of pushes for one ``context_id``; it ends at
:meth:`~PlayoutBuffer.end_of_stream` or when audio of another context is pushed. A frame
never mixes turns: a turn's final partial frame is padded with zeros to the frame size (and
is not ``silent``). Mid-turn, a partial frame is never padded: it waits for more audio, so
the non-silent frames of a turn, concatenated, are exactly its pushed PCM plus that padding.

**Underruns.** A playing turn whose buffer holds less than a frame is starving: the frame is
silence and one *upstream* underrun is counted; the turn then rebuffers (waits for the
prebuffer again) so a trickling upstream does not stutter frame by frame. A pull more than
half a frame late is a *late pull*; when the frame it returns carries audio, the gateway made
the listener wait, and one *gateway* underrun is counted. Silence with no open turn (before
the first audio, after a turn's end, after ``clear``) is idle, not an underrun.

**Prebuffer.** Each push measures how late it arrived against real time: the arrival of the
turn's first audio, plus whatever was queued ahead of it, is the reference, and a push
carrying the turn's audio from position ``p`` on is late by ``arrival - (reference + p)``,
floored at 0 (audio ahead of real time is safe, not negatively late). ``prebuffer_ms`` is
the smoothed lateness plus four times its mean deviation (the adaptive playout delay of
Ramjee et al., with the RFC 3550 gain of 1/16), clamped to ``[min_prebuffer_ms,
max_prebuffer_ms]``. A turn starts playing ``prebuffer_ms`` after its first audio arrived
(after an underrun: after the first audio since), once a whole frame is queued, or at once
when its end is marked. The hold is counted in time, not in buffered bytes: time is what
the lateness is measured in, and a byte count gives no slack when the upstream's deltas are
as long as the prebuffer (one 60 ms delta fills a 60 ms prebuffer, and the next delta's
lateness still starves it). An upstream faster than real time is never late, so its
prebuffer stays at ``min_prebuffer_ms`` (0 by default).

**Bounded memory.** At most ``max_buffer_ms`` of audio is queued. ``push`` works like a
non-blocking socket ``send``: it takes as much as fits and returns the number of bytes taken.
A caller that got fewer than it offered keeps the rest and must stop taking audio from the
session until :attr:`~PlayoutBuffer.room_bytes` is non-zero again (the session's own pacing
then holds the upstream back). Nothing accepted is ever dropped, except by ``clear``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from voxgate.errors import InvalidInput

__all__ = ["Frame", "Pcm", "PlayoutBuffer", "PlayoutOptions", "PlayoutStats"]

Pcm = bytes | bytearray | memoryview  # mono s16le; a view is copied, bytes are kept as is

# A timer that fires a hair early must not cost a whole slot; 0.5 ms early is still on time.
_EARLY_S = 0.0005
# RFC 3550's gain for its jitter estimate, used for the lateness mean and deviation.
_GAIN = 1 / 16
# Playout delay = mean lateness + this many mean deviations (Ramjee et al., 1994).
_DEVIATIONS = 4
# Pushes whose media times meet within this many ms are one contiguous piece of audio.
_CONTIGUOUS_MS = 1e-6


@dataclass(frozen=True, slots=True)
class PlayoutOptions:
    """Frame format, memory bound and prebuffer range of a :class:`PlayoutBuffer`."""

    sample_rate: int = 24000  # of the mono s16le PCM pushed and pulled
    frame_ms: int = 20
    clock_rate: int = 48000  # of Frame.timestamp: 48 kHz is Opus's RTP clock
    max_buffer_ms: int = 2000  # bound on queued audio; push takes no more than fits
    min_prebuffer_ms: int = 0
    max_prebuffer_ms: int = 60

    def __post_init__(self) -> None:
        if self.sample_rate <= 0 or self.clock_rate <= 0 or self.frame_ms <= 0:
            raise InvalidInput("sample_rate, clock_rate and frame_ms must be positive")
        if (self.sample_rate * self.frame_ms) % 1000 or (self.clock_rate * self.frame_ms) % 1000:
            raise InvalidInput("a frame must hold a whole number of samples and clock ticks")
        if not 0 <= self.min_prebuffer_ms <= self.max_prebuffer_ms:
            raise InvalidInput("need 0 <= min_prebuffer_ms <= max_prebuffer_ms")
        # Below this a turn could wait for a prebuffer that the bound never lets in.
        if self.max_buffer_ms < self.max_prebuffer_ms + self.frame_ms:
            raise InvalidInput("max_buffer_ms must be at least max_prebuffer_ms + frame_ms")

    @property
    def frame_bytes(self) -> int:
        """The size of one frame of PCM."""
        return self.sample_rate * self.frame_ms // 1000 * 2


# Not frozen: one is made per slot of every stream, and a frozen dataclass' __init__ (an
# object.__setattr__ per field) costs five times a plain one. Nothing changes a Frame.
@dataclass(slots=True, eq=False)
class Frame:
    """One frame to send now: ``frame_ms`` of mono s16le PCM and where it belongs."""

    pcm: bytes  # exactly frame_bytes; zeros when silent
    timestamp: int  # RTP clock of this frame's slot: +960 per 20 ms slot at 48 kHz
    seq: int  # +1 per frame returned, never skips
    due: float  # the monotonic time of this frame's slot
    silent: bool  # fill: idle, prebuffering or underrun
    context_id: str | None  # whose audio this is; None when silent
    media_ms: float | None  # the first sample's position on that context's audio timeline
    skipped: int = 0  # slots skipped just before this one because the pull came late


@dataclass(frozen=True, slots=True)
class PlayoutStats:
    """Counters since the buffer was made; underruns are counted once per episode."""

    frames_sent: int
    silent_frames: int
    underruns_upstream: int  # a playing turn ran dry: its audio had not arrived
    underruns_gateway: int  # audio was ready but the pull came more than half a frame late
    late_pulls: int  # pulls more than half a frame after their slot, audio or not
    skipped_slots: int  # slots given up to stalls, never caught up
    max_lateness_ms: float
    prebuffer_ms: int  # how long a turn starting now would be held
    lateness_ms: float  # smoothed lateness of upstream audio against real time
    jitter_ms: float  # smoothed mean deviation of that lateness


class _Turn:
    """The queued audio of one turn: its pieces of PCM, where each starts on the turn's
    timeline, and a read offset. Two deques of bytes and floats rather than one of
    ``(pcm, media_ms)`` tuples: nothing in them is tracked by the garbage collector, whose
    young collections would otherwise walk every queued piece of every stream."""

    __slots__ = (
        "context_id",
        "ended",
        "offset",
        "pieces",
        "playing",
        "pushed_s",
        "queued",
        "ref",
        "since",
        "started",
        "starts",
    )

    def __init__(self, context_id: str, now: float, ahead_s: float) -> None:
        self.context_id = context_id
        self.pieces: deque[bytes] = deque()
        self.starts: deque[float] = deque()  # media_ms of each piece's first sample
        self.offset = 0  # into pieces[0]
        self.queued = 0  # bytes not yet played
        self.pushed_s = 0.0  # audio pushed in this turn
        self.ref = now + ahead_s  # when its first byte would play, with nothing held back
        self.since: float | None = now  # when the audio it waits for began to arrive
        self.ended = False
        self.playing = False
        self.started = False  # a frame of it went out

    def append(self, data: bytes, media_ms: float, small: int, ms_per_byte: float) -> None:
        if self.pieces and len(data) < small:
            last = self.pieces[-1]
            meets = abs(self.starts[-1] + len(last) * ms_per_byte - media_ms) < _CONTIGUOUS_MS
            # Tiny contiguous pushes are merged so a frame is never built from dozens of
            # pieces and per-piece overhead cannot outgrow the audio itself.
            if len(last) < small and meets:
                self.pieces[-1] = last + data
                self.queued += len(data)
                return
        self.pieces.append(data)
        self.starts.append(media_ms)
        self.queued += len(data)

    def take(self, size: int) -> bytes:
        """Up to ``size`` bytes from the front; slices only at the frame's own edges."""
        data, start = self.pieces[0], self.offset
        if start + size < len(data):  # the common case: one slice of the head piece
            self.offset = start + size
            self.queued -= size
            return data[start : self.offset]
        parts: list[bytes] = []
        while size and self.pieces:
            data = self.pieces[0]
            end = min(len(data), self.offset + size)
            parts.append(data[self.offset : end])
            size -= end - self.offset
            if end == len(data):
                self.pieces.popleft()
                self.starts.popleft()
                self.offset = 0
            else:
                self.offset = end
        pcm = parts[0] if len(parts) == 1 else b"".join(parts)
        self.queued -= len(pcm)
        return pcm


class _Lateness:
    """Smoothed lateness of upstream audio and its mean deviation, in seconds."""

    __slots__ = ("deviation", "mean")

    def __init__(self) -> None:
        self.mean = 0.0
        self.deviation = 0.0

    def add(self, late: float) -> None:
        self.mean += (late - self.mean) * _GAIN
        self.deviation += (abs(late - self.mean) - self.deviation) * _GAIN

    def delay_ms(self) -> int:
        return round((self.mean + _DEVIATIONS * self.deviation) * 1000)


class PlayoutBuffer:
    """Absorbs bursty PCM and yields one frame per slot on a fixed monotonic grid.

    ``start`` is the monotonic time of the first slot. See the module docstring for how
    stalls, underruns, padding, the prebuffer and the memory bound behave.
    """

    def __init__(self, options: PlayoutOptions, start: float) -> None:
        self.options = options
        self._start = start
        self._frame_s = options.frame_ms / 1000
        self._frame_bytes = options.frame_bytes
        self._ticks = options.clock_rate * options.frame_ms // 1000
        self._ms_per_byte = 500 / options.sample_rate
        self._max_bytes = options.max_buffer_ms * options.sample_rate // 1000 * 2
        self._silence = bytes(self._frame_bytes)  # one constant, reused for every fill frame
        self._turns: deque[_Turn] = deque()
        self._queued = 0
        self._slot = 0
        self._seq = 0
        self._last_idle = False  # the last frame pulled was silence with no turn playing
        self._lateness = _Lateness()
        self._frames = self._silent = self._late = self._skipped = 0
        self._under_upstream = self._under_gateway = 0
        self._max_late_s = 0.0

    # -- audio in ---------------------------------------------------------------------

    def push(self, pcm: Pcm, now: float, *, context_id: str, media_ms: float) -> int:
        """Queue PCM that arrived at ``now``; returns how many bytes were taken.

        ``media_ms`` is the position of ``pcm``'s first sample on the context's audio
        timeline. Fewer bytes than offered are taken only when the buffer is full: keep the
        rest (its ``media_ms`` moves on by the bytes taken) and push it after pulling.
        """
        if not isinstance(pcm, bytes):
            pcm = memoryview(pcm).cast("B")  # lengths in bytes, whatever the item size
        if len(pcm) % 2:
            raise InvalidInput("PCM must hold whole s16 samples", code="invalid_pcm")
        size = min(len(pcm), self.room_bytes)
        if size == 0:
            return 0
        # A bytes object is immutable and can be kept as is; anything else might change
        # under us or pin a larger buffer, so the part taken is copied.
        data = pcm if size == len(pcm) and isinstance(pcm, bytes) else bytes(pcm[:size])
        turn = self._open_turn(context_id, now)
        self._measure(turn, now)
        turn.pushed_s += size * self._ms_per_byte / 1000
        turn.append(data, media_ms, self._frame_bytes, self._ms_per_byte)
        self._queued += size
        return size

    def end_of_stream(self, context_id: str) -> None:
        """The upstream finished this context's turn: play out what is left, then idle."""
        if self._turns and self._turns[-1].context_id == context_id:
            self._turns[-1].ended = True

    def clear(self, context_id: str | None = None) -> None:
        """Barge-in: drop the queued audio of one context, or of all, at once.

        The next frame carries other queued audio or silence; ``seq`` and ``timestamp`` go
        on without a break. Audio pushed afterwards starts a new turn.
        """
        if context_id is None:
            self._turns.clear()
        else:
            self._turns = deque(t for t in self._turns if t.context_id != context_id)
        self._queued = sum(t.queued for t in self._turns)

    # -- frames out -------------------------------------------------------------------

    def next_due(self) -> float:
        """The monotonic time at which the next frame is due."""
        return self._due(self._slot)

    def pull(self, now: float) -> Frame | None:
        """The frame due by ``now``, or None if it is not due yet. Never more than one."""
        due = self._due(self._slot)
        if now < due - _EARLY_S:
            return None
        skipped = int((now + _EARLY_S - due) / self._frame_s)
        self._slot += skipped
        pcm, context_id, media_ms = self._next_audio(now)
        frame = Frame(
            pcm,
            self._slot * self._ticks,
            self._seq,
            self._due(self._slot),
            context_id is None,
            context_id,
            media_ms,
            skipped,
        )
        self._count(frame, now - due)
        self._last_idle = context_id is None and not self.playing
        self._slot += 1
        self._seq += 1
        return frame

    def pull_now(self, now: float) -> Frame | None:
        """The head turn's first frame at once, if it is ready, in the slot that began last.

        For a sender that goes quiet between turns (DTX) and starts each turn the moment
        its audio is there: that slot was pulled as idle silence and not sent, so the
        turn can take it over instead of waiting up to a frame for the next one. The frame
        is due ``now``; the next :meth:`pull` is for the following slot, as before. None
        (and nothing changes) unless the last frame pulled was silence with no turn
        playing, its slot began at most a frame ago and the head turn may start playing.
        """
        slot = self._slot - 1
        if slot < 0 or not self._last_idle or self.playing:
            return None
        due = self._due(slot)
        if not due - _EARLY_S <= now < due + self._frame_s:
            return None  # a tick is late or early: the regular pull is the right one
        turn = self._head()
        if turn is None or not self._ready(turn, now):
            return None
        pcm, context_id, media_ms = self._next_audio(now)
        frame = Frame(pcm, slot * self._ticks, self._seq, now, False, context_id, media_ms)
        self._count(frame, 0.0)
        self._seq += 1
        self._last_idle = False
        return frame

    # -- state ------------------------------------------------------------------------

    @property
    def playing(self) -> bool:
        """Whether a turn is under way: it played a frame and has more to play or to
        wait for. Silence while playing is an underrun; silence otherwise is idle."""
        turn = self._head()
        return turn is not None and turn.started

    @property
    def buffered_ms(self) -> float:
        """Audio queued and not yet played, in milliseconds."""
        return self._queued * 500 / self.options.sample_rate

    @property
    def room_bytes(self) -> int:
        """How many bytes the next push can take."""
        return self._max_bytes - self._queued

    @property
    def prebuffer_ms(self) -> int:
        """How long a turn starting now is held after its first audio arrives."""
        delay = self._lateness.delay_ms()
        return max(self.options.min_prebuffer_ms, min(self.options.max_prebuffer_ms, delay))

    @property
    def stats(self) -> PlayoutStats:
        """A snapshot of the counters."""
        return PlayoutStats(
            frames_sent=self._frames,
            silent_frames=self._silent,
            underruns_upstream=self._under_upstream,
            underruns_gateway=self._under_gateway,
            late_pulls=self._late,
            skipped_slots=self._skipped,
            max_lateness_ms=self._max_late_s * 1000,
            prebuffer_ms=self.prebuffer_ms,
            lateness_ms=self._lateness.mean * 1000,
            jitter_ms=self._lateness.deviation * 1000,
        )

    # -- internals --------------------------------------------------------------------

    def _due(self, slot: int) -> float:
        # Multiplying, never adding up, keeps the grid free of accumulated rounding.
        return self._start + slot * self._frame_s

    def _open_turn(self, context_id: str, now: float) -> _Turn:
        if self._turns:
            tail = self._turns[-1]
            if not tail.ended and tail.context_id == context_id:
                return tail
            tail.ended = True  # audio of another context: this turn's last frame is padded
        # With audio queued ahead, this turn's first byte is needed only once that has played.
        turn = _Turn(context_id, now, self._queued * self._ms_per_byte / 1000)
        self._turns.append(turn)
        return turn

    def _measure(self, turn: _Turn, now: float) -> None:
        self._lateness.add(max(0.0, now - (turn.ref + turn.pushed_s)))
        if turn.since is None:  # the first audio after an underrun: the hold starts again
            turn.since = now

    def _head(self) -> _Turn | None:
        while self._turns:
            turn = self._turns[0]
            if turn.queued or not turn.ended:
                return turn
            self._turns.popleft()
        return None

    def _ready(self, turn: _Turn, now: float) -> bool:
        if not turn.playing:
            held = turn.since is not None and now >= turn.since + self.prebuffer_ms / 1000
            turn.playing = turn.ended or (held and turn.queued >= self._frame_bytes)
        return turn.playing

    def _next_audio(self, now: float) -> tuple[bytes, str | None, float | None]:
        turn = self._head()
        if turn is None or not self._ready(turn, now):
            return self._silence, None, None
        if turn.queued < self._frame_bytes and not turn.ended:
            # Rebuffer rather than stutter frame by frame; the wait restarts with the next push.
            turn.playing = False
            turn.since = None
            self._under_upstream += 1
            return self._silence, None, None
        media_ms = turn.starts[0] + turn.offset * self._ms_per_byte
        turn.started = True
        pcm = turn.take(self._frame_bytes)
        self._queued -= len(pcm)
        if len(pcm) < self._frame_bytes:  # the last partial frame of an ended turn
            pcm += self._silence[len(pcm) :]
        if turn.ended and not turn.queued:
            self._turns.popleft()
        return pcm, turn.context_id, media_ms

    def _count(self, frame: Frame, lateness: float) -> None:
        self._frames += 1
        self._silent += frame.silent
        self._skipped += frame.skipped
        self._max_late_s = max(self._max_late_s, lateness)
        if lateness > self._frame_s / 2:
            self._late += 1
            self._under_gateway += not frame.silent
