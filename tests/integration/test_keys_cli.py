"""``voxgate keys``, run through its parser against a real redis-server and a Redis Cluster."""

from __future__ import annotations

import argparse
import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest

from voxgate.errors import AuthError
from voxgate.gateway.access.keys import KeyRecord, RedisKeyStore
from voxgate.gateway.access.keys_cli import add_keys_command
from voxgate.sessions.ledger_redis import RedisLedger

T = TypeVar("T")


@pytest.fixture
def voxgate(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., tuple[int, str, str]]:
    """Run ``voxgate <args>`` as the main CLI would; (exit code, stdout, stderr)."""
    monkeypatch.delenv("VOXGATE_REDIS_URL", raising=False)
    parser = argparse.ArgumentParser(prog="voxgate")
    add_keys_command(parser.add_subparsers(dest="command", required=True))

    def run(*argv: str) -> tuple[int, str, str]:
        args = parser.parse_args(argv)
        code: int = args.run(args)
        out, err = capsys.readouterr()
        return code, out, err

    return run


def in_redis(url: str, action: Callable[[RedisKeyStore, RedisLedger], Awaitable[T]]) -> T:
    async def main() -> T:
        ledger = RedisLedger.from_url(url)
        keys = RedisKeyStore.from_url(url, ledger)
        try:
            return await action(keys, ledger)
        finally:
            await keys.aclose()
            await ledger.aclose()

    return asyncio.run(main())


def created(out: str) -> tuple[str, str]:
    """(plain key, key id) from the output of ``keys create``."""
    key = re.search(r"^api key: +(\S+)$", out, re.MULTILINE)
    key_id = re.search(r"^key id: +(\S+)$", out, re.MULTILINE)
    assert key is not None
    assert key_id is not None
    return key.group(1), key_id.group(1)


def available(url: str, account_id: str) -> int:
    async def action(keys: RedisKeyStore, ledger: RedisLedger) -> int:
        return (await ledger.balance(account_id)).available

    return in_redis(url, action)


def authenticate(url: str, plain_key: str) -> KeyRecord:
    async def action(keys: RedisKeyStore, ledger: RedisLedger) -> KeyRecord:
        return await keys.authenticate(plain_key)

    return in_redis(url, action)


def test_create_prints_a_working_key_once(
    voxgate: Callable[..., tuple[int, str, str]], shared_redis_url: str
) -> None:
    code, out, err = voxgate(
        "keys", "create", "--name", "checkout", "--credits", "1500", "--max-sessions", "3",
        "--account", "acme", "--redis-url", shared_redis_url,
    )  # fmt: skip
    assert (code, err) == (0, "")
    plain, key_id = created(out)
    assert plain.startswith("vg_live_")
    assert out.count(plain) == 1
    assert "1,500 credits available" in out
    record = authenticate(shared_redis_url, plain)
    assert (record.key_id, record.account_id, record.name) == (key_id, "acme", "checkout")
    assert record.max_sessions == 3
    assert available(shared_redis_url, "acme") == 1500


def test_the_redis_url_can_come_from_the_environment(
    voxgate: Callable[..., tuple[int, str, str]],
    shared_redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("VOXGATE_REDIS_URL", shared_redis_url)
    code, out, _ = voxgate("keys", "create", "--name", "env")
    assert code == 0
    record = authenticate(shared_redis_url, created(out)[0])
    assert record.account_id.startswith("acct_")
    assert available(shared_redis_url, record.account_id) == 0


def test_list_shows_every_key_with_its_balance(
    voxgate: Callable[..., tuple[int, str, str]], shared_redis_url: str
) -> None:
    assert voxgate("keys", "list", "--redis-url", shared_redis_url) == (0, "no API keys\n", "")
    url = ("--redis-url", shared_redis_url)
    _, out, _ = voxgate(
        "keys", "create", "--name", "web", "--account", "acme", "--credits", "1000", *url
    )
    web_key, web = created(out)
    _, out, _ = voxgate(
        "keys", "create", "--name", "mobile app", "--account", "acme", "--credits", "500", *url
    )
    mobile_key, mobile = created(out)
    _, out, _ = voxgate("keys", "create", "--name", "solo", "--credits", "7", *url)
    _, solo = created(out)
    voxgate("keys", "revoke", mobile, *url)

    code, out, _ = voxgate("keys", "list", *url)
    assert code == 0
    header, *rows = out.splitlines()
    assert header.split() == ["KEY", "ID", "ACCOUNT", "NAME", "CREATED", "REVOKED", "AVAILABLE"]
    assert [row.split()[0] for row in rows] == [web, mobile, solo]  # oldest first
    date = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ"
    assert re.fullmatch(rf"{web} +acme +web +{date} +- +1,500", rows[0])
    assert re.fullmatch(rf"{mobile} +acme +mobile app +{date} +{date} +1,500", rows[1])
    assert re.fullmatch(rf"{solo} +acct_\w+ +solo +{date} +- +7", rows[2])
    assert web_key not in out
    assert mobile_key not in out


def test_revoke(voxgate: Callable[..., tuple[int, str, str]], shared_redis_url: str) -> None:
    _, out, _ = voxgate("keys", "create", "--name", "app", "--redis-url", shared_redis_url)
    plain, key_id = created(out)
    code, out, _ = voxgate("keys", "revoke", key_id, "--redis-url", shared_redis_url)
    assert code == 0
    assert out.startswith(f"revoked {key_id}")
    with pytest.raises(AuthError) as caught:
        authenticate(shared_redis_url, plain)
    assert caught.value.code == "revoked_api_key"
    code, out, _ = voxgate("keys", "revoke", key_id, "--redis-url", shared_redis_url)
    assert code == 0
    assert "already revoked" in out
    code, out, err = voxgate(
        "keys", "revoke", "vk_0000000000000000", "--redis-url", shared_redis_url
    )
    assert (code, out) == (1, "")
    assert "no API key has the id 'vk_0000000000000000'" in err


def test_credit_tops_up_the_keys_account_once_per_op_id(
    voxgate: Callable[..., tuple[int, str, str]], shared_redis_url: str
) -> None:
    url = ("--redis-url", shared_redis_url)
    _, out, _ = voxgate(
        "keys", "create", "--name", "app", "--account", "acme", "--credits", "100", *url
    )
    _, key_id = created(out)
    code, out, _ = voxgate("keys", "credit", key_id, "250", *url)
    assert code == 0
    assert "credited 250 to account acme" in out
    assert "350 available" in out
    for _ in range(2):
        code, out, _ = voxgate("keys", "credit", key_id, "1000", "--op-id", "invoice-7", *url)
        assert code == 0
    assert "already applied" in out
    assert available(shared_redis_url, "acme") == 1350
    code, _, err = voxgate("keys", "credit", key_id, "0", *url)
    assert code == 1
    assert "amount" in err
    code, _, err = voxgate("keys", "credit", "vk_0000000000000000", "5", *url)
    assert code == 1
    assert "no API key" in err


def test_without_redis_nothing_runs(voxgate: Callable[..., tuple[int, str, str]]) -> None:
    for argv in (["create", "--name", "x"], ["list"], ["revoke", "vk_x"], ["credit", "vk_x", "1"]):
        code, out, err = voxgate("keys", *argv)
        assert (code, out) == (2, "")
        assert "--redis-url" in err
        assert "VOXGATE_REDIS_URL" in err


@pytest.mark.parametrize(
    "url",
    [
        "redis://:hunter2@127.0.0.1:1/0",
        "redis+sentinel://:hunter2@127.0.0.1:1/voxgate/0?sentinel_password=hunter2",
        "redis+cluster://:hunter2@127.0.0.1:1,127.0.0.1:2",
    ],
)
def test_an_unreachable_redis_is_reported_without_its_password(
    voxgate: Callable[..., tuple[int, str, str]], url: str
) -> None:
    code, _, err = voxgate("keys", "list", "--redis-url", url)
    assert code == 1
    assert "127.0.0.1:1" in err
    assert "hunter2" not in err


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:6379", "redis+cluster://", "redis+sentinel://127.0.0.1:26379"]
)
def test_a_malformed_redis_url_is_refused(
    voxgate: Callable[..., tuple[int, str, str]], url: str
) -> None:
    code, out, err = voxgate("keys", "list", "--redis-url", url)
    assert (code, out) == (2, "")
    assert "bad Redis URL" in err


def test_bad_values_are_refused(
    voxgate: Callable[..., tuple[int, str, str]], shared_redis_url: str
) -> None:
    code, _, err = voxgate(
        "keys", "create", "--name", "x", "--max-sessions", "0", "--redis-url", shared_redis_url
    )
    assert code == 1
    assert "max_sessions" in err
    assert voxgate("keys", "list", "--redis-url", shared_redis_url)[1] == "no API keys\n"
    with pytest.raises(SystemExit) as caught:
        voxgate("keys")
    assert caught.value.code == 2
