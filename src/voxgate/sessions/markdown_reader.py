"""The cursor and the output of the text normaliser's Markdown state machine.

:class:`MarkdownReader` holds the state that the block and inline syntax handlers share
(:mod:`voxgate.sessions.markdown_blocks`, :mod:`voxgate.sessions.markdown_inline`): the raw
text held back until a marker is decided, bounded look ahead into it, the current
:class:`Mode`, and the normalised text written so far.

Whitespace: each run becomes one ``"\\n"`` if it holds a line break, else one ``" "``, and a
turn's text never starts or ends with whitespace. So a run is only emitted once the next
visible character arrives; :attr:`TextNormaliser.at_word_end
<voxgate.sessions.text_normalise.TextNormaliser.at_word_end>` says one is pending.
"""

from __future__ import annotations

import enum
import re

__all__ = ["LOOKAHEAD", "NEWLINES", "NEWLINE_CHARS", "MarkdownReader", "Mode"]

NEWLINE_CHARS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
NEWLINES = frozenset(NEWLINE_CHARS)
_NEWLINE_RE = re.compile(f"[{NEWLINE_CHARS}]")
# The most raw text held back to decide what a marker is. The bound keeps feed() amortised
# O(len(text)) and stops a stray marker from holding speech back for long.
LOOKAHEAD = 64
_WORD_PREFIX = 24  # how much of a word is kept to recognise a URL ("https://", "www.")


class Mode(enum.Enum):
    """Where the state machine is: which handler reads the raw text next."""

    LINE_START = enum.auto()  # block markers are possible here
    AFTER_BULLET = enum.auto()  # a task box is possible here
    INLINE = enum.auto()
    CODE = enum.auto()  # inside `inline code`
    LINK_URL = enum.auto()  # inside the (url) of a link or image: dropped
    IMAGE_ALT = enum.auto()  # inside the [alt] of an image: dropped
    FENCE_LINE = enum.auto()  # at a line start inside fenced code: a closing fence?
    FENCE_REST = enum.auto()  # the rest of a line of fenced code: dropped
    DROP_LINE = enum.auto()  # the rest of a rule, delimiter row or closing fence


class MarkdownReader:
    """Raw text in, normalised text out: the state the syntax handlers share."""

    def __init__(self) -> None:
        self._raw = ""
        self._pos = 0
        self._out: list[str] = []
        self._reset()

    def _reset(self) -> None:
        self._mode = Mode.LINE_START
        self._space = ""  # collapsed whitespace waiting for the next visible character
        self._emitted = False  # whether this turn has produced any text yet
        self._prev = "\n"  # the last raw character consumed, for the flanking rules
        self._fence = ("", 0)
        self._ticks = 0  # length of the backtick run that opened the code span
        self._depth = 0  # nesting inside a link URL's parentheses or an image's alt
        self._brackets: list[bool] = []  # "[" open on this line: True for a link's text
        self._table_row = False
        self._word = ""  # the start of the current word, to recognise URLs
        self._in_url = False

    # -- emitting ----------------------------------------------------------------------

    def _emit(self, text: str) -> None:
        if self._space:
            if self._emitted:
                self._out.append(self._space)
            self._space = ""
        self._out.append(text)
        self._emitted = True
        if not self._in_url and len(self._word) < _WORD_PREFIX:
            # Always the same prefix whatever the pieces, so the result cannot depend on them.
            self._word = (self._word + text[:_WORD_PREFIX])[:_WORD_PREFIX]
            word = self._word.lstrip("(<\"'")
            self._in_url = "://" in word or word.startswith("www.")

    def _whitespace(self, newline: bool) -> None:
        self._space = "\n" if newline or self._space == "\n" else " "
        self._word = ""
        self._in_url = False

    def _newline(self) -> int:
        self._whitespace(True)
        self._mode = Mode.LINE_START
        self._table_row = False
        self._brackets = []
        return 1

    def _to_inline(self) -> int:
        self._mode = Mode.INLINE
        return 0

    # -- looking ahead -----------------------------------------------------------------

    def _peek(self, offset: int) -> str:
        i = self._pos + offset
        return self._raw[i] if i < len(self._raw) else ""

    def _run_length(self, char: str, final: bool) -> int | None:
        """Length of the run of ``char`` at pos, or None while it may still grow."""
        raw, start = self._raw, self._pos
        stop = min(len(raw), start + LOOKAHEAD)
        end = start
        while end < stop and raw[end] == char:
            end += 1
        if end == len(raw) and end - start < LOOKAHEAD and not final:
            return None
        return end - start

    def _line_ahead(self, offset: int, final: bool) -> str | None:
        """The rest of the line from pos+offset (at most LOOKAHEAD chars), None if unknown."""
        window = self._raw[self._pos + offset : self._pos + offset + LOOKAHEAD]
        found = _NEWLINE_RE.search(window)
        if found:
            return window[: found.start()]
        if len(window) < LOOKAHEAD and not final:
            return None
        return window

    def _skip_line(self) -> int:
        """Drop up to the line break; return 0 at the break so the caller can handle it."""
        found = _NEWLINE_RE.search(self._raw, self._pos)
        if found is None:
            return len(self._raw) - self._pos
        return found.start() - self._pos
