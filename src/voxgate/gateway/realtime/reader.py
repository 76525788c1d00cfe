"""The client's side of a realtime socket: authentication, the read loop, the commands.

Each message is validated and answered on its own: a bad one gets an ``error`` naming its
``event_id`` and the socket goes on, unless the fault ends the connection (``Fatal``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import WebSocketError, WSCloseCode, WSMsgType

from voxgate.errors import (
    AuthError,
    LimitExceeded,
    ProtocolViolation,
    StoreUnavailable,
    VoxgateError,
)
from voxgate.gateway import protocol as p
from voxgate.gateway.access.principal import Principal
from voxgate.gateway.access.ratelimit import TokenBucket
from voxgate.gateway.realtime.closing import CLOSE_TRY_AGAIN, Fatal
from voxgate.sessions.session import Session


@dataclass(frozen=True, slots=True)
class ResumeOnly:
    """A socket that may only resume: the session a client token names, while it is live,
    or (``session_id`` None) any session of its key, let in at the key's limit while one
    waits for its resume. Any other message ends the socket with ``refusal``."""

    session_id: str | None
    refusal: VoxgateError

    def allows(self, message: p.ClientMessage) -> bool:
        """Whether ``message`` is a resume this socket may make."""
        return isinstance(message, p.SessionResume) and self.session_id in (
            None,
            message.session_id,
        )


if TYPE_CHECKING:
    from voxgate.gateway.metrics import Metrics
    from voxgate.gateway.realtime.connection import RealtimeConnection


class TurnLog:
    """Per context, what its turn came to so far: the last text ``seq`` acknowledged, and
    when its first text came, for the time to its first audio (observed once a context)."""

    def __init__(self, metrics: Metrics) -> None:
        self.acked: dict[str, int] = {}
        self._metrics = metrics
        self._first_text_at: dict[str, float] = {}
        self._audio_started: set[str] = set()  # contexts whose time to first audio is known

    def text(self, context_id: str) -> None:
        if context_id not in self._audio_started:  # once per context, from its first text
            self._first_text_at.setdefault(context_id, time.monotonic())

    def first_audio(self, context_id: str | None) -> None:
        if context_id is None:
            return
        started = self._first_text_at.pop(context_id, None)
        if started is not None:
            self._audio_started.add(context_id)
            self._metrics.time_to_first_audio.observe(time.monotonic() - started)

    def forget(self, context_id: str) -> None:
        """The context is done: a reused id starts afresh."""
        self.acked.pop(context_id, None)
        self._audio_started.discard(context_id)
        self._first_text_at.pop(context_id, None)


async def learn_voice_language(conn: RealtimeConnection) -> None:
    """A saved voice's language, for a session that follows its voice's language."""
    voice_id = conn.config.needs_voice_language
    if voice_id is not None:
        language = await conn.services.voice_languages.of(voice_id)
        if language is not None:
            conn.config.voice_languages[voice_id] = language


class Reader:
    """Reads one socket after another of a connection, and carries out what they ask."""

    def __init__(self, conn: RealtimeConnection) -> None:
        self.conn = conn
        settings = conn.settings
        self._text_bucket = TokenBucket(settings.text_chars_per_second, settings.text_burst_chars)

    async def authenticate(self) -> Principal:
        """The socket's first message must carry a client token: who it names."""
        conn, settings = self.conn, self.conn.settings
        try:
            async with asyncio.timeout(settings.auth_timeout_s):
                msg = await conn.ws.receive()
        except TimeoutError:
            raise Fatal(
                WSCloseCode.POLICY_VIOLATION,
                AuthError(
                    f"no credentials within {settings.auth_timeout_s:g} s", code="auth_timeout"
                ),
            ) from None
        if msg.type is not WSMsgType.TEXT:
            raise Fatal(WSCloseCode.POLICY_VIOLATION, AuthError("authenticate first"))
        try:
            message = p.decode_client_message(msg.data)
        except ProtocolViolation as exc:
            raise Fatal(WSCloseCode.POLICY_VIOLATION, exc) from None
        if not isinstance(message, p.Auth):
            raise Fatal(
                WSCloseCode.POLICY_VIOLATION,
                AuthError(
                    'the first message must be {"type": "auth", "token": ...} '
                    "(or send a Bearer key or a token subprotocol)",
                    code="unauthorized",
                ),
            )
        try:
            principal: Principal = await conn.services.redeem_token(message.token, conn.origin)
        except AuthError as exc:
            raise Fatal(WSCloseCode.POLICY_VIOLATION, exc) from None
        except StoreUnavailable as exc:  # the token is not spent: the client may retry it
            conn.services.metrics.store_unavailable.labels("socket").inc()
            raise Fatal(CLOSE_TRY_AGAIN, exc) from None
        return principal

    async def read_loop(self) -> bool:
        """Until the socket ends; True if it dropped (no close frame, not closed by us)."""
        conn = self.conn
        while not conn.ws.closed:
            timeout = conn.settings.idle_timeout_s
            try:
                async with asyncio.timeout(timeout):
                    msg = await conn.ws.receive()
            except TimeoutError:
                if conn.session is not None and conn.busy():
                    continue  # audio is still flowing: the socket is not idle
                await conn.close(WSCloseCode.OK, "idle timeout")
                return False
            conn.last_activity = time.monotonic()
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING):
                return False  # the client's close frame, or ours
            if msg.type is WSMsgType.CLOSED or (
                msg.type is WSMsgType.ERROR and not isinstance(msg.data, WebSocketError)
            ):
                return not conn.closing  # end of stream, reset, no pong: the socket dropped
            if msg.type is WSMsgType.ERROR:
                raise Fatal(
                    WSCloseCode.MESSAGE_TOO_BIG,
                    LimitExceeded(
                        f"message larger than {conn.settings.max_message_bytes} bytes",
                        code="message_too_large",
                    ),
                )
            if msg.type is not WSMsgType.TEXT:
                await conn.error(
                    ProtocolViolation(
                        "binary client messages are not part of the protocol",
                        code="invalid_message",
                    )
                )
                continue
            await self._handle(msg.data)
        return not conn.closing

    async def _handle(self, data: str) -> None:
        event_id = context_id = None
        try:
            message = p.decode_client_message(data)
            event_id = message.event_id
            context_id = getattr(message, "context_id", None)
            only = self.conn.resume_only
            if only is not None and not only.allows(message):
                raise Fatal(WSCloseCode.POLICY_VIOLATION, only.refusal)
            if isinstance(message, p.SessionResume):
                await self.conn.handover.request(message, data)
            await self._dispatch(message)
        except VoxgateError as exc:
            await self.conn.error(exc, event_id=event_id, context_id=context_id)

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
                await self.conn.send(p.Pong(event_id=message.event_id))
            case p.Auth():
                raise ProtocolViolation("already authenticated", code="already_authenticated")

    # -- commands ---------------------------------------------------------------------

    async def _update(self, message: p.SessionUpdate) -> None:
        conn = self.conn
        if conn.session is not None:
            raise ProtocolViolation(
                "session.update is only allowed before the first text",
                code="session_already_started",
            )
        conn.config.update(message, conn.authenticated())
        await learn_voice_language(conn)
        await conn.send(p.SessionUpdated(event_id=message.event_id, config=conn.config.public()))

    async def _append(self, message: p.TextAppend) -> None:
        conn, turns = self.conn, self.conn.turns
        ctx = message.context_id
        if message.seq is not None:
            last = turns.acked.get(ctx)
            if last is not None and message.seq <= last:
                await conn.send(
                    p.TextAck(
                        event_id=message.event_id, context_id=ctx, seq=message.seq, duplicate=True
                    )
                )
                return
        if not self._text_bucket.take(len(message.text)):
            raise LimitExceeded(
                f"text rate limit: {conn.settings.text_chars_per_second} characters/s "
                f"(bursts of {conn.settings.text_burst_chars}); this text was not accepted",
                code="rate_limited",
            )
        session = await conn.ensure_session()
        session.append(message.text, ctx)
        conn.playback.new_turn(ctx)
        turns.text(ctx)
        if message.seq is not None:
            turns.acked[ctx] = message.seq
            await conn.send(p.TextAck(event_id=message.event_id, context_id=ctx, seq=message.seq))

    def _interrupt(self, message: p.Interrupt) -> None:
        session = self._require_session()
        assert self.conn.outbound is not None
        targets = [message.context_id] if message.context_id else session.active_context_ids()
        if not targets:
            raise ProtocolViolation(
                "no context is playing; nothing to interrupt", code="nothing_to_interrupt"
            )
        results = []
        for context_id in targets:
            delivered = self.conn.playback.cut(context_id)
            played = message.played_ms if message.played_ms is not None else delivered
            results += session.interrupt(context_id, played, delivered)
        self.conn.services.metrics.interrupts.inc(len(results))

    async def _usage(self) -> None:
        """The session's own figures (never waiting on the store), and the account's balance."""
        conn = self.conn
        session = conn.session
        balance: int | None = None
        with contextlib.suppress(StoreUnavailable):
            account_id = conn.authenticated().account_id
            balance = (await conn.services.ledger.balance(account_id)).available
        await conn.send(
            p.UsageReport(
                session_characters=session.charged if session else 0,
                session_held=session.held()[1] if session else 0,
                session_pending=session.pending_settlement if session else 0,
                balance_available=balance,
            )
        )

    def _require_session(self) -> Session:
        if self.conn.session is None:
            raise ProtocolViolation("no text has been sent yet", code="unknown_context")
        return self.conn.session
