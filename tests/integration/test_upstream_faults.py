"""The client's typed errors, against an upstream that misbehaves on request."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from tests.fakes.faulty_upstream import create_faulty_app
from voxgate.errors import (
    UpstreamConnectionError,
    UpstreamError,
    UpstreamStreamError,
    UpstreamTimeout,
)
from voxgate.upstream import SpeechRequest, Upstream, UpstreamConfig

VOICE = "82c99ee6-f932-423f-a4a3-d403c8914b8d"


@pytest.fixture
async def faulty(aiohttp_server: Callable[..., Awaitable[Any]]) -> AsyncIterator[Upstream]:
    server = await aiohttp_server(create_faulty_app())
    config = UpstreamConfig(
        base_url=str(server.make_url("/api/tts")),
        api_key="k" * 12,
        first_byte_timeout=1.0,
        total_timeout=2.0,
    )
    async with Upstream(config) as client:
        yield client


def speech(fault: str) -> SpeechRequest:
    return SpeechRequest(input=fault, voice_id=VOICE)


async def collect(client: Upstream, fault: str) -> bytes:
    return b"".join([chunk.data async for chunk in client.stream(speech(fault))])


async def test_a_good_stream_yields_pcm(faulty: Upstream) -> None:
    assert len(await collect(faulty, "ok")) == 2 * 960


async def test_odd_byte_counts_become_whole_samples(faulty: Upstream) -> None:
    pcm = await collect(faulty, "odd-bytes")
    assert len(pcm) % 2 == 0
    assert pcm.startswith(b"\1\2\3\0")


async def test_stream_without_done_is_a_retryable_failure(faulty: Upstream) -> None:
    with pytest.raises(UpstreamStreamError, match=r"without speech\.audio\.done") as caught:
        await collect(faulty, "truncated")
    assert caught.value.retryable


@pytest.mark.parametrize("fault", ["malformed-json", "bad-base64"])
async def test_malformed_event_is_not_retryable(faulty: Upstream, fault: str) -> None:
    with pytest.raises(UpstreamStreamError) as caught:
        await collect(faulty, fault)
    assert not caught.value.retryable


async def test_error_event_mid_stream(faulty: Upstream) -> None:
    with pytest.raises(UpstreamError, match="gpu on fire") as caught:
        await collect(faulty, "error-event")
    assert caught.value.upstream_code == 500


@pytest.mark.parametrize(
    ("fault", "status", "retryable", "retry_after"),
    [
        ("busy", 503, True, 7.0),
        ("rate-limited", 429, True, 0.0),
        ("bad-request", 400, False, None),
        ("html", 502, True, None),
    ],
)
async def test_http_errors_are_typed(
    faulty: Upstream, fault: str, status: int, retryable: bool, retry_after: float | None
) -> None:
    for call in (lambda: faulty.generate(speech(fault)), lambda: collect(faulty, fault)):
        with pytest.raises(UpstreamError) as caught:
            await call()
        assert caught.value.status == status
        assert caught.value.retryable is retryable
        assert caught.value.retry_after == retry_after


async def test_envelope_with_nonzero_code_is_an_error(faulty: Upstream) -> None:
    with pytest.raises(UpstreamError, match="quota") as caught:
        await faulty.generate(speech("envelope-error"))
    assert caught.value.upstream_code == 1234
    assert caught.value.status == 200


async def test_response_without_envelope_is_an_error(faulty: Upstream) -> None:
    with pytest.raises(UpstreamError, match="envelope"):
        await faulty.generate(speech("no-envelope"))


async def test_redirects_are_refused(faulty: Upstream) -> None:
    with pytest.raises(UpstreamError, match="redirect") as caught:
        await faulty.generate(speech("redirect"))
    assert caught.value.status == 302
    assert not caught.value.retryable


async def test_first_byte_deadline(faulty: Upstream) -> None:
    with pytest.raises(UpstreamTimeout, match="first-byte"):
        await collect(faulty, "slow-first-byte")


async def test_total_deadline_bounds_a_trickling_stream(faulty: Upstream) -> None:
    # 40 deltas 0.1 s apart never trip a per-read timeout, only the 2 s total deadline.
    with pytest.raises(UpstreamTimeout, match="total"):
        await collect(faulty, "trickle")


async def test_unreachable_upstream_is_retryable() -> None:
    config = UpstreamConfig(base_url="http://127.0.0.1:9/api/tts", connect_timeout=1.0)
    async with Upstream(config) as client:
        with pytest.raises(UpstreamConnectionError) as caught:
            await client.generate(speech("ok"))
    assert caught.value.retryable
    assert caught.value.status == 0
