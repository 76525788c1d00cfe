"""The writer of a realtime socket's queue, and the watch on a client that stopped reading.

The sender writes what ``Outbound`` releases, one message at a time, as fast as the socket
takes it (or paced, if the client asked for real time). A client that takes nothing for
``max_queued_audio_ms`` is a slow reader: its turns stop at what it took, and it is closed
with 1013 once the audio already in its buffers, then the error, have gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

from voxgate.errors import LimitExceeded
from voxgate.gateway import protocol as p
from voxgate.gateway import wire
from voxgate.gateway.realtime.closing import CLOSE_TRY_AGAIN

if TYPE_CHECKING:
    from voxgate.gateway.realtime.connection import RealtimeConnection

log = logging.getLogger("voxgate.gateway.realtime")  # the package's: one name for its logs

# How often a blocked write checks whether the client still takes anything.
STALL_CHECK_S = 0.05
# A client that stopped reading keeps its connection this long after the close frame was
# queued behind its audio, so that reading again it gets the audio, the error and 1013.
SLOW_READER_GRACE_S = 10.0


def _ignore_outcome(task: asyncio.Future[None]) -> None:
    if not task.cancelled():
        task.exception()


class Sender:
    """Writes a connection's ``Outbound`` queue to its socket, one socket at a time."""

    def __init__(self, conn: RealtimeConnection) -> None:
        self.conn = conn
        self._task: asyncio.Task[None] | None = None
        self._closer: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Write the queue to the connection's socket (the session's first, or a new one)."""
        conn = self.conn
        self._task = asyncio.create_task(self._run(), name=f"send-{conn.session_id}")
        conn.tasks.append(self._task)

    def stop(self) -> None:
        """The socket is gone: what is queued waits for the next one."""
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def closed(self) -> None:
        """Until a slow reader's close is done with (the connection is ending)."""
        if self._closer is not None:
            await asyncio.gather(self._closer, return_exceptions=True)
            self._closer = None

    async def _run(self) -> None:
        conn = self.conn
        out, ws = conn.outbound, conn.ws
        assert out is not None
        first_audio = conn.turns.first_audio
        while True:
            item = await out.next()
            if ws.closed:  # the socket dropped: the next one takes this first
                out.unsent(item)
                return
            if item.media_s is not None:
                first_audio(item.context_id)
            try:
                taken = await self._write_watched(item.payload)
            except (ConnectionError, RuntimeError, asyncio.CancelledError) as exc:
                # The socket dropped under the write: part of it may have gone. It counts
                # as taken, and the ring has it for a resume (the client's last_seq decides).
                out.sent(item)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                return
            out.sent(item)  # in the socket's buffer either way: a client that reads gets it
            if not taken:
                self._drop_slow_reader()
                return

    async def _write_watched(self, payload: str | bytes) -> bool:
        """Write one message; False when the client took nothing for the stall limit.

        A message the transport's buffer has room for is written at once. One that may
        have to wait for the buffer to drain is written in a task of its own, watched: the
        client is stalled when the buffer has not shrunk for ``max_queued_audio_ms``. The
        write is never cancelled (aiohttp's drain must not be), and a client that reads,
        however slowly, is not stalled: the session's lookahead bounds what waits for it.
        """
        conn = self.conn
        transport = conn.transport
        stall_limit = conn.settings.max_queued_audio_ms / 1000
        if transport is None:  # a data channel: nothing to watch, nothing that blocks long
            try:
                async with asyncio.timeout(stall_limit):
                    await self._write(payload)
            except TimeoutError:
                return False
            return True
        high_water = transport.get_write_buffer_limits()[1]
        if transport.get_write_buffer_size() + len(payload) <= high_water:
            await self._write(payload)  # the transport will not pause: nothing to wait for
            return True
        write = asyncio.ensure_future(self._write(payload))
        size, progress_at = transport.get_write_buffer_size(), time.monotonic()
        while not write.done():
            await asyncio.wait((write,), timeout=STALL_CHECK_S)
            now_size = transport.get_write_buffer_size()
            if now_size < size:
                progress_at = time.monotonic()
            elif time.monotonic() - progress_at >= stall_limit and not write.done():
                write.add_done_callback(_ignore_outcome)  # it ends with the connection
                return False
            size = now_size
        write.result()
        return True

    async def _write(self, payload: str | bytes) -> None:
        if isinstance(payload, bytes):
            await self.conn.ws.send_bytes(payload)
        else:
            await self.conn.ws.send_str(payload)

    def _drop_slow_reader(self) -> None:
        """The client stopped reading: stop its audio, charge what the socket took, close.

        Its turns end as an interrupt at what the socket took (to the word). The error and
        the close frame queue behind the audio already in the socket; the connection is
        kept for ``SLOW_READER_GRACE_S`` so a client that reads again sees them, then 1013.
        """
        conn = self.conn
        stalled_s = conn.settings.max_queued_audio_ms / 1000
        error = LimitExceeded(
            f"the client has not read its audio for {stalled_s:g} s", code="slow_reader"
        )
        conn.services.metrics.errors.labels(error.code).inc()
        log.info("session %s: %s; closing with 1013", conn.session_id, error.message)
        conn.closing = True
        # What each turn came to (heard, charged) goes first, then the error, then the close.
        stopped = conn.playback.stop_audio()
        frames = [p.encode_server_message(wire.message_for(e)) for e in stopped]
        frames.append(
            p.encode_server_message(p.ErrorOut(code=error.code, message=error.message, fatal=True))
        )
        self._closer = asyncio.create_task(self._close_slow_reader(frames, error.code))

    async def _close_slow_reader(self, frames: list[str], reason: str) -> None:
        conn = self.conn
        try:
            async with asyncio.timeout(SLOW_READER_GRACE_S):
                with contextlib.suppress(ConnectionError, RuntimeError):
                    for frame in frames:
                        await conn.ws.send_str(frame)
                    await conn.ws.close(code=CLOSE_TRY_AGAIN, message=reason.encode())
        except TimeoutError:
            pass
        finally:  # never read again: let the connection go
            if conn.transport is not None:
                conn.transport.abort()
