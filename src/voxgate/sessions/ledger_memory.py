"""The in-process credit ledger: ``voxgate serve`` with no Redis configured, and tests.

Its semantics are those of :mod:`voxgate.sessions.ledger`, exactly as ``RedisLedger`` has
them; time is counted in the same whole milliseconds so both expire a hold at the same instant.
"""

from __future__ import annotations

import heapq
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

from voxgate.errors import InvalidInput
from voxgate.sessions.ledger import (
    DEFAULT_RETENTION_S,
    DEFAULT_TTL_S,
    TOTALS_FIELDS,
    Balance,
    Clock,
    Reservation,
    ReservationState,
    SettleAction,
    SettleKind,
    Settlement,
    TopUp,
    Usage,
    check_amount,
    check_id,
    check_reserve,
    check_void,
    invalid_commit,
    op_id_conflict,
    quota_exceeded,
    to_ms,
    unknown_account,
    unknown_session,
)

HELD = ReservationState.HELD


@dataclass(slots=True)
class _Tally:
    """Mutable counters behind a ``Totals`` snapshot."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TOTALS_FIELDS, 0))

    def hold(self, amount: int) -> None:
        self.counts["reserved_total"] += amount
        self.counts["held"] += amount
        self.counts["reservations"] += 1
        self.counts["holds_open"] += 1

    def settle(self, amount: int, charged: int, kind: SettleKind) -> None:
        released = amount - charged
        self.counts["held"] -= amount
        self.counts["holds_open"] -= 1
        self.counts["committed"] += charged
        self.counts["refunded"] += released
        self.counts[kind] += 1
        if kind == "expiries":
            self.counts["expired"] += released

    def snapshot(self) -> dict[str, Any]:
        return dict(self.counts)


@dataclass(slots=True)
class _Hold:
    op_id: str
    account_id: str
    session_id: str
    amount: int
    expires_ms: int
    state: ReservationState = HELD
    charged: int = 0
    released: int = 0

    def reservation(self, *, created: bool) -> Reservation:
        return Reservation(
            op_id=self.op_id,
            account_id=self.account_id,
            session_id=self.session_id,
            amount=self.amount,
            expires_at=self.expires_ms / 1000,
            state=self.state,
            created=created,
        )

    def settlement(self, action: SettleAction, *, applied: bool) -> Settlement:
        return Settlement(
            op_id=self.op_id,
            action=action,
            state=self.state,
            applied=applied,
            charged=self.charged,
            released=self.released,
        )


@dataclass(slots=True)
class _Account:
    credited: int
    available: int
    tally: _Tally = field(default_factory=_Tally)
    credits: dict[str, int] = field(default_factory=dict)  # top-up op_id -> amount
    sessions: set[str] = field(default_factory=set)


@dataclass(slots=True)
class _Session:
    account_id: str
    last_active_ms: int
    tally: _Tally = field(default_factory=_Tally)
    holds: set[str] = field(default_factory=set)  # op_ids of its unsettled holds


_KIND_OF: dict[ReservationState, SettleKind] = {
    ReservationState.COMMITTED: "commits",
    ReservationState.REFUNDED: "refunds",
    ReservationState.EXPIRED: "expiries",
}


class MemoryLedger:
    """A ``Ledger`` inside this process, for one event loop.

    No method awaits anything, so each runs to completion on the loop: that is the atomicity.
    Settled reservations are remembered for ``retention_s`` (for idempotent retries), and
    sessions without holds are forgotten after that long without activity. ``clock`` returns
    seconds; inject one to drive expiry in tests.
    """

    def __init__(
        self, *, clock: Clock = time.time, retention_s: float = DEFAULT_RETENTION_S
    ) -> None:
        self._clock = clock
        self._retention_s = retention_s
        self._accounts: dict[str, _Account] = {}
        self._sessions: OrderedDict[str, _Session] = OrderedDict()  # least recently active first
        self._ops: dict[str, _Hold] = {}
        self._expiries: list[tuple[int, str]] = []  # heap; entries of settled holds go stale
        self._settled: deque[tuple[int, str]] = deque()  # (settled at, op_id), oldest first

    async def create_account(self, account_id: str, balance: int) -> Balance:
        check_id("account_id", account_id)
        check_amount("balance", balance, 0)
        if account_id in self._accounts:
            raise InvalidInput(f"account {account_id!r} already exists", code="account_exists")
        self._accounts[account_id] = _Account(credited=balance, available=balance)
        return self._balance(account_id)

    async def credit(self, account_id: str, amount: int, op_id: str) -> TopUp:
        check_id("account_id", account_id)
        check_id("op_id", op_id)
        check_amount("amount", amount, 1)
        self._sweep(self._now())
        account = self._account(account_id)
        previous = account.credits.get(op_id)
        if previous is not None and previous != amount:
            raise op_id_conflict(op_id, f"to credit {previous}")
        if previous is None:
            account.credits[op_id] = amount
            account.credited += amount
            account.available += amount
        balance = self._balance(account_id)
        return TopUp(op_id=op_id, amount=amount, applied=previous is None, balance=balance)

    async def balance(self, account_id: str) -> Balance:
        check_id("account_id", account_id)
        self._sweep(self._now())
        self._account(account_id)
        return self._balance(account_id)

    async def reserve(
        self,
        account_id: str,
        session_id: str,
        amount: int,
        op_id: str,
        ttl_s: float = DEFAULT_TTL_S,
    ) -> Reservation:
        check_reserve(account_id, session_id, amount, op_id, ttl_s, self._retention_s)
        now = self._now()
        self._sweep(now)
        account = self._account(account_id)
        existing = self._ops.get(op_id)
        if existing is not None:
            return _replay(existing, account_id, session_id, amount)
        session = self._sessions.get(session_id)
        if session is not None and session.account_id != account_id:
            raise InvalidInput(
                f"session {session_id!r} belongs to another account", code="session_conflict"
            )
        if account.available < amount:
            held = account.tally.counts["held"]
            raise quota_exceeded(account_id, amount, account.available, held)
        hold = _Hold(op_id, account_id, session_id, amount, now + max(1, to_ms(ttl_s)))
        self._ops[op_id] = hold
        heapq.heappush(self._expiries, (hold.expires_ms, op_id))
        account.available -= amount
        account.tally.hold(amount)
        account.sessions.add(session_id)
        session = self._active_session(session_id, account_id, now)
        session.tally.hold(amount)
        session.holds.add(op_id)
        return hold.reservation(created=True)

    async def commit(
        self, op_id: str, amount: int | None = None, *, account_id: str | None = None
    ) -> Settlement:
        check_id("op_id", op_id)
        if amount is not None:
            check_amount("amount", amount, 0)
        return self._settle(op_id, "commit", amount, account_id)

    async def refund(self, op_id: str, *, account_id: str | None = None) -> Settlement:
        check_id("op_id", op_id)
        return self._settle(op_id, "refund", None, account_id)

    async def void(
        self, op_id: str, *, account_id: str, session_id: str, amount: int
    ) -> Settlement:
        check_void(op_id, account_id, session_id, amount)
        if op_id in self._ops:
            return self._settle(op_id, "refund", None, account_id)
        now = self._now()
        tombstone = _Hold(op_id, account_id, session_id, amount, now, ReservationState.REFUNDED)
        self._ops[op_id] = tombstone
        self._settled.append((now, op_id))
        return tombstone.settlement("refund", applied=False)

    async def release_session(self, session_id: str, *, account_id: str) -> int:
        check_id("session_id", session_id)
        check_id("account_id", account_id)
        now = self._now()
        self._sweep(now)
        self._account(account_id)
        session = self._sessions.get(session_id)
        if session is None or session.account_id != account_id:
            return 0
        released = 0
        for op_id in sorted(session.holds):
            hold = self._ops[op_id]
            self._finish(hold, 0, ReservationState.REFUNDED, now)
            released += hold.released
        return released

    async def session_usage(self, session_id: str, *, account_id: str | None = None) -> Usage:
        check_id("session_id", session_id)
        self._sweep(self._now())
        session = self._sessions.get(session_id)
        if session is None or account_id not in (None, session.account_id):
            raise unknown_session(session_id)
        counts = session.tally.snapshot()
        return Usage(session_id=session_id, account_id=session.account_id, **counts)

    async def reclaim_expired(self, now: float | None = None) -> int:
        return self._sweep(self._now() if now is None else to_ms(now))

    async def accounts(self) -> list[str]:
        return sorted(self._accounts)

    async def account_sessions(self, account_id: str) -> list[str]:
        self._sweep(self._now())
        return sorted(self._account(account_id).sessions)

    def _now(self) -> int:
        return to_ms(self._clock())

    def _account(self, account_id: str) -> _Account:
        account = self._accounts.get(account_id)
        if account is None:
            raise unknown_account(account_id)
        return account

    def _balance(self, account_id: str) -> Balance:
        account = self._accounts[account_id]
        counts = account.tally.snapshot()
        return Balance(
            account_id=account_id, credited=account.credited, available=account.available, **counts
        )

    def _active_session(self, session_id: str, account_id: str, now: int) -> _Session:
        session = self._sessions.setdefault(session_id, _Session(account_id, now))
        session.last_active_ms = now
        self._sessions.move_to_end(session_id)
        return session

    def _settle(
        self, op_id: str, action: SettleAction, amount: int | None, account_id: str | None
    ) -> Settlement:
        if account_id is not None:
            check_id("account_id", account_id)
        now = self._now()
        self._sweep(now)
        hold = self._ops.get(op_id)
        if hold is None or account_id not in (None, hold.account_id):
            unknown = ReservationState.UNKNOWN
            return Settlement(
                op_id=op_id, action=action, state=unknown, applied=False, charged=0, released=0
            )
        if hold.state is not HELD:
            return hold.settlement(action, applied=False)
        if action == "refund":
            self._finish(hold, 0, ReservationState.REFUNDED, now)
        else:
            charged = hold.amount if amount is None else amount
            if charged > hold.amount:
                raise invalid_commit(op_id, charged, hold.amount)
            self._finish(hold, charged, ReservationState.COMMITTED, now)
        return hold.settlement(action, applied=True)

    def _finish(self, hold: _Hold, charged: int, state: ReservationState, now: int) -> None:
        kind = _KIND_OF[state]
        hold.state, hold.charged, hold.released = state, charged, hold.amount - charged
        account = self._accounts[hold.account_id]
        account.available += hold.released
        account.tally.settle(hold.amount, charged, kind)
        session = self._active_session(hold.session_id, hold.account_id, now)
        session.tally.settle(hold.amount, charged, kind)
        session.holds.discard(hold.op_id)
        self._settled.append((now, hold.op_id))

    def _sweep(self, now: int) -> int:
        """Expire due holds, then forget what the retention period lets go; how many expired."""
        expired = 0
        while self._expiries and self._expiries[0][0] <= now:
            _, op_id = heapq.heappop(self._expiries)
            hold = self._ops.get(op_id)
            if hold is not None and hold.state is HELD and hold.expires_ms <= now:
                self._finish(hold, 0, ReservationState.EXPIRED, now)
                expired += 1
        horizon = now - to_ms(self._retention_s)
        while self._settled and self._settled[0][0] <= horizon:
            _, op_id = self._settled.popleft()
            hold = self._ops.get(op_id)
            if hold is not None and hold.state is not HELD:
                del self._ops[op_id]
        # A hold expires at most ttl_s <= retention after its session's last activity, and due
        # holds were just expired: a session idle for the whole retention has no open hold.
        while self._sessions:
            session_id, session = next(iter(self._sessions.items()))
            if session.last_active_ms > horizon or session.tally.counts["holds_open"]:
                break
            del self._sessions[session_id]
            self._accounts[session.account_id].sessions.discard(session_id)
        return expired


def _replay(hold: _Hold, account_id: str, session_id: str, amount: int) -> Reservation:
    if (hold.account_id, hold.session_id, hold.amount) != (account_id, session_id, amount):
        detail = f"for {hold.amount} credits of session {hold.session_id!r}"
        raise op_id_conflict(hold.op_id, f"{detail} of account {hold.account_id!r}")
    return hold.reservation(created=False)
