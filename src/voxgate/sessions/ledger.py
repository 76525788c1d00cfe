"""The credit ledger: credits are held for a text chunk before it goes upstream.

One chunk's credits (1 character = 1 credit) go through::

    reserve ──▶ HELD ──commit(n ≤ amount)──▶ COMMITTED  n charged, amount − n released
                 ├────refund───────────────▶ REFUNDED   everything released
                 └────ttl passes───────────▶ EXPIRED    everything released (a refund)

``release_session`` refunds every hold still HELD in one session at once (a dead node's).

A reservation whose reserve call failed to reach the store is *voided*: refunded if the
reserve was applied after all, otherwise recorded as refunded so that a late reserve of the
same op_id holds nothing.

The first settlement wins and is final. A later commit or refund of the same ``op_id`` changes
nothing and returns a :class:`Settlement` saying what the reservation became, so a commit
after a refund (or after expiry) never charges and a refund after a commit never releases.
Callers check ``Settlement.ok``; a ledger never raises for a lost race between a barge-in
refund and an upstream ``done``, because both outcomes are legitimate.

Expiry returns the holds of a crashed process: a hold not settled within ``ttl_s`` is released
lazily by the next call that touches its account (or by ``reclaim_expired``). An expired hold
counts as refunded; a late commit of it charges nothing and says ``EXPIRED``. Reserving its
op_id again returns the expired reservation: a retry after expiry needs a new op_id.

The ledger is called once per text chunk (reserve, then commit or refund), never per audio
frame: chunks are clauses or sentences, a few per second per session at most.

Counters, kept per account and per session, identically in every store (credits, then counts):

    reserved_total   credits ever held
    held             credits in holds not yet settled
    committed        credits charged
    refunded         credits released: refunds, the unused part of partial commits, expiries
    expired          the part of ``refunded`` that came back by expiry
    reservations     holds made
    commits, refunds, expiries   holds settled each way (a partial commit is a commit)
    holds_open       holds not yet settled

They obey ``reserved_total == committed + refunded + held`` and
``reservations == commits + refunds + expiries + holds_open``; an account also has
``available == credited − committed − held ≥ 0``. :func:`audit` checks all of it.

Errors: ``QuotaExceeded(needed, available)`` when the account cannot cover a reserve (nothing
is held); ``InvalidInput`` with ``code`` ``unknown_account``, ``unknown_session``,
``account_exists``, ``op_id_conflict``, ``session_conflict``, ``invalid_amount`` or
``invalid_input`` (a malformed id, amount or ttl).

Stores: ``MemoryLedger`` (``ledger_memory``, one process) and ``RedisLedger``
(``ledger_redis``, shared by every worker); one contract test suite runs against both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Literal, Protocol

from voxgate.errors import InvalidInput, QuotaExceeded

Clock = Callable[[], float]
SettleAction = Literal["commit", "refund"]
SettleKind = Literal["commits", "refunds", "expiries"]

DEFAULT_TTL_S = 60.0
DEFAULT_RETENTION_S = 86_400.0
MAX_ID_LENGTH = 256


class ReservationState(StrEnum):
    """Where a reservation is in its lifecycle (see the module docstring)."""

    HELD = "held"
    COMMITTED = "committed"
    REFUNDED = "refunded"
    EXPIRED = "expired"
    UNKNOWN = "unknown"  # never reserved, or forgotten after the retention period


@dataclass(frozen=True, kw_only=True)
class Totals:
    """The counters shared by accounts and sessions (see the module docstring)."""

    reserved_total: int = 0
    held: int = 0
    committed: int = 0
    refunded: int = 0
    expired: int = 0
    reservations: int = 0
    commits: int = 0
    refunds: int = 0
    expiries: int = 0
    holds_open: int = 0

    def violations(self) -> list[str]:
        """The invariants these counters break, as sentences; empty when consistent."""
        found: list[str] = []
        if self.reserved_total != self.committed + self.refunded + self.held:
            found.append(
                f"reserved_total {self.reserved_total} != committed {self.committed}"
                f" + refunded {self.refunded} + held {self.held}"
            )
        if self.reservations != self.commits + self.refunds + self.expiries + self.holds_open:
            found.append(
                f"reservations {self.reservations} != commits {self.commits} + refunds"
                f" {self.refunds} + expiries {self.expiries} + holds_open {self.holds_open}"
            )
        if self.expired > self.refunded:
            found.append(f"expired {self.expired} > refunded {self.refunded}")
        found += [f"{name} is negative" for name in TOTALS_FIELDS if getattr(self, name) < 0]
        return found


TOTALS_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Totals))


@dataclass(frozen=True, kw_only=True)
class Balance(Totals):
    """An account: what it was given, what it can still spend, and where the rest went."""

    account_id: str
    credited: int  # initial balance plus every top-up
    available: int

    def violations(self) -> list[str]:
        found = super().violations()
        if self.available < 0:
            found.append(f"available {self.available} is negative")
        if self.available != self.credited - self.committed - self.held:
            found.append(
                f"available {self.available} != credited {self.credited}"
                f" - committed {self.committed} - held {self.held}"
            )
        return found


@dataclass(frozen=True, kw_only=True)
class Usage(Totals):
    """What one session has held, been charged and got back."""

    session_id: str
    account_id: str


@dataclass(frozen=True, kw_only=True)
class Reservation:
    """Credits held for one chunk until it is committed, refunded, or expires."""

    op_id: str
    account_id: str
    session_id: str
    amount: int
    expires_at: float  # seconds on the store's clock (wall clock unless one was injected)
    state: ReservationState
    created: bool  # False when this call replayed an earlier reserve with the same op_id


@dataclass(frozen=True, kw_only=True)
class Settlement:
    """The outcome of a commit or refund: the reservation's state after the call.

    ``applied`` says whether this call settled the hold; ``ok`` whether the reservation ended
    the way the caller asked (a repeated commit is ok but not applied; a commit after a
    refund or an expiry is neither, and charged nothing). ``charged`` and ``released`` are
    the reservation's, whichever call settled it.
    """

    op_id: str
    action: SettleAction
    state: ReservationState
    applied: bool
    charged: int
    released: int

    @property
    def ok(self) -> bool:
        if self.action == "commit":
            return self.state is ReservationState.COMMITTED
        return self.state in (ReservationState.REFUNDED, ReservationState.EXPIRED)


@dataclass(frozen=True, kw_only=True)
class TopUp:
    """The outcome of ``credit``, with the account's balance after it."""

    op_id: str
    amount: int
    applied: bool  # False when this op_id was already credited
    balance: Balance


class Ledger(Protocol):
    """Credit accounting for text chunks; every method is atomic and safe to retry."""

    async def create_account(self, account_id: str, balance: int) -> Balance:
        """Open an account; ``InvalidInput(code="account_exists")`` if it is already open."""
        ...

    async def credit(self, account_id: str, amount: int, op_id: str) -> TopUp:
        """Top up; a repeated ``op_id`` is applied once (a different amount is rejected)."""
        ...

    async def balance(self, account_id: str) -> Balance:
        """The account's counters, after releasing its expired holds."""
        ...

    async def reserve(
        self, account_id: str, session_id: str, amount: int, op_id: str, ttl_s: float = ...
    ) -> Reservation:
        """Hold ``amount`` credits, or raise ``QuotaExceeded`` and hold nothing.

        A repeated ``op_id`` returns the first reservation (in whatever state it is now)
        without holding again; reusing it for another account, session or amount raises
        ``InvalidInput(code="op_id_conflict")``.
        """
        ...

    async def commit(
        self, op_id: str, amount: int | None = None, *, account_id: str | None = None
    ) -> Settlement:
        """Charge the hold, or ``amount`` of it (partial delivery) and release the rest.

        ``account_id`` is needed only by a process that did not reserve ``op_id`` itself
        (Redis: the account's slot cannot be found from the op_id alone). An op_id that is
        not a reservation of that account settles nothing: ``state`` is ``UNKNOWN``.
        """
        ...

    async def refund(self, op_id: str, *, account_id: str | None = None) -> Settlement:
        """Release the whole hold; ``account_id`` as for :meth:`commit`."""
        ...

    async def void(
        self, op_id: str, *, account_id: str, session_id: str, amount: int
    ) -> Settlement:
        """Refund a reservation whose ``reserve`` call failed to reach the store.

        That reserve may have been applied, or may still be, by a store that comes back:
        if it was, this is a refund; if not, the op_id is recorded as refunded (for the
        retention period, holding nothing), so a late reserve of it replays as refunded
        and holds nothing either. ``state`` is ``REFUNDED`` both ways (or what the
        reservation had already become).
        """
        ...

    async def release_session(self, session_id: str, *, account_id: str) -> int:
        """Refund every unsettled hold of a session at once; the credits released.

        Each hold ends as :meth:`refund` would end it (``REFUNDED``, counted as a refund on
        the account and the session), so a commit arriving later charges nothing; settled
        holds are left as they are. A second call releases 0. Used when the node that held
        the session died: a survivor returns its holds without waiting for their ttl.
        ``InvalidInput(code="unknown_account")`` if the account does not exist; a session
        with no holds in it releases 0.
        """
        ...

    async def session_usage(self, session_id: str, *, account_id: str | None = None) -> Usage:
        """A session's counters; ``InvalidInput(code="unknown_session")`` if it has none.

        ``account_id`` spares the Redis store a lookup of the session's account.
        """
        ...

    async def reclaim_expired(self, now: float | None = None) -> int:
        """Release every hold expired at ``now`` (default: the store's clock); how many."""
        ...

    async def accounts(self) -> list[str]:
        """Every account id, sorted."""
        ...

    async def account_sessions(self, account_id: str) -> list[str]:
        """The sessions of an account still within the retention period, sorted."""
        ...


async def audit(ledger: Ledger) -> list[str]:
    """Every broken invariant of every account and session, as sentences."""
    problems: list[str] = []
    for account_id in await ledger.accounts():
        balance = await ledger.balance(account_id)
        problems += [f"account {account_id!r}: {p}" for p in balance.violations()]
        for session_id in await ledger.account_sessions(account_id):
            usage = await ledger.session_usage(session_id, account_id=account_id)
            problems += [f"session {session_id!r}: {p}" for p in usage.violations()]
    return problems


# ---- checks and conversions shared by the stores, so both reject the same input the same way


def check_id(kind: str, value: str) -> None:
    # Braces are refused because the Redis store puts ids inside hash tags.
    if not isinstance(value, str) or not 0 < len(value) <= MAX_ID_LENGTH:
        raise InvalidInput(f"{kind} must be a string of 1 to {MAX_ID_LENGTH} characters")
    if any(c in "{}" or not c.isprintable() or c.isspace() for c in value):
        raise InvalidInput(f"{kind} {value!r} must not contain braces, spaces or controls")


def check_amount(kind: str, value: int, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidInput(f"{kind} must be an integer >= {minimum}, not {value!r}")


def check_reserve(
    account_id: str, session_id: str, amount: int, op_id: str, ttl_s: float, retention_s: float
) -> None:
    check_id("account_id", account_id)
    check_id("session_id", session_id)
    check_id("op_id", op_id)
    check_amount("amount", amount, 1)
    # A hold outliving the retention period could outlive its session's records.
    if (
        isinstance(ttl_s, bool)
        or not isinstance(ttl_s, int | float)
        or not 0 < ttl_s <= retention_s
    ):
        raise InvalidInput(f"ttl_s must be in (0, {retention_s}] seconds, not {ttl_s!r}")


def check_void(op_id: str, account_id: str, session_id: str, amount: int) -> None:
    for kind, value in (("op_id", op_id), ("account_id", account_id), ("session_id", session_id)):
        check_id(kind, value)
    check_amount("amount", amount, 1)


def to_ms(seconds: float) -> int:
    """Both stores count time in whole milliseconds, so they expire holds at the same instant."""
    return round(seconds * 1000)


def quota_exceeded(account_id: str, needed: int, available: int, held: int) -> QuotaExceeded:
    return QuotaExceeded(
        f"account {account_id!r} needs {needed} credits for this chunk but has {available}"
        f" available ({held} held by chunks in flight)",
        needed=needed,
        available=available,
    )


def unknown_account(account_id: str) -> InvalidInput:
    return InvalidInput(f"no credit account {account_id!r}", code="unknown_account")


def unknown_session(session_id: str) -> InvalidInput:
    return InvalidInput(f"session {session_id!r} has no credit usage", code="unknown_session")


def op_id_conflict(op_id: str, detail: str) -> InvalidInput:
    return InvalidInput(f"op_id {op_id!r} was already used {detail}", code="op_id_conflict")


def invalid_commit(op_id: str, amount: int, held: int) -> InvalidInput:
    return InvalidInput(
        f"cannot commit {amount} credits of op {op_id!r}: only {held} are held",
        code="invalid_amount",
    )
