"""The settlement queue: in order per account, retried through an outage, never waited on."""

from __future__ import annotations

import asyncio
from typing import Any

from voxgate.errors import StoreUnavailable
from voxgate.sessions.ledger import audit
from voxgate.sessions.ledger_memory import MemoryLedger
from voxgate.sessions.settlements import SettlementOrder, Settlements


class FlakyLedger(MemoryLedger):
    """A memory ledger whose settlements fail while ``down`` is set, and which logs them."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.applied: list[str] = []

    async def commit(self, op_id: str, amount: int | None = None, **kw: Any) -> Any:
        self._check()
        self.applied.append(op_id)
        return await super().commit(op_id, amount, **kw)

    async def refund(self, op_id: str, **kw: Any) -> Any:
        self._check()
        self.applied.append(op_id)
        return await super().refund(op_id, **kw)

    def _check(self) -> None:
        if self.down:
            raise StoreUnavailable("down")


async def test_settlements_wait_out_an_outage_in_order_and_say_what_is_pending() -> None:
    ledger = FlakyLedger()
    await ledger.create_account("acme", 1000)
    for i in range(6):
        await ledger.reserve("acme", "s1", 10, f"op{i}")
    queue = Settlements(ledger, base_delay_s=0.01, max_delay_s=0.05)
    ledger.down = True
    for i in range(6):
        action = "commit" if i % 2 == 0 else "refund"
        queue.submit(SettlementOrder(f"op{i}", "acme", "s1", action, 10, 10 if i % 2 == 0 else 0))
    await asyncio.sleep(0.2)
    assert queue.pending("s1") == 60
    assert queue.stats().retries > 0
    assert not ledger.applied
    ledger.down = False
    assert await queue.flushed(timeout_s=2)
    assert ledger.applied == [f"op{i}" for i in range(6)]
    assert queue.pending("s1") == 0
    balance = await ledger.balance("acme")
    assert (balance.committed, balance.refunded, balance.held) == (30, 30, 0)
    assert await audit(ledger) == []


async def test_a_void_of_a_reserve_that_never_happened_holds_nothing_later() -> None:
    ledger = MemoryLedger()
    await ledger.create_account("acme", 100)
    queue = Settlements(ledger)
    queue.submit(SettlementOrder("lost", "acme", "s1", "void", 40))
    assert await queue.flushed(timeout_s=1)
    late = await ledger.reserve("acme", "s1", 40, "lost")
    assert not late.created
    assert (await ledger.balance("acme")).held == 0
