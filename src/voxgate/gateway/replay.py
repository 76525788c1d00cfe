"""What a session's socket took lately, kept to be sent again when the session resumes.

A socket that drops takes with it whatever sat in its buffers. The client says the ``seq``
of the last audio frame it received; the ring gives back every message sent after that
frame (audio and events, in the order they went), so the new socket continues without a
gap and without a repeat. It holds the messages as they were written (already packed),
bounded by bytes: the oldest go first. Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections import deque
from typing import Generic, Protocol, TypeVar

from voxgate.codecs.encoded_audio import WRAP
from voxgate.errors import InvalidInput, VoxgateError


class Sent(Protocol):
    @property
    def payload(self) -> str | bytes: ...

    @property
    def seq(self) -> int | None: ...  # an audio frame's, unwrapped; None for an event


Item = TypeVar("Item", bound=Sent)


class ReplayRing(Generic[Item]):
    """The messages a socket took, newest last, at most ``max_bytes`` of payload."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: deque[Item] = deque()
        self._bytes = 0
        self._newest_seq = -1  # of the newest audio frame ever taken; -1: none yet
        self._floor_seq = -1  # of the newest audio frame dropped; -1: none dropped
        # Whether every message sent after the floor frame (or since the start) is still held.
        self._floor_whole = True

    def __len__(self) -> int:
        return len(self._items)

    @property
    def bytes(self) -> int:
        return self._bytes

    def append(self, item: Item) -> None:
        self._items.append(item)
        self._bytes += len(item.payload)
        if item.seq is not None:
            self._newest_seq = max(self._newest_seq, item.seq)
        while self._bytes > self.max_bytes and self._items:
            old = self._items.popleft()
            self._bytes -= len(old.payload)
            if old.seq is None:
                self._floor_whole = False  # an event after the floor frame is gone
            else:
                self._floor_seq, self._floor_whole = old.seq, True

    def take_after(self, last_seq: int | None) -> list[Item]:
        """Remove and return what was sent after audio frame ``last_seq`` (wrapped, as on
        the wire); None: after nothing, i.e. everything since the socket's first message.

        Raises ``resume_gap`` when some of that is no longer held, and ``invalid_input``
        for a frame that was never sent.
        """
        start = self._start_after(last_seq)
        taken = [self._items[i] for i in range(start, len(self._items))]
        for _ in taken:
            self._bytes -= len(self._items.pop().payload)
        return taken

    def _start_after(self, last_seq: int | None) -> int:
        if last_seq is None:
            if self._floor_seq >= 0 or not self._floor_whole:
                raise _gap("the first messages of the session")
            return 0
        seq = self._unwrap(last_seq)
        if seq == self._floor_seq and self._floor_whole:
            return 0
        for index in range(len(self._items) - 1, -1, -1):
            if self._items[index].seq == seq:
                return index + 1
        if seq <= self._floor_seq:
            raise _gap(f"the messages after audio frame {last_seq}")
        raise InvalidInput(f"no audio frame with seq {last_seq} was sent", code="invalid_input")

    def _unwrap(self, last_seq: int) -> int:
        """The frame's position in the session's count, the newest frame with that seq."""
        seq = self._newest_seq - (self._newest_seq - last_seq) % WRAP
        if seq < 0:
            raise InvalidInput(f"no audio frame with seq {last_seq} was sent", code="invalid_input")
        return seq


def _gap(what: str) -> VoxgateError:
    return VoxgateError(
        f"{what} are no longer held (VOXGATE_RESUME_REPLAY_BYTES); "
        "the session cannot continue without losing audio",
        code="resume_gap",
    )
