"""The credit ledger in Redis, shared by every gateway worker.

Each operation is one Lua script (``ledger_scripts``), so check and change are atomic. An
account's keys share the hash tag ``{account_id}`` and land in one cluster slot::

    <prefix>ledger:{A}:acct          hash: credited, available and the Totals counters
    <prefix>ledger:{A}:holds         zset: op_id of each unsettled hold, by expiry (ms)
    <prefix>ledger:{A}:sessions      zset: session_id, by last activity (ms)
    <prefix>ledger:{A}:op:<op_id>    hash: one reservation (kept for the retention period)
    <prefix>ledger:{A}:sess:<sid>    hash: one session's counters
    <prefix>ledger:{A}:credits       hash: top-up op_id -> amount

Scripts build the ``op:`` and ``sess:`` keys of swept holds from the account's prefix; they
hash to the account's slot like the keys they declare.

Round trips: ``reserve``, ``commit`` and ``refund`` are one EVALSHA each and touch no key
outside the account's slot (a pipeline, or a second command, would double their latency).
They are called once per text chunk, never per audio frame.

Durability: the scripts that change the books for their caller (create, credit, reserve,
commit, refund, void, release) go through ``store.run_write``: behind Sentinel their answer
comes once a replica holds what they wrote (one pipelined ``EVALSHA`` + ``WAIT``), and a write
no replica acknowledged is ``StoreUnavailable``, retried (settlements) or voided (a reserve)
by its op_id. Balance, usage and listings only read, and sweep expired holds on the way: a
sweep a failover loses is done again by the next script.

``commit(op_id)`` and ``refund(op_id)`` find the account in this process's memory of the
op_ids it reserved (the 65,536 most recent): a session's chunks are reserved and settled by the
worker that holds the session. Another process settles by passing ``account_id=``.
``session_usage(session_id)`` takes ``account_id=`` too, or finds the account in this
process's memory, or in the index ``ledger:session-account:<sid>``, written in the background
after a session's first reserve in this process.
Reusing an op_id or a session_id for another account is refused when this process saw the
first use; across processes it cannot be seen in one slot, so the session index logs it.

Time: the scripts read the server's ``TIME``, so every worker expires holds by one clock;
inject ``clock`` to pass the time instead (tests). Expired holds are released lazily by any
script touching the account, and by ``reclaim_expired``. Needs Redis >= 7.0 (SET NX GET).
Commands in flight are bounded by a semaphore (``max_in_flight``), so a burst queues here
instead of opening a connection per waiting reserve.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from typing import Any, Generic, TypeVar

from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from voxgate.errors import InvalidInput, StoreUnavailable
from voxgate.sessions import ledger_scripts as lua
from voxgate.sessions.ledger import (
    DEFAULT_RETENTION_S,
    DEFAULT_TTL_S,
    TOTALS_FIELDS,
    Balance,
    Clock,
    Reservation,
    ReservationState,
    SettleAction,
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
from voxgate.store import DEFAULT_TIMEOUT_S as DEFAULT_STORE_TIMEOUT_S
from voxgate.store import StoreRedis, decodes_responses, redis_client, run_write

log = logging.getLogger(__name__)

INDEX_BATCH_DELAY_S = 0.01
MAX_DECLARE_ROUNDS = 8  # a sweep takes two (its holds' keys, then their sessions' keys)

_Owner = TypeVar("_Owner")


class _RecentOwners(Generic[_Owner]):
    """Whose the ids this process used lately are, so commits need no index lookup."""

    def __init__(self, size: int) -> None:
        self._owners: OrderedDict[str, _Owner] = OrderedDict()
        self._size = size

    def get(self, key: str) -> _Owner | None:
        return self._owners.get(key)

    def put(self, key: str, owner: _Owner) -> None:
        self._owners[key] = owner
        self._owners.move_to_end(key)
        if len(self._owners) > self._size:
            self._owners.popitem(last=False)


class RedisLedger:
    """A ``Ledger`` in Redis. The client must decode responses (``from_url`` makes one)."""

    def __init__(
        self,
        redis: StoreRedis,
        *,
        prefix: str = "voxgate:",
        retention_s: float = DEFAULT_RETENTION_S,
        clock: Clock | None = None,
        max_in_flight: int = 64,
        owns_client: bool = False,
    ) -> None:
        if not decodes_responses(redis):
            raise InvalidInput("RedisLedger needs a client made with decode_responses=True")
        if "{" in prefix or "}" in prefix:
            raise InvalidInput(f"key prefix {prefix!r} must not contain hash-tag braces")
        self._redis = redis
        self._prefix = prefix
        self._retention_s = retention_s
        self._retention_ms = to_ms(retention_s)
        # Indexes outside the account's slot live twice the retention, to outlive its records.
        self._index_ttl_ms = 2 * self._retention_ms
        self._clock = clock
        self._owns_client = owns_client
        self._in_flight = asyncio.Semaphore(max_in_flight)
        self._op_owners: _RecentOwners[tuple[str, str]] = _RecentOwners(65_536)  # account, session
        self._session_owners: _RecentOwners[str] = _RecentOwners(16_384)
        self._unindexed: dict[str, str] = {}  # session_id -> account, for the next index batch
        self._indexer: asyncio.Task[None] | None = None
        register = redis.register_script  # once: later calls send EVALSHA
        self._create = register(lua.CREATE)
        self._credit = register(lua.CREDIT)
        self._reserve = register(lua.RESERVE)
        self._settle_script = register(lua.SETTLE)
        self._balance = register(lua.BALANCE)
        self._usage = register(lua.USAGE)
        self._sessions = register(lua.SESSIONS)
        self._release = register(lua.RELEASE)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        max_in_flight: int = 64,
        timeout_s: float = DEFAULT_STORE_TIMEOUT_S,
        **options: Any,
    ) -> RedisLedger:
        """A ledger on its own client, with a connection for each command in flight."""
        # A plain pool is cheaper per command than BlockingConnectionPool; the semaphore
        # keeps it from ever running out.
        client = redis_client(url, max_connections=max_in_flight, timeout_s=timeout_s)
        return cls(client, max_in_flight=max_in_flight, owns_client=True, **options)

    async def sync_indexes(self) -> None:
        """Wait until other processes can find every session reserved here (graceful drain)."""
        while self._indexer is not None:
            await asyncio.shield(self._indexer)

    async def aclose(self) -> None:
        await self.sync_indexes()
        if self._owns_client:
            await self._redis.aclose()

    async def create_account(self, account_id: str, balance: int) -> Balance:
        check_id("account_id", account_id)
        check_amount("balance", balance, 0)
        async with self._in_flight:
            await self._redis.sadd(self._accounts_key, account_id)
        if not await self._call(self._create, account_id, balance, write=True):
            raise InvalidInput(f"account {account_id!r} already exists", code="account_exists")
        return await self.balance(account_id)

    async def credit(self, account_id: str, amount: int, op_id: str) -> TopUp:
        check_id("account_id", account_id)
        check_id("op_id", op_id)
        check_amount("amount", amount, 1)
        reply = await self._call(
            self._credit, account_id, op_id, amount, declare=("credits",), write=True
        )
        if reply[0] == "unknown_account":
            raise unknown_account(account_id)
        if reply[0] == "op_conflict":
            raise op_id_conflict(op_id, f"to credit {reply[1]}")
        balance = _balance(account_id, reply[1])
        return TopUp(op_id=op_id, amount=amount, applied=reply[0] == "applied", balance=balance)

    async def balance(self, account_id: str) -> Balance:
        check_id("account_id", account_id)
        reply = await self._call(self._balance, account_id)
        if reply[0] == "unknown_account":
            raise unknown_account(account_id)
        return _balance(account_id, reply[1])

    async def reserve(
        self,
        account_id: str,
        session_id: str,
        amount: int,
        op_id: str,
        ttl_s: float = DEFAULT_TTL_S,
    ) -> Reservation:
        check_reserve(account_id, session_id, amount, op_id, ttl_s, self._retention_s)
        for kind, known, owner in (
            ("op_id", op_id, (self._op_owners.get(op_id) or (None,))[0]),
            ("session", session_id, self._session_owners.get(session_id)),
        ):
            if owner is not None and owner != account_id:
                message = f"{kind} {known!r} was already used by account {owner!r}"
                raise InvalidInput(message, code=f"{kind}_conflict")
        ttl_ms = max(1, to_ms(ttl_s))
        args = (op_id, session_id, amount, ttl_ms)
        declare = (f"op:{op_id}", f"sess:{session_id}")
        reply = await self._call(self._reserve, account_id, *args, declare=declare, write=True)
        status = reply[0]
        if status == "unknown_account":
            raise unknown_account(account_id)
        if status == "op_conflict":
            raise op_id_conflict(op_id, f"for {reply[2]} credits of session {reply[1]!r}")
        if status == "quota":
            raise quota_exceeded(account_id, amount, int(reply[1]), int(reply[2]))
        self._op_owners.put(op_id, (account_id, session_id))
        if self._session_owners.get(session_id) is None:
            self._session_owners.put(session_id, account_id)
            self._index_later(session_id, account_id)
        return Reservation(
            op_id=op_id,
            account_id=account_id,
            session_id=session_id,
            amount=amount,
            expires_at=int(reply[2]) / 1000,
            state=ReservationState(reply[1]),
            created=status == "created",
        )

    async def commit(
        self, op_id: str, amount: int | None = None, *, account_id: str | None = None
    ) -> Settlement:
        check_id("op_id", op_id)
        if amount is not None:
            check_amount("amount", amount, 0)
        return await self._settle(op_id, "commit", amount, account_id)

    async def refund(self, op_id: str, *, account_id: str | None = None) -> Settlement:
        check_id("op_id", op_id)
        return await self._settle(op_id, "refund", None, account_id)

    async def void(
        self, op_id: str, *, account_id: str, session_id: str, amount: int
    ) -> Settlement:
        check_void(op_id, account_id, session_id, amount)
        return await self._settle(op_id, "refund", None, account_id, void=(session_id, amount))

    async def release_session(self, session_id: str, *, account_id: str) -> int:
        check_id("session_id", session_id)
        check_id("account_id", account_id)
        declare = (f"sess:{session_id}",)
        reply = await self._call(self._release, account_id, session_id, declare=declare, write=True)
        if reply[0] == "unknown_account":
            raise unknown_account(account_id)
        return int(reply[1])

    async def session_usage(self, session_id: str, *, account_id: str | None = None) -> Usage:
        check_id("session_id", session_id)
        if account_id is not None:
            check_id("account_id", account_id)
        account_id = (
            account_id
            or self._session_owners.get(session_id)
            or await self._lookup(self._session_index(session_id))
        )
        if account_id is None:
            raise unknown_session(session_id)
        declare = (f"sess:{session_id}",)
        reply = await self._call(self._usage, account_id, session_id, declare=declare)
        if reply[0] != "ok":
            raise unknown_session(session_id)
        counts = {
            name: int(value or 0) for name, value in zip(TOTALS_FIELDS, reply[1], strict=True)
        }
        return Usage(session_id=session_id, account_id=account_id, **counts)

    async def reclaim_expired(self, now: float | None = None) -> int:
        now_arg: int | str = self._now_arg() if now is None else to_ms(now)
        accounts = await self.accounts()
        reclaimed = 0
        for start in range(0, len(accounts), 64):
            batch = accounts[start : start + 64]
            replies = await asyncio.gather(
                *(self._call(self._balance, a, now_arg=now_arg) for a in batch)
            )
            reclaimed += sum(int(r[0]) for r in replies if r[0] != "unknown_account")
        return reclaimed

    async def accounts(self) -> list[str]:
        async with self._in_flight:
            members = await self._redis.smembers(self._accounts_key)
        return sorted(str(a) for a in members)

    async def account_sessions(self, account_id: str) -> list[str]:
        check_id("account_id", account_id)
        reply = await self._call(self._sessions, account_id)
        if reply[0] == "unknown_account":
            raise unknown_account(account_id)
        return sorted(reply[1])

    # ---- plumbing

    @property
    def _accounts_key(self) -> str:
        return f"{self._prefix}ledger:accounts"

    def _session_index(self, session_id: str) -> str:
        return f"{self._prefix}ledger:session-account:{session_id}"

    def _now_arg(self) -> int | str:
        return "" if self._clock is None else to_ms(self._clock())

    async def _call(
        self,
        script: AsyncScript,
        account_id: str,
        *args: str | int,
        declare: tuple[str, ...] = (),
        now_arg: int | str | None = None,
        write: bool = False,
    ) -> Any:
        """Run a script on the account's keys: its three own ones, the ``declare``d ones
        (``op:<id>``, ``sess:<id>``, ``credits``) and those it answers as undeclared.
        ``write``: its answer waits for the replicas the store asks for (``run_write``)."""
        base = f"{self._prefix}ledger:{{{account_id}}}:"
        keys = [base + name for name in ("acct", "holds", "sessions", *declare)]
        now = self._now_arg() if now_arg is None else now_arg
        for _ in range(MAX_DECLARE_ROUNDS):
            script_args = [base, now, self._retention_ms, *args]
            async with self._in_flight:
                if write:
                    reply = await run_write(self._redis, script, keys, script_args)
                else:
                    reply = await script(keys=keys, args=script_args)
            if not (isinstance(reply, list) and reply and reply[0] == "undeclared"):
                return reply
            keys += reply[1:]
        raise RedisError(f"a ledger script still named undeclared keys after {len(keys)} keys")

    async def _lookup(self, key: str) -> str | None:
        async with self._in_flight:
            value = await self._redis.get(key)
        return value.decode() if isinstance(value, bytes) else value

    def _index_later(self, session_id: str, account_id: str) -> None:
        self._unindexed[session_id] = account_id
        if self._indexer is None:
            self._indexer = asyncio.get_running_loop().create_task(self._write_session_indexes())

    async def _write_session_indexes(self) -> None:
        """Write the queued session_id -> account entries, a pipeline per batch."""
        batch: dict[str, str] = {}
        try:
            while self._unindexed:
                # Let a few sessions gather: the pipeline shares the loop with reserves.
                await asyncio.sleep(INDEX_BATCH_DELAY_S)
                batch, self._unindexed = self._unindexed, {}
                ttl = self._index_ttl_ms
                async with self._in_flight, self._redis.pipeline(transaction=False) as pipe:
                    for session_id, account_id in batch.items():
                        key = self._session_index(session_id)
                        pipe.set(key, account_id, nx=True, get=True, px=ttl)
                        pipe.pexpire(key, ttl)
                    replies = await pipe.execute()
                for (session_id, account_id), owner in zip(
                    batch.items(), replies[::2], strict=True
                ):
                    if owner is not None and owner != account_id:
                        log.error("session %r used by %r and by %r", session_id, owner, account_id)
        except (RedisError, StoreUnavailable) as error:  # only other processes need it
            log.warning("could not index %d sessions: %s", len(batch), error)
        finally:
            self._indexer = None

    async def _settle(
        self,
        op_id: str,
        action: SettleAction,
        amount: int | None,
        account_id: str | None,
        *,
        void: tuple[str, int] | None = None,
    ) -> Settlement:
        if account_id is not None:
            check_id("account_id", account_id)
        known = self._op_owners.get(op_id)
        account_id = account_id or (known[0] if known else None)
        if account_id is None:
            reply: Any = ["unknown", 0, 0, 0]
        else:
            charge = "" if amount is None else amount
            tombstone = () if void is None else void
            # Naming the hold's session spares a round trip (the script would ask for it).
            sessions = (known[1],) if known and known[0] == account_id else tombstone[:1]
            declare = (f"op:{op_id}", *(f"sess:{s}" for s in sessions))
            args = (op_id, action, charge, *tombstone)
            reply = await self._call(
                self._settle_script, account_id, *args, declare=declare, write=True
            )
        if reply[0] == "invalid_amount":
            raise invalid_commit(op_id, amount or 0, int(reply[1]))
        state = ReservationState(reply[0])
        return Settlement(
            op_id=op_id,
            action=action,
            state=state,
            applied=bool(reply[3]),
            charged=int(reply[1]),
            released=int(reply[2]),
        )


def _balance(account_id: str, values: list[Any]) -> Balance:
    counts: dict[str, Any] = {
        name: int(v or 0) for name, v in zip(lua.BALANCE_FIELDS, values, strict=True)
    }
    return Balance(account_id=account_id, **counts)
