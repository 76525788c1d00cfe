"""``/v1/realtime``: one WebSocket, one Session, several contexts.

Three tasks per socket: the reader validates client messages and drives the Session; the
pump takes Session events and turns them into wire messages; the sender writes them,
paced if the client asked for real time. See docs/protocol.md for the protocol itself.

A socket that drops without a close frame leaves its session detached for the resume
grace: a new socket that sends ``session.resume`` takes it over (see ``resume``), and
the connection that accepted the new socket only carries it until the session lets it go.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from typing import Any

from aiohttp import WebSocketError, WSCloseCode, WSMsgType, web

from voxgate.errors import (
    AuthError,
    LimitExceeded,
    ProtocolViolation,
    StoreUnavailable,
    VoxgateError,
)
from voxgate.gateway import protocol as p
from voxgate.gateway import wire
from voxgate.gateway.access.principal import Principal
from voxgate.gateway.access.ratelimit import TokenBucket
from voxgate.gateway.outbound import Outbound
from voxgate.gateway.resume import Resumption
from voxgate.gateway.session_config import SessionConfig
from voxgate.gateway.telephony.leg import CallLeg
from voxgate.gateway.webrtc.track import SessionAudioTrack
from voxgate.sessions import events as ev
from voxgate.sessions.options import SessionOptions
from voxgate.sessions.session import Session, SessionClosed

log = logging.getLogger(__name__)

SUBPROTOCOL = "voxgate.v1"
TOKEN_SUBPROTOCOL_PREFIX = "voxgate.token."
PLAYOUT_REPORT_S = 0.25
# Audio a WebRTC track may hold ahead of playback: enough to ride out the upstream's bursts.
WEBRTC_LEAD_MS = 400
CLOSE_TRY_AGAIN = 1013  # the client is too slow, the server is draining, the store is away
# How often a blocked write checks whether the client still takes anything.
STALL_CHECK_S = 0.05
# A client that stopped reading keeps its connection this long after the close frame was
# queued behind its audio, so that reading again it gets the audio, the error and 1013.
SLOW_READER_GRACE_S = 10.0


def _ignore_outcome(task: asyncio.Future[None]) -> None:
    if not task.cancelled():
        task.exception()


class _Fatal(Exception):
    def __init__(self, code: int, error: VoxgateError) -> None:
        super().__init__(error.message)
        self.close_code = code
        self.error = error


class _Handover(Exception):
    """``session.resume`` was accepted: this socket goes to a session claimed for it on
    this node (``target``), or to the node that owns the session (``owner_url``)."""

    def __init__(
        self, *, target: RealtimeConnection | None = None, owner_url: str = "", raw: str = ""
    ) -> None:
        super().__init__("session.resume")
        self.target = target
        self.owner_url = owner_url
        self.raw = raw


class RealtimeConnection:
    def __init__(
        self,
        ws: web.WebSocketResponse,
        services: Any,
        principal: Principal | None,
        origin: str | None,
        transport: asyncio.Transport | None = None,
    ) -> None:
        self.ws = ws
        self.transport = transport
        self.services = services
        self.settings = services.settings
        self.principal = principal
        self.origin = origin
        self.session_id: str = services.new_session_id()
        self.session: Session | None = None
        self.config = SessionConfig(services.settings.max_contexts)
        self.outbound: Outbound | None = None
        self.webrtc: SessionAudioTrack | None = None
        self.call: CallLeg | None = None  # a phone call taking the audio instead
        self._caller_samples = 0  # caller audio forwarded: samples, and frames
        self._caller_frames = 0
        self._text_bucket = TokenBucket(
            self.settings.text_chars_per_second, self.settings.text_burst_chars
        )
        self._acked: dict[str, int] = {}
        self._cut: set[str] = set()  # contexts interrupted while their audio was being pushed
        self._first_text_at: dict[str, float] = {}
        self._audio_started: set[str] = set()  # contexts whose time to first audio is known
        self._tasks: list[asyncio.Task[None]] = []
        self._sender_task: asyncio.Task[None] | None = None
        self._closer: asyncio.Task[None] | None = None
        self.last_activity = time.monotonic()
        self.closing = False
        # Only a WebSocket's session resumes (a data channel's ends with its peer).
        grace_s = self.settings.resume_grace_s if transport is not None else 0.0
        self.resume = Resumption(grace_s)
        self._carrying = False  # this socket now serves a resumed session, not its own
        self._resume_only: str | None = None  # a token's live session: only resuming it
        self._replayed = 0  # what the last claim puts back to send again
        self._resumed_from: int | None = None

    # -- lifecycle --------------------------------------------------------------------

    async def run(self) -> None:
        self.services.live_sessions[self.session_id] = self
        try:
            if self.principal is None:
                self.principal = await self._authenticate_first_message()
            await self._adopt_token_scope(self.principal)
            async with self.services.session_slot(self.principal, self.session_id):
                await self._send(
                    p.SessionCreated(
                        session_id=self.session_id,
                        protocol_version=p.PROTOCOL_VERSION,
                        limits=self._limits(),
                        config=self.config.public(),
                        resume_token=self.resume.token,
                    )
                )
                await self._serve()
        except _Handover as handover:
            # The fresh session this socket was given is let go (its slot is, by now).
            self._forget_session_id()
            await self._carry(handover)
        except _Fatal as fatal:
            await self._fail(fatal.close_code, fatal.error)
        except (LimitExceeded, AuthError) as exc:
            await self._fail(WSCloseCode.POLICY_VIOLATION, exc)
        except StoreUnavailable as exc:  # the key's slot could not be taken: try again
            self.services.metrics.store_unavailable.labels("socket").inc()
            await self._fail(CLOSE_TRY_AGAIN, exc)
        finally:
            self._forget_session_id()
            await self._shutdown()
            self.resume.release()

    def _forget_session_id(self) -> None:
        if self.services.live_sessions.get(self.session_id) is self:
            del self.services.live_sessions[self.session_id]

    async def _serve(self) -> None:
        """Read the client's messages, on one socket after another while it resumes."""
        while await self._read_loop():
            if not await self._await_resume():
                return

    async def _adopt_token_scope(self, principal: Principal) -> None:
        """A client token may fix the voice and the session id: start with them.

        When the token's session is already live (here or on another node), this socket
        may only resume it: it keeps a fresh id until its ``session.resume`` arrives.
        """
        if principal.voice_id:
            self.config.use_voice(principal.voice_id)
        if principal.session_id:
            live = principal.session_id in self.services.live_sessions
            if live or await self.services.cluster.owner_url(principal.session_id):
                self._resume_only = principal.session_id
                return
            self.services.live_sessions.pop(self.session_id, None)
            self.session_id = principal.session_id
            self.services.live_sessions[self.session_id] = self

    # -- resume -----------------------------------------------------------------------

    async def _await_resume(self) -> bool:
        """The socket dropped: keep the session for the grace; True once a socket took it."""
        if self.resume.token is None or self.closing or self.services.draining:
            return False
        self._detach()
        log.info(
            "session %s: socket dropped; kept %g s for a resume",
            self.session_id,
            self.resume.grace_s,
        )
        outcome = await self.resume.wait()
        if outcome == "expired":
            self.services.metrics.resume_expiries.inc()
            log.info("session %s: not resumed within the grace; ended", self.session_id)
        return outcome == "resumed"

    def _detach(self) -> None:
        """Nothing goes out until a socket comes back; what is queued waits for it."""
        self.resume.detach()  # a socket carried here from another connection is let go
        self.services.metrics.sessions_detached.inc()
        if self._sender_task is not None:
            self._sender_task.cancel()
            self._sender_task = None

    async def _resume(self, message: p.SessionResume, raw: str) -> None:
        """A new socket names a session to continue: claim it, or find the node that has it."""
        if self.session is not None:
            raise ProtocolViolation(
                "session.resume must come before any text on this socket",
                code="session_already_started",
            )
        if self.transport is None:
            raise ProtocolViolation("a session resumes on a WebSocket", code="invalid_message")
        target = self.services.live_sessions.get(message.session_id)
        if target is None or target is self or target.principal is None:
            cluster = self.services.cluster
            owner_url = await cluster.owner_url(message.session_id)
            if owner_url is not None:
                raise _Handover(owner_url=owner_url, raw=raw)
            if await cluster.is_lost(message.session_id):
                raise VoxgateError(
                    "the node that held that session stopped; its turns ended there",
                    code="session_lost",
                )
            raise ProtocolViolation(
                f"no session {message.session_id!r} to resume", code="session_not_found"
            )
        target.claim(self._principal(), message.resume_token, message.last_seq)
        raise _Handover(target=target)

    def claim(self, principal: Principal, token: str, last_seq: int | None) -> None:
        """Reserve this detached session for a resumer, or raise why it cannot have it.

        What was sent after frame ``last_seq`` goes back at the head of the queue. Checked
        and done without a pause, so of two resumers exactly one wins.
        """
        self.resume.check(token, principal.account_id, self._principal().account_id)
        if self.outbound is not None:
            try:
                self._replayed = self.outbound.resend(last_seq)
            except VoxgateError as exc:
                if exc.code == "resume_gap":  # it can never continue exactly: end it now
                    self.resume.end()
                raise
        elif last_seq is not None:
            raise ProtocolViolation(
                f"no audio frame with seq {last_seq} was sent", code="invalid_input"
            )
        else:
            self._replayed = 0
        self._resumed_from = last_seq
        self.resume.claimed = True

    async def adopt(
        self, ws: web.WebSocketResponse, transport: asyncio.Transport | None
    ) -> asyncio.Future[None] | None:
        """Go on with the claimed session on ``ws``; None if it ended meanwhile.

        ``session.resumed`` goes first, then what waited while detached, then the queue
        (what is sent again, then the rest). The future is done when the session lets
        ``ws`` go (it dropped too, or the session ended).
        """
        if not (self.resume.detached and self.resume.claimed):
            return None
        self.ws, self.transport = ws, transport
        self.last_activity = time.monotonic()
        released = self.resume.attach()
        out = self.outbound
        resumed = p.SessionResumed(
            session_id=self.session_id,
            last_seq=self._resumed_from,
            next_seq=out.next_seq() if out is not None else 0,
            replayed=self._replayed,
            config=self.config.public(),
        )
        with contextlib.suppress(ConnectionError, RuntimeError):  # a drop is seen by the reader
            await ws.send_str(p.encode_server_message(resumed))
            for held in self.resume.take_held():
                await ws.send_str(held)
        self.resume.attached.set()
        if out is not None:
            out.rebase()
            self._start_sender()
        if self.webrtc is not None:
            self._tasks.append(asyncio.create_task(self._report_playout(self.webrtc)))
        self.services.metrics.resumes.inc()
        log.info("session %s: resumed after seq %s", self.session_id, self._resumed_from)
        return released

    async def _carry(self, handover: _Handover) -> None:
        """This socket now serves the resumed session, until that session lets it go."""
        self._carrying = True
        if handover.target is None:
            await self.services.cluster.proxy_resume(
                self.ws, handover.owner_url, handover.raw, self._principal()
            )
            return
        released = await handover.target.adopt(self.ws, self.transport)
        if released is None:
            self._carrying = False
            gone = VoxgateError(
                "the session ended before it could resume", code="session_not_found"
            )
            await self._fail(CLOSE_TRY_AGAIN, gone)
            return
        await released

    # -- WebRTC -----------------------------------------------------------------------

    def attach_webrtc(self, track: SessionAudioTrack) -> None:
        """From now on this session's audio goes to ``track``; events stay on the socket."""
        self.webrtc = track
        self._tasks.append(asyncio.create_task(self._report_playout(track)))

    async def _report_playout(self, track: SessionAudioTrack) -> None:
        playout = track.options.playout
        capacity = playout.max_buffer_ms * playout.sample_rate // 1000 * 2
        bytes_per_ms = playout.sample_rate * 2 / 1000
        ws = self.ws  # reports go to this socket; a resumed session starts them again
        while self.webrtc is track and self.ws is ws and not ws.closed:
            stats = track.stats
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self._send(
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

    # -- telephony --------------------------------------------------------------------

    async def attach_call(self, leg: CallLeg, stream_id: str, call_id: str) -> None:
        """From now on this session's audio goes to a phone call; events stay here."""
        if self.webrtc is not None or self.call is not None:
            raise LimitExceeded(
                "this session's audio already goes to a WebRTC peer or a call",
                code="sink_attached",
            )
        self.call = leg
        provider = leg.dialect.name
        await self._send(
            p.TelephonyAttached(provider=provider, stream_id=stream_id, call_id=call_id)
        )

    async def detach_call(self, leg: CallLeg, stream_id: str, reason: str) -> None:
        """The call is gone: its turns end at what the caller heard, audio returns here."""
        if self.call is not leg:
            return
        self._stop_audio()  # the pump delivers their `interrupted`
        self.call = None
        provider = leg.dialect.name
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self._send(
                p.TelephonyDetached(provider=provider, stream_id=stream_id, reason=reason)
            )

    async def caller_audio(self, stream_id: str, payload: bytes, encoding: str) -> None:
        """The caller's microphone (``mulaw`` 8 kHz or ``pcm_s16le`` 16 kHz, as the provider
        sent it), forwarded when the session asked for it."""
        if not self.config.caller_audio or not payload or self.ws.closed:
            return
        samples = len(payload) if encoding == "mulaw" else len(payload) // 2
        timestamp = self._caller_samples % 2**32
        seq = self._caller_frames % 2**32
        self._caller_samples += samples
        self._caller_frames += 1
        frame = p.pack_audio_frame(f"caller_{encoding}", stream_id, seq, timestamp, payload)
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.ws.send_bytes(frame)

    async def caller_digit(self, stream_id: str, digit: str) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self._send(p.TelephonyDtmf(stream_id=stream_id, digit=digit))

    def detach_webrtc(self, track: SessionAudioTrack) -> None:
        if self.webrtc is track:
            self.webrtc = None

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

    async def socket_closed(self) -> None:
        """The transport went away underneath (a WebRTC peer closed its data channel)."""
        await self.ws.close()

    async def _push_webrtc(self, track: SessionAudioTrack, event: ev.AudioOut) -> None:
        data = memoryview(event.pcm)
        offset = 0
        while offset < len(data):
            taken = track.push(
                data[offset:], event.context_id, event.start_ms + offset * 500 / event.sample_rate
            )
            offset += taken
            if offset < len(data):
                # The playout buffer is full: wait a frame, the session keeps the rest.
                await asyncio.sleep(0.02)
                if (
                    self.webrtc is not track
                    or track.readyState != "live"
                    or event.context_id in self._cut
                ):
                    return  # interrupted meanwhile: the rest of this piece is dropped

    async def lose(self) -> None:
        """This node was taken for dead and reaped (its lease lapsed while it was stalled):
        the session's holds were refunded by a peer, and a resume of it is refused. It
        ends now, as lost."""
        if self._carrying:
            return  # the session this socket serves is ended by its own connection
        lost = VoxgateError(
            "this node lost its place in the cluster; the session ended", code="session_lost"
        )
        await self._fail(WSCloseCode.INTERNAL_ERROR, lost)

    async def drain(self, deadline: float) -> None:
        """SIGTERM: let live turns finish until ``deadline``, then close with 1001."""
        if self._carrying:
            return  # the session this socket serves drains it
        if self.resume.detached:
            self.resume.end()  # no socket to finish its turns on
            return
        while self.session is not None and self._live() and time.monotonic() < deadline:  # noqa: ASYNC110 - several conditions, polled
            await asyncio.sleep(0.05)
        await self._close(WSCloseCode.GOING_AWAY, "server shutting down")

    def _live(self) -> bool:
        """A turn is under way: a context is open or closing, or audio is still going out."""
        assert self.session is not None
        return bool(self.session.active_contexts() or self._busy())

    def _busy(self) -> bool:
        """Audio is being made or sent (an open context waiting for text is idle)."""
        assert self.session is not None
        queued = self.outbound.queued_audio_ms() if self.outbound else 0.0
        return bool(self.session.pending_events() or self.session.fetching() or queued)

    async def _authenticate_first_message(self) -> Principal:
        try:
            async with asyncio.timeout(self.settings.auth_timeout_s):
                msg = await self.ws.receive()
        except TimeoutError:
            raise _Fatal(
                WSCloseCode.POLICY_VIOLATION,
                AuthError(
                    f"no credentials within {self.settings.auth_timeout_s:g} s", code="auth_timeout"
                ),
            ) from None
        if msg.type is not WSMsgType.TEXT:
            raise _Fatal(WSCloseCode.POLICY_VIOLATION, AuthError("authenticate first"))
        try:
            message = p.decode_client_message(msg.data)
        except ProtocolViolation as exc:
            raise _Fatal(WSCloseCode.POLICY_VIOLATION, exc) from None
        if not isinstance(message, p.Auth):
            raise _Fatal(
                WSCloseCode.POLICY_VIOLATION,
                AuthError(
                    'the first message must be {"type": "auth", "token": ...} '
                    "(or send a Bearer key or a token subprotocol)",
                    code="unauthorized",
                ),
            )
        try:
            principal: Principal = await self.services.redeem_token(message.token, self.origin)
        except AuthError as exc:
            raise _Fatal(WSCloseCode.POLICY_VIOLATION, exc) from None
        except StoreUnavailable as exc:  # the token is not spent: the client may retry it
            self.services.metrics.store_unavailable.labels("socket").inc()
            raise _Fatal(CLOSE_TRY_AGAIN, exc) from None
        return principal

    async def _read_loop(self) -> bool:
        """Until the socket ends; True if it dropped (no close frame, not closed by us)."""
        while not self.ws.closed:
            timeout = self.settings.idle_timeout_s
            try:
                async with asyncio.timeout(timeout):
                    msg = await self.ws.receive()
            except TimeoutError:
                if self.session is not None and self._busy():
                    continue  # audio is still flowing: the socket is not idle
                await self._close(WSCloseCode.OK, "idle timeout")
                return False
            self.last_activity = time.monotonic()
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING):
                return False  # the client's close frame, or ours
            if msg.type is WSMsgType.CLOSED or (
                msg.type is WSMsgType.ERROR and not isinstance(msg.data, WebSocketError)
            ):
                return not self.closing  # end of stream, reset, no pong: the socket dropped
            if msg.type is WSMsgType.ERROR:
                raise _Fatal(
                    WSCloseCode.MESSAGE_TOO_BIG,
                    LimitExceeded(
                        f"message larger than {self.settings.max_message_bytes} bytes",
                        code="message_too_large",
                    ),
                )
            if msg.type is not WSMsgType.TEXT:
                await self._error(
                    ProtocolViolation(
                        "binary client messages are not part of the protocol",
                        code="invalid_message",
                    )
                )
                continue
            await self._handle(msg.data)
        return not self.closing

    async def _handle(self, data: str) -> None:
        event_id = context_id = None
        try:
            message = p.decode_client_message(data)
            event_id = message.event_id
            context_id = getattr(message, "context_id", None)
            if self._resume_only is not None and not (
                isinstance(message, p.SessionResume) and message.session_id == self._resume_only
            ):
                raise _Fatal(
                    WSCloseCode.POLICY_VIOLATION,
                    LimitExceeded(
                        "the session this token names is live: this socket may only resume it",
                        code="session_exists",
                    ),
                )
            if isinstance(message, p.SessionResume):
                await self._resume(message, data)
            await self._dispatch(message)
        except VoxgateError as exc:
            await self._error(exc, event_id=event_id, context_id=context_id)

    async def _dispatch(self, message: p.ClientMessage) -> None:
        match message:
            case p.SessionResume():
                pass  # handled above, with the message as it came
            case p.SessionUpdate():
                await self._update(message)
            case p.TextAppend():
                await self._append(message)
            case p.TextFlush():
                self._require_session().flush(message.context_id)
            case p.ContextClose():
                self._require_session().close_context(message.context_id)
            case p.Interrupt():
                self._interrupt(message)
            case p.UsageGet():
                await self._usage()
            case p.Ping():
                await self._send(p.Pong(event_id=message.event_id))
            case p.Auth():
                raise ProtocolViolation("already authenticated", code="already_authenticated")

    # -- commands ---------------------------------------------------------------------

    async def _update(self, message: p.SessionUpdate) -> None:
        if self.session is not None:
            raise ProtocolViolation(
                "session.update is only allowed before the first text",
                code="session_already_started",
            )
        self.config.update(message, self._principal())
        await self._send(p.SessionUpdated(event_id=message.event_id, config=self.config.public()))

    async def _append(self, message: p.TextAppend) -> None:
        ctx = message.context_id
        if message.seq is not None:
            last = self._acked.get(ctx)
            if last is not None and message.seq <= last:
                await self._send(
                    p.TextAck(
                        event_id=message.event_id, context_id=ctx, seq=message.seq, duplicate=True
                    )
                )
                return
        if not self._text_bucket.take(len(message.text)):
            raise LimitExceeded(
                f"text rate limit: {self.settings.text_chars_per_second} characters/s "
                f"(bursts of {self.settings.text_burst_chars}); this text was not accepted",
                code="rate_limited",
            )
        session = await self._ensure_session()
        session.append(message.text, ctx)
        self._cut.discard(ctx)  # a new turn on this id may play
        if ctx not in self._audio_started:  # once per context, from its first text
            self._first_text_at.setdefault(ctx, time.monotonic())
        if message.seq is not None:
            self._acked[ctx] = message.seq
            await self._send(p.TextAck(event_id=message.event_id, context_id=ctx, seq=message.seq))

    def _interrupt(self, message: p.Interrupt) -> None:
        session = self._require_session()
        assert self.outbound is not None
        targets = [message.context_id] if message.context_id else session.active_context_ids()
        if not targets:
            raise ProtocolViolation(
                "no context is playing; nothing to interrupt", code="nothing_to_interrupt"
            )
        results = []
        for context_id in targets:
            delivered = self._cut_sink(context_id)
            played = message.played_ms if message.played_ms is not None else delivered
            results += session.interrupt(context_id, played, delivered)
        self.services.metrics.interrupts.inc(len(results))

    def _cut_sink(self, context_id: str) -> float | None:
        """Stop a context's audio in the sink; how far the sink got into it (ms), if known.

        Over WebRTC, what the track has sent; over the socket, what the socket has taken
        (frames encoded but not yet written are dropped, with the session's).
        """
        assert self.outbound is not None
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
            delivered = self.outbound.sent_ms(context_id)
        self.outbound.purge(context_id)
        return delivered

    def _stop_audio(self) -> list[ev.Interrupted]:
        """Stop every turn at what its sink took: charged and reported as heard up to there."""
        session = self.session
        if session is None or session.closed or self.outbound is None:
            return []
        results = []
        for context_id in session.active_context_ids():
            with contextlib.suppress(VoxgateError):
                results += session.interrupt(context_id, None, self._cut_sink(context_id))
        return results

    async def _usage(self) -> None:
        """The session's own figures (never waiting on the store), and the account's balance."""
        session = self.session
        balance: int | None = None
        with contextlib.suppress(StoreUnavailable):
            balance = (await self.services.ledger.balance(self._principal().account_id)).available
        await self._send(
            p.UsageReport(
                session_characters=session.charged if session else 0,
                session_held=session.held()[1] if session else 0,
                session_pending=session.pending_settlement if session else 0,
                balance_available=balance,
            )
        )

    # -- the session and its output ---------------------------------------------------

    async def _ensure_session(self) -> Session:
        if self.session is not None:
            return self.session
        if self.services.draining:
            raise _Fatal(
                CLOSE_TRY_AGAIN, VoxgateError("the server is draining; reconnect", code="draining")
            )
        principal = self._principal()
        session = Session(
            upstream=self.services.upstream,
            ledger=self.services.ledger,
            account_id=principal.account_id,
            options=self._options(principal),
            session_id=self.session_id,
            credit_cap=principal.max_credits,
            settlements=self.services.settlements,
        )
        try:
            await session.start()  # a failure leaves no session: the text may be sent again
        except StoreUnavailable:
            self.services.metrics.store_unavailable.labels("socket").inc()
            raise
        self.outbound = Outbound(
            self.config.output_format(),
            binary=self.config.binary,
            realtime=self.config.realtime,
            replay_bytes=self.settings.resume_replay_bytes if self.resume.token else None,
        )
        self.session = session
        self.services.metrics.sessions_total.inc()
        self._tasks.append(asyncio.create_task(self._pump(), name=f"pump-{self.session_id}"))
        self._start_sender()
        return self.session

    def _start_sender(self) -> None:
        self._sender_task = asyncio.create_task(self._sender(), name=f"send-{self.session_id}")
        self._tasks.append(self._sender_task)

    async def _pump(self) -> None:
        assert self.session is not None
        assert self.outbound is not None
        out, metrics = self.outbound, self.services.metrics
        attached = self.resume.attached
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
                head = await self.session.peek_event()
                if isinstance(head, ev.ChunkEnded) and self.webrtc is None and self.call is None:
                    # A chunk is charged when the session delivers its end: over the socket
                    # that is once the socket has taken all of its audio.
                    await out.written(head.context_id)
                event = await self.session.next_event()
                if isinstance(event, ev.AudioOut):
                    await self._audio(event)
                    continue
                if isinstance(event, ev.ChunkEnded) and self.call is not None:
                    self.call.chunk_ended(event.context_id)  # a mark after its audio
                final = isinstance(event, ev.ContextDone | ev.Interrupted)
                if isinstance(event, ev.ContextDone | ev.Interrupted):
                    self._finish_context(event)
                if isinstance(event, ev.ChunkFailed | ev.SessionError):
                    metrics.errors.labels(event.code).inc()
                    if event.code == StoreUnavailable.code:
                        metrics.store_unavailable.labels("chunk").inc()
                if isinstance(event, ev.ContextDone):
                    metrics.credits_committed.inc(event.usage.characters)
                out.message(wire.message_for(event), final=final)
        except SessionClosed:
            pass

    async def _audio(self, event: ev.AudioOut) -> None:
        assert self.outbound is not None
        self.services.metrics.audio_seconds.inc(event.duration_ms / 1000)
        if self.call is not None:
            self._first_audio(event.context_id)
            self.call.push(event.pcm, event.context_id, event.start_ms)
        elif self.webrtc is not None:
            self._first_audio(event.context_id)
            await self._push_webrtc(self.webrtc, event)
        else:
            self.outbound.audio(event.context_id, event.chunk_index, event.pcm)

    def _finish_context(self, event: ev.ContextDone | ev.Interrupted) -> None:
        assert self.outbound is not None
        context_id = event.context_id
        self._acked.pop(context_id, None)  # a reused id starts afresh
        self._audio_started.discard(context_id)
        self._first_text_at.pop(context_id, None)
        if isinstance(event, ev.ContextDone):
            if self.webrtc is not None:
                self.webrtc.end_of_turn(context_id)
            if self.call is not None:
                self.call.end_of_turn(context_id)
            self.outbound.end_of_context(context_id, -1)
        else:
            if self.webrtc is not None:
                self.webrtc.interrupt(context_id)
            self.outbound.purge(context_id)

    async def _sender(self) -> None:
        assert self.outbound is not None
        out, ws = self.outbound, self.ws
        while True:
            item = await out.next()
            if ws.closed:  # the socket dropped: the next one takes this first
                out.unsent(item)
                return
            if item.media_s is not None:
                self._first_audio(item.context_id)
            try:
                taken = await self._write_watched(item.payload)
            except (ConnectionError, RuntimeError, asyncio.CancelledError) as exc:
                # The socket dropped under the write: part of it may have gone. It counts
                # as taken, and the ring has it for a resume (the client's last_seq decides).
                out.sent(item)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                return
            out.sent(item)  # in the socket's buffer either way: a client that reads gets it
            if not taken:
                self._drop_slow_reader()
                return

    async def _write_watched(self, payload: str | bytes) -> bool:
        """Write one message; False when the client took nothing for the stall limit.

        A message the transport's buffer has room for is written at once. One that may
        have to wait for the buffer to drain is written in a task of its own, watched: the
        client is stalled when the buffer has not shrunk for ``max_queued_audio_ms``. The
        write is never cancelled (aiohttp's drain must not be), and a client that reads,
        however slowly, is not stalled: the session's lookahead bounds what waits for it.
        """
        transport = self.transport
        stall_limit = self.settings.max_queued_audio_ms / 1000
        if transport is None:  # a data channel: nothing to watch, nothing that blocks long
            try:
                async with asyncio.timeout(stall_limit):
                    await self._write(payload)
            except TimeoutError:
                return False
            return True
        high_water = transport.get_write_buffer_limits()[1]
        if transport.get_write_buffer_size() + len(payload) <= high_water:
            await self._write(payload)  # the transport will not pause: nothing to wait for
            return True
        write = asyncio.ensure_future(self._write(payload))
        size, progress_at = transport.get_write_buffer_size(), time.monotonic()
        while not write.done():
            await asyncio.wait((write,), timeout=STALL_CHECK_S)
            now_size = transport.get_write_buffer_size()
            if now_size < size:
                progress_at = time.monotonic()
            elif time.monotonic() - progress_at >= stall_limit and not write.done():
                write.add_done_callback(_ignore_outcome)  # it ends with the connection
                return False
            size = now_size
        write.result()
        return True

    def _drop_slow_reader(self) -> None:
        """The client stopped reading: stop its audio, charge what the socket took, close.

        Its turns end as an interrupt at what the socket took (to the word). The error and
        the close frame queue behind the audio already in the socket; the connection is
        kept for ``SLOW_READER_GRACE_S`` so a client that reads again sees them, then 1013.
        """
        stalled_s = self.settings.max_queued_audio_ms / 1000
        error = LimitExceeded(
            f"the client has not read its audio for {stalled_s:g} s", code="slow_reader"
        )
        self.services.metrics.errors.labels(error.code).inc()
        log.info("session %s: %s; closing with 1013", self.session_id, error.message)
        self.closing = True
        # What each turn came to (heard, charged) goes first, then the error, then the close.
        frames = [p.encode_server_message(wire.message_for(e)) for e in self._stop_audio()]
        frames.append(
            p.encode_server_message(p.ErrorOut(code=error.code, message=error.message, fatal=True))
        )
        self._closer = asyncio.create_task(self._close_slow_reader(frames, error.code))

    async def _close_slow_reader(self, frames: list[str], reason: str) -> None:
        try:
            async with asyncio.timeout(SLOW_READER_GRACE_S):
                with contextlib.suppress(ConnectionError, RuntimeError):
                    for frame in frames:
                        await self.ws.send_str(frame)
                    await self.ws.close(code=CLOSE_TRY_AGAIN, message=reason.encode())
        except TimeoutError:
            pass
        finally:  # never read again: let the connection go
            if self.transport is not None:
                self.transport.abort()

    def _first_audio(self, context_id: str | None) -> None:
        if context_id is None:
            return
        started = self._first_text_at.pop(context_id, None)
        if started is not None:
            self._audio_started.add(context_id)
            self.services.metrics.time_to_first_audio.observe(time.monotonic() - started)

    # -- output helpers ---------------------------------------------------------------

    async def _write(self, payload: str | bytes) -> None:
        if isinstance(payload, bytes):
            await self.ws.send_bytes(payload)
        else:
            await self.ws.send_str(payload)

    async def _send(self, message: p._Message) -> None:
        if not self.resume.attached.is_set():  # detached: it goes to the next socket
            self.resume.hold(p.encode_server_message(message))
        elif not self.ws.closed:
            await self.ws.send_str(p.encode_server_message(message))

    async def _error(
        self,
        exc: VoxgateError,
        *,
        event_id: str | None = None,
        fatal: bool = False,
        context_id: str | None = None,
    ) -> None:
        self.services.metrics.errors.labels(exc.code).inc()
        await self._send(
            p.ErrorOut(
                event_id=event_id,
                code=exc.code,
                message=exc.message,
                fatal=fatal,
                context_id=context_id,
            )
        )

    async def _fail(self, close_code: int, exc: VoxgateError) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError, TimeoutError):
            async with asyncio.timeout(1):  # a client that reads nothing gets nothing more
                await self._error(exc, fatal=True)
        await self._close(close_code, exc.code)

    async def _close(self, code: int, reason: str) -> None:
        self.closing = True
        self.resume.end()  # a detached session has no socket to close: it ends here
        if not self.ws.closed:
            with contextlib.suppress(ConnectionError, RuntimeError, TimeoutError):
                async with asyncio.timeout(2):
                    await self.ws.close(code=code, message=reason.encode()[:120])

    async def _shutdown(self) -> None:
        # Whatever ended the connection, the listener got no further than its sink did.
        self._stop_audio()
        if self.call is not None:
            await self.call.hang_up("session closed")
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.session is not None:
            await self.session.aclose()
        if self._closer is not None:
            await asyncio.gather(self._closer, return_exceptions=True)

    # -- helpers --------------------------------------------------------------------

    def _limits(self) -> p.Limits:
        s = self.settings
        return p.Limits(
            max_message_bytes=s.max_message_bytes,
            max_text_chars=p.MAX_TEXT_CHARS,
            max_contexts=s.max_contexts,
            text_chars_per_second=s.text_chars_per_second,
            text_burst_chars=s.text_burst_chars,
            idle_timeout_s=s.idle_timeout_s,
            max_queued_audio_ms=s.max_queued_audio_ms,
        )

    def _options(self, principal: Principal) -> SessionOptions:
        options = self.config.options(principal)
        pipeline = dataclasses.replace(options.pipeline, reservation_ttl_s=self.settings.hold_ttl_s)
        return dataclasses.replace(options, pipeline=pipeline)

    def _principal(self) -> Principal:
        assert self.principal is not None
        return self.principal

    def _require_session(self) -> Session:
        if self.session is None:
            raise ProtocolViolation("no text has been sent yet", code="unknown_context")
        return self.session
