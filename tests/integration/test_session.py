"""A Session driven token by token against the embedded engine, observed from its events.

Each test runs with the in-process ledger and with the Redis ledger on a real redis-server;
after each, the ledger's invariants must hold and no credit may be left held.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np
import pytest

from tests.conftest import Target
from tests.fakes.fault_injection import Fault, FaultyUpstream
from voxgate.errors import LimitExceeded, ProtocolViolation
from voxgate.sessions.events import (
    AudioOut,
    ChunkEnded,
    ChunkFailed,
    ChunkStarted,
    ContextDone,
    Event,
    Interrupted,
)
from voxgate.sessions.ledger import Ledger, audit
from voxgate.sessions.ledger_memory import MemoryLedger
from voxgate.sessions.ledger_redis import RedisLedger
from voxgate.sessions.options import PipelineOptions, SessionOptions
from voxgate.sessions.segmenter import SegmenterOptions
from voxgate.sessions.session import Session
from voxgate.upstream import Upstream

pytestmark = pytest.mark.engine_only

ANSWER = (
    "Sure! I can help with that. Your order number 4521 shipped on Monday, "
    "and it should arrive by Thursday. Dr. Smith will call you at 10:30 to confirm. "
    "Is there anything else I can do for you today?"
)


def tokens(text: str, size: int = 4) -> list[str]:
    """LLM-like tokens: short pieces that split words and punctuation anywhere."""
    return [text[i : i + size] for i in range(0, len(text), size)]


@pytest.fixture(params=["memory", "redis"])
async def ledger(request: pytest.FixtureRequest) -> AsyncIterator[Ledger]:
    if request.param == "memory":
        store: Ledger = MemoryLedger()
        yield store
    else:
        url = request.getfixturevalue("redis_url")
        redis_store = RedisLedger.from_url(url)
        yield redis_store
        store = redis_store
    problems = await audit(store)
    assert problems == []
    for account in await store.accounts():
        assert (await store.balance(account)).held == 0, "credits left held after the test"
    if isinstance(store, RedisLedger):
        await store.aclose()


@pytest.fixture
async def faulty(target: Target) -> AsyncIterator[FaultyUpstream]:
    async with Upstream(target.config()) as client:
        yield FaultyUpstream(client)


SessionFactory = Callable[..., Any]


@pytest.fixture
async def make_session(ledger: Ledger, faulty: FaultyUpstream) -> AsyncIterator[Callable[..., Any]]:
    sessions: list[Session] = []

    async def make(credits: int = 100_000, **options: Any) -> Session:
        account = f"acct-{len(sessions)}"
        await ledger.create_account(account, credits)
        session = Session(
            upstream=faulty, ledger=ledger, account_id=account, options=SessionOptions(**options)
        )
        await session.start()
        sessions.append(session)
        return session

    yield make
    for session in sessions:
        await session.aclose()


async def feed(session: Session, text: str, rate: float = 30.0, context: str = "default") -> None:
    for token in tokens(text):
        session.append(token, context)
        await asyncio.sleep(1 / rate)
    session.close_context(context)


async def collect(session: Session, until: type = ContextDone) -> list[Event]:
    events: list[Event] = []
    async with asyncio.timeout(30):
        while True:
            event = await session.next_event()
            events.append(event)
            if isinstance(event, until):
                return events


def pcm_of(events: list[Event]) -> np.ndarray:
    data = b"".join(e.pcm for e in events if isinstance(e, AudioOut))
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768


async def test_tokens_in_ordered_gapless_audio_out(
    make_session: SessionFactory, ledger: Ledger
) -> None:
    session = await make_session()
    feeder = asyncio.create_task(feed(session, ANSWER))
    events = await collect(session)
    await feeder

    # Audio is continuous: each piece starts where the previous one ended.
    audio = [e for e in events if isinstance(e, AudioOut)]
    cursor = 0.0
    for piece in audio:
        assert piece.start_ms == pytest.approx(cursor)
        cursor += piece.duration_ms
    assert [e.chunk_index for e in audio] == sorted(e.chunk_index for e in audio)

    # Every chunk starts, plays and ends in order; the texts add up to the input.
    ended = [e for e in events if isinstance(e, ChunkEnded)]
    started = [e for e in events if isinstance(e, ChunkStarted)]
    assert (
        [e.chunk_index for e in ended]
        == list(range(len(ended)))
        == [e.chunk_index for e in started]
    )
    assert len(ended) >= 3
    assert "".join(e.text for e in ended) == ANSWER
    for before, after in itertools.pairwise(ended):
        assert after.start_ms == pytest.approx(before.end_ms)
    assert ended[-1].end_ms == pytest.approx(cursor)
    assert not [e for e in events if isinstance(e, ChunkFailed)]

    # It is speech, about as long as the marks say.
    samples = pcm_of(events)
    assert len(samples) / 24000 == pytest.approx(cursor / 1000, abs=0.01)
    assert float(np.sqrt(np.mean(samples**2))) > 0.01

    done = events[-1]
    assert isinstance(done, ContextDone)
    chars = sum(len(e.text.strip()) for e in ended)  # what was spoken, not the spaces between
    assert done.usage.characters == chars
    assert done.usage.audio_ms == pytest.approx(cursor)
    usage = await session.usage()
    assert (usage.committed, usage.held) == (chars, 0)
    assert (await ledger.balance(session.account_id)).available == 100_000 - chars


async def test_word_marks_fall_inside_their_chunk(make_session: SessionFactory) -> None:
    session = await make_session()
    session.append(ANSWER)
    session.close_context()
    ended = [e for e in await collect(session) if isinstance(e, ChunkEnded)]
    for chunk in ended:
        assert chunk.words
        assert " ".join(w.text for w in chunk.words) == " ".join(chunk.text.split())
        starts = [w.start_ms for w in chunk.words]
        assert starts == sorted(starts)
        assert starts[0] >= 0
        assert chunk.words[-1].end_ms <= chunk.end_ms - chunk.start_ms + 1e-6


async def test_several_chunks_in_flight_audio_still_in_order(
    make_session: SessionFactory, faulty: FaultyUpstream
) -> None:
    faulty.delay_s = 0.15  # a slow upstream: chunks overlap only if fetched concurrently
    session = await make_session(pipeline=PipelineOptions(max_inflight=3))
    session.append(ANSWER)
    session.close_context()
    events = await collect(session)
    assert faulty.max_in_flight >= 2
    indices = [e.chunk_index for e in events if isinstance(e, AudioOut)]
    assert indices == sorted(indices)


async def test_a_failed_attempt_before_any_audio_is_retried(
    make_session: SessionFactory, faulty: FaultyUpstream
) -> None:
    faulty.faults["Thursday"] = Fault(times=1, after_chunks=0, status=503, retry_after=0.05)
    session = await make_session()
    session.append(ANSWER)
    session.close_context()
    events = await collect(session)
    assert not [e for e in events if isinstance(e, ChunkFailed)]
    assert sum("Thursday" in r for r in faulty.requests) == 2
    ended = [e for e in events if isinstance(e, ChunkEnded)]
    assert "".join(e.text for e in ended) == ANSWER


async def test_a_failure_after_audio_was_delivered_is_reported_and_the_turn_goes_on(
    make_session: SessionFactory, faulty: FaultyUpstream
) -> None:
    faulty.delay_s = 0.05
    # The stream stalls, then breaks: by then the first audio has gone to the listener.
    faulty.faults["Sure"] = Fault(times=1, after_chunks=1, status=503, stall_s=0.1)
    session = await make_session(pipeline=PipelineOptions(max_inflight=1))
    session.append("Sure! I can help with that, of course. ")
    session.append("The second sentence arrives later and plays anyway.")
    session.close_context()
    events = await collect(session)
    failed = [e for e in events if isinstance(e, ChunkFailed)]
    assert len(failed) == 1
    assert failed[0].chunk_index == 0
    assert failed[0].partial
    assert failed[0].code == "upstream_error"
    assert sum("Sure" in r for r in faulty.requests) == 1  # partial audio: no retry
    assert any(isinstance(e, ChunkEnded) and "second" in e.text for e in events)
    done = events[-1]
    assert isinstance(done, ContextDone)
    spoken = [e.text for e in events if isinstance(e, ChunkEnded)]
    assert done.usage.characters == sum(len(t.strip()) for t in spoken)  # the failed one is free


async def test_client_errors_are_not_retried(
    make_session: SessionFactory, faulty: FaultyUpstream
) -> None:
    faulty.faults["help"] = Fault(times=5, status=400)
    session = await make_session()
    session.append("Sure! I can help with that, of course.")
    session.close_context()
    events = await collect(session)
    failed = [e for e in events if isinstance(e, ChunkFailed)]
    assert len(failed) == 1
    assert not failed[0].partial
    assert sum("help" in r for r in faulty.requests) == 1


async def test_insufficient_credit_stops_the_chunk_before_the_upstream(
    make_session: SessionFactory, faulty: FaultyUpstream
) -> None:
    session = await make_session(credits=10)
    session.append("This sentence costs far more than ten credits.")
    session.close_context()
    events = await collect(session)
    failed = [e for e in events if isinstance(e, ChunkFailed)]
    assert [f.code for f in failed] == ["insufficient_credits"]
    assert "10" in failed[0].message
    assert faulty.requests == []
    assert not [e for e in events if isinstance(e, AudioOut)]


async def test_interrupt_stops_audio_at_once_and_says_what_was_heard(
    make_session: SessionFactory, faulty: FaultyUpstream, ledger: Ledger
) -> None:
    session = await make_session(pipeline=PipelineOptions(max_inflight=2))
    session.append(ANSWER)  # the turn stays open: an agent still streaming
    received: list[tuple[float, Event]] = []
    played_ms = 0.0
    async with asyncio.timeout(20):
        while played_ms < 2500:  # a listener playing in real time, 2.5 s in
            event = await session.next_event()
            received.append((time.perf_counter(), event))
            if isinstance(event, AudioOut):
                played_ms += event.duration_ms
    called = time.perf_counter()
    interrupted = session.interrupt(played_ms=2400)
    returned = time.perf_counter()

    after: list[Event] = []
    async with asyncio.timeout(2):
        while True:
            event = await session.next_event()
            after.append(event)
            if isinstance(event, Interrupted):
                break
    assert not [e for e in after if isinstance(e, AudioOut)]
    assert (returned - called) * 1000 <= 20
    assert after[-1] == interrupted[0]

    result = interrupted[0]
    assert result.played_ms == 2400
    assert result.heard
    assert result.unheard
    assert result.heard + result.unheard == ANSWER
    assert ANSWER.startswith(result.heard)
    # Delivered is what counts for credits: every delivered chunk, the last one in part.
    await session.settled()
    usage = await session.usage()
    assert usage.held == 0
    assert 0 < usage.committed < len(ANSWER)
    assert result.usage.characters == usage.committed
    await asyncio.sleep(0.05)
    assert faulty.in_flight == 0  # in-flight upstream streams were closed


async def test_interrupt_during_a_slow_upstream_closes_its_stream(
    make_session: SessionFactory, faulty: FaultyUpstream
) -> None:
    faulty.delay_s = 1.0
    session = await make_session()
    session.append("Nobody will hear this sentence at all.")
    session.flush()
    await asyncio.sleep(0.2)
    assert faulty.in_flight == 1
    [result] = session.interrupt()
    assert result.heard == ""
    assert result.unheard == "Nobody will hear this sentence at all."
    await asyncio.sleep(0.05)
    assert faulty.in_flight == 0
    assert faulty.cancelled
    usage = await session.usage()
    assert (usage.committed, usage.held) == (0, 0)


FIRST = "Sure, I can look into that for you. "
STALLS = {  # what the LLM wrote before it stalled -> what the runway sends on
    "at a clause": (
        "Your order, which left on Monday, is with the cour",
        "Your order, which left on Monday, ",
    ),
    "at a word, when a pause is certain": (
        "Your order which left on Monday is with the cour",
        "Your order which left on Monday is with the ",
    ),
}


@pytest.mark.parametrize("stall", list(STALLS))
@pytest.mark.parametrize("runway_ms", [300.0, 0.0])
async def test_a_slow_llm_gets_a_chunk_before_the_listener_runs_out(
    make_session: SessionFactory, faulty: FaultyUpstream, runway_ms: float, stall: str
) -> None:
    faulty.delay_s = 0.15  # a remote upstream's first byte
    # A time bound that never fires here: only the runway can cut before the sentence ends.
    segmenter = SegmenterOptions(time_bound=30.0, runway_ms=runway_ms)
    session = await make_session(segmenter=segmenter)
    pending, released = STALLS[stall]
    session.append(FIRST + pending)  # ...and the LLM stalls
    events = await collect(session, until=ChunkEnded)
    audio = [e for e in events if isinstance(e, AudioOut)]
    arrived = time.monotonic()  # about when the first audio came: the upstream streams fast
    heard_s = sum(e.duration_ms for e in audio) / 1000
    assert [e.text for e in events if isinstance(e, ChunkStarted)] == [FIRST]
    assert heard_s > 1.5

    # The listener plays the first chunk in real time from its first audio.
    later: list[Event] = []
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(heard_s + 1.0):
            later.append(await session.next_event())
            while not isinstance(later[-1], AudioOut):
                later.append(await session.next_event())
    started = [e.text for e in later if isinstance(e, ChunkStarted)]
    if runway_ms:
        # It went upstream before the first chunk's audio ran out, and its audio came in
        # time (loosely: a busy machine delays the odd event).
        assert started == [released]
        assert time.monotonic() - arrived < heard_s + 0.5
    else:
        assert started == []  # it waits for the sentence, however long the pause

    session.append("ier now. That is all.")
    session.close_context()
    rest = await collect(session)
    spoken = "".join(e.text for e in [*events, *later, *rest] if isinstance(e, ChunkStarted))
    assert spoken == FIRST + pending + "ier now. That is all."


async def test_contexts_are_separate_turns(make_session: SessionFactory) -> None:
    session = await make_session(max_contexts=2)
    session.append("First turn speaks here.", "a")
    session.append("Second turn speaks there.", "b")
    with pytest.raises(LimitExceeded) as caught:
        session.append("A third one is too many.", "c")
    assert caught.value.code == "too_many_contexts"
    session.close_context("a")
    session.close_context("b")
    with pytest.raises(ProtocolViolation) as closed:
        session.append("Late text.", "a")
    assert closed.value.code == "context_closed"
    events: list[Event] = []
    async with asyncio.timeout(20):
        while sum(isinstance(e, ContextDone) for e in events) < 2:
            events.append(await session.next_event())
    texts = {
        cid: "".join(e.text for e in events if isinstance(e, ChunkEnded) and e.context_id == cid)
        for cid in ("a", "b")
    }
    assert texts == {"a": "First turn speaks here.", "b": "Second turn speaks there."}
    # Once its done event is delivered, a context id may start a new turn.
    session.append("Again.", "a")
