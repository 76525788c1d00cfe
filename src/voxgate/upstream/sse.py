"""A sans-I/O parser for Server-Sent Events, as the WHATWG HTML standard defines them.

Feed it bytes as they arrive, in pieces of any size; it returns the events they complete.
The HTTP layer around it stays a thin loop, and the parser can be tested and fuzzed alone.
"""

from __future__ import annotations

from dataclasses import dataclass

_MAX_LINE = 16 * 1024 * 1024  # one base64 audio delta of several seconds fits comfortably


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    event: str
    data: str
    id: str | None = None


class SSEParser:
    """Incremental SSE decoder: ``feed(bytes) -> list[ServerSentEvent]``.

    Lines may end in CR, LF or CRLF, and a CRLF may be split across two feeds: a CR ends
    its line at once, and an LF that starts the next feed is then skipped.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._event = ""
        self._data: list[str] = []
        self._last_id: str | None = None
        self._seen_field = False
        self._first_line = True
        self._skip_lf = False

    def feed(self, data: bytes) -> list[ServerSentEvent]:
        self._buffer += data
        events: list[ServerSentEvent] = []
        for line in self._take_lines():
            event = self._handle_line(line)
            if event is not None:
                events.append(event)
        if len(self._buffer) > _MAX_LINE:
            raise ValueError(f"SSE line longer than {_MAX_LINE} bytes")
        return events

    def pending(self) -> bool:
        """True when bytes or fields of an unfinished event are buffered."""
        return bool(self._buffer.strip()) or self._seen_field

    def _take_lines(self) -> list[str]:
        lines: list[str] = []
        buf = self._buffer
        start = 0
        if self._skip_lf and buf[:1] == b"\n":
            start = 1
        self._skip_lf = False
        while True:
            lf, cr = buf.find(b"\n", start), buf.find(b"\r", start)
            if lf == -1 and cr == -1:
                break
            end = lf if cr == -1 or (lf != -1 and lf < cr) else cr
            lines.append(self._decode(buf[start:end]))
            start = end + 1
            if buf[end] == 0x0D:
                if start == len(buf):
                    self._skip_lf = True  # the LF of a CRLF may come in the next feed
                elif buf[start] == 0x0A:
                    start += 1
        del buf[:start]
        return lines

    def _decode(self, raw: bytes | bytearray) -> str:
        line = bytes(raw).decode("utf-8", errors="replace")
        if self._first_line:
            self._first_line = False
            line = line.removeprefix("\ufeff")
        return line

    def _handle_line(self, line: str) -> ServerSentEvent | None:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return None  # comment, used as keep-alive
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        self._seen_field = True
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\x00" not in value:
            self._last_id = value
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        seen, self._seen_field = self._seen_field, False
        event, self._event = self._event, ""
        data, self._data = self._data, []
        if not seen or not data:
            return None
        return ServerSentEvent(event=event or "message", data="\n".join(data), id=self._last_id)
