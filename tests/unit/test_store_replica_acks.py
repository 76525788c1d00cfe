"""How many replicas a ledger write waits for, as ``VOXGATE_REDIS_URL`` says; no I/O."""

from __future__ import annotations

import pytest
from redis.exceptions import ResponseError

from voxgate.store import StoreClient, parse_store_url, redis_client, refused_for_replicas

SENTINELS = "redis+sentinel://127.0.0.1:1,127.0.0.1:2/voxgate/0"


def test_behind_sentinel_a_write_waits_for_one_replica_within_half_the_timeout() -> None:
    assert parse_store_url(SENTINELS).replica_acks is None
    client = redis_client(SENTINELS, max_connections=2, timeout_s=0.8)
    assert isinstance(client, StoreClient)
    assert (client.replica_acks, client.replica_wait_ms) == (1, 400)


@pytest.mark.parametrize("acks", [0, 2])
def test_the_url_sets_the_replicas_a_write_waits_for(acks: int) -> None:
    url = f"{SENTINELS}?replica_acks={acks}&sentinel_password=x"
    assert parse_store_url(url).replica_acks == acks
    client = redis_client(url, max_connections=2)
    assert isinstance(client, StoreClient)
    assert client.replica_acks == acks


def test_one_server_waits_for_no_replica() -> None:
    client = redis_client("redis://127.0.0.1:1/0", max_connections=2)
    assert isinstance(client, StoreClient)
    assert client.replica_acks == 0


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (f"{SENTINELS}?replica_acks=one", "replica_acks is a number"),
        (f"{SENTINELS}?replica_acks=-1", "replica_acks is a number"),
        (f"{SENTINELS}?replica_acks=17", "0 to 16"),
        ("redis+cluster://127.0.0.1:7000?replica_acks=1", "no option replica_acks"),
    ],
)
def test_a_bad_replica_acks_is_refused(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_store_url(url)


def test_a_master_short_of_replicas_refusing_a_write_is_an_outage() -> None:
    assert refused_for_replicas(ResponseError("NOREPLICAS Not enough good replicas to write."))
    assert not refused_for_replicas(ResponseError("ERR wrong number of arguments"))
    assert not refused_for_replicas(ConnectionError("NOREPLICAS"))
