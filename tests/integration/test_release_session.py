"""``Ledger.release_session``: a dead node's session gives back all its holds at once.

Run against both stores (Redis: one server and a cluster); every test ends with the ledger's
audit.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.conftest import store_url_for
from tests.integration.test_ledger import (
    FakeClock,
    assert_consistent,
    close,
    make_ledger,
    raises_code,
)
from voxgate.sessions.ledger import Ledger, ReservationState

COMMITTED, REFUNDED, EXPIRED = (
    ReservationState.COMMITTED,
    ReservationState.REFUNDED,
    ReservationState.EXPIRED,
)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["memory", "redis", "cluster"])
async def ledger(request: pytest.FixtureRequest, clock: FakeClock) -> AsyncIterator[Ledger]:
    """A ledger on the fake clock, with account "acme" holding 100 credits."""
    store = str(request.param)
    ledger = make_ledger(store, store_url_for(request, store), clock=clock)
    await ledger.create_account("acme", 100)
    yield ledger
    await assert_consistent(ledger)
    await close(ledger)


async def test_release_refunds_every_unsettled_hold_of_the_session(ledger: Ledger) -> None:
    for op, amount in (("a", 10), ("b", 20), ("c", 30)):
        await ledger.reserve("acme", "s1", amount, op)
    await ledger.reserve("acme", "s2", 7, "d")
    assert await ledger.release_session("s1", account_id="acme") == 60
    usage = await ledger.session_usage("s1", account_id="acme")
    assert (usage.held, usage.holds_open, usage.refunded, usage.refunds) == (0, 0, 60, 3)
    balance = await ledger.balance("acme")
    assert (balance.available, balance.held, balance.refunds) == (93, 7, 3)
    assert (await ledger.session_usage("s2", account_id="acme")).held == 7


async def test_release_is_idempotent(ledger: Ledger) -> None:
    await ledger.reserve("acme", "s1", 25, "a")
    assert await ledger.release_session("s1", account_id="acme") == 25
    assert await ledger.release_session("s1", account_id="acme") == 0
    balance = await ledger.balance("acme")
    assert (balance.available, balance.refunded, balance.refunds) == (100, 25, 1)


async def test_release_leaves_settled_holds_alone(ledger: Ledger) -> None:
    await ledger.reserve("acme", "s1", 30, "a")
    await ledger.reserve("acme", "s1", 20, "b")
    await ledger.reserve("acme", "s1", 10, "c")
    await ledger.commit("a", 25)
    await ledger.refund("b")
    assert await ledger.release_session("s1", account_id="acme") == 10
    usage = await ledger.session_usage("s1", account_id="acme")
    assert (usage.committed, usage.refunded, usage.commits, usage.refunds) == (25, 35, 1, 2)
    again = await ledger.commit("a")
    assert (again.state, again.charged, again.applied) == (COMMITTED, 25, False)


async def test_commit_after_release_is_refused(ledger: Ledger) -> None:
    await ledger.reserve("acme", "s1", 30, "a")
    await ledger.release_session("s1", account_id="acme")
    late = await ledger.commit("a", account_id="acme")
    assert (late.state, late.applied, late.ok, late.charged) == (REFUNDED, False, False, 0)
    refund = await ledger.refund("a", account_id="acme")
    assert (refund.applied, refund.ok, refund.released) == (False, True, 30)
    assert (await ledger.balance("acme")).committed == 0


async def test_commits_racing_a_release_settle_each_hold_once(ledger: Ledger) -> None:
    ops = [f"op{i}" for i in range(20)]
    await asyncio.gather(*(ledger.reserve("acme", "s1", 5, op) for op in ops))
    outcomes = await asyncio.gather(
        *(ledger.commit(op, account_id="acme") for op in ops[::2]),
        ledger.release_session("s1", account_id="acme"),
        *(ledger.commit(op, account_id="acme") for op in ops[1::2]),
    )
    released = outcomes[10]
    assert isinstance(released, int)
    commits = [o for o in outcomes if not isinstance(o, int)]
    charged = sum(c.charged for c in commits if c.applied)
    assert all(c.state in (COMMITTED, REFUNDED) for c in commits)
    assert charged + released == 100
    balance = await ledger.balance("acme")
    assert (balance.committed, balance.refunded, balance.held) == (charged, released, 0)


async def test_an_expired_hold_stays_an_expiry(ledger: Ledger, clock: FakeClock) -> None:
    await ledger.reserve("acme", "s1", 30, "a", ttl_s=1)
    await ledger.reserve("acme", "s1", 20, "b", ttl_s=60)
    clock.advance(2)
    assert await ledger.release_session("s1", account_id="acme") == 20
    usage = await ledger.session_usage("s1", account_id="acme")
    assert (usage.expiries, usage.expired, usage.refunds) == (1, 30, 1)
    assert (await ledger.commit("a", account_id="acme")).state is EXPIRED


async def test_release_of_a_session_without_holds_is_zero(ledger: Ledger) -> None:
    assert await ledger.release_session("never", account_id="acme") == 0
    await ledger.create_account("globex", 50)
    await ledger.reserve("globex", "g1", 10, "a")
    assert await ledger.release_session("g1", account_id="acme") == 0
    assert (await ledger.balance("globex")).held == 10
    await raises_code("unknown_account", ledger.release_session("s1", account_id="nobody"))
    await raises_code("invalid_input", ledger.release_session("a b", account_id="acme"))
