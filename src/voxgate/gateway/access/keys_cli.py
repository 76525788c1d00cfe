"""``voxgate keys``: create, list, revoke and top up API keys, in Redis.

    voxgate keys create --name NAME [--account A] [--credits C] [--max-sessions M]
    voxgate keys list
    voxgate keys revoke KEY_ID
    voxgate keys credit KEY_ID AMOUNT [--op-id OP]

Every subcommand works on the Redis of ``--redis-url``, else of ``VOXGATE_REDIS_URL``: the
store the gateway's workers share, in any of its forms (one server, ``redis+sentinel://``,
``redis+cluster://``; see :mod:`voxgate.store`). ``create`` prints the plain key once; only
its digest is stored, so it can never be shown again. Exit codes: 0 done, 1 refused or
failed (unknown key id, bad value, Redis unreachable), 2 no Redis configured or a malformed
URL.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from redis.exceptions import RedisError

from voxgate.errors import InvalidInput, StoreUnavailable, VoxgateError
from voxgate.gateway.access.keys import DEFAULT_MAX_SESSIONS, KeyRecord, RedisKeyStore
from voxgate.sessions.ledger_redis import RedisLedger
from voxgate.store import parse_store_url

REDIS_URL_ENV = "VOXGATE_REDIS_URL"


@dataclass(frozen=True, slots=True)
class _Stores:
    keys: RedisKeyStore
    ledger: RedisLedger


_Action = Callable[[argparse.Namespace, _Stores], Awaitable[int]]


def add_keys_command(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``keys`` and its subcommands; each sets ``run(args) -> exit code``."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--redis-url",
        default=None,
        help=f"Redis holding keys and credits (default: ${REDIS_URL_ENV})",
    )
    common.add_argument(
        "--prefix",
        default="voxgate:",
        help="key prefix in Redis; the gateway's (default: %(default)s)",
    )
    keys = subparsers.add_parser(
        "keys",
        help="manage API keys and their credits",
        description="Create, list, revoke and top up API keys, in the gateway's Redis.",
    )
    commands = keys.add_subparsers(dest="keys_command", required=True, metavar="COMMAND")

    create = commands.add_parser("create", parents=[common], help="create a key, printed once")
    create.add_argument("--name", required=True, help="a label for people, e.g. the app's name")
    create.add_argument(
        "--account", default=None, help="the account paying for it (default: a new one)"
    )
    create.add_argument("--credits", type=int, default=0, help="credits added to the account")
    create.add_argument(
        "--max-sessions",
        type=int,
        default=DEFAULT_MAX_SESSIONS,
        help="concurrent sessions (default: %(default)s)",
    )
    create.set_defaults(run=_runner(_create))

    listing = commands.add_parser("list", parents=[common], help="every key, with its balance")
    listing.set_defaults(run=_runner(_list))

    revoke = commands.add_parser("revoke", parents=[common], help="refuse a key from now on")
    revoke.add_argument("key_id", metavar="KEY_ID")
    revoke.set_defaults(run=_runner(_revoke))

    credit = commands.add_parser("credit", parents=[common], help="top up a key's account")
    credit.add_argument("key_id", metavar="KEY_ID")
    credit.add_argument("amount", metavar="AMOUNT", type=int)
    credit.add_argument(
        "--op-id", default=None, help="idempotency id: a retry with it credits once (default: new)"
    )
    credit.set_defaults(run=_runner(_credit))


def _runner(action: _Action) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        url = args.redis_url or os.environ.get(REDIS_URL_ENV)
        if not url:
            _fail(f"no Redis configured: pass --redis-url or set {REDIS_URL_ENV}")
            return 2
        try:
            parse_store_url(url)
        except ValueError as error:
            _fail(f"bad Redis URL: {error}")
            return 2
        try:
            return asyncio.run(_run(action, args, url))
        except StoreUnavailable as error:
            _fail(f"Redis at {_where(url)}: {error.message}")
        except VoxgateError as error:
            _fail(error.message)
        except RedisError as error:
            _fail(f"Redis at {_where(url)}: {error}")
        return 1

    return run


async def _run(action: _Action, args: argparse.Namespace, url: str) -> int:
    async with _stores(url, args.prefix) as stores:
        return await action(args, stores)


@asynccontextmanager
async def _stores(url: str, prefix: str) -> AsyncIterator[_Stores]:
    ledger = RedisLedger.from_url(url, prefix=prefix)
    keys = RedisKeyStore.from_url(url, ledger, prefix=prefix)
    try:
        yield _Stores(keys, ledger)
    finally:
        await keys.aclose()
        await ledger.aclose()


async def _create(args: argparse.Namespace, stores: _Stores) -> int:
    plain_key, record = await stores.keys.create(
        args.account, args.name, credits=args.credits, max_sessions=args.max_sessions
    )
    balance = await stores.ledger.balance(record.account_id)
    print(f"key id:       {record.key_id}")
    print(f"account:      {record.account_id} ({balance.available:,} credits available)")
    print(f"name:         {record.name}")
    print(f"max sessions: {record.max_sessions}")
    print(f"api key:      {plain_key}")
    print("The API key is shown only this once: store it now.")
    return 0


async def _list(args: argparse.Namespace, stores: _Stores) -> int:
    records = await stores.keys.list()
    if not records:
        print("no API keys")
        return 0
    available = await _available(stores.ledger, {r.account_id for r in records})
    rows: list[tuple[str, ...]] = [("KEY ID", "ACCOUNT", "NAME", "CREATED", "REVOKED", "AVAILABLE")]
    rows += [_row(record, available[record.account_id]) for record in records]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    return 0


async def _revoke(args: argparse.Namespace, stores: _Stores) -> int:
    before = await stores.keys.get(args.key_id)
    record = await stores.keys.revoke(args.key_id)
    when = _time(record.revoked_at)
    if before is not None and before.revoked:
        print(f"{record.key_id} was already revoked at {when}")
    else:
        print(f"revoked {record.key_id} (account {record.account_id}) at {when}")
    return 0


async def _credit(args: argparse.Namespace, stores: _Stores) -> int:
    record = await stores.keys.get(args.key_id)
    if record is None:
        raise InvalidInput(f"no API key has the id {args.key_id!r}", code="unknown_key")
    op_id = args.op_id or f"cli-credit:{uuid.uuid4().hex}"
    top_up = await stores.ledger.credit(record.account_id, args.amount, op_id)
    account, available = record.account_id, top_up.balance.available
    if top_up.applied:
        print(
            f"credited {args.amount:,} to account {account} (op {op_id}): {available:,} available"
        )
    else:
        print(f"op {op_id} was already applied; nothing credited: {available:,} available")
    return 0


async def _available(ledger: RedisLedger, accounts: set[str]) -> dict[str, str]:
    async def one(account_id: str) -> str:
        try:
            return f"{(await ledger.balance(account_id)).available:,}"
        except InvalidInput:  # an account removed from the ledger by hand
            return "-"

    ordered = sorted(accounts)
    return dict(zip(ordered, await asyncio.gather(*map(one, ordered)), strict=True))


def _row(record: KeyRecord, available: str) -> tuple[str, ...]:
    revoked = _time(record.revoked_at) if record.revoked_at is not None else "-"
    cells = (record.key_id, record.account_id, record.name, _time(record.created_at), revoked)
    return (*cells, available)


def _time(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _where(url: str) -> str:
    """The URL's hosts and ports: a Redis URL may carry a password."""
    return parse_store_url(url).where()


def _fail(message: str) -> None:
    print(f"voxgate keys: {message}", file=sys.stderr)
