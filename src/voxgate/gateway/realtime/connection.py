"""One ``/v1/realtime`` socket and the Session it drives, from greeting to close.

The connection holds what its parts share (the socket, the session, its output queue, its
resume state) and runs their lifecycle; the work is theirs: the ``Reader`` takes the
client's messages, ``Playback`` takes the session's events to the socket, a WebRTC track
or a call leg, the ``Sender`` writes the socket's queue, and the ``Handover`` keeps a
dropped session for a resume and carries sockets between sessions.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from typing import Any

from aiohttp import WSCloseCode, web

from voxgate.errors import (
    AuthError,
    LimitExceeded,
    StoreUnavailable,
    VoxgateError,
)
from voxgate.gateway import protocol as p
from voxgate.gateway.access.principal import Principal
from voxgate.gateway.outbound import Outbound
from voxgate.gateway.realtime.closing import CLOSE_TRY_AGAIN, Fatal
from voxgate.gateway.realtime.handover import Handover, HandoverAccepted
from voxgate.gateway.realtime.playback import Playback
from voxgate.gateway.realtime.reader import Reader, ResumeOnly, TurnLog, learn_voice_language
from voxgate.gateway.realtime.sender import Sender
from voxgate.gateway.resume import Resumption
from voxgate.gateway.session_config import SessionConfig
from voxgate.gateway.webrtc.collector import MediaCollector
from voxgate.gateway.webrtc.track import SessionAudioTrack
from voxgate.sessions.options import SessionOptions
from voxgate.sessions.session import Session


class RealtimeConnection:
    """One realtime socket (or a WebRTC data channel seen as one) and its session."""

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
        self.last_activity = time.monotonic()
        self.closing = False
        self.ended = False  # its session is over and its parts let go (see _let_go)
        # Only a WebSocket's session resumes (a data channel's ends with its peer).
        grace_s = self.settings.resume_grace_s if transport is not None else 0.0
        self.resume = Resumption(grace_s)
        # Set when this socket may only resume (see ResumeOnly).
        self.resume_only: ResumeOnly | None = None
        self.tasks: list[asyncio.Task[None]] = []
        self.turns = TurnLog(services.metrics)
        self.reader = Reader(self)
        self.playback = Playback(self)
        self.sender = Sender(self)
        self.handover = Handover(self)
        # What the media endpoints and other connections call: the parts serve it.
        self.attach_webrtc = self.playback.attach_webrtc
        self.detach_webrtc = self.playback.detach_webrtc
        self.attach_call = self.playback.attach_call
        self.detach_call = self.playback.detach_call
        self.caller_audio = self.playback.caller_audio
        self.caller_digit = self.playback.caller_digit
        self.claim = self.handover.claim
        self.adopt = self.handover.adopt

    @property
    def webrtc(self) -> SessionAudioTrack | None:
        """The WebRTC track this session's audio goes to, if any."""
        return self.playback.webrtc

    # -- lifecycle --------------------------------------------------------------------

    async def run(self) -> None:
        self.services.live_sessions[self.session_id] = self
        collector = MediaCollector.current()
        freezes_at_start = collector.freezes if collector is not None else 0
        try:
            if self.principal is None:
                self.principal = await self.reader.authenticate()
            await self._adopt_token_scope(self.principal)
            async with contextlib.AsyncExitStack() as slot:
                try:
                    await slot.enter_async_context(
                        self.services.session_slot(self.principal, self.session_id)
                    )
                except LimitExceeded as exc:
                    if not await self._may_resume_at_limit(self.principal, exc):
                        raise
                await self.send(
                    p.SessionCreated(
                        session_id=self.session_id,
                        protocol_version=p.PROTOCOL_VERSION,
                        limits=self._limits(),
                        config=self.config.public(),
                        resume_token=self.resume.token,
                    )
                )
                await self._serve()
        except HandoverAccepted as handover:
            # The fresh session this socket was given is let go (its slot is, by now).
            self._forget_session_id()
            await self.handover.carry(handover)
        except Fatal as fatal:
            await self.fail(fatal.close_code, fatal.error)
        except (LimitExceeded, AuthError) as exc:
            await self.fail(WSCloseCode.POLICY_VIOLATION, exc)
        except StoreUnavailable as exc:  # the key's slot could not be taken: try again
            self.services.metrics.store_unavailable.labels("socket").inc()
            await self.fail(CLOSE_TRY_AGAIN, exc)
        finally:
            self._forget_session_id()
            await self._shutdown()
            self.resume.release()
            self._let_go()
            if collector is not None:
                collector.session_ended(freezes_at_start)

    def _let_go(self) -> None:
        """The session is over: the connection lets go of its parts, which refer back to
        it, so reference counting frees them all at once. Left as a cycle they would wait
        for the garbage collector, and in a process that froze them (the media collector
        does) for its next sweep, with the audio they hold."""
        self.ended = True
        del self.reader, self.playback, self.sender, self.handover
        del self.attach_webrtc, self.detach_webrtc, self.attach_call, self.detach_call
        del self.caller_audio, self.caller_digit, self.claim, self.adopt

    def _forget_session_id(self) -> None:
        if self.services.live_sessions.get(self.session_id) is self:
            del self.services.live_sessions[self.session_id]

    async def _serve(self) -> None:
        """Read the client's messages, on one socket after another while it resumes."""
        while await self.reader.read_loop():
            if not await self.handover.await_resume():
                return

    async def _may_resume_at_limit(self, principal: Principal, exc: LimitExceeded) -> bool:
        """At the key's session limit while a session of the key waits for a resume, this
        socket comes in without a slot of its own: it may only resume (the limit holds)."""
        if exc.code != "too_many_sessions" or self.resume_only is not None:
            return False
        if not await self.services.cluster.slots.has_waiting(principal.key_id):
            return False
        self.resume_only = ResumeOnly(None, exc)
        return True

    async def _adopt_token_scope(self, principal: Principal) -> None:
        """A client token may fix the voice and the session id: start with them.

        When the token's session is already live (here or on another node), this socket
        may only resume it: it keeps a fresh id until its ``session.resume`` arrives.
        """
        if principal.voice_id:
            self.config.use_voice(principal.voice_id)
            await learn_voice_language(self)
        if principal.session_id:
            live = principal.session_id in self.services.live_sessions
            if live or await self.services.cluster.owner_url(principal.session_id):
                self.resume_only = ResumeOnly(
                    principal.session_id,
                    LimitExceeded(
                        "the session this token names is live: this socket may only resume it",
                        code="session_exists",
                    ),
                )
                return
            self.services.live_sessions.pop(self.session_id, None)
            self.session_id = principal.session_id
            self.services.live_sessions[self.session_id] = self

    async def ensure_session(self) -> Session:
        """The session, started with the first text (with its pump and its sender)."""
        if self.session is not None:
            return self.session
        if self.services.draining:
            raise Fatal(
                CLOSE_TRY_AGAIN, VoxgateError("the server is draining; reconnect", code="draining")
            )
        principal = self.authenticated()
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
            opus_as_is=self.config.opus_as_is,
        )
        self.session = session
        self.services.metrics.sessions_total.inc()
        self.playback.start()
        self.sender.start()
        return self.session

    async def socket_closed(self) -> None:
        """The transport went away underneath (a WebRTC peer closed its data channel)."""
        await self.ws.close()

    async def lose(self) -> None:
        """This node was taken for dead and reaped (its lease lapsed while it was stalled):
        the session's holds were refunded by a peer, and a resume of it is refused. It
        ends now, as lost."""
        if self.ended or self.handover.carrying:
            return  # the session this socket serves is ended by its own connection
        lost = VoxgateError(
            "this node lost its place in the cluster; the session ended", code="session_lost"
        )
        await self.fail(WSCloseCode.INTERNAL_ERROR, lost)

    async def drain(self, deadline: float) -> None:
        """SIGTERM: let live turns finish until ``deadline``, then close with 1001."""
        if self.ended or self.handover.carrying:
            return  # the session this socket serves drains it
        if self.resume.detached:
            self.resume.end()  # no socket to finish its turns on
            return
        while self.session is not None and self._live() and time.monotonic() < deadline:  # noqa: ASYNC110 - several conditions, polled
            await asyncio.sleep(0.05)
        await self.close(WSCloseCode.GOING_AWAY, "server shutting down")

    def _live(self) -> bool:
        """A turn is under way: a context is open or closing, or audio is still going out."""
        assert self.session is not None
        return bool(self.session.active_contexts() or self.busy())

    def busy(self) -> bool:
        """Audio is being made or sent (an open context waiting for text is idle)."""
        assert self.session is not None
        queued = self.outbound.queued_audio_ms() if self.outbound else 0.0
        return bool(self.session.pending_events() or self.session.fetching() or queued)

    async def _shutdown(self) -> None:
        await self.playback.end()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        # Done: a cancelled task's traceback holds the frames that refer back here.
        self.tasks.clear()
        self.sender.stop()
        if self.session is not None:
            await self.session.aclose()
        await self.sender.closed()

    # -- messages and the close -------------------------------------------------------

    async def send(self, message: p._Message) -> None:
        if not self.resume.attached.is_set():  # detached: it goes to the next socket
            self.resume.hold(p.encode_server_message(message))
        elif not self.ws.closed:
            await self.ws.send_str(p.encode_server_message(message))

    async def error(
        self,
        exc: VoxgateError,
        *,
        event_id: str | None = None,
        fatal: bool = False,
        context_id: str | None = None,
    ) -> None:
        self.services.metrics.errors.labels(exc.code).inc()
        await self.send(
            p.ErrorOut(
                event_id=event_id,
                code=exc.code,
                message=exc.message,
                fatal=fatal,
                context_id=context_id,
            )
        )

    async def fail(self, close_code: int, exc: VoxgateError) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError, TimeoutError):
            async with asyncio.timeout(1):  # a client that reads nothing gets nothing more
                await self.error(exc, fatal=True)
        await self.close(close_code, exc.code)

    async def close(self, code: int, reason: str) -> None:
        self.closing = True
        self.resume.end()  # a detached session has no socket to close: it ends here
        if not self.ws.closed:
            with contextlib.suppress(ConnectionError, RuntimeError, TimeoutError):
                async with asyncio.timeout(2):
                    await self.ws.close(code=code, message=reason.encode()[:120])

    # -- helpers ----------------------------------------------------------------------

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

    def authenticated(self) -> Principal:
        """Who this socket authenticated as (known once ``run`` is past authentication)."""
        assert self.principal is not None
        return self.principal
