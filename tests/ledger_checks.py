"""The ledger invariant every fault test ends with, checked on the gateway's own ledger."""

from __future__ import annotations

from voxgate.gateway.services import Services
from voxgate.sessions.ledger import audit


async def account_of(services: Services, api_key: str) -> str:
    return (await services.keys.authenticate(api_key)).account_id


async def assert_ledger_exact(services: Services, charged: dict[str, int]) -> None:
    """Settlements caught up within 5 s; per account: nothing held, and what was committed
    is what the sessions reported (``charged``: account -> the sum of their usage).

    credited − available = committed + held holds for every account, and the audit finds
    every counter consistent.
    """
    assert await services.settlements.flushed(timeout_s=5.0), services.settlements.stats()
    ledger = services.ledger
    assert await audit(ledger) == []
    for account_id, reported in charged.items():
        balance = await ledger.balance(account_id)
        assert balance.credited - balance.available == balance.committed + balance.held
        assert balance.held == 0, f"{balance.held} credits left held"
        assert balance.committed == reported
