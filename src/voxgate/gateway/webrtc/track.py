"""The session's audio as a WebRTC track: playout buffer, Opus, one packet per clock tick.

**Packet path.** The shared :class:`~voxgate.gateway.webrtc.clock.MediaClock` calls
``tick`` on this track's phase; ``tick`` pulls the due frame from the
:class:`~voxgate.codecs.playout.PlayoutBuffer`, codes it with libopus (fed the session's
24 kHz directly; the RTP clock stays 48 kHz) and, once the transceiver is known
(:meth:`SessionAudioTrack.bind`), sends it straight to the socket through
:class:`~voxgate.gateway.webrtc.rtp.RtpOut` right after a batch of ticks (the clock's
"Batched sends"); aiortc's sender task then only waits in ``recv()`` until the track ends.
Unbound (or when aiortc's internals are not what ``RtpOut`` knows), ``recv()`` returns the
ready ``av.Packet`` (``pts`` on the 48 kHz clock) and aiortc's ``pack()`` path sends it: no
resampling to 48 kHz stereo, no 96 kbit/s re-encode in a worker thread, no per-sample level
loop, but a task wake-up and aiortc's per-packet Python. The encodes of one phase's tracks
run back to back, with libopus' code and tables hot in the CPU caches.

**Talkspurts and DTX.** While a turn plays, a packet goes out every 20 ms, underruns
included (constant silence frames): exactly 50 packets/s with continuous timestamps, so the
listener's jitter buffer sees no sender jitter. Between turns the track goes quiet as Opus
DTX does (RFC 7587 section 3.1.3; ``TrackOptions.dtx``): 200 ms of silence packets end the
talkspurt (as libopus' own DTX waits), then a one-byte DTX frame, repeated every 400 ms,
tells the receiver to play comfort noise. The next turn then needs no free slot: its first
frame is sent the moment its audio is there (``PlayoutBuffer.pull_now``), with the marker
bit and an RTP timestamp that moved on by the real time elapsed, and its later frames
follow on the clock's grid. The re-timing never makes a packet look late to the receiver:
the first packet is on time against the previous talkspurt's clock (at most 2.5 ms early
when it follows a DTX frame at once, as the DTX frame spans 2.5 ms), and the following
ones are on time or early (by under a frame) against the first. A turn that starts within
the 200 ms of silence packets waits for its slot: the receiver is still playing that clock,
so sending sooner would gain nothing. With ``dtx`` off, silence packets go out every 20 ms
between turns too and a turn's first frame waits for the next slot (0-20 ms).

**Silence costs no encode.** A silence packet is a constant three-byte Opus frame (CELT,
fullband, 20 ms, silence flag set); libopus itself spends about twice a speech frame's CPU
on digital silence. The first silent slot after audio is still coded by libopus,
releasing the 6.5 ms of speech in its lookahead; libopus is then replaced by a fresh state
(opened off the audio path) so each turn starts from a state the decoder agrees with,
since the decoder reset its SILK layer when the constant CELT frames arrived.

**Barge-in.** :meth:`SessionAudioTrack.interrupt` clears the buffer, turns frames already
pulled but not yet sent into silence and drops libopus' state: the next packet is silence
or new audio.

**Before the peer connects.** aiortc calls ``recv()`` once DTLS is up. Until then pushed
audio is kept (within ``max_buffer_ms``) and the playout schedule starts with that first
call, so nothing is played into a connection that is not there.
"""

from __future__ import annotations

import asyncio
import dataclasses
import fractions
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import av
import numpy as np
from aiortc import MediaStreamTrack, RTCRtpTransceiver
from aiortc.mediastreams import MediaStreamError

from voxgate.codecs.opus import open_libopus
from voxgate.codecs.opus_packets import OpusRun, timeline_bytes
from voxgate.codecs.output_format import OutputFormat
from voxgate.codecs.playout import Frame, Pcm, PlayoutBuffer, PlayoutOptions
from voxgate.errors import InvalidInput
from voxgate.gateway.webrtc.clock import LatencyWindow, MediaClock
from voxgate.gateway.webrtc.collector import MediaCollector
from voxgate.gateway.webrtc.passthrough import PacketQueue
from voxgate.gateway.webrtc.rtp import RtpOut

__all__ = ["OPUS_DTX", "OPUS_SILENCE", "SessionAudioTrack", "TrackOptions", "TrackStats"]

# TOC 0xF8: config 31 (CELT-only, fullband, 20 ms), mono, one frame; 0xFF 0xFE codes the
# CELT silence flag. Any Opus decoder turns it into 20 ms of zeros, whatever came before.
OPUS_SILENCE = b"\xf8\xff\xfe"
# A TOC byte and no frame data, as libopus sends in DTX. WebRTC's Opus decoder takes any
# payload of one or two bytes as DTX and plays comfort noise until the next packet. The TOC
# says 2.5 ms (config 28: CELT, fullband, 2.5 ms), so the packet holds 2.5 ms of the RTP
# clock, not 20: a turn starting in the slot after it need not wait for the next one.
OPUS_DTX = b"\xe0"
DTX_TICKS = 120  # what OPUS_DTX spans on the 48 kHz clock
DTX_EVERY = 20  # slots between DTX packets: every 400 ms, as libopus sends them
# Silence packets after a turn before DTX starts: 200 ms, as libopus waits. A receiver
# holding a few frames back (aiortc's jitter buffer keeps 4) gets the turn's last audio
# from the packets behind it, not 400 ms later from DTX frames.
DTX_HANGOVER = 10
TIME_BASE = fractions.Fraction(1, 48000)
OpusPacket: TypeAlias = "av.Packet[Any]"  # PyAV's stub is generic in the stream type
_READY_MAX = 4  # frames pulled but not yet taken by recv(): more means aiortc stopped reading
_CONTEXTS_KEPT = 64  # played positions remembered, newest first
_WINDOW = 1024  # packets in the lateness window: 20 s at 50 packets/s


@dataclass(frozen=True, slots=True)
class TrackOptions:
    """Opus settings, DTX and the playout buffer of a :class:`SessionAudioTrack`.

    24 kbit/s codes 24 kHz speech as hybrid super-wideband (SILK + CELT). Complexity 5 is
    the knee (measured on espeak speech, 2-core reference machine): segmental SNR within
    0.1 dB of complexity 10 at ~80 % of its CPU (~0.2 ms a frame); complexity 0-1 halves
    the encode CPU for ~0.5 dB less, the lever when streams per core matter more.
    """

    bitrate: int = 24000
    complexity: int = 5
    dtx: bool = True  # quiet between turns; see "Talkspurts and DTX"
    playout: PlayoutOptions = field(default_factory=PlayoutOptions)

    def __post_init__(self) -> None:
        OutputFormat("opus", 48000, self.bitrate, self.complexity)  # raises InvalidInput
        if self.playout.frame_ms != 20 or self.playout.clock_rate != 48000:
            raise InvalidInput("a WebRTC track needs 20 ms frames on the 48 kHz RTP clock")
        if self.playout.sample_rate not in (8000, 12000, 16000, 24000, 48000):
            raise InvalidInput("libopus takes 8, 12, 16, 24 or 48 kHz PCM")

    @property
    def opus_format(self) -> OutputFormat:
        """The encoder settings as an :class:`OutputFormat`."""
        return OutputFormat("opus", 48000, self.bitrate, self.complexity)


@dataclass(frozen=True, slots=True)
class TrackStats:
    """Counters since the track started; percentiles over the last 1024 packets."""

    packets_sent: int
    silent_packets: int  # sent without session audio: silence and DTX frames
    encoded_packets: int  # coded by libopus: audio, and each turn's first silent slot
    passed_packets: int  # sent as the upstream coded them (Opus passthrough)
    dropped_frames: int  # pulled but never sent (aiortc's sender stopped reading, or gone)
    dtx_slots: int  # slots between turns that went unsent (DTX)
    talkspurts: int  # times audio started after DTX, each re-timing the RTP clock
    underruns_upstream: int  # from the playout buffer: the session's audio was late
    underruns_gateway: int  # from the playout buffer: our tick was late with audio ready
    skipped_slots: int
    timestamp: int  # of the last packet sent, on the track's 48 kHz clock (no RTP origin)
    send_late_p50_ms: float  # a packet handed over - its due time
    send_late_p99_ms: float
    send_late_max_ms: float
    first_audio_p50_ms: float  # a context's first push -> its first packet handed over
    first_audio_p99_ms: float
    turns: int  # first-audio samples taken
    direct: bool  # packets go straight to the socket (RtpOut), not through recv()


class _Packetizer:
    """20 ms frames in, Opus payloads out; silence is the constant frame."""

    __slots__ = ("_codec", "_fmt", "_frame", "_rate", "_zeros", "encoded", "tail_context")

    def __init__(self, options: TrackOptions) -> None:
        self._fmt = options.opus_format
        self._rate = options.playout.sample_rate
        self._codec: av.AudioCodecContext | None = None
        # One frame reused for every encode: libopus copies it in and keeps no reference.
        self._frame = av.AudioFrame(
            format="s16", layout="mono", samples=options.playout.frame_bytes // 2
        )
        self._frame.sample_rate = self._rate
        self._zeros = bytes(options.playout.frame_bytes)
        self.tail_context: str | None = None  # whose speech sits in libopus' lookahead
        self.encoded = 0

    def payload(self, frame: Frame) -> bytes:
        if not frame.silent:
            self.tail_context = frame.context_id
            return self._encode(frame.pcm)
        if self.tail_context is not None:
            # The lookahead still holds the turn's last 6.5 ms: one coded silent frame
            # releases it, then a fresh state is opened at the next silent slot.
            payload = self._encode(self._zeros)
            self.reset()
            return payload
        if self._codec is None:
            self._codec = open_libopus(self._fmt, self._rate)  # off the first-audio path
        return OPUS_SILENCE

    def warm(self) -> None:
        """Open libopus now, off the first-audio path, if the last turn's state is gone."""
        if self._codec is None and self.tail_context is None:
            self._codec = open_libopus(self._fmt, self._rate)

    def reset(self) -> None:
        """Forget libopus' state: nothing it holds will ever be coded."""
        self._codec = None
        self.tail_context = None

    def _encode(self, pcm: bytes) -> bytes:
        if self._codec is None:
            self._codec = open_libopus(self._fmt, self._rate)
        self._frame.planes[0].update(pcm)
        self.encoded += 1
        packets = self._codec.encode(self._frame)
        # FFmpeg's libopus wrapper answers every 20 ms frame with its packet at once.
        return bytes(packets[0]) if packets else OPUS_SILENCE


def _stamped(payload: bytes, timestamp: int) -> OpusPacket:
    packet = av.Packet(payload)
    packet.pts = timestamp
    # Exactly 1/48000: aiortc's pack() then takes pts as the RTP timestamp, no conversion.
    packet.time_base = TIME_BASE
    return packet


class SessionAudioTrack(MediaStreamTrack):
    """An audio track fed with a session's PCM, sending one Opus packet per 20 ms tick.

    Push mono s16le PCM at ``options.playout.sample_rate`` (24 kHz by default) with
    :meth:`push`; mark a turn's end with :meth:`end_of_turn`; stop audio at once with
    :meth:`interrupt`. The track ticks on ``clock`` (the process-wide one by default).
    Use it from one event loop. Its transceiver must send Opus: restrict it with
    :func:`~voxgate.gateway.webrtc.sdp.send_opus_only`, and :meth:`bind` the track to
    it, before the answer is made.
    """

    kind = "audio"

    def __init__(
        self, options: TrackOptions | None = None, *, clock: MediaClock | None = None
    ) -> None:
        super().__init__()
        self.options = options or TrackOptions()
        self._clock = clock or MediaClock.shared()
        self._packetizer = _Packetizer(self.options)
        self._buffer: PlayoutBuffer | None = None  # made at the first recv()
        self._timeline_start: float | None = None
        self._early: list[tuple[bytes, str, float] | str] = []  # pushes and ends before it
        self._early_bytes = 0
        self._transceiver: RTCRtpTransceiver | None = None
        self._out: RtpOut | None = None  # the direct path, once attached
        self._collector: MediaCollector | None = None  # told of this peer while it is up
        self._opus = PacketQueue(self.options.playout.sample_rate)  # passthrough turns
        # For flush(): (frame, payload, timestamp, marker, end of its audio on the timeline).
        self._pending: list[tuple[Frame, bytes, int, bool, float]] = []
        self._ended: asyncio.Future[None] | None = None  # recv() waits on it when direct
        self._ready: deque[tuple[Frame, OpusPacket, float]] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._silence = bytes(self.options.playout.frame_bytes)
        self._frame_ms = float(self.options.playout.frame_ms)
        self._frame_s = self._frame_ms / 1000
        self._ticks = self.options.playout.clock_rate * self.options.playout.frame_ms // 1000
        # The track's 48 kHz clock is the buffer's slot timestamp plus ``_offset``; a
        # talkspurt after DTX re-times it from ``_anchor`` (a timestamp and the monotonic
        # time its slot was due) and never goes back into the last packet's span.
        self._offset = 0
        self._anchor = (0, 0.0)
        self._last_end: int | None = None  # the last packet's timestamp + what it spans
        self._quiet = 0  # idle slots in a row since the last talkspurt; 0 while talking
        self._marker = False  # the next packet starts a talkspurt
        self._last_pcm: bytes | None = None
        self._played: dict[str, float] = {}
        self._playing: str | None = None  # the context of the last packet with audio sent
        self._first_push: dict[str, float] = {}
        self._late = LatencyWindow(_WINDOW)
        self._first_audio = LatencyWindow(_WINDOW)
        self._sent = self._silent = self._dropped = self._timestamp = self._passed = 0
        self._dtx_slots = self._talkspurts = 0

    def bind(self, transceiver: RTCRtpTransceiver) -> None:
        """Send on ``transceiver`` directly (see "Packet path"); call before the answer."""
        self._transceiver = transceiver

    # -- audio in ---------------------------------------------------------------------

    def push(self, pcm: Pcm, context_id: str, media_ms: float) -> int:
        """Queue PCM of ``context_id`` starting at ``media_ms``; returns the bytes taken.

        Fewer than offered means the buffer is full: keep the rest, stop reading the
        session until :attr:`room_bytes` is non-zero again, then push the rest. Between
        turns (DTX), the turn's first frame is sent from here, before this returns.
        """
        return self._push(pcm, context_id, media_ms)

    def _push(self, pcm: Pcm, context_id: str, media_ms: float) -> int:
        if self._buffer is None:
            return self._push_early(pcm, context_id, media_ms)
        now = time.monotonic()
        if context_id not in self._played and context_id not in self._first_push:
            _remember(self._first_push, context_id, now)
        taken = self._buffer.push(pcm, now, context_id=context_id, media_ms=media_ms)
        if self._quiet > DTX_HANGOVER and self.readyState == "live":
            frame = self._buffer.pull_now(now)
            if frame is not None:
                self._emit(frame, now)
                self.flush()
        return taken

    def push_opus(self, run: OpusRun, context_id: str, media_ms: float) -> int:
        """Queue Opus packets coded upstream, to be sent as they are (Opus passthrough);
        returns how many were taken, as :meth:`push` does (a packet is taken whole or not).

        A turn is all PCM or all packets. Each packet goes out in the slot its start falls
        in, its RTP timestamp moved on from the slot's by where it starts inside it.
        """
        # Whole packets that fit, then one span for all of them: one buffer push per run.
        room, taken, samples = self.room_bytes, 0, 0
        for n in run.samples:
            if timeline_bytes(samples + n, self._opus.rate) > room:
                break
            samples += n
            taken += 1
        if not taken:
            return 0
        start = media_ms
        # Queued before the push, which may send the first of them at once.
        for payload, n in zip(run.packets[:taken], run.samples[:taken], strict=True):
            media_ms = self._opus.add(context_id, payload, n, media_ms)
        self._push(self._opus.span(samples), context_id, start)
        return taken

    def end_of_turn(self, context_id: str) -> None:
        """The session delivered all of ``context_id``'s audio: play the rest, then idle."""
        if self._buffer is None:
            self._early.append(context_id)
        else:
            self._buffer.end_of_stream(context_id)

    def interrupt(self, context_id: str | None = None) -> None:
        """Barge-in: drop the queued audio of one context (or all) and libopus' lookahead.

        The next packet sent is silence or audio of another context; use
        :meth:`played_ms` for how much of ``context_id`` went out.
        """
        self._opus.drop(context_id)
        if self._buffer is None:
            self._early = [op for op in self._early if not _belongs(op, context_id)]
            self._early_bytes = sum(len(op[0]) for op in self._early if isinstance(op, tuple))
            return
        self._buffer.clear(context_id)
        for i, (frame, packet, _) in enumerate(self._ready):
            if not frame.silent and context_id in (None, frame.context_id):
                silent = dataclasses.replace(
                    frame, pcm=self._silence, silent=True, context_id=None, media_ms=None
                )
                self._ready[i] = (silent, _stamped(OPUS_SILENCE, int(packet.pts or 0)), 0.0)
        if context_id is None or context_id == self._packetizer.tail_context:
            self._packetizer.reset()
        if context_id is None:
            self._first_push.clear()
        else:
            self._first_push.pop(context_id, None)

    @property
    def buffered_ms(self) -> float:
        """Audio pushed and not yet played, in milliseconds."""
        if self._buffer is None:
            return self._early_bytes * 500 / self.options.playout.sample_rate
        return self._buffer.buffered_ms

    @property
    def room_bytes(self) -> int:
        """How many bytes the next :meth:`push` can take."""
        if self._buffer is None:
            return max(0, self._early_capacity() - self._early_bytes)
        return self._buffer.room_bytes

    # -- what went out ----------------------------------------------------------------

    def played_ms(self, context_id: str) -> float:
        """End of ``context_id``'s audio sent so far, on its media timeline.

        The position of the last non-silent frame sent plus its 20 ms; 0.0 if none went.
        """
        return self._played.get(context_id, 0.0)

    @property
    def timeline_start(self) -> float | None:
        """Monotonic due time of the playout buffer's first slot; None until aiortc
        starts reading."""
        return self._timeline_start

    @property
    def level(self) -> float:
        """RMS of the last packet's audio, 0.0 (silence) to 1.0 (full scale)."""
        if self._last_pcm is None:
            return 0.0
        samples = np.frombuffer(self._last_pcm, dtype=np.int16).astype(np.float32)
        return float(np.sqrt(np.mean(np.square(samples)))) / 32768

    @property
    def stats(self) -> TrackStats:
        """A snapshot of the counters, merged with the playout buffer's."""
        buffer = self._buffer.stats if self._buffer else None
        return TrackStats(
            packets_sent=self._sent,
            silent_packets=self._silent,
            encoded_packets=self._packetizer.encoded,
            passed_packets=self._passed,
            dropped_frames=self._dropped,
            dtx_slots=self._dtx_slots,
            talkspurts=self._talkspurts,
            underruns_upstream=buffer.underruns_upstream if buffer else 0,
            underruns_gateway=buffer.underruns_gateway if buffer else 0,
            skipped_slots=buffer.skipped_slots if buffer else 0,
            timestamp=self._timestamp,
            send_late_p50_ms=self._late.percentile_ms(50),
            send_late_p99_ms=self._late.percentile_ms(99),
            send_late_max_ms=self._late.max_ms(),
            first_audio_p50_ms=self._first_audio.percentile_ms(50),
            first_audio_p99_ms=self._first_audio.percentile_ms(99),
            turns=self._first_audio.count,
            direct=self._out is not None,
        )

    # -- aiortc side ------------------------------------------------------------------

    async def recv(self) -> OpusPacket:
        """The next 20 ms Opus packet, returned as soon as its tick made it. Called by
        aiortc's sender task; on the direct path it waits until the track ends."""
        if self._buffer is None:
            self._start()
        if self._ended is not None:
            await asyncio.shield(self._ended)
            raise MediaStreamError
        while not self._ready:
            if self.readyState != "live":
                raise MediaStreamError
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        frame, packet, end_ms = self._ready.popleft()
        self._sent_frame(frame, int(packet.pts or 0), time.monotonic(), end_ms)
        return packet

    def tick(self, now: float) -> bool:
        """Pull and code the frame due at ``now``; True when :meth:`flush` has a packet to
        send (the direct path). Called by the clock."""
        assert self._buffer is not None
        frame = self._buffer.pull(now)
        if frame is not None:
            self._emit(frame, now)
        return bool(self._pending)

    def flush(self) -> None:
        """Send the packets the last tick prepared on the direct path. Called by the clock
        after a batch of ticks."""
        pending, self._pending = self._pending, []
        out = self._out
        if out is None:
            return
        for frame, payload, timestamp, marker, end_ms in pending:
            if out.send(payload, timestamp, marker):
                self._sent_frame(frame, timestamp, time.monotonic(), end_ms)
            else:
                self._dropped += 1

    def stop(self) -> None:
        """End the track: leave the clock, drop queued audio, end ``recv()``."""
        super().stop()
        self._clock.unregister(self)
        collector, self._collector = self._collector, None
        if collector is not None:
            collector.disconnected()
        self._ready.clear()
        self._opus.drop()
        self._packetizer.reset()  # frees libopus' state
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)  # recv() sees the track ended and raises
        if self._ended is not None and not self._ended.done():
            self._ended.set_result(None)

    # -- internals --------------------------------------------------------------------

    def _start(self) -> None:
        if self.readyState != "live":
            raise MediaStreamError
        if self._transceiver is not None:
            self._out = RtpOut.attach(self._transceiver)
            if self._out is not None:
                self._ended = asyncio.get_running_loop().create_future()
        collector = MediaCollector.current()
        if collector is not None:  # the peer is up: its objects may leave the collector's walks
            collector.connected()
            self._collector = collector
        now = time.monotonic()
        self._timeline_start = self._clock.register(self)
        self._anchor = (0, self._timeline_start)
        self._buffer = PlayoutBuffer(self.options.playout, self._timeline_start)
        for op in self._early:
            if isinstance(op, str):
                self._buffer.end_of_stream(op)
            else:
                self._buffer.push(op[0], now, context_id=op[1], media_ms=op[2])
        self._early.clear()
        self._early_bytes = 0

    def _emit(self, frame: Frame, now: float) -> None:
        """Send ``frame`` (or, between turns, only what DTX sends of it)."""
        assert self._buffer is not None
        if not frame.silent:
            if self._quiet > DTX_HANGOVER:
                self._retime(frame, now)  # out of DTX: a talkspurt starts
            self._quiet = 0
        elif not self.options.dtx or self._buffer.playing:
            self._quiet = 0  # an underrun mid-turn, or DTX off: silence every slot
        else:
            quiet = self._quiet
            self._quiet += 1
            if not _sends_quiet_slot(quiet):
                self._dtx_slots += 1
                self._packetizer.warm()  # a fresh state for the next turn's first frame
                return
            if quiet >= DTX_HANGOVER:
                self._send(frame, OPUS_DTX)
                return
        if self._opus.passes(frame.context_id):
            self._send_passed(frame)
        elif not self._covered(frame):
            self._send(frame, self._packetizer.payload(frame))

    def _send_passed(self, frame: Frame) -> None:
        """The packets that start in ``frame``'s slot, as the upstream coded them."""
        assert frame.context_id is not None
        assert frame.media_ms is not None
        slot = frame.timestamp + self._offset
        packets = self._opus.take(frame.context_id, frame.media_ms, self._frame_ms)
        for payload, samples, media_ms, end_ms in packets:
            timestamp = slot + round((media_ms - frame.media_ms) * 48)
            self._send(frame, payload, timestamp, samples, end_ms)
            self._passed += 1

    def _covered(self, frame: Frame) -> bool:
        """The slot lies inside a packet already sent (the tail of one over 20 ms long)."""
        return self._last_end is not None and frame.timestamp + self._offset < self._last_end

    def _retime(self, frame: Frame, now: float) -> None:
        """Start the 48 kHz clock of a talkspurt at ``frame``: on time against the last
        one's clock (never overlapping its packets), later frames on the grid after it."""
        assert self._buffer is not None
        anchor_timestamp, anchor_due = self._anchor
        timestamp = anchor_timestamp + round((now - anchor_due) * 48000)
        if self._last_end is not None:
            timestamp = max(timestamp, self._last_end)
        self._offset = timestamp - frame.timestamp
        # Later frames are due on the grid: the next slot's due time, less a frame, is
        # this one's slot on it (for ``pull_now`` a little before ``now``).
        self._anchor = (timestamp, self._buffer.next_due() - self._frame_s)
        self._marker = True
        self._talkspurts += 1

    def _send(
        self,
        frame: Frame,
        payload: bytes,
        timestamp: int | None = None,
        ticks: int | None = None,
        end_ms: float | None = None,
    ) -> None:
        """Queue one packet for ``frame``'s slot: at the slot's timestamp unless given, for
        a frame of audio unless ``ticks`` says otherwise."""
        if timestamp is None:
            timestamp = frame.timestamp + self._offset
        if ticks is None:
            ticks = DTX_TICKS if payload is OPUS_DTX else self._ticks
        if end_ms is None:
            end_ms = (frame.media_ms or 0.0) + self._frame_ms
        self._last_end = timestamp + ticks
        marker, self._marker = self._marker, False
        if self._out is not None:
            self._pending.append((frame, payload, timestamp, marker, end_ms))
            return
        if len(self._ready) >= _READY_MAX:
            self._ready.popleft()
            self._dropped += 1
        self._ready.append((frame, _stamped(payload, timestamp), end_ms))
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _early_capacity(self) -> int:
        playout = self.options.playout
        return playout.max_buffer_ms * playout.sample_rate // 1000 * 2

    def _push_early(self, pcm: Pcm, context_id: str, media_ms: float) -> int:
        data = bytes(memoryview(pcm).cast("B"))
        if len(data) % 2:  # as the playout buffer would: half a sample is a caller's bug
            raise InvalidInput("PCM must hold whole s16 samples", code="invalid_pcm")
        size = min(len(data), self.room_bytes) & ~1
        if size:
            self._early.append((data[:size], context_id, media_ms))
            self._early_bytes += size
        return size

    def _sent_frame(self, frame: Frame, timestamp: int, now: float, end_ms: float) -> None:
        self._sent += 1
        self._timestamp = timestamp
        self._late.add(now - frame.due)
        if frame.silent or frame.context_id is None:
            self._silent += 1
            self._last_pcm = None
            return
        # A passthrough packet's frame holds a silent span: its level reads 0.
        self._last_pcm = frame.pcm
        context_id = frame.context_id
        if context_id == self._playing:
            # Already the newest key, and its first packet is counted: one store, per packet.
            self._played[context_id] = end_ms
            return
        self._playing = context_id
        _remember(self._played, context_id, end_ms)
        pushed = self._first_push.pop(context_id, None)
        if pushed is not None:
            self._first_audio.add(now - pushed)


def _sends_quiet_slot(quiet: int) -> bool:
    """Whether the ``quiet``-th idle slot in a row (from 0) sends a packet: the hangover's
    silence packets, then a DTX frame every ``DTX_EVERY`` slots."""
    return quiet <= DTX_HANGOVER or (quiet - DTX_HANGOVER) % DTX_EVERY == 0


def _belongs(op: tuple[bytes, str, float] | str, context_id: str | None) -> bool:
    return context_id is None or (op if isinstance(op, str) else op[1]) == context_id


def _remember(table: dict[str, float], key: str, value: float) -> None:
    table.pop(key, None)  # re-inserted: the newest key is the last to be forgotten
    table[key] = value
    if len(table) > _CONTEXTS_KEPT:
        del table[next(iter(table))]  # the oldest key: dicts keep insertion order
