"""A connection's part in resuming: its session kept while no socket serves it, and
sockets handed from one connection to another.

A socket that drops without a close frame leaves its session detached for the resume
grace. A new socket that sends ``session.resume`` claims the session (on this node) or is
carried to the node that owns it; the connection that accepted the new socket only
carries it until the session lets it go. ``Resumption`` keeps the session's side of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING

from aiohttp import web

from voxgate.errors import ProtocolViolation, StoreUnavailable, VoxgateError
from voxgate.gateway import protocol as p
from voxgate.gateway.access.principal import Principal
from voxgate.gateway.realtime.closing import CLOSE_TRY_AGAIN

if TYPE_CHECKING:
    from voxgate.gateway.realtime.connection import RealtimeConnection

log = logging.getLogger("voxgate.gateway.realtime")  # the package's: one name for its logs


_WAIT_MARGIN_S = 5.0  # a waiting entry outlives the grace a little: a resume near its end


async def _best_effort(call: Awaitable[None]) -> None:
    """A write about waiting that the store could not take: a resume at the key's limit is
    then refused, as before there was such a list; nothing else depends on it."""
    try:
        await call
    except StoreUnavailable:
        log.info("the store did not take a resume's waiting entry")


class HandoverAccepted(Exception):
    """``session.resume`` was accepted: this socket goes to a session claimed for it on
    this node (``target``), or to the node that owns the session (``owner_url``)."""

    def __init__(
        self, *, target: RealtimeConnection | None = None, owner_url: str = "", raw: str = ""
    ) -> None:
        super().__init__("session.resume")
        self.target = target
        self.owner_url = owner_url
        self.raw = raw


class Handover:
    """Detaches a connection's session when its socket drops, lets a resumer claim and
    adopt it, and carries a resuming socket to the session it names."""

    def __init__(self, conn: RealtimeConnection) -> None:
        self.conn = conn
        self.carrying = False  # this socket now serves a resumed session, not its own
        self._replayed = 0  # what the last claim puts back to send again
        self._resumed_from: int | None = None

    # -- the session whose socket dropped ---------------------------------------------

    async def await_resume(self) -> bool:
        """The socket dropped: keep the session for the grace; True once a socket took it."""
        conn = self.conn
        resume = conn.resume
        if resume.token is None or conn.closing or conn.services.draining:
            return False
        self._detach()
        log.info(
            "session %s: socket dropped; kept %g s for a resume", conn.session_id, resume.grace_s
        )
        # Listed as waiting, so that at its key's limit a new socket may come in to resume it.
        slots, key_id = conn.services.cluster.slots, conn.authenticated().key_id
        await _best_effort(slots.wait(key_id, conn.session_id, resume.grace_s + _WAIT_MARGIN_S))
        try:
            outcome = await resume.wait()
        finally:
            await _best_effort(slots.done_waiting(key_id, conn.session_id))
        if outcome == "expired":
            conn.services.metrics.resume_expiries.inc()
            log.info("session %s: not resumed within the grace; ended", conn.session_id)
        return outcome == "resumed"

    def _detach(self) -> None:
        """Nothing goes out until a socket comes back; what is queued waits for it."""
        self.conn.resume.detach()  # a socket carried here from another connection is let go
        self.conn.services.metrics.sessions_detached.inc()
        self.conn.sender.stop()

    def claim(self, principal: Principal, token: str, last_seq: int | None) -> None:
        """Reserve this detached session for a resumer, or raise why it cannot have it.

        What was sent after frame ``last_seq`` goes back at the head of the queue. Checked
        and done without a pause, so of two resumers exactly one wins.
        """
        conn = self.conn
        conn.resume.check(token, principal.account_id, conn.authenticated().account_id)
        if conn.outbound is not None:
            try:
                self._replayed = conn.outbound.resend(last_seq)
            except VoxgateError as exc:
                if exc.code == "resume_gap":  # it can never continue exactly: end it now
                    conn.resume.end()
                raise
        elif last_seq is not None:
            raise ProtocolViolation(
                f"no audio frame with seq {last_seq} was sent", code="invalid_input"
            )
        else:
            self._replayed = 0
        self._resumed_from = last_seq
        conn.resume.claimed = True

    async def adopt(
        self, ws: web.WebSocketResponse, transport: asyncio.Transport | None
    ) -> asyncio.Future[None] | None:
        """Go on with the claimed session on ``ws``; None if it ended meanwhile.

        ``session.resumed`` goes first, then what waited while detached, then the queue
        (what is sent again, then the rest). The future is done when the session lets
        ``ws`` go (it dropped too, or the session ended).
        """
        conn = self.conn
        resume = conn.resume
        if not (resume.detached and resume.claimed):
            return None
        conn.ws, conn.transport = ws, transport
        conn.last_activity = time.monotonic()
        released = resume.attach()
        out = conn.outbound
        resumed = p.SessionResumed(
            session_id=conn.session_id,
            last_seq=self._resumed_from,
            next_seq=out.next_seq() if out is not None else 0,
            replayed=self._replayed,
            config=conn.config.public(),
        )
        with contextlib.suppress(ConnectionError, RuntimeError):  # a drop is seen by the reader
            await ws.send_str(p.encode_server_message(resumed))
            for held in resume.take_held():
                await ws.send_str(held)
        resume.attached.set()
        if out is not None:
            out.rebase()
            conn.sender.start()
        conn.playback.resume_reports()
        conn.services.metrics.resumes.inc()
        log.info("session %s: resumed after seq %s", conn.session_id, self._resumed_from)
        return released

    # -- the socket that resumes ------------------------------------------------------

    async def request(self, message: p.SessionResume, raw: str) -> None:
        """A new socket names a session to continue: claim it, or find the node that has it.

        Raises ``HandoverAccepted`` when it may; the connection then carries the socket.
        """
        conn = self.conn
        if conn.session is not None:
            raise ProtocolViolation(
                "session.resume must come before any text on this socket",
                code="session_already_started",
            )
        if conn.transport is None:
            raise ProtocolViolation("a session resumes on a WebSocket", code="invalid_message")
        target = conn.services.live_sessions.get(message.session_id)
        if target is None or target is conn or target.principal is None:
            cluster = conn.services.cluster
            owner_url = await cluster.owner_url(message.session_id)
            if owner_url is not None:
                raise HandoverAccepted(owner_url=owner_url, raw=raw)
            if await cluster.is_lost(message.session_id):
                raise VoxgateError(
                    "the node that held that session stopped; its turns ended there",
                    code="session_lost",
                )
            raise ProtocolViolation(
                f"no session {message.session_id!r} to resume", code="session_not_found"
            )
        target.claim(conn.authenticated(), message.resume_token, message.last_seq)
        raise HandoverAccepted(target=target)

    async def carry(self, accepted: HandoverAccepted) -> None:
        """This socket now serves the resumed session, until that session lets it go."""
        conn = self.conn
        self.carrying = True
        if accepted.target is None:
            await conn.services.cluster.proxy_resume(
                conn.ws, accepted.owner_url, accepted.raw, conn.authenticated()
            )
            return
        released = await accepted.target.adopt(conn.ws, conn.transport)
        if released is None:
            self.carrying = False
            gone = VoxgateError(
                "the session ended before it could resume", code="session_not_found"
            )
            await conn.fail(CLOSE_TRY_AGAIN, gone)
            return
        await released
