"""The credit ledger contract, run against both stores: in-process, and in Redis (a real
redis-server, and a real three-master Redis Cluster).

Every test ends with an audit of every account and session: the counters obey their
invariants, and an account's counters are the sum of its sessions'.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import store_url_for
from voxgate.errors import InvalidInput, QuotaExceeded
from voxgate.sessions.ledger import TOTALS_FIELDS, Ledger, ReservationState, audit
from voxgate.sessions.ledger_memory import MemoryLedger
from voxgate.sessions.ledger_redis import RedisLedger
from voxgate.store import redis_client

HELD, COMMITTED = ReservationState.HELD, ReservationState.COMMITTED
REFUNDED, EXPIRED = ReservationState.REFUNDED, ReservationState.EXPIRED
T0 = 1_700_000_000.0


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


async def assert_consistent(ledger: Ledger) -> None:
    assert await audit(ledger) == []
    for account_id in await ledger.accounts():
        balance = await ledger.balance(account_id)
        sessions = [
            await ledger.session_usage(s, account_id=account_id)
            for s in await ledger.account_sessions(account_id)
        ]
        for name in TOTALS_FIELDS:
            assert getattr(balance, name) == sum(getattr(u, name) for u in sessions), name


def make_ledger(store: str, redis_url: str, **options: Any) -> Ledger:
    if store == "memory":
        return MemoryLedger(**options)
    return RedisLedger.from_url(redis_url, **options)


async def close(ledger: Ledger) -> None:
    if isinstance(ledger, RedisLedger):
        await ledger.aclose()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["memory", "redis", "cluster"])
def store(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store_url(store: str, request: pytest.FixtureRequest) -> str:
    return store_url_for(request, store)


@pytest.fixture
async def ledger(store: str, store_url: str, clock: FakeClock) -> AsyncIterator[Ledger]:
    """A ledger on the fake clock, with account "acme" holding 100 credits."""
    ledger = make_ledger(store, store_url, clock=clock)
    await ledger.create_account("acme", 100)
    yield ledger
    await assert_consistent(ledger)
    await close(ledger)


async def raises_code(code: str, call: Awaitable[Any]) -> None:
    with pytest.raises(InvalidInput) as caught:
        await call
    assert caught.value.code == code


async def test_new_account_has_its_balance_available(ledger: Ledger) -> None:
    b = await ledger.balance("acme")
    assert (b.credited, b.available, b.held, b.committed) == (100, 100, 0, 0)
    assert await ledger.accounts() == ["acme"]
    await raises_code("account_exists", ledger.create_account("acme", 5))


async def test_credit_is_applied_once_per_op_id(ledger: Ledger) -> None:
    first = await ledger.credit("acme", 50, "topup-1")
    again = await ledger.credit("acme", 50, "topup-1")
    assert (first.applied, again.applied) == (True, False)
    assert again.balance.available == again.balance.credited == 150
    await raises_code("op_id_conflict", ledger.credit("acme", 60, "topup-1"))


async def test_unknown_account_is_a_typed_error(ledger: Ledger) -> None:
    await raises_code("unknown_account", ledger.balance("nobody"))
    await raises_code("unknown_account", ledger.credit("nobody", 5, "t"))
    await raises_code("unknown_account", ledger.reserve("nobody", "s1", 5, "op1"))


async def test_reserve_holds_credits(ledger: Ledger, clock: FakeClock) -> None:
    hold = await ledger.reserve("acme", "s1", 30, "op1", ttl_s=10)
    assert (hold.op_id, hold.account_id, hold.session_id, hold.amount) == ("op1", "acme", "s1", 30)
    assert (hold.state, hold.created, hold.expires_at) == (HELD, True, T0 + 10)
    balance = await ledger.balance("acme")
    assert (balance.available, balance.held, balance.reserved_total) == (70, 30, 30)


async def test_insufficient_credit_raises_with_needed_and_available(ledger: Ledger) -> None:
    await ledger.reserve("acme", "s1", 60, "op1")
    with pytest.raises(QuotaExceeded) as caught:
        await ledger.reserve("acme", "s1", 41, "op2")
    error = caught.value
    assert (error.needed, error.available, error.code) == (41, 40, "insufficient_credits")
    assert "needs 41 credits" in error.message
    assert "40 available" in error.message
    balance = await ledger.balance("acme")
    assert (balance.available, balance.held, balance.reservations) == (40, 60, 1)
    await ledger.reserve("acme", "s1", 40, "op3")  # exactly the rest is fine: balance hits 0
    with pytest.raises(QuotaExceeded) as caught:
        await ledger.reserve("acme", "s1", 1, "op4")
    assert caught.value.available == 0


async def test_reserve_is_idempotent_by_op_id(ledger: Ledger) -> None:
    first = await ledger.reserve("acme", "s1", 30, "op1")
    again = await ledger.reserve("acme", "s1", 30, "op1")
    assert (again.created, again.state, again.expires_at) == (False, HELD, first.expires_at)
    assert (await ledger.balance("acme")).held == 30
    await raises_code("op_id_conflict", ledger.reserve("acme", "s1", 31, "op1"))
    await raises_code("op_id_conflict", ledger.reserve("acme", "s2", 30, "op1"))


async def test_ids_cannot_cross_accounts(ledger: Ledger) -> None:
    await ledger.create_account("globex", 100)
    await ledger.reserve("acme", "s1", 30, "op1")
    await raises_code("op_id_conflict", ledger.reserve("globex", "s9", 30, "op1"))
    await raises_code("session_conflict", ledger.reserve("globex", "s1", 30, "op2"))
    assert (await ledger.balance("globex")).available == 100
    assert (await ledger.commit("op1")).state is COMMITTED
    assert (await ledger.balance("acme")).committed == 30


async def test_commit_charges_the_hold(ledger: Ledger) -> None:
    await ledger.reserve("acme", "s1", 30, "op1")
    done = await ledger.commit("op1")
    assert (done.state, done.applied, done.ok) == (COMMITTED, True, True)
    assert (done.charged, done.released) == (30, 0)
    balance = await ledger.balance("acme")
    assert (balance.available, balance.held, balance.committed, balance.commits) == (70, 0, 30, 1)


async def test_partial_commit_releases_the_rest(ledger: Ledger) -> None:
    await ledger.reserve("acme", "s1", 30, "op1")
    done = await ledger.commit("op1", 12)
    assert (done.charged, done.released, done.ok) == (12, 18, True)
    balance = await ledger.balance("acme")
    assert (balance.available, balance.committed, balance.refunded) == (88, 12, 18)
    await ledger.reserve("acme", "s1", 5, "op2")
    assert (await ledger.commit("op2", 0)).charged == 0


async def test_commit_cannot_charge_more_than_held(ledger: Ledger) -> None:
    await ledger.reserve("acme", "s1", 30, "op1")
    await raises_code("invalid_amount", ledger.commit("op1", 31))
    await raises_code("invalid_input", ledger.commit("op1", -1))
    assert (await ledger.commit("op1")).charged == 30


async def test_settling_twice_is_a_no_op(ledger: Ledger) -> None:
    await ledger.reserve("acme", "s1", 30, "op1")
    await ledger.reserve("acme", "s1", 20, "op2")
    await ledger.commit("op1", 25)
    await ledger.refund("op2")
    again = await ledger.commit("op1")
    assert (again.applied, again.ok, again.charged, again.released) == (False, True, 25, 5)
    again = await ledger.refund("op2")
    assert (again.applied, again.ok, again.state) == (False, True, REFUNDED)
    balance = await ledger.balance("acme")
    assert (balance.available, balance.committed, balance.refunded) == (75, 25, 25)


async def test_commit_after_refund_and_refund_after_commit_are_refused(ledger: Ledger) -> None:
    await ledger.reserve("acme", "s1", 30, "op1")
    await ledger.reserve("acme", "s1", 20, "op2")
    await ledger.refund("op1")
    late = await ledger.commit("op1")
    assert (late.state, late.applied, late.ok, late.charged) == (REFUNDED, False, False, 0)
    await ledger.commit("op2")
    late = await ledger.refund("op2")
    assert (late.state, late.applied, late.ok, late.released) == (COMMITTED, False, False, 0)
    balance = await ledger.balance("acme")
    assert (balance.available, balance.committed, balance.refunded) == (80, 20, 30)


async def test_settling_with_an_account_looks_only_there(ledger: Ledger) -> None:
    await ledger.create_account("globex", 10)
    await ledger.reserve("acme", "s1", 30, "op1")
    wrong = await ledger.refund("op1", account_id="globex")
    assert (wrong.state, wrong.applied) == (ReservationState.UNKNOWN, False)
    assert (await ledger.commit("op1", 20, account_id="acme")).charged == 20


async def test_settling_an_unknown_op_says_so(ledger: Ledger) -> None:
    for settle in (ledger.commit("never"), ledger.refund("never")):
        outcome = await settle
        assert outcome.state is ReservationState.UNKNOWN
        assert (outcome.applied, outcome.ok) == (False, False)


async def test_void_refunds_a_reserve_that_did_happen(ledger: Ledger) -> None:
    await ledger.reserve("acme", "s1", 30, "op1")
    voided = await ledger.void("op1", account_id="acme", session_id="s1", amount=30)
    assert (voided.state, voided.applied, voided.released) == (REFUNDED, True, 30)
    balance = await ledger.balance("acme")
    assert (balance.available, balance.held, balance.refunded) == (100, 0, 30)


async def test_void_before_a_late_reserve_keeps_it_from_holding(ledger: Ledger) -> None:
    # The reserve's reply was lost and it runs only after the gateway voided it.
    voided = await ledger.void("op1", account_id="acme", session_id="s1", amount=30)
    assert (voided.state, voided.applied, voided.charged) == (REFUNDED, False, 0)
    late = await ledger.reserve("acme", "s1", 30, "op1")
    assert (late.state, late.created) == (REFUNDED, False)
    balance = await ledger.balance("acme")
    assert (balance.available, balance.held, balance.reservations) == (100, 0, 0)


async def test_void_of_a_committed_hold_changes_nothing(ledger: Ledger) -> None:
    await ledger.reserve("acme", "s1", 30, "op1")
    await ledger.commit("op1", 20)
    voided = await ledger.void("op1", account_id="acme", session_id="s1", amount=30)
    assert (voided.state, voided.applied, voided.charged) == (COMMITTED, False, 20)
    assert (await ledger.balance("acme")).committed == 20


async def test_commit_and_refund_racing_apply_exactly_one(ledger: Ledger) -> None:
    ops = [f"op{i}" for i in range(20)]
    await asyncio.gather(*(ledger.reserve("acme", "s1", 5, op) for op in ops))
    outcomes = await asyncio.gather(
        *(s for op in ops for s in (ledger.commit(op), ledger.refund(op)))
    )
    for commit, refund in zip(outcomes[::2], outcomes[1::2], strict=True):
        assert commit.applied != refund.applied
        assert commit.state is refund.state
    balance = await ledger.balance("acme")
    assert (balance.committed + balance.refunded, balance.held) == (100, 0)


async def test_unsettled_hold_expires_and_comes_back(ledger: Ledger, clock: FakeClock) -> None:
    await ledger.reserve("acme", "s1", 30, "op1", ttl_s=0.2)
    clock.advance(0.199)
    assert (await ledger.balance("acme")).held == 30
    clock.advance(0.001)  # expiry is inclusive: at expires_at the hold is gone
    balance = await ledger.balance("acme")
    assert (balance.available, balance.held, balance.expired, balance.refunded) == (100, 0, 30, 30)
    late = await ledger.commit("op1")
    assert (late.state, late.applied, late.ok, late.charged) == (EXPIRED, False, False, 0)
    refund = await ledger.refund("op1")
    assert (refund.applied, refund.ok) == (False, True)
    replay = await ledger.reserve("acme", "s1", 30, "op1", ttl_s=0.2)
    assert (replay.state, replay.created) == (EXPIRED, False)
    assert (await ledger.balance("acme")).committed == 0


async def test_late_commit_of_an_unswept_hold_does_not_charge(
    ledger: Ledger, clock: FakeClock
) -> None:
    await ledger.reserve("acme", "s1", 30, "op1", ttl_s=1)
    clock.advance(5)  # nothing touched the account since: the commit itself must notice
    assert (await ledger.commit("op1")).state is EXPIRED
    assert (await ledger.session_usage("s1")).expiries == 1


async def test_reclaim_expired_sweeps_every_account(ledger: Ledger, clock: FakeClock) -> None:
    await ledger.create_account("globex", 10)
    await ledger.reserve("acme", "s1", 30, "op1", ttl_s=1)
    await ledger.reserve("acme", "s1", 30, "op2", ttl_s=5)
    await ledger.reserve("globex", "s2", 10, "op3", ttl_s=1)
    assert await ledger.reclaim_expired(now=T0 + 0.5) == 0
    assert await ledger.reclaim_expired(now=T0 + 1) == 2
    clock.advance(5)
    assert await ledger.reclaim_expired() == 1
    assert await ledger.reclaim_expired() == 0


async def test_session_usage_counts_what_happened(ledger: Ledger, clock: FakeClock) -> None:
    for op, amount in (("a", 10), ("b", 20), ("c", 30), ("d", 5)):
        await ledger.reserve("acme", "s1", amount, op, ttl_s=1)
    await ledger.reserve("acme", "s2", 7, "e")
    await ledger.commit("a")
    await ledger.commit("b", 15)
    await ledger.refund("c")
    clock.advance(1)
    usage = await ledger.session_usage("s1")
    assert (usage.session_id, usage.account_id) == ("s1", "acme")
    assert (usage.reserved_total, usage.committed, usage.refunded, usage.expired) == (65, 25, 40, 5)
    assert (usage.reservations, usage.commits, usage.refunds, usage.expiries) == (4, 2, 1, 1)
    assert (usage.held, usage.holds_open) == (0, 0)
    assert (await ledger.session_usage("s2")).held == 7
    assert await ledger.account_sessions("acme") == ["s1", "s2"]
    await raises_code("unknown_session", ledger.session_usage("s3"))
    await raises_code("unknown_session", ledger.session_usage("s1", account_id="globex"))


@pytest.mark.parametrize(
    ("amount", "op_id", "ttl_s"),
    [(0, "op", 1.0), (-3, "op", 1.0), (True, "op", 1.0), (2.5, "op", 1.0), (5, "", 1.0),
     (5, "a{b}", 1.0), (5, "a b", 1.0), (5, "op", 0.0), (5, "op", -1.0), (5, "op", 1e9)],
)  # fmt: skip
async def test_bad_reserve_arguments_are_invalid_input(
    ledger: Ledger, amount: Any, op_id: str, ttl_s: float
) -> None:
    await raises_code("invalid_input", ledger.reserve("acme", "s1", amount, op_id, ttl_s))
    assert (await ledger.balance("acme")).reservations == 0


async def test_1000_concurrent_reserves_never_overdraw(ledger: Ledger) -> None:
    await ledger.create_account("rush", 100)
    results = await asyncio.gather(
        *(ledger.reserve("rush", f"s{i % 10}", 1, f"op{i}") for i in range(1000)),
        return_exceptions=True,
    )
    assert sum(not isinstance(r, BaseException) for r in results) == 100
    assert sum(isinstance(r, QuotaExceeded) for r in results) == 900
    balance = await ledger.balance("rush")
    assert (balance.available, balance.held, balance.reservations) == (0, 100, 100)


async def test_holds_of_a_crashed_process_return_on_the_real_clock(
    store: str, store_url: str
) -> None:
    ledger = make_ledger(store, store_url)  # Redis: the server's TIME decides expiry
    await ledger.create_account("acme", 100)
    await ledger.reserve("acme", "s1", 60, "op1", ttl_s=0.2)
    assert (await ledger.balance("acme")).available == 40
    await asyncio.sleep(0.35)
    balance = await ledger.balance("acme")
    assert (balance.available, balance.expired) == (100, 60)
    await assert_consistent(ledger)
    await close(ledger)


# ---- Redis specifics: key layout, other workers, a server that forgot its scripts


async def test_redis_keys_are_prefixed_and_hash_tagged(
    shared_redis_url: str, clock: FakeClock
) -> None:
    ledger = RedisLedger.from_url(shared_redis_url, prefix="vg-test:", clock=clock)
    await ledger.create_account("acme", 100)
    await ledger.reserve("acme", "s1", 10, "op1")
    await ledger.sync_indexes()
    client = redis_client(shared_redis_url, max_connections=4)
    keys = [k async for k in client.scan_iter()]
    assert keys
    assert all(k.startswith("vg-test:ledger:") for k in keys)
    tagged = [k for k in keys if "{" in k]
    assert tagged
    assert all("{acme}" in k for k in tagged)
    assert {k for k in keys if "{" not in k} == {
        "vg-test:ledger:accounts",
        "vg-test:ledger:session-account:s1",
    }
    await client.aclose()
    await ledger.aclose()


async def test_redis_workers_share_holds_and_survive_script_flush(
    shared_redis_url: str, clock: FakeClock
) -> None:
    worker_a = RedisLedger.from_url(shared_redis_url, clock=clock)
    worker_b = RedisLedger.from_url(shared_redis_url, clock=clock)
    await worker_a.create_account("acme", 100)
    await worker_a.reserve("acme", "s1", 10, "op1")
    client = redis_client(shared_redis_url, max_connections=4)
    await client.script_flush()  # as after a server restart (on a cluster: every master)
    await client.aclose()
    await worker_a.reserve("acme", "s1", 20, "op2")
    assert (await worker_b.commit("op1")).state is ReservationState.UNKNOWN  # b never saw op1
    assert (await worker_b.commit("op1", account_id="acme")).applied
    await worker_a.sync_indexes()  # the session -> account index is written after the reserve
    assert (await worker_b.session_usage("s1")).held == 20
    assert not (await worker_a.commit("op1")).applied
    await assert_consistent(worker_b)
    await worker_a.aclose()
    await worker_b.aclose()


async def test_redis_logs_a_session_reused_across_workers(
    shared_redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    worker_a, worker_b = (
        RedisLedger.from_url(shared_redis_url),
        RedisLedger.from_url(shared_redis_url),
    )
    await worker_a.create_account("acme", 100)
    await worker_a.create_account("globex", 100)
    await worker_a.reserve("acme", "s1", 10, "op1")
    await worker_a.sync_indexes()
    await worker_b.reserve("globex", "s1", 10, "op2")  # b cannot see a's use in globex's slot
    await worker_b.sync_indexes()
    assert "session 's1' used by 'acme' and by 'globex'" in caplog.text
    assert (await worker_b.session_usage("s1")).account_id == "globex"
    assert (await worker_b.session_usage("s1", account_id="acme")).held == 10
    await worker_a.aclose()
    await worker_b.aclose()


# ---- random sequences: invariants hold, and both stores answer alike

ACCOUNTS = ("acme", "globex")
step = st.one_of(
    st.tuples(st.just("reserve"), st.integers(0, 1), st.integers(0, 2), st.integers(1, 40),
              st.sampled_from([0.3, 1.0, 3.0])),
    st.tuples(st.just("commit"), st.integers(0, 30), st.none() | st.integers(0, 45)),
    st.tuples(st.just("refund"), st.integers(0, 30)),
    st.tuples(st.just("replay"), st.integers(0, 30)),
    st.tuples(st.just("advance"), st.sampled_from([0.1, 0.3, 1.0, 2.5])),
    st.tuples(st.just("credit"), st.integers(0, 1), st.integers(1, 30)),
    st.just(("reclaim",)),
)  # fmt: skip
example_ids = itertools.count()


async def apply(ledger: Ledger, move: tuple[Any, ...], reserves: list[tuple[Any, ...]]) -> Any:
    """One step of a sequence; returns what a caller would observe, comparable across stores."""
    kind = move[0]
    try:
        if kind == "reserve":
            _, account, session, amount, ttl = move
            args = (ACCOUNTS[account], f"s{account}-{session}", amount, f"op{len(reserves)}", ttl)
            reserves.append(args)
            return await ledger.reserve(*args)
        if kind in ("commit", "refund", "replay") and not reserves:
            return None
        if kind == "commit":
            return await ledger.commit(reserves[move[1] % len(reserves)][3], move[2])
        if kind == "refund":
            return await ledger.refund(reserves[move[1] % len(reserves)][3])
        if kind == "replay":
            return await ledger.reserve(*reserves[move[1] % len(reserves)])
        if kind == "credit":
            return (await ledger.credit(ACCOUNTS[move[1]], move[2], f"top{move[2]}")).applied
        return await ledger.reclaim_expired()
    except QuotaExceeded as error:
        return ("quota", error.needed, error.available)
    except InvalidInput as error:
        return ("invalid", error.code)


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(moves=st.lists(step, max_size=30))
async def test_random_sequences_keep_invariants_in_both_stores(
    shared_redis_url: str, moves: list[tuple[Any, ...]]
) -> None:
    clock = FakeClock()
    memory = MemoryLedger(clock=clock)
    shared = RedisLedger.from_url(shared_redis_url, clock=clock, prefix=f"hyp{next(example_ids)}:")
    for ledger in (memory, shared):
        for account in ACCOUNTS:
            await ledger.create_account(account, 60)
    reserves: dict[int, list[tuple[Any, ...]]] = {id(memory): [], id(shared): []}
    for move in moves:
        if move[0] == "advance":
            clock.advance(move[1])
            continue
        observed = [await apply(ledger, move, reserves[id(ledger)]) for ledger in (memory, shared)]
        assert observed[0] == observed[1], move
        assert await audit(memory) == []
        for account in ACCOUNTS:
            assert await memory.balance(account) == await shared.balance(account)
    await assert_consistent(memory)
    await assert_consistent(shared)
    await shared.aclose()
