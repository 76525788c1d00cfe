"""``VOXGATE_REDIS_URL``: one server, Sentinel and Redis Cluster forms, parsed without I/O."""

from __future__ import annotations

import pytest

from voxgate.store import StoreAddress, parse_store_url


def test_a_server_url_is_left_to_redis_py() -> None:
    address = parse_store_url("redis://:pw@cache:6380/2")
    assert (address.topology, address.url) == ("server", "redis://:pw@cache:6380/2")
    assert address.where() == "cache:6380"
    assert parse_store_url("rediss://cache/0").tls


def test_a_sentinel_url_names_the_sentinels_the_service_and_the_db() -> None:
    address = parse_store_url(
        "redis+sentinel://app:s%40cret@s1:26379,s2,[::1]:26380/voxgate/3?sentinel_password=x"
    )
    assert address == StoreAddress(
        topology="sentinel",
        url=address.url,
        nodes=(("s1", 26379), ("s2", 26379), ("::1", 26380)),
        service="voxgate",
        db=3,
        username="app",
        password="s@cret",
        sentinel_password="x",
    )
    assert "s@cret" not in address.where()
    assert parse_store_url("redis+sentinel://s1/voxgate").db == 0


def test_a_cluster_url_names_nodes_to_start_from() -> None:
    address = parse_store_url("rediss+cluster://:pw@n1:7000,n2:7001")
    assert (address.topology, address.nodes, address.tls) == (
        "cluster",
        (("n1", 7000), ("n2", 7001)),
        True,
    )
    assert address.password == "pw"
    assert address.where() == "cluster n1:7000,n2:7001"
    assert parse_store_url("redis+cluster://n1/0").nodes == (("n1", 6379),)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://cache:6379", "starts with one of"),
        ("redis+cluster://", "starts with one of"),
        ("redis+cluster://n1:7000/1", "database 0 only"),
        ("redis+cluster://n1:7000?db=1", "no option db"),
        ("redis+sentinel://s1:26379", "/<service name>"),
        ("redis+sentinel://s1:26379/svc/x", "/<service name>"),
        ("redis+sentinel://s1:port/svc", "not a host:port"),
        ("redis+sentinel://s1:26379/svc?timeout=3", "no option timeout"),
    ],
)
def test_malformed_urls_say_what_is_wrong(url: str, says: str) -> None:
    with pytest.raises(ValueError, match=says.replace("?", r"\?")):
        parse_store_url(url)
