"""A context: one turn of speech, from its text to its audio, with its own text queue.

Text goes through the context's Segmenter into chunks; each chunk is reserved in the
ledger, then fetched upstream by a ChunkJob, several at once within the pipeline limits;
audio leaves strictly in chunk order, each chunk starting where the previous one ended.
Credits are committed when a chunk's audio has been delivered (taken by the transport),
refunded when it failed, and split at the delivered position on interrupt.
"""

from __future__ import annotations

import asyncio
import logging
import math
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import TYPE_CHECKING

from voxgate.codecs.opus_packets import OpusRun
from voxgate.codecs.output_format import OPUS_CLOCK_RATE
from voxgate.errors import ProtocolViolation, QuotaExceeded, VoxgateError
from voxgate.sessions.alignment import estimate_words, heard_cut
from voxgate.sessions.chunk_job import ChunkJob, JobState
from voxgate.sessions.events import (
    AudioOut,
    ChunkEnded,
    ChunkFailed,
    ChunkStarted,
    ContextDone,
    Event,
    Interrupted,
    Usage,
)
from voxgate.sessions.segmenter import Chunk, Segmenter

if TYPE_CHECKING:
    from voxgate.sessions.session import Session

log = logging.getLogger(__name__)

# Speech runs at roughly 14-16 characters a second; used only to place the cut inside a
# chunk that was interrupted before its full duration was known.
_ESTIMATED_MS_PER_CHAR = 65.0
# Of the audio budget, what only the head job may fill (see ``Context._room_for``).
_HEAD_SHARE_MS = 1000.0
# Audio goes to the session in pieces no longer than this, so "delivered" (taken by the
# transport) moves in small steps and a transport never holds a long piece it has not sent.
_MAX_PIECE_MS = 100


class ContextState(StrEnum):
    OPEN = "open"  # taking text
    CLOSING = "closing"  # no more text; finishing its audio
    DONE = "done"  # all audio handed to the transport
    INTERRUPTED = "interrupted"


@dataclass
class _Chunk:
    index: int
    text: str
    op_id: str
    reserved: bool = False
    settled: bool = False
    start_ms: float | None = None  # where its audio starts on the context's timeline
    sent_at: float | None = None  # when it left for the upstream, if none was in flight
    emitted_bytes: int = 0
    delivered_bytes: int = 0
    full_ms: float | None = None  # its whole duration, once the upstream finished it

    @property
    def spoken(self) -> str:
        # The whitespace after a boundary belongs to the chunk; it is not sent, nor paid for.
        return self.text.strip()

    @property
    def cost(self) -> int:
        return len(self.spoken)


class Context:
    def __init__(self, context_id: str, session: Session) -> None:
        self.id = context_id
        self.state = ContextState.OPEN
        self._session = session
        self._options = session.options
        self._rate = session.options.sample_rate
        # Chosen once, when the turn begins: its chunks all come as Opus packets or all as
        # PCM, so a sink never meets a turn that changes kind half way.
        self.opus = session.opus_upstream
        self._segmenter = Segmenter(session.options.segmenter)
        self._chunks: list[_Chunk] = []
        self._waiting: deque[_Chunk] = deque()
        self._jobs: deque[ChunkJob] = deque()
        self._wake = asyncio.Event()
        self._room = asyncio.Event()  # set when audio leaves: a gated job may read again
        self._emitted_ms = 0.0
        self._first_audio_at: float | None = None
        self._upstream_first_s: float | None = None  # its time to first audio, peak-held
        self._played_report: tuple[float, float] | None = None  # (played_ms, at)
        self._committed_chars = 0
        self._committed_chunks = 0
        self.done_delivered = False
        # A context id may be reused for a later turn: the turn id keeps ledger ops apart.
        self._turn = uuid.uuid4().hex[:8]
        self._task: asyncio.Task[None] | None = asyncio.create_task(
            self._run(), name=f"context-{context_id}"
        )
        self._task.add_done_callback(self._ended)

    # -- commands ---------------------------------------------------------------------

    def append(self, text: str) -> None:
        self._require_open("append text to")
        self._segmenter.set_runway(self._runway_out_at())
        self._enqueue(self._segmenter.push(text, self._session.clock()))
        self._hurry()

    def flush(self) -> None:
        self._require_open("flush")
        self._enqueue(self._segmenter.flush())

    def close(self) -> None:
        """End of turn: what is buffered is spoken, then ``ContextDone`` follows its audio."""
        self._require_open("close")
        self._enqueue(self._segmenter.flush())
        self._set_state(ContextState.CLOSING)
        self._wake.set()

    @property
    def fetching(self) -> bool:
        """Chunks are waiting for, or streaming from, the upstream."""
        return bool(self._jobs or self._waiting)

    def report_played(self, played_ms: float) -> None:
        self._played_report = (played_ms, self._session.clock())
        self._wake.set()

    def interrupt(self, played_ms: float | None, delivered_ms: float | None = None) -> Interrupted:
        """Stop at once: nothing more of this context reaches the transport after this call.

        ``delivered_ms`` is where the transport really got to on the context's timeline, when
        it knows better than "taken from the session" (audio it had taken but not yet
        written is dropped with the rest, and is neither charged nor counted as heard).
        """
        if self.state is ContextState.INTERRUPTED or self.done_delivered:
            raise ProtocolViolation(
                f"context {self.id!r} is {self.state}; nothing to interrupt", code="context_closed"
            )
        pending = "".join(c.text for c in self._segmenter.flush()) if self._is_taking_text else ""
        self._set_state(ContextState.INTERRUPTED)
        for job in self._jobs:
            job.cancel()
        self._session.purge(self.id)
        if delivered_ms is not None:
            self._take_back_beyond(delivered_ms)
        delivered = self._ms(sum(c.delivered_bytes for c in self._chunks))
        played = delivered if played_ms is None else max(0.0, min(played_ms, delivered))
        heard, unheard = self._split(played)
        self._settle_interrupted()
        event = Interrupted(self.id, heard, unheard + pending, played, self.usage())
        self._session.emit(event)
        self._wake.set()
        return event

    def _take_back_beyond(self, delivered_ms: float) -> None:
        for chunk in self._chunks:
            if chunk.start_ms is None or chunk.settled:
                continue
            allowed = int(max(0.0, delivered_ms - chunk.start_ms) * self._rate / 1000) * 2
            chunk.delivered_bytes = min(chunk.delivered_bytes, allowed)

    async def aclose(self) -> None:
        """Stop without a word to the transport (the session is closing); settle credits."""
        if self.state not in (ContextState.INTERRUPTED, ContextState.DONE):
            self._set_state(ContextState.INTERRUPTED)
        for job in self._jobs:
            job.cancel()
        self._settle_interrupted()
        self._wake.set()
        await asyncio.gather(
            *([self._task] if self._task else []),
            *(j.join() for j in self._jobs),
            return_exceptions=True,
        )

    def _ended(self, _: asyncio.Task[None]) -> None:
        # A cancelled task's traceback holds this context's frames: let go of the task, so
        # that no cycle is left for the garbage collector.
        self._task = None

    # -- what the transport took -------------------------------------------------------

    def delivered(self, event: Event) -> Event:
        """Account for an event the transport has taken; returns it, completed if need be."""
        if isinstance(event, AudioOut):
            self._chunks[event.chunk_index].delivered_bytes += event.size
            self._room.set()
        elif isinstance(event, ChunkEnded):
            chunk = self._chunks[event.chunk_index]
            self._settle(chunk, commit=chunk.cost)
        elif isinstance(event, ContextDone):
            self.done_delivered = True
            return replace(event, usage=self.usage())
        return event

    def usage(self) -> Usage:
        delivered = sum(c.delivered_bytes for c in self._chunks)
        return Usage(self._committed_chars, self._ms(delivered), self._committed_chunks)

    # -- the run loop ------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            while self.state in (ContextState.OPEN, ContextState.CLOSING):
                self._wake.clear()
                if self.state is ContextState.OPEN:
                    self._segmenter.set_runway(self._runway_out_at())
                    self._enqueue(self._segmenter.poll(self._session.clock()))
                    self._hurry()
                await self._start_jobs()
                progressed = self._emit_in_order()
                if self._finished_closing():
                    self._set_state(ContextState.DONE)
                    self._session.emit(ContextDone(self.id, self.usage()))
                    return
                if not progressed:
                    await self._sleep()
        except Exception:
            log.exception("context %s failed", self.id)
            self._session.emit_error(
                "internal_error", "the context failed", fatal=False, context_id=self.id
            )
            await self.aclose()

    async def _sleep(self) -> None:
        # Wake at the segmenter's time bound and when the listener's runway gets short, and
        # poll while a limit that eases as audio plays holds back a chunk; otherwise sleep
        # until something happens.
        timeout = self._options.poll_interval_s if self._waiting else None
        deadline = self._segmenter.deadline if self._is_taking_text else None
        if deadline is not None:
            until = max(0.0, deadline - self._session.clock())
            timeout = until if timeout is None else min(timeout, until)
        hurry_in = self._hurry_in() if self._is_taking_text else None
        if hurry_in is not None:
            timeout = hurry_in if timeout is None else min(timeout, hurry_in)
        try:
            async with asyncio.timeout(timeout):
                await self._wake.wait()
        except TimeoutError:
            pass

    def _hurry(self) -> None:
        """While the text comes slower than it is spoken, keep the speech going.

        With nothing being synthesised, once the audio still ahead of the listener would run
        out within the upstream's time to first audio plus the segmenter's ``runway_ms``,
        the next chunk may end at a boundary; once it would run out before the upstream
        could answer, at a word, while there is audio left (:meth:`Segmenter.hurry`).
        """
        left_ms = self._runway_left_ms()
        if left_ms is not None and left_ms <= self._options.segmenter.runway_ms:
            # Once the listener is in a pause anyway, a word more does not end it sooner.
            to_a_word = left_ms <= 0 and self._unplayed_ms() > 0
            self._enqueue(self._segmenter.hurry(self._session.clock(), to_a_word))

    def _hurry_in(self) -> float | None:
        """Seconds until :meth:`_hurry` has more to try; None: only new text can change it."""
        left_ms = self._runway_left_ms()
        if left_ms is None or left_ms <= 0:
            return None
        margin_ms = self._options.segmenter.runway_ms
        return (left_ms - margin_ms if left_ms > margin_ms else left_ms) / 1000

    def _runway_out_at(self) -> float | None:
        """When the listener's audio runs out, less the upstream's time to first audio: what
        ties the segmenter's later-chunk time bound to the runway. Infinite while a chunk is
        being synthesised (its audio is on its way: the loop wakes when it is done); None
        until the upstream's time to first audio is known, or with ``runway_ms`` 0."""
        first_s = self._upstream_first_s
        if first_s is None or not self._options.segmenter.runway_ms:
            return None
        if self._jobs or self._waiting:
            return math.inf
        return self._session.clock() + self._unplayed_ms() / 1000 - first_s

    def _runway_left_ms(self) -> float | None:
        """The listener's audio left once a chunk sent now would start; None: no matter."""
        first_s = self._upstream_first_s
        if not self._options.segmenter.runway_ms or first_s is None:
            return None
        if self._jobs or self._waiting or not self._segmenter.pending:
            return None
        return self._unplayed_ms() - first_s * 1000

    async def _start_jobs(self) -> None:
        while self._waiting and self._may_start(self._waiting[0]):
            chunk = self._waiting.popleft()
            if not self._jobs:  # its first audio will not wait behind another chunk's
                chunk.sent_at = self._session.clock()
            request = self._options.voice.request(chunk.spoken)
            job = ChunkJob(
                chunk.index,
                chunk.text,
                chunk.op_id,
                request,
                self._rate,
                self._wake,
                opus=self.opus,
            )
            self._jobs.append(job)
            try:
                await self._session.reserve(chunk.op_id, chunk.cost)
            except (QuotaExceeded, VoxgateError) as exc:
                job.fail(exc)
                continue
            chunk.reserved = True
            if self.state is ContextState.INTERRUPTED:  # it came while we awaited the ledger
                self._settle(chunk, commit=0)
                return
            job.start(self._session.upstream, self._options.pipeline.retry, self._room_for)

    def _may_start(self, chunk: _Chunk) -> bool:
        """The session's lookahead limits allow one more chunk (``PipelineOptions``).

        What is held ahead of the listener counts until the listener has been given it:
        a chunk's credits stay held (and the chunk counted) until its last audio has been
        taken by the transport, however long ago the upstream finished it.
        """
        held_chunks, held_credits = self._session.held()
        if not held_chunks:
            return True  # a limit may slow a turn, never stall it
        limits = self._options.pipeline
        return (
            held_chunks < limits.max_inflight
            and held_credits + chunk.cost <= limits.max_credits_at_risk
            and self._session.ahead_ms() < limits.max_buffered_ms
        )

    def ahead_ms(self) -> float:
        """Audio of this context in the gateway: fetched or emitted, not yet delivered."""
        return self._ms(self._undelivered_bytes() + sum(j.held_bytes for j in self._jobs))

    def _undelivered_bytes(self) -> int:
        return sum(c.emitted_bytes - c.delivered_bytes for c in self._chunks if not c.settled)

    async def _room_for(self, job: ChunkJob) -> None:
        """Until this context may hold more of ``job``'s audio (the jobs' read gate).

        Everything counts: audio emitted and not yet taken by the transport, and audio
        buffered in the jobs. Later jobs stop a share of the budget earlier than the head,
        so whenever the head is held back, at least that share of its own audio is waiting
        for the transport: taking it is what frees the head, and nothing can deadlock.
        """
        budget_ms = self._options.pipeline.max_buffered_ms
        head_share_ms = min(_HEAD_SHARE_MS, budget_ms / 4)
        while self._jobs and job in self._jobs and job.state is JobState.STREAMING:
            limit_ms = budget_ms if job is self._jobs[0] else budget_ms - head_share_ms
            if self.ahead_ms() < limit_ms:
                return
            self._room.clear()
            await self._room.wait()

    def _emit_in_order(self) -> bool:
        progressed = False
        while self._jobs:
            job = self._jobs[0]
            chunk = self._chunks[job.index]
            data = job.take()
            if data:
                self._emit_audio(chunk, data)
                progressed = True
            if not job.finished:
                return progressed
            self._jobs.popleft()
            self._room.set()  # the next job is the head now
            self._emit_end(job, chunk)
            progressed = True
        return progressed

    def _emit_audio(self, chunk: _Chunk, data: bytes | OpusRun) -> None:
        if chunk.start_ms is None:
            chunk.start_ms = self._emitted_ms
            if chunk.sent_at is not None:
                self._note_upstream_first(self._session.clock() - chunk.sent_at)
            self._session.emit(
                ChunkStarted(self.id, chunk.index, chunk.text, chunk.start_ms, retries=0)
            )
        if self._first_audio_at is None:
            self._first_audio_at = self._session.clock()
        for event in self._pieces(chunk.index, data):
            self._session.emit(event)
            self._emitted_ms += event.duration_ms
            chunk.emitted_bytes += event.size

    def _pieces(self, index: int, data: bytes | OpusRun) -> Iterator[AudioOut]:
        """``data`` as events of at most ``_MAX_PIECE_MS`` (Opus: cut between packets)."""
        start_ms = self._emitted_ms
        if isinstance(data, OpusRun):
            for run in data.pieces(OPUS_CLOCK_RATE * _MAX_PIECE_MS // 1000):
                yield AudioOut(self.id, index, b"", self._rate, start_ms, run)
                start_ms += run.duration_ms
            return
        step = self._rate * _MAX_PIECE_MS // 1000 * 2
        for start in range(0, len(data), step):
            piece = data[start : start + step]
            yield AudioOut(self.id, index, piece, self._rate, start_ms)
            start_ms += self._ms(len(piece))

    def _note_upstream_first(self, seconds: float) -> None:
        # Follows a slower upstream at once and a faster one gradually: better a chunk
        # released a little early than a pause.
        held = self._upstream_first_s
        self._upstream_first_s = (
            seconds if held is None else max(seconds, 0.8 * held + 0.2 * seconds)
        )

    def _emit_end(self, job: ChunkJob, chunk: _Chunk) -> None:
        if job.state is JobState.DONE:
            if chunk.start_ms is None:  # a chunk with no audio at all (punctuation, say)
                chunk.start_ms = self._emitted_ms
            chunk.full_ms = self._ms(job.received_bytes)
            end = chunk.start_ms + chunk.full_ms
            words = estimate_words(chunk.text, chunk.full_ms)
            self._session.emit(
                ChunkEnded(self.id, chunk.index, chunk.text, chunk.start_ms, end, words)
            )
            return
        error = job.error or VoxgateError("chunk cancelled")
        self._session.emit(
            ChunkFailed(
                self.id,
                chunk.index,
                chunk.text,
                error.code,
                error.message,
                partial=chunk.emitted_bytes > 0,
            )
        )
        if chunk.reserved:
            self._settle(chunk, commit=0)
        chunk.settled = True

    def _finished_closing(self) -> bool:
        return self.state is ContextState.CLOSING and not self._waiting and not self._jobs

    # -- helpers -----------------------------------------------------------------------

    def _enqueue(self, released: list[Chunk]) -> None:
        for item in released:
            text = item.text
            if not text.strip():
                continue
            index = len(self._chunks)
            chunk = _Chunk(index, text, f"{self._session.id}:{self.id}:{self._turn}:{index}")
            self._chunks.append(chunk)
            self._waiting.append(chunk)
        if released:
            self._wake.set()

    def _unplayed_ms(self) -> float:
        now = self._session.clock()
        if self._played_report is not None:
            played, at = self._played_report
        elif self._first_audio_at is not None:
            played, at = 0.0, self._first_audio_at
        else:
            return 0.0
        # Between reports the listener keeps playing in real time.
        return max(0.0, self._emitted_ms - (played + (now - at) * 1000))

    def _split(self, played_ms: float) -> tuple[str, str]:
        heard, unheard = [], []
        for chunk in self._chunks:
            if chunk.start_ms is None or chunk.delivered_bytes == 0:
                unheard.append(chunk.text)
                continue
            cut = heard_cut(chunk.text, self._duration(chunk), played_ms - chunk.start_ms)
            heard.append(chunk.text[:cut])
            unheard.append(chunk.text[cut:])
        return "".join(heard), "".join(unheard)

    def _settle_interrupted(self) -> None:
        for chunk in self._chunks:
            if chunk.reserved and not chunk.settled:
                delivered = self._ms(chunk.delivered_bytes)
                cut = heard_cut(chunk.text, self._duration(chunk), delivered) if delivered else 0
                self._settle(chunk, commit=min(len(chunk.text[:cut].strip()), chunk.cost))

    def _settle(self, chunk: _Chunk, *, commit: int) -> None:
        chunk.settled = True
        if commit > 0:
            self._committed_chars += commit
            self._committed_chunks += 1
        self._session.settle(chunk.op_id, commit)

    def _duration(self, chunk: _Chunk) -> float:
        if chunk.full_ms is not None:
            return chunk.full_ms
        return max(self._ms(chunk.emitted_bytes), len(chunk.text) * _ESTIMATED_MS_PER_CHAR)

    def _ms(self, nbytes: int) -> float:
        return nbytes * 500 / self._rate

    @property
    def _is_taking_text(self) -> bool:
        return self.state is ContextState.OPEN

    def _require_open(self, action: str) -> None:
        if self.state is not ContextState.OPEN:
            raise ProtocolViolation(
                f"cannot {action} context {self.id!r}: it is {self.state}", code="context_closed"
            )

    def _set_state(self, state: ContextState) -> None:
        log.debug("context %s: %s -> %s", self.id, self.state, state)
        self.state = state
