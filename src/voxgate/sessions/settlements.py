"""Settlements the gateway owes the ledger, kept until the store has acknowledged them.

A session decides what each chunk costs (what its listener was given); the store must learn
it whatever the store is doing at that moment. ``Settlements.submit`` never waits on the
store: it queues the commit, refund or void behind the others of its account and returns,
so a turn goes on (and ends, with what was delivered) through a Redis restart.

One task per account with settlements queued sends them, in order. When the store cannot be
reached (``StoreUnavailable``), the settlement stays at the head of its queue and is sent
again after a backoff (full jitter, doubling from ``base_delay_s`` to ``max_delay_s``), with
the same op_id: the ledger's scripts are idempotent, so sending again a settlement whose
reply was lost changes nothing. Other errors are bugs: logged, counted and dropped (the hold
then comes back by its TTL).

A commit that finds its hold gone (``EXPIRED``: the store was away longer than the hold's
TTL; ``UNKNOWN``: the store lost the reserve, e.g. Redis without ``appendfsync always``)
charges nothing; it is logged and counted as ``lost``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter, deque
from dataclasses import dataclass
from typing import Literal

from voxgate.errors import StoreUnavailable
from voxgate.sessions.ledger import Ledger, ReservationState, Settlement

log = logging.getLogger(__name__)

Action = Literal["commit", "refund", "void"]


@dataclass(frozen=True, slots=True)
class SettlementOrder:
    """What one chunk's reservation must become: ``charge`` credits of ``held`` committed."""

    op_id: str
    account_id: str
    session_id: str
    action: Action
    held: int
    charge: int = 0


@dataclass(frozen=True, slots=True)
class SettlementStats:
    pending: int  # settlements queued now
    pending_credits: int  # the credits they settle (held in the store until then)
    retries: int  # sends that found the store unavailable, since the process started
    lost: int  # commits that found their hold gone
    failed: int  # settlements dropped on an unexpected error


class Settlements:
    def __init__(
        self, ledger: Ledger, *, base_delay_s: float = 0.05, max_delay_s: float = 1.0
    ) -> None:
        self._ledger = ledger
        self._base_delay_s = base_delay_s
        self._max_delay_s = max_delay_s
        self._queues: dict[str, deque[SettlementOrder]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._pending: Counter[str] = Counter()  # session_id -> credits queued
        self._changed = asyncio.Event()
        self._retries = self._lost = self._failed = 0

    def submit(self, order: SettlementOrder) -> None:
        """Queue a settlement; it reaches the store as soon as the store can take it."""
        queue = self._queues.setdefault(order.account_id, deque())
        queue.append(order)
        self._pending[order.session_id] += order.held
        if order.account_id not in self._workers:
            self._workers[order.account_id] = asyncio.get_running_loop().create_task(
                self._send(order.account_id), name=f"settle-{order.account_id}"
            )

    def pending(self, session_id: str) -> int:
        """Credits of this session whose settlement the store has not acknowledged yet."""
        return self._pending.get(session_id, 0)

    def stats(self) -> SettlementStats:
        orders = [o for q in self._queues.values() for o in q]
        return SettlementStats(
            pending=len(orders),
            pending_credits=sum(o.held for o in orders),
            retries=self._retries,
            lost=self._lost,
            failed=self._failed,
        )

    async def flushed(self, session_id: str | None = None, timeout_s: float | None = None) -> bool:
        """Until nothing (of ``session_id``) is queued; False if ``timeout_s`` passed first."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while self.pending(session_id) if session_id is not None else self._queues:
            self._changed.clear()
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            try:
                async with asyncio.timeout(left):
                    await self._changed.wait()
            except TimeoutError:
                return False
        return True

    async def aclose(self, timeout_s: float) -> None:
        """Give the queue ``timeout_s`` to reach the store; log what is left (it expires)."""
        if not await self.flushed(timeout_s=timeout_s):
            stats = self.stats()
            log.error(
                "%d settlements (%d credits) never reached the store; their holds expire",
                stats.pending,
                stats.pending_credits,
            )
        for worker in self._workers.values():
            worker.cancel()
        await asyncio.gather(*self._workers.values(), return_exceptions=True)

    async def _send(self, account_id: str) -> None:
        queue = self._queues[account_id]
        failures = 0
        try:
            while queue:
                order = queue[0]
                try:
                    self._check(order, await self._apply(order))
                except StoreUnavailable:
                    failures += 1
                    self._retries += 1
                    await asyncio.sleep(self._delay(failures))
                    continue
                except Exception:
                    self._failed += 1
                    log.exception("settlement %s of %s failed; dropped", order.action, order.op_id)
                failures = 0
                queue.popleft()
                self._pending[order.session_id] -= order.held
                if self._pending[order.session_id] <= 0:
                    del self._pending[order.session_id]
                self._changed.set()
        finally:
            if not queue:
                self._queues.pop(account_id, None)
            self._workers.pop(account_id, None)
            self._changed.set()

    async def _apply(self, order: SettlementOrder) -> Settlement:
        ledger, op_id, account = self._ledger, order.op_id, order.account_id
        if order.action == "commit":
            return await ledger.commit(op_id, order.charge, account_id=account)
        if order.action == "refund":
            return await ledger.refund(op_id, account_id=account)
        return await ledger.void(
            op_id, account_id=account, session_id=order.session_id, amount=order.held
        )

    def _check(self, order: SettlementOrder, settlement: Settlement) -> None:
        if order.action == "commit" and not settlement.ok:
            self._lost += 1
            log.error(
                "commit of %d credits for %s found the hold %s: nothing was charged",
                order.charge,
                order.op_id,
                settlement.state,
            )
        elif settlement.state is ReservationState.UNKNOWN and order.action == "refund":
            log.warning("refund of %s: the store has no such hold", order.op_id)

    def _delay(self, failures: int) -> float:
        return random.uniform(0, min(self._max_delay_s, self._base_delay_s * 2**failures))
