"""A Session: LLM text in, ordered audio and events out, for one client and one account.

Transport-agnostic: the gateway feeds it commands (``append``, ``flush``, ``close_context``,
``interrupt``) and takes its events with ``await session.next_event()``. Taking an event is
what "delivered" means: credits for a chunk are committed once the transport has taken the
chunk's last audio, and an interrupt removes every undelivered event of its context at once.

    session = Session(upstream=..., ledger=..., account_id="acme")
    await session.start()
    session.append("Hello! How can I")
    session.append(" help you today?")
    session.close_context()
    async for event in session: ...        # AudioOut, ChunkStarted, ChunkEnded, ContextDone
    await session.aclose()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

from voxgate.errors import LimitExceeded, ProtocolViolation, QuotaExceeded
from voxgate.sessions.chunk_job import SpeechStreamer
from voxgate.sessions.context import Context, ContextState
from voxgate.sessions.events import AudioOut, Event, Interrupted, SessionError
from voxgate.sessions.ledger import Ledger, Reservation
from voxgate.sessions.ledger import Usage as LedgerUsage
from voxgate.sessions.options import SessionOptions
from voxgate.sessions.registry import SessionRegistry

log = logging.getLogger(__name__)

DEFAULT_CONTEXT = "default"
_OWNER = f"{os.uname().nodename}:{os.getpid()}"


class SessionClosed(ProtocolViolation):
    code = "session_closed"


class Session:
    def __init__(
        self,
        *,
        upstream: SpeechStreamer,
        ledger: Ledger,
        account_id: str,
        options: SessionOptions | None = None,
        session_id: str | None = None,
        registry: SessionRegistry | None = None,
        registry_ttl_s: float = 30.0,
        credit_cap: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.id = session_id or uuid.uuid4().hex
        self.account_id = account_id
        self.options = options or SessionOptions()
        self.upstream = upstream
        self.clock = clock
        self._ledger = ledger
        self._registry = registry
        self._registry_ttl_s = registry_ttl_s
        self._contexts: dict[str, Context] = {}
        self._events: deque[tuple[str | None, Event]] = deque()
        self._ready = asyncio.Event()
        self._settlements: set[asyncio.Task[Any]] = set()
        self._heartbeat: asyncio.Task[None] | None = None
        self._closed = False
        # A cap on what this one session may spend (a browser's client token carries one).
        self._credit_cap = credit_cap
        self._holds: dict[str, int] = {}
        self._spent_or_held = 0

    async def start(self) -> None:
        """Register in the session registry (if any) and keep the record alive."""
        if self._registry is not None:
            await self._registry.register(self.id, self.account_id, _OWNER, self._registry_ttl_s)
            self._heartbeat = asyncio.create_task(self._beat(), name=f"heartbeat-{self.id}")

    # -- commands ---------------------------------------------------------------------

    def append(self, text: str, context_id: str = DEFAULT_CONTEXT) -> None:
        self._context(context_id, create=True).append(text)

    def flush(self, context_id: str = DEFAULT_CONTEXT) -> None:
        self._context(context_id).flush()

    def close_context(self, context_id: str = DEFAULT_CONTEXT) -> None:
        self._context(context_id).close()

    def report_played(self, context_id: str, played_ms: float) -> None:
        """A sink with a real playout clock says how far the listener has got."""
        self._context(context_id).report_played(played_ms)

    def interrupt(
        self,
        context_id: str | None = None,
        played_ms: float | None = None,
        delivered_ms: float | None = None,
    ) -> list[Interrupted]:
        """Barge-in: stop one context, or every active one; returns what each had said.

        When this returns, no audio of the interrupted contexts will come out of
        ``next_event`` again; in-flight upstream requests are being closed.
        """
        self._check_open()
        if context_id is not None:
            return [self._context(context_id).interrupt(played_ms, delivered_ms)]
        return [
            c.interrupt(played_ms, delivered_ms)
            for c in list(self._contexts.values())
            if _active(c)
        ]

    # -- events -----------------------------------------------------------------------

    async def next_event(self) -> Event:
        while not self._events:
            if self._closed:
                raise SessionClosed("the session is closed")
            self._ready.clear()
            await self._ready.wait()
        context_id, event = self._events.popleft()
        context = self._contexts.get(context_id) if context_id is not None else None
        if context is not None:
            event = context.delivered(event)
            if context.done_delivered or isinstance(event, Interrupted):
                self._forget(context)
        return event

    def __aiter__(self) -> Session:
        return self

    async def __anext__(self) -> Event:
        try:
            return await self.next_event()
        except SessionClosed:
            raise StopAsyncIteration from None

    def pending_events(self) -> int:
        return len(self._events)

    def active_context_ids(self) -> list[str]:
        return [c.id for c in self._contexts.values() if _active(c)]

    def fetching(self) -> bool:
        """Some context has chunks waiting for, or streaming from, the upstream."""
        return any(c.fetching for c in self._contexts.values())

    def active_contexts(self) -> int:
        """Contexts that still have text to speak or events to deliver."""
        return sum(1 for c in self._contexts.values() if _active(c))

    def held(self) -> tuple[int, int]:
        """Chunks, and their credits, reserved and not yet settled: held ahead of the listener."""
        return len(self._holds), sum(self._holds.values())

    def ahead_ms(self) -> float:
        """Audio in the gateway, fetched or emitted, that the transport has not yet taken."""
        return sum(c.ahead_ms() for c in self._contexts.values())

    def undelivered_audio_ms(self) -> float:
        """Audio emitted by the contexts and not yet taken by the transport."""
        return sum(e.duration_ms for _, e in self._events if isinstance(e, AudioOut))

    # -- what contexts need -----------------------------------------------------------

    def emit(self, event: Event) -> None:
        self._events.append((getattr(event, "context_id", None), event))
        self._ready.set()

    def emit_error(
        self, code: str, message: str, *, fatal: bool, context_id: str | None = None
    ) -> None:
        self.emit(SessionError(code, message, fatal, context_id))

    def purge(self, context_id: str) -> None:
        """Drop every undelivered event of a context: used by interrupt."""
        self._events = deque(e for e in self._events if e[0] != context_id)

    async def reserve(self, op_id: str, amount: int) -> Reservation:
        if self._credit_cap is not None and self._spent_or_held + amount > self._credit_cap:
            left = self._credit_cap - self._spent_or_held
            raise QuotaExceeded(
                f"this chunk needs {amount} credits; this session may spend {left} more "
                f"(its limit is {self._credit_cap})",
                needed=amount,
                available=left,
            )
        self._spent_or_held += amount
        self._holds[op_id] = amount
        try:
            return await self._reserve(op_id, amount)
        except BaseException:
            self._spent_or_held -= self._holds.pop(op_id)
            raise

    async def _reserve(self, op_id: str, amount: int) -> Reservation:
        return await self._ledger.reserve(
            self.account_id, self.id, amount, op_id, self.options.pipeline.reservation_ttl_s
        )

    def settle(self, op_id: str, commit: int) -> None:
        """Commit ``commit`` credits of a reservation (refund it all when 0), in the background.

        The ledger is called once per chunk, never per frame, and never on the audio path:
        the transport is not made to wait for it.
        """
        self._spent_or_held -= self._holds.pop(op_id, 0) - commit
        account = self.account_id
        coro = (
            self._ledger.commit(op_id, commit, account_id=account)
            if commit > 0
            else self._ledger.refund(op_id, account_id=account)
        )
        self._track(coro)

    # -- usage and shutdown -----------------------------------------------------------

    async def usage(self) -> LedgerUsage:
        await self.settled()
        return await self._ledger.session_usage(self.id, account_id=self.account_id)

    async def settled(self) -> None:
        """Until every commit and refund issued so far has reached the ledger."""
        while self._settlements:
            await asyncio.gather(*list(self._settlements), return_exceptions=True)

    async def aclose(self) -> None:
        """Stop everything, refund what was not delivered, and leave the registry."""
        if self._closed:
            return
        self._closed = True
        self._ready.set()
        await asyncio.gather(*(c.aclose() for c in self._contexts.values()))
        await self.settled()
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
        if self._registry is not None:
            with contextlib.suppress(Exception):
                await self._registry.update_usage(
                    self.id, await self._ledger.session_usage(self.id, account_id=self.account_id)
                )
            await self._registry.remove(self.id)

    # -- helpers ----------------------------------------------------------------------

    def _context(self, context_id: str, *, create: bool = False) -> Context:
        self._check_open()
        context = self._contexts.get(context_id)
        if context is not None:
            return context
        if not create:
            raise ProtocolViolation(f"no context {context_id!r}", code="unknown_context")
        active = sum(1 for c in self._contexts.values() if _active(c))
        if active >= self.options.max_contexts:
            raise LimitExceeded(
                f"at most {self.options.max_contexts} contexts may be open at once; "
                "close or interrupt one first",
                code="too_many_contexts",
            )
        context = Context(context_id, self)
        self._contexts[context_id] = context
        return context

    def _forget(self, context: Context) -> None:
        # Once its last event is delivered the id may be used again for a new turn.
        if self._contexts.get(context.id) is context:
            del self._contexts[context.id]

    def _check_open(self) -> None:
        if self._closed:
            raise SessionClosed("the session is closed")

    def _track(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(coro)
        self._settlements.add(task)
        task.add_done_callback(self._settlement_done)

    def _settlement_done(self, task: asyncio.Task[Any]) -> None:
        self._settlements.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # The hold expires by itself; the ledger never charges twice or not at all.
            log.error("ledger settlement failed: %r", task.exception())

    async def _beat(self) -> None:
        assert self._registry is not None
        while True:
            await asyncio.sleep(self._registry_ttl_s / 3)
            with contextlib.suppress(Exception):
                await self._registry.touch(self.id)


def _active(context: Context) -> bool:
    return context.state in (ContextState.OPEN, ContextState.CLOSING) or (
        context.state is ContextState.DONE and not context.done_delivered
    )
