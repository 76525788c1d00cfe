"""Where a realtime session's audio goes, and the pump that takes it there.

The pump takes the Session's events as the sink has room: audio goes to the socket's
``Outbound`` queue, or, once attached, to a WebRTC track or a phone call leg (events stay
on the socket). A barge-in stops a context in its sink at what the sink got through.

**Opus passthrough.** While the sink takes Opus as the upstream codes it (a WebRTC track, an
Opus RTP call, a socket in ``opus``/``ogg_opus`` with no bitrate or complexity of its own),
turns begun then fetch the upstream's Opus and their packets go to the sink untouched. When
a sink that needs PCM takes over during such a turn, the rest of the turn is decoded for it.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from voxgate.codecs.opus_decoder import OpusDecoder
from voxgate.codecs.opus_packets import OpusRun
from voxgate.errors import LimitExceeded, StoreUnavailable, VoxgateError
from voxgate.gateway import protocol as p
from voxgate.gateway import wire
from voxgate.gateway.outbound import Outbound
from voxgate.gateway.telephony.leg import CallLeg
from voxgate.gateway.webrtc.track import SessionAudioTrack
from voxgate.sessions import events as ev
from voxgate.sessions.session import SessionClosed

if TYPE_CHECKING:
    from voxgate.gateway.realtime.connection import RealtimeConnection

PLAYOUT_REPORT_S = 0.25
# Audio a WebRTC track may hold ahead of playback: enough to ride out the upstream's bursts.
WEBRTC_LEAD_MS = 400


class Playback:
    """A connection's audio sinks (the socket, a WebRTC track, a call) and its pump."""

    def __init__(self, conn: RealtimeConnection) -> None:
        self.conn = conn
        self.webrtc: SessionAudioTrack | None = None
        self.call: CallLeg | None = None  # a phone call taking the audio instead
        self._cut: set[str] = set()  # contexts interrupted while their audio was being pushed
        self._caller_samples = 0  # caller audio forwarded: samples, and frames
        self._caller_frames = 0
        self._turns = conn.turns
        self._metrics = conn.services.metrics
        self._decoders: dict[str, OpusDecoder] = {}  # passthrough turns a PCM sink took over

    # -- the pump ---------------------------------------------------------------------

    def start(self) -> None:
        """The session has begun: pump its events from now on."""
        conn = self.conn
        self._choose_media()
        conn.tasks.append(asyncio.create_task(self._pump(), name=f"pump-{conn.session_id}"))

    def _choose_media(self) -> None:
        """Turns begun from now on pass Opus through while the sink takes it as it is."""
        session, out = self.conn.session, self.conn.outbound
        if session is None or out is None:
            return
        session.opus_upstream = self.conn.settings.opus_passthrough and self._takes_opus(out)

    def _takes_opus(self, out: Outbound) -> bool:
        """Whether the sink the audio goes to now takes Opus packets as they are."""
        if self.call is not None:
            return self.call.takes_opus
        return self.webrtc is not None or out.opus_as_is

    async def _pump(self) -> None:
        session, out = self.conn.session, self.conn.outbound
        assert session is not None
        assert out is not None
        metrics = self._metrics
        attached = self.conn.resume.attached
        try:
            while True:
                if not attached.is_set():  # detached: every sink waits for the socket
                    await attached.wait()
                await out.room()
                if self.webrtc is not None:
                    await self._track_room(self.webrtc)
                if self.call is not None:
                    await self.call.room()
                    # A leg that went dead is about to be detached: push nothing into it.
                    while self.call is not None and self.call.readyState != "live":  # noqa: ASYNC110
                        await asyncio.sleep(0.02)
                head = await session.peek_event()
                if isinstance(head, ev.ChunkEnded) and self.webrtc is None and self.call is None:
                    # A chunk is charged when the session delivers its end: over the socket
                    # that is once the socket has taken all of its audio.
                    await out.written(head.context_id)
                event = await session.next_event()
                if isinstance(event, ev.AudioOut):
                    await self._audio(event, out)
                    continue
                if isinstance(event, ev.ChunkEnded) and self.call is not None:
                    self.call.chunk_ended(event.context_id)  # a mark after its audio
                final = isinstance(event, ev.ContextDone | ev.Interrupted)
                if isinstance(event, ev.ContextDone | ev.Interrupted):
                    self._finish_context(event, out)
                if isinstance(event, ev.ChunkFailed | ev.SessionError):
                    metrics.errors.labels(event.code).inc()
                    if event.code == StoreUnavailable.code:
                        metrics.store_unavailable.labels("chunk").inc()
                if isinstance(event, ev.ContextDone):
                    metrics.credits_committed.inc(event.usage.characters)
                out.message(wire.message_for(event), final=final)
        except SessionClosed:
            pass

    async def _audio(self, event: ev.AudioOut, out: Outbound) -> None:
        self._metrics.audio_seconds.inc(event.duration_ms / 1000)
        context_id, opus = event.context_id, event.opus
        if opus is not None and not self._takes_opus(out):
            opus = None  # a PCM sink took over a passthrough turn: decoded for it
        if opus is not None:
            self._metrics.passthrough_seconds.inc(event.duration_ms / 1000)
        if self.call is not None:
            self._turns.first_audio(context_id)
            if opus is not None:
                self.call.push_opus(opus, context_id)
            else:
                self.call.push(self._pcm(event), context_id, event.start_ms)
        elif self.webrtc is not None:
            self._turns.first_audio(context_id)
            await self._push_webrtc(self.webrtc, event)
        elif opus is not None:
            out.opus(context_id, event.chunk_index, opus)
        else:
            out.audio(context_id, event.chunk_index, self._pcm(event))

    def _pcm(self, event: ev.AudioOut) -> bytes:
        """The event's PCM; a passthrough turn's packets, decoded for a sink that needs PCM."""
        if event.opus is None:
            return event.pcm
        decoder = self._decoders.get(event.context_id)
        if decoder is None:
            decoder = self._decoders[event.context_id] = OpusDecoder(event.sample_rate)
        return decoder.decode(event.opus)

    def _finish_context(self, event: ev.ContextDone | ev.Interrupted, out: Outbound) -> None:
        context_id = event.context_id
        self._turns.forget(context_id)
        self._decoders.pop(context_id, None)
        if isinstance(event, ev.ContextDone):
            if self.webrtc is not None:
                self.webrtc.end_of_turn(context_id)
            if self.call is not None:
                self.call.end_of_turn(context_id)
            out.end_of_context(context_id, -1)
        else:
            if self.webrtc is not None:
                self.webrtc.interrupt(context_id)
            out.purge(context_id)

    # -- barge-in ---------------------------------------------------------------------

    def new_turn(self, context_id: str) -> None:
        """Text came for ``context_id``: a new turn on this id may play."""
        self._cut.discard(context_id)

    def cut(self, context_id: str) -> float | None:
        """Stop a context's audio in the sink; how far the sink got into it (ms), if known.

        Over WebRTC, what the track has sent; over the socket, what the socket has taken
        (frames encoded but not yet written are dropped, with the session's).
        """
        out = self.conn.outbound
        assert out is not None
        track = self.webrtc
        if self.call is not None:
            # What the phone says it played: the last echoed mark plus the time since.
            delivered: float | None = self.call.played_ms(context_id)
            self.call.interrupt(context_id)  # clear goes out at once
        elif track is not None:
            track.interrupt(context_id)  # silence within a frame or two
            self._cut.add(context_id)
            delivered = track.played_ms(context_id)
        else:
            delivered = out.sent_ms(context_id)
        out.purge(context_id)
        return delivered

    def stop_audio(self) -> list[ev.Interrupted]:
        """Stop every turn at what its sink took: charged and reported as heard up to there."""
        session = self.conn.session
        if session is None or session.closed or self.conn.outbound is None:
            return []
        results = []
        for context_id in session.active_context_ids():
            with contextlib.suppress(VoxgateError):
                results += session.interrupt(context_id, None, self.cut(context_id))
        return results

    async def end(self) -> None:
        """Whatever ended the connection, the listener got no further than its sink did."""
        self.stop_audio()
        if self.call is not None:
            await self.call.hang_up("session closed")

    # -- WebRTC -----------------------------------------------------------------------

    def attach_webrtc(self, track: SessionAudioTrack) -> None:
        """From now on this session's audio goes to ``track``; events stay on the socket."""
        self.webrtc = track
        self._choose_media()
        self._start_reports(track)

    def detach_webrtc(self, track: SessionAudioTrack) -> None:
        if self.webrtc is track:
            self.webrtc = None
            self._choose_media()

    def resume_reports(self) -> None:
        """A resumed session's new socket gets the playout reports of its track, if any."""
        if self.webrtc is not None:
            self._start_reports(self.webrtc)

    def _start_reports(self, track: SessionAudioTrack) -> None:
        self.conn.tasks.append(asyncio.create_task(self._report_playout(track)))

    async def _report_playout(self, track: SessionAudioTrack) -> None:
        playout = track.options.playout
        capacity = playout.max_buffer_ms * playout.sample_rate // 1000 * 2
        bytes_per_ms = playout.sample_rate * 2 / 1000
        conn = self.conn
        ws = conn.ws  # reports go to this socket; a resumed session starts them again
        while self.webrtc is track and conn.ws is ws and not ws.closed:
            stats = track.stats
            with contextlib.suppress(ConnectionError, RuntimeError):
                await conn.send(
                    p.PlayoutOut(
                        buffered_ms=(capacity - track.room_bytes) / bytes_per_ms,
                        level=track.level,
                        packets_sent=stats.packets_sent,
                        silent_packets=stats.silent_packets,
                        underruns_upstream=stats.underruns_upstream,
                        underruns_gateway=stats.underruns_gateway,
                    )
                )
            await asyncio.sleep(PLAYOUT_REPORT_S)

    async def _track_room(self, track: SessionAudioTrack) -> None:
        """Until the track holds less than ``WEBRTC_LEAD_MS`` of unplayed audio.

        The rest stays in the Session: not yet delivered, so neither charged nor counted as
        heard, and a barge-in still finds the context live until its audio has nearly
        played out (``context.done`` comes when the last of it is about to play).
        """
        playout = track.options.playout
        capacity = playout.max_buffer_ms * playout.sample_rate // 1000 * 2
        lead_bytes = WEBRTC_LEAD_MS * playout.sample_rate // 1000 * 2
        # Polled once a frame: the track drains on the media clock, no event to wait on.
        while (  # noqa: ASYNC110
            self.webrtc is track
            and track.readyState == "live"
            and capacity - track.room_bytes > lead_bytes
        ):
            await asyncio.sleep(playout.frame_ms / 1000)

    async def _push_webrtc(self, track: SessionAudioTrack, event: ev.AudioOut) -> None:
        if event.opus is not None:
            await self._push_webrtc_opus(track, event, event.opus)
            return
        data = memoryview(event.pcm)
        offset = 0
        while offset < len(data):
            taken = track.push(
                data[offset:], event.context_id, event.start_ms + offset * 500 / event.sample_rate
            )
            offset += taken
            if offset < len(data) and not await self._track_waited(track, event.context_id):
                return  # interrupted meanwhile: the rest of this piece is dropped

    async def _push_webrtc_opus(
        self, track: SessionAudioTrack, event: ev.AudioOut, run: OpusRun
    ) -> None:
        media_ms, packets, samples = event.start_ms, run.packets, run.samples
        while packets:
            taken = track.push_opus(OpusRun(packets, samples), event.context_id, media_ms)
            media_ms += sum(samples[:taken]) / 48
            packets, samples = packets[taken:], samples[taken:]
            if packets and not await self._track_waited(track, event.context_id):
                return  # interrupted meanwhile: the rest of this piece is dropped

    async def _track_waited(self, track: SessionAudioTrack, context_id: str) -> bool:
        """The playout buffer is full: wait a frame (the session keeps the rest); False if
        the track or the context is gone meanwhile."""
        await asyncio.sleep(0.02)
        return self.webrtc is track and track.readyState == "live" and context_id not in self._cut

    # -- telephony --------------------------------------------------------------------

    async def attach_call(self, leg: CallLeg, stream_id: str, call_id: str) -> None:
        """From now on this session's audio goes to a phone call; events stay here."""
        if self.webrtc is not None or self.call is not None:
            raise LimitExceeded(
                "this session's audio already goes to a WebRTC peer or a call",
                code="sink_attached",
            )
        self.call = leg
        self._choose_media()
        provider = leg.dialect.name
        await self.conn.send(
            p.TelephonyAttached(provider=provider, stream_id=stream_id, call_id=call_id)
        )

    async def detach_call(self, leg: CallLeg, stream_id: str, reason: str) -> None:
        """The call is gone: its turns end at what the caller heard, audio returns here."""
        if self.call is not leg:
            return
        self.stop_audio()  # the pump delivers their `interrupted`
        self.call = None
        self._choose_media()
        provider = leg.dialect.name
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.conn.send(
                p.TelephonyDetached(provider=provider, stream_id=stream_id, reason=reason)
            )

    async def caller_audio(self, stream_id: str, payload: bytes, encoding: str) -> None:
        """The caller's microphone (``mulaw`` 8 kHz or ``pcm_s16le`` 16 kHz, as the provider
        sent it), forwarded when the session asked for it."""
        ws = self.conn.ws
        if not self.conn.config.caller_audio or not payload or ws.closed:
            return
        samples = len(payload) if encoding == "mulaw" else len(payload) // 2
        timestamp = self._caller_samples % 2**32
        seq = self._caller_frames % 2**32
        self._caller_samples += samples
        self._caller_frames += 1
        frame = p.pack_audio_frame(f"caller_{encoding}", stream_id, seq, timestamp, payload)
        with contextlib.suppress(ConnectionError, RuntimeError):
            await ws.send_bytes(frame)

    async def caller_digit(self, stream_id: str, digit: str) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.conn.send(p.TelephonyDtmf(stream_id=stream_id, digit=digit))
