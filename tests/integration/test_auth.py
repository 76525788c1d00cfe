"""Gateway authentication: API keys and client tokens on both stores (memory, real Redis),
configured keys, the Authorization header, and the browser-origin policy."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import store_url_for
from voxgate.errors import AuthError, ConfigError, InvalidInput
from voxgate.gateway.access.auth import (
    OriginPolicy,
    bearer_token,
    dev_key,
    keys_from_specs,
    parse_origin,
    split_key_specs,
)
from voxgate.gateway.access.client_tokens import (
    ClientTokens,
    MemoryTokenStore,
    RedisTokenStore,
    TokenStore,
    redact,
)
from voxgate.gateway.access.keys import KeyStore, MemoryKeyStore, RedisKeyStore, key_digest
from voxgate.sessions.ledger import Ledger
from voxgate.sessions.ledger_memory import MemoryLedger
from voxgate.sessions.ledger_redis import RedisLedger
from voxgate.store import StoreRedis, redis_client

T0 = 1_700_000_000.0


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", "redis", "cluster"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store_url(kind: str, request: pytest.FixtureRequest) -> str:
    """The Redis of the store under test: one server (also for "memory"), or the cluster."""
    return store_url_for(request, kind)


@pytest.fixture
async def ledger(kind: str, store_url: str) -> AsyncIterator[Ledger]:
    if kind == "memory":
        yield MemoryLedger()
        return
    ledger = RedisLedger.from_url(store_url)
    yield ledger
    await ledger.aclose()


@pytest.fixture
async def keys(kind: str, store_url: str, ledger: Ledger) -> AsyncIterator[KeyStore]:
    if kind == "memory":
        yield MemoryKeyStore(ledger)
        return
    store = RedisKeyStore.from_url(store_url, ledger)
    yield store
    await store.aclose()


@pytest.fixture
async def token_store(kind: str, store_url: str) -> AsyncIterator[TokenStore]:
    async with open_token_store(kind, store_url) as store:
        yield store


@asynccontextmanager
async def open_token_store(
    kind: str, store_url: str, retention_s: float = 600.0
) -> AsyncIterator[TokenStore]:
    if kind == "memory":
        yield MemoryTokenStore(retention_s=retention_s)
        return
    store = RedisTokenStore.from_url(store_url, retention_s=retention_s)
    try:
        yield store
    finally:
        await store.aclose()


@pytest.fixture
def tokens(token_store: TokenStore, keys: KeyStore) -> ClientTokens:
    return ClientTokens(token_store, keys=keys, min_ttl_s=0.05)


async def redis_dump(url: str) -> str:
    """Every key name and every value in the database, as one string."""
    client = redis_client(url, max_connections=4)
    parts: list[object] = []
    try:
        async for name in client.scan_iter():
            parts.append(name)
            kind = await client.type(name)
            if kind == "hash":
                parts += [f"{k!s}={v!s}" for k, v in (await client.hgetall(name)).items()]
            elif kind == "string":
                parts.append(await client.get(name))
            elif kind == "set":
                parts += await client.smembers(name)
            elif kind == "zset":
                parts += await client.zrange(name, 0, -1, withscores=True)
            else:
                raise AssertionError(f"unexpected Redis type {kind!s} of {name!s}")
    finally:
        await client.aclose()
    return "\n".join(map(str, parts))


async def auth_code(awaitable: object) -> str:
    with pytest.raises(AuthError) as caught:
        await awaitable  # type: ignore[misc]
    return caught.value.code


# ---- API keys


async def test_a_created_key_authenticates(keys: KeyStore) -> None:
    before = time.time()
    plain, record = await keys.create("acme", "checkout app", credits=500, max_sessions=3)
    assert plain.startswith("vg_live_")
    assert len(plain) >= 8 + 43
    assert (record.account_id, record.name, record.max_sessions) == ("acme", "checkout app", 3)
    assert record.key_id.startswith("vk_")
    assert record.key_id[3:] not in plain
    assert before - 0.01 <= record.created_at <= time.time() + 0.01
    assert not record.revoked
    assert await keys.authenticate(plain) == record
    assert await keys.get(record.key_id) == record


async def test_create_opens_or_tops_up_the_account(keys: KeyStore, ledger: Ledger) -> None:
    _, own = await keys.create(None, "solo", credits=700)
    assert own.account_id.startswith("acct_")
    assert (await ledger.balance(own.account_id)).available == 700
    _, first = await keys.create("acme", "web", credits=100)
    _, second = await keys.create("acme", "mobile", credits=50)
    _, third = await keys.create("acme", "batch")  # no credits: the account is shared
    assert first.account_id == second.account_id == third.account_id == "acme"
    assert (await ledger.balance("acme")).available == 150
    assert len({first.key_id, second.key_id, third.key_id}) == 3


async def test_concurrent_creates_on_a_new_account_fund_it_each_once(
    keys: KeyStore, ledger: Ledger
) -> None:
    await asyncio.gather(*(keys.create("acme", f"k{i}", credits=10) for i in range(10)))
    assert (await ledger.balance("acme")).available == 100
    assert len(await keys.list()) == 10


@pytest.mark.parametrize(
    "wrong",
    ["", "vg_live_nope", "x" * 10_000, "\ud800 lone surrogate", "vg_live_ü", "Bearer x"],
)
async def test_wrong_keys_are_refused(keys: KeyStore, wrong: str) -> None:
    await keys.create("acme", "app")
    assert await auth_code(keys.authenticate(wrong)) == "invalid_api_key"


async def test_a_near_miss_is_refused(keys: KeyStore) -> None:
    plain, _ = await keys.create("acme", "app")
    for wrong in (plain[:-1], plain + "x", plain.upper(), " " + plain):
        assert await auth_code(keys.authenticate(wrong)) == "invalid_api_key"


async def test_a_revoked_key_is_refused_and_stays_revoked(keys: KeyStore) -> None:
    plain, record = await keys.create("acme", "app")
    other, _ = await keys.create("acme", "other")
    revoked = await keys.revoke(record.key_id)
    assert revoked.revoked
    assert revoked.revoked_at is not None
    assert await auth_code(keys.authenticate(plain)) == "revoked_api_key"
    assert await keys.get(record.key_id) == revoked
    assert await keys.revoke(record.key_id) == revoked  # the first revocation time stays
    assert (await keys.authenticate(other)).name == "other"


@pytest.mark.parametrize("key_id", ["vk_0000000000000000", "nonsense", ""])
async def test_unknown_key_ids(keys: KeyStore, key_id: str) -> None:
    await keys.create("acme", "app")
    assert await keys.get(key_id) is None
    with pytest.raises(InvalidInput) as caught:
        await keys.revoke(key_id)
    assert caught.value.code == "unknown_key"


async def test_list_has_every_key_oldest_first(keys: KeyStore) -> None:
    records = [(await keys.create("acme", f"key {i}"))[1] for i in range(3)]
    revoked = await keys.revoke(records[1].key_id)
    assert await keys.list() == [records[0], revoked, records[2]]


@pytest.mark.parametrize(
    ("account_id", "name", "credits", "max_sessions"),
    [
        ("acme", "", 0, 10),
        ("acme", "x" * 101, 0, 10),
        ("acme", "new\nline", 0, 10),
        ("acme", "app", -1, 10),
        ("acme", "app", 0, 0),
        ("acme", "app", 0, 10_001),
        ("has space", "app", 0, 10),
        ("{tag}", "app", 0, 10),
        ("", "app", 0, 10),
    ],
)
async def test_bad_key_settings_store_nothing(
    keys: KeyStore, ledger: Ledger, account_id: str, name: str, credits: int, max_sessions: int
) -> None:
    with pytest.raises(InvalidInput):
        await keys.create(account_id, name, credits=credits, max_sessions=max_sessions)
    assert await keys.list() == []
    assert await ledger.accounts() == []


async def test_adding_a_known_key_changes_nothing(keys: KeyStore, ledger: Ledger) -> None:
    first = await keys.add("operator-chosen-key-1", name="ops", credits=100)
    assert await keys.add("operator-chosen-key-1", name="renamed", credits=100) == first
    assert (await ledger.balance(first.account_id)).available == 100
    revoked = await keys.revoke(first.key_id)
    assert await keys.add("operator-chosen-key-1", name="ops", credits=100) == revoked


async def test_workers_share_keys_and_revocations(shared_redis_url: str) -> None:
    ledger = RedisLedger.from_url(shared_redis_url)
    one, two = (
        RedisKeyStore.from_url(shared_redis_url, ledger),
        RedisKeyStore.from_url(shared_redis_url, ledger),
    )
    try:
        plain, record = await one.create("acme", "app", credits=5)
        assert await two.authenticate(plain) == record
        await two.revoke(record.key_id)
        assert await auth_code(one.authenticate(plain)) == "revoked_api_key"
        assert await one.list() == await two.list()
    finally:
        await one.aclose()
        await two.aclose()
        await ledger.aclose()


async def test_redis_holds_digests_never_secrets(shared_redis_url: str) -> None:
    ledger = RedisLedger.from_url(shared_redis_url)
    keys = RedisKeyStore.from_url(shared_redis_url, ledger)
    store = RedisTokenStore.from_url(shared_redis_url)
    try:
        plain, record = await keys.create("acme", "app", credits=100)
        [given_key] = await keys_from_specs(["given-secret-key-0042:10"], keys)
        token, _ = await ClientTokens(store).mint(record, max_credits=10)
        used, _ = await ClientTokens(store).mint(record, max_credits=10)
        await ClientTokens(store).redeem(used)
        dump = await redis_dump(shared_redis_url)
    finally:
        await store.aclose()
        await keys.aclose()
        await ledger.aclose()
    assert key_digest(plain) in dump
    assert key_digest("given-secret-key-0042") in dump
    assert given_key.key_id in dump
    for secret in (plain, "given-secret-key-0042", token, used):
        # The random part after the prefix (it may itself hold "_").
        body = secret.removeprefix("vg_live_").removeprefix("vgct_")
        assert secret not in dump
        assert body not in dump
        assert body[:16] not in dump


# ---- configured keys and the dev key


async def test_keys_from_specs(keys: KeyStore, ledger: Ledger) -> None:
    specs = split_key_specs(" alpha-key-0001 , beta-key-00002:500,, ")
    assert specs == ["alpha-key-0001", "beta-key-00002:500"]
    alpha, beta = await keys_from_specs(specs, keys, ledger)
    assert await keys.authenticate("alpha-key-0001") == alpha
    assert await keys.authenticate("beta-key-00002") == beta
    assert alpha.account_id != beta.account_id
    assert (await ledger.balance(alpha.account_id)).available == 1_000_000
    assert (await ledger.balance(beta.account_id)).available == 500


async def test_keys_from_specs_at_every_start_fund_once(kind: str, store_url: str) -> None:
    ledger: Ledger = MemoryLedger() if kind == "memory" else RedisLedger.from_url(store_url)
    for _ in range(3):  # three restarts, each with a fresh store on the same ledger
        if kind == "memory":
            [record] = await keys_from_specs(["restart-key-123:250"], MemoryKeyStore(ledger))
            continue
        store = RedisKeyStore.from_url(store_url, ledger)
        [record] = await keys_from_specs(["restart-key-123:250"], store)
        await store.aclose()
    assert (await ledger.balance(record.account_id)).available == 250
    if isinstance(ledger, RedisLedger):
        await ledger.aclose()


@pytest.mark.parametrize(
    "spec",
    ["short", "long-enough-key:abc", "long-enough-key:", "long enough key:5", "k-12345678:-5"],
)
async def test_bad_specs_are_config_errors_that_hide_the_key(keys: KeyStore, spec: str) -> None:
    with pytest.raises(ConfigError) as caught:
        await keys_from_specs([spec], keys)
    assert spec.partition(":")[0] not in caught.value.message
    assert await keys.list() == []


async def test_specs_fund_the_stores_ledger_only(keys: KeyStore) -> None:
    with pytest.raises(ConfigError):
        await keys_from_specs(["alpha-key-0001"], keys, MemoryLedger())


async def test_dev_key(keys: KeyStore, ledger: Ledger) -> None:
    plain, record = await dev_key(keys, ledger)
    assert plain.startswith("vg_dev_")
    assert await keys.authenticate(plain) == record
    assert (await ledger.balance(record.account_id)).available == 1_000_000
    other, _ = await dev_key(keys)
    assert other != plain


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Bearer vg_live_abc", "vg_live_abc"),
        ("bearer   vg_live_abc  ", "vg_live_abc"),
        (None, "missing_api_key"),
        ("  ", "missing_api_key"),
        ("Basic dXNlcjpwYXNz", "invalid_authorization"),
        ("Bearer", "invalid_authorization"),
        ("vg_live_abc", "invalid_authorization"),
    ],
)
def test_bearer_token(header: str | None, expected: str) -> None:
    if expected.startswith("vg_"):
        assert bearer_token(header) == expected
        return
    with pytest.raises(AuthError) as caught:
        bearer_token(header)
    assert caught.value.code == expected


# ---- client tokens


@pytest.mark.parametrize(
    ("voice_id", "session_id", "max_credits"), [("en_paul_neutral", "s-42", 500), (None, None, 1)]
)
async def test_a_token_carries_its_scope(
    keys: KeyStore,
    tokens: ClientTokens,
    voice_id: str | None,
    session_id: str | None,
    max_credits: int,
) -> None:
    _, key = await keys.create("acme", "app", credits=1000)
    token, claims = await tokens.mint(
        key, voice_id=voice_id, max_credits=max_credits, ttl_s=30, session_id=session_id
    )
    assert token.startswith("vgct_")
    assert len(token) >= 5 + 43
    assert (claims.account_id, claims.key_id) == ("acme", key.key_id)
    assert (claims.voice_id, claims.session_id, claims.max_credits) == (
        voice_id,
        session_id,
        max_credits,
    )
    assert claims.expires_at == pytest.approx(claims.issued_at + 30)
    assert claims.token_id == redact(token)
    assert await tokens.redeem(token) == claims


async def test_a_token_redeems_once(keys: KeyStore, tokens: ClientTokens) -> None:
    _, key = await keys.create("acme", "app")
    token, _ = await tokens.mint(key, max_credits=10)
    await tokens.redeem(token)
    assert await auth_code(tokens.redeem(token)) == "token_used"
    assert await auth_code(tokens.redeem(token)) == "token_used"


async def test_concurrent_redeems_let_exactly_one_through(
    keys: KeyStore, tokens: ClientTokens
) -> None:
    _, key = await keys.create("acme", "app")
    token, claims = await tokens.mint(key, max_credits=10)
    results = await asyncio.gather(
        *(tokens.redeem(token) for _ in range(20)), return_exceptions=True
    )
    assert results.count(claims) == 1
    refused = [r for r in results if r != claims]
    assert len(refused) == 19
    assert all(isinstance(r, AuthError) and r.code == "token_used" for r in refused)


async def test_a_token_expires(keys: KeyStore, tokens: ClientTokens) -> None:
    _, key = await keys.create("acme", "app")
    fresh, _ = await tokens.mint(key, max_credits=10, ttl_s=0.5)
    stale, _ = await tokens.mint(key, max_credits=10, ttl_s=0.5)
    await tokens.redeem(fresh)
    await asyncio.sleep(0.6)
    assert await auth_code(tokens.redeem(stale)) == "token_expired"
    assert await auth_code(tokens.redeem(stale)) == "token_expired"  # refusal spends nothing
    assert await auth_code(tokens.redeem(fresh)) == "token_used"


async def test_expiry_is_exact_on_the_clock(kind: str, store_url: str, keys: KeyStore) -> None:
    clock = FakeClock()
    _, key = await keys.create("acme", "app")
    async with open_token_store(kind, store_url) as store:
        tokens = ClientTokens(store, clock=clock)
        before, claims = await tokens.mint(key, max_credits=10)
        at, _ = await tokens.mint(key, max_credits=10)
        assert claims.expires_at == T0 + 60  # the default ttl
        clock.now = T0 + 59.999
        assert await tokens.redeem(before) == claims
        clock.now = T0 + 60
        assert await auth_code(tokens.redeem(at)) == "token_expired"


async def token_ttls_ms(client: StoreRedis) -> list[int]:
    """The remaining TTL of every client-token record in Redis (every master of a cluster)."""
    return [await client.pttl(n) async for n in client.scan_iter(match="*client-token:*")]


async def test_a_token_is_forgotten_after_the_retention(
    kind: str, store_url: str, keys: KeyStore
) -> None:
    _, key = await keys.create("acme", "app")
    client = redis_client(store_url, max_connections=4)
    await client.ping()  # connected (a cluster client learns its slots) before the clock starts
    async with open_token_store(kind, store_url, retention_s=0.1) as store:
        tokens = ClientTokens(store, min_ttl_s=0.05)
        token, _ = await tokens.mint(key, max_credits=10, ttl_s=0.1)
        if kind != "memory":  # kept for ttl + retention, then dropped by Redis itself
            assert await token_ttls_ms(client) == [pytest.approx(200, abs=30)]
        await asyncio.sleep(0.35)
        await tokens.mint(key, max_credits=10, ttl_s=60)  # the memory store sweeps on a call
        assert await auth_code(tokens.redeem(token)) == "invalid_token"
        if kind != "memory":
            assert len(await token_ttls_ms(client)) == 1  # only the new token's record
    await client.aclose()


@pytest.mark.parametrize(
    "token", ["", "abc", "vg_live_" + "x" * 43, "vgct_" + "x" * 200, "vgct_unknown", "vgct_\ud800"]
)
async def test_malformed_or_unknown_tokens(tokens: ClientTokens, token: str) -> None:
    assert await auth_code(tokens.redeem(token)) == "invalid_token"


@pytest.mark.parametrize(
    "scope",
    [
        {"ttl_s": 0.01},
        {"ttl_s": 3600.5},
        {"ttl_s": float("nan")},
        {"ttl_s": float("inf")},
        {"ttl_s": True},
        {"max_credits": 0},
        {"max_credits": -5},
        {"max_credits": 1_000_001},
        {"max_credits": True},
        {"voice_id": ""},
        {"voice_id": "two words"},
        {"session_id": "x" * 300},
    ],
)
async def test_mint_refuses_a_bad_scope(
    keys: KeyStore, tokens: ClientTokens, scope: dict[str, object]
) -> None:
    _, key = await keys.create("acme", "app")
    arguments: dict[str, object] = {"max_credits": 10, **scope}
    with pytest.raises(InvalidInput):
        await tokens.mint(key, **arguments)  # type: ignore[arg-type]


async def test_mint_limits_are_inclusive(keys: KeyStore, token_store: TokenStore) -> None:
    _, key = await keys.create("acme", "app")
    tokens = ClientTokens(token_store)
    for ttl_s, max_credits in ((1, 1), (3600, 1_000_000)):
        token, _ = await tokens.mint(key, max_credits=max_credits, ttl_s=ttl_s)
        assert (await tokens.redeem(token)).max_credits == max_credits
    with pytest.raises(InvalidInput):
        await tokens.mint(key, max_credits=10, ttl_s=0.5)


async def test_a_revoked_key_mints_nothing_and_its_tokens_die(
    keys: KeyStore, tokens: ClientTokens
) -> None:
    _, key = await keys.create("acme", "app")
    token, _ = await tokens.mint(key, max_credits=10)
    revoked = await keys.revoke(key.key_id)
    assert await auth_code(tokens.mint(revoked, max_credits=10)) == "revoked_api_key"
    assert await auth_code(tokens.redeem(token)) == "revoked_api_key"


async def test_a_refused_origin_does_not_spend_the_token(
    keys: KeyStore, token_store: TokenStore
) -> None:
    _, key = await keys.create("acme", "app")
    tokens = ClientTokens(token_store, origins=OriginPolicy(("https://app.example.com",)))
    token, claims = await tokens.mint(key, max_credits=10)
    assert await auth_code(tokens.redeem(token, origin="https://evil.test")) == "origin_not_allowed"
    assert await tokens.redeem(token, origin="https://APP.example.com:443") == claims


async def test_tokens_never_reach_logs_or_errors(
    keys: KeyStore, tokens: ClientTokens, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    _, key = await keys.create("acme", "app")
    token, claims = await tokens.mint(key, max_credits=10, ttl_s=30)
    messages = []
    await tokens.redeem(token)
    for _ in range(2):
        with pytest.raises(AuthError) as caught:
            await tokens.redeem(token)
        messages.append(str(caught.value))
    assert claims.token_id in caplog.text  # the replay was logged, by token id
    secret = token.removeprefix("vgct_")
    assert all(secret[:12] not in text for text in [caplog.text, *messages])
    assert redact(None) == redact("") == "<no token>"


# ---- browser origins

EXACT = ("https://app.example.com",)
WILD = ("https://*.example.com",)


@pytest.mark.parametrize(
    ("allowed", "origin", "allowed_or_not"),
    [
        (EXACT, "https://app.example.com", True),
        (EXACT, "HTTPS://App.Example.COM", True),
        (EXACT, "https://app.example.com:443", True),
        (EXACT, "https://app.example.com/", True),
        (EXACT, None, True),  # no Origin: not a browser
        (EXACT, "http://app.example.com", False),
        (EXACT, "https://app.example.com:8443", False),
        (EXACT, "https://other.example.com", False),
        (EXACT, "https://app.example.com.evil.test", False),
        (EXACT, "https://app.example.com/path", False),
        (EXACT, "https://user@app.example.com", False),
        (EXACT, "null", False),
        (EXACT, "", False),
        (EXACT, "not an origin", False),
        (EXACT, "https://app.exämple.com", False),
        (("http://app.example.com:80",), "http://app.example.com", True),
        (("https://app.example.com:8443",), "https://app.example.com:8443", True),
        (WILD, "https://a.example.com", True),
        (WILD, "https://a.b.example.com", True),
        (WILD, "https://A.Example.com:443", True),
        (WILD, "https://example.com", False),
        (WILD, "https://evilexample.com", False),
        (WILD, "https://example.com.evil.test", False),
        (WILD, "http://a.example.com", False),
        (WILD, "https://a.example.com:8443", False),
        (("https://*.example.com:8443",), "https://a.example.com:8443", True),
        (("*",), "https://anything.test", True),
        (("*",), "null", True),
        ((), "http://localhost:5173", True),
        ((), "http://127.0.0.1:8080", True),
        ((), "https://localhost", True),
        ((), "http://[::1]:3000", True),
        ((), "http://localhost.evil.test", False),
        ((), "ws://localhost:8080", False),
        ((), "https://example.com", False),
        (("http://[::1]:8080",), "http://[::1]:8080", True),
    ],
)
def test_origin_policy(allowed: tuple[str, ...], origin: str | None, allowed_or_not: bool) -> None:
    policy = OriginPolicy(allowed)
    assert policy.allows(origin) is allowed_or_not
    if allowed_or_not:
        policy.check(origin)
        return
    with pytest.raises(AuthError) as caught:
        policy.check(origin)
    assert caught.value.code == "origin_not_allowed"


@pytest.mark.parametrize("origin", ["http://localhost:5173", "http://127.0.0.1:8080"])
def test_loopback_can_be_refused(origin: str) -> None:
    assert not OriginPolicy(EXACT, allow_loopback=False).allows(origin)


@pytest.mark.parametrize(
    "pattern",
    [
        "example.com",
        "*.example.com",
        "https://*.com",
        "https://a.*.example.com",
        "https://*example.com",
        "https://*.example.*",
        "https://example.com/path",
        "https://",
    ],
)
def test_bad_origin_patterns(pattern: str) -> None:
    with pytest.raises(ConfigError):
        OriginPolicy((pattern,))


def test_origin_policy_from_a_list() -> None:
    policy = OriginPolicy.parse(" https://app.example.com , https://*.example.org,, ")
    assert policy.allowed == ("https://app.example.com", "https://*.example.org")
    assert policy.allows("https://x.example.org")
    assert not policy.allows("https://example.org")
    assert str(parse_origin("HTTP://Example.com:80/")) == "http://example.com"


labels = st.lists(
    st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True), min_size=1, max_size=6
)


@given(labels, st.lists(st.booleans(), min_size=40, max_size=40))
def test_any_subdomain_in_any_case_is_allowed(labels: list[str], upper: list[bool]) -> None:
    origin = "https://" + ".".join([*labels, "example", "com"])
    shouted = "".join(c.upper() if u else c for c, u in zip(origin, itertools.cycle(upper)))
    assert OriginPolicy(WILD, allow_loopback=False).allows(shouted)
    assert not OriginPolicy(WILD, allow_loopback=False).allows(shouted + ".evil.test")
