"""One text chunk's trip upstream: stream, normalise, buffer, and retry while that is honest.

A job fetches its chunk's audio as fast as the upstream gives it and buffers it; the context
takes the audio out in chunk order. A failed attempt is retried only while none of the
chunk's audio has been taken: after that, a retry would repeat words the listener heard.

A job fetches PCM, or, when its context passes Opus through (``opus=True``), the upstream's
Opus packets as they are. Either way its byte counts are on the session's PCM timeline
(see ``voxgate.codecs.opus_packets``), so the context's accounting is the same for both.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from voxgate.codecs.normalise import PcmNormaliser
from voxgate.codecs.opus_packets import OpusRun
from voxgate.errors import UpstreamError, VoxgateError
from voxgate.upstream.models import SpeechRequest
from voxgate.upstream.pcm import PcmChunk

log = logging.getLogger(__name__)


class SpeechStreamer(Protocol):
    """What a job needs of the upstream: ``voxgate.upstream.Upstream`` is one."""

    def stream(self, request: SpeechRequest) -> AsyncIterator[PcmChunk]: ...

    def stream_opus(self, request: SpeechRequest) -> AsyncIterator[OpusRun]: ...


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with full jitter, capped; ``Retry-After`` wins when it is longer."""

    attempts: int = 3
    base_delay_s: float = 0.1
    max_delay_s: float = 2.0

    def delay(self, attempt: int, error: UpstreamError) -> float:
        backoff = random.uniform(0, min(self.max_delay_s, self.base_delay_s * 2**attempt))
        if error.retry_after is not None:
            return min(max(backoff, error.retry_after), self.max_delay_s * 5)
        return backoff


# Waits until the context has room for more of this job's audio (see ``ChunkJob.start``).
Gate = Callable[["ChunkJob"], Awaitable[None]]


class JobState(StrEnum):
    STREAMING = "streaming"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class ChunkJob:
    """The audio of one chunk, arriving; ``take()`` hands over what has arrived so far."""

    def __init__(
        self,
        index: int,
        text: str,
        op_id: str,
        request: SpeechRequest,
        sample_rate: int,
        wake: asyncio.Event,
        *,
        opus: bool = False,
    ) -> None:
        self.index = index
        self.text = text
        self.op_id = op_id
        self.request = request
        self.sample_rate = sample_rate
        self.opus = opus  # Opus packets passed through, not PCM
        self.state = JobState.STREAMING
        self.error: VoxgateError | None = None
        self.attempts = 0
        self.received_bytes = 0  # on the PCM timeline, for Opus too
        self.taken_bytes = 0
        self._pieces: list[bytes] = []
        self._runs: list[OpusRun] = []
        self._wake = wake  # the context's: set whenever this job has news
        self._task: asyncio.Task[None] | None = None
        self._gate: Gate | None = None

    @property
    def held_bytes(self) -> int:
        """Audio received and not yet taken."""
        return self.received_bytes - self.taken_bytes

    @property
    def finished(self) -> bool:
        return self.state is not JobState.STREAMING

    def start(
        self, upstream: SpeechStreamer, policy: RetryPolicy, gate: Gate | None = None
    ) -> None:
        """Fetch the chunk; ``gate`` is awaited before each read of the upstream stream.

        The gate is what bounds a session's memory whatever the chunk's length: while the
        context holds as much audio as it may, the job stops reading, and the upstream's
        stream waits in TCP's flow control instead of in this process.
        """
        self._gate = gate
        self._task = asyncio.create_task(self._run(upstream, policy), name=f"chunk-{self.op_id}")
        self._task.add_done_callback(self._ended)

    def _ended(self, _: asyncio.Task[None]) -> None:
        # Let go of the task and the gate: a cancelled or failed task's traceback holds this
        # job's frames, and the gate is the context's, which holds this job. Left as cycles,
        # only the garbage collector would free them, with the audio they hold.
        self._task = None
        self._gate = None

    def take(self) -> bytes | OpusRun:
        """Everything received and not yet taken: PCM, or Opus packets."""
        if self.opus:
            run = OpusRun.join(self._runs)
            self._runs.clear()
            self.taken_bytes += run.timeline_bytes(self.sample_rate)
            return run
        data = b"".join(self._pieces)
        self._pieces.clear()
        self.taken_bytes += len(data)
        return data

    def cancel(self) -> None:
        """Abort the upstream request (closing its HTTP stream) and drop buffered audio."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self._pieces.clear()
        self._runs.clear()
        if not self.finished:
            self._set_state(JobState.CANCELLED)

    async def join(self) -> None:
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self, upstream: SpeechStreamer, policy: RetryPolicy) -> None:
        while True:
            self.attempts += 1
            try:
                await self._attempt(upstream)
            except asyncio.CancelledError:
                raise
            except UpstreamError as exc:
                if not self._may_retry(exc, policy):
                    self._fail(exc)
                    return
                delay = policy.delay(self.attempts - 1, exc)
                log.info("chunk %s: %r; retry %d in %.2f s", self.op_id, exc, self.attempts, delay)
                await asyncio.sleep(delay)
                continue
            except VoxgateError as exc:
                self._fail(exc)
                return
            except Exception as exc:
                # A bug must fail the chunk in its turn, not leave the turn waiting forever.
                log.exception("chunk %s failed", self.op_id)
                self._fail(VoxgateError(f"internal error: {exc!r}", code="internal_error"))
                return
            self._set_state(JobState.DONE)
            return

    async def _attempt(self, upstream: SpeechStreamer) -> None:
        if self.opus:
            async for run in upstream.stream_opus(self.request):
                self._append_run(run)
                if self._gate is not None:
                    await self._gate(self)
            return
        normaliser = PcmNormaliser(self.sample_rate)
        async for chunk in upstream.stream(self.request):
            self._append(normaliser.push(chunk))
            if self._gate is not None:
                await self._gate(self)
        self._append(normaliser.flush())

    def _may_retry(self, error: UpstreamError, policy: RetryPolicy) -> bool:
        if not error.retryable or self.attempts >= policy.attempts or self.taken_bytes:
            return False
        # Nothing of this chunk was heard: its partial audio can be thrown away.
        self._pieces.clear()
        self._runs.clear()
        self.received_bytes = 0
        return True

    def _append(self, data: bytes) -> None:
        if data:
            self._pieces.append(data)
            self.received_bytes += len(data)
            self._wake.set()

    def _append_run(self, run: OpusRun) -> None:
        if run:
            self._runs.append(run)
            self.received_bytes += run.timeline_bytes(self.sample_rate)
            self._wake.set()

    def fail(self, error: VoxgateError) -> None:
        """Fail without going upstream (no credit, say); reported in its turn like any other."""
        self._fail(error)

    def _fail(self, error: VoxgateError) -> None:
        self.error = error
        self._set_state(JobState.FAILED)

    def _set_state(self, state: JobState) -> None:
        log.debug("chunk %s: %s -> %s", self.op_id, self.state, state)
        self.state = state
        self._wake.set()
