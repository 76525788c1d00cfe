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
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable

from voxgate.errors import LimitExceeded, ProtocolViolation, QuotaExceeded, StoreUnavailable
from voxgate.sessions.chunk_job import SpeechStreamer
from voxgate.sessions.context import Context, ContextState
from voxgate.sessions.events import AudioOut, Event, Interrupted, SessionError
from voxgate.sessions.ledger import Ledger, Reservation
from voxgate.sessions.ledger import Usage as LedgerUsage
from voxgate.sessions.options import SessionOptions
from voxgate.sessions.settlements import Action, SettlementOrder, Settlements

log = logging.getLogger(__name__)

DEFAULT_CONTEXT = "default"


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
        credit_cap: int | None = None,
        settlements: Settlements | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.id = session_id or uuid.uuid4().hex
        self.account_id = account_id
        self.options = options or SessionOptions()
        self.upstream = upstream
        self.clock = clock
        # Whether turns begun from now on fetch the upstream's Opus packets and pass them
        # through, instead of PCM: the transport sets it while every sink it feeds takes
        # Opus as the upstream codes it.
        self.opus_upstream = False
        self._ledger = ledger
        self._contexts: dict[str, Context] = {}
        self._events: deque[tuple[str | None, Event]] = deque()
        self._ready = asyncio.Event()
        # Commits and refunds go through the process's queue, which owns them until the
        # store acknowledges them; a session of its own gets a queue of its own.
        self._settlements = settlements or Settlements(ledger)
        self._closed = False
        # A cap on what this one session may spend (a browser's client token carries one).
        self._credit_cap = credit_cap
        self._holds: dict[str, int] = {}
        self._spent_or_held = 0
        self._charged = 0  # credits committed by this session, as decided here

    async def start(self) -> None:
        """Ready to take text (kept for callers that start every session they make)."""

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
        await self._any_event()
        context_id, event = self._events.popleft()
        context = self._contexts.get(context_id) if context_id is not None else None
        if context is not None:
            event = context.delivered(event)
            if context.done_delivered or isinstance(event, Interrupted):
                self._forget(context)
        return event

    async def peek_event(self) -> Event:
        """The event ``next_event`` would return, once there is one, left undelivered."""
        await self._any_event()
        return self._events[0][1]

    async def _any_event(self) -> None:
        while not self._events:
            if self._closed:
                raise SessionClosed("the session is closed")
            self._ready.clear()
            await self._ready.wait()

    @property
    def closed(self) -> bool:
        return self._closed

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
        except (StoreUnavailable, asyncio.CancelledError):
            # The store may have applied the reserve, or may yet: void it, once it answers.
            self._spent_or_held -= self._holds.pop(op_id)
            self._submit(op_id, "void", amount)
            raise
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
        the transport is not made to wait for it, nor is the turn, even while the store is
        away (the settlement waits in the queue and is retried until the store takes it).
        """
        held = self._holds.pop(op_id, 0)
        self._spent_or_held -= held - commit
        self._charged += commit
        self._submit(op_id, "commit" if commit > 0 else "refund", held, commit)

    def _submit(self, op_id: str, action: Action, held: int, charge: int = 0) -> None:
        order = SettlementOrder(op_id, self.account_id, self.id, action, held, charge)
        self._settlements.submit(order)

    # -- usage and shutdown -----------------------------------------------------------

    @property
    def charged(self) -> int:
        """Credits this session has committed (the sum of its contexts' usage)."""
        return self._charged

    @property
    def pending_settlement(self) -> int:
        """Credits of settled chunks the store has not acknowledged yet (0 while it is up)."""
        return self._settlements.pending(self.id)

    async def usage(self) -> LedgerUsage:
        """The ledger's counters for this session, once its settlements have reached it."""
        await self.settled()
        return await self._ledger.session_usage(self.id, account_id=self.account_id)

    async def settled(self, timeout_s: float | None = None) -> bool:
        """Until every commit and refund issued so far has reached the ledger."""
        return await self._settlements.flushed(self.id, timeout_s)

    async def aclose(self) -> None:
        """Stop everything and refund what was not delivered."""
        if self._closed:
            return
        self._closed = True
        self._ready.set()
        await asyncio.gather(*(c.aclose() for c in self._contexts.values()))
        self._contexts.clear()  # each refers back to the session: no cycle is left behind

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


def _active(context: Context) -> bool:
    return context.state in (ContextState.OPEN, ContextState.CLOSING) or (
        context.state is ContextState.DONE and not context.done_delivered
    )
