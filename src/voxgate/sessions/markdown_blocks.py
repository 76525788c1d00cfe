"""Block syntax for the text normaliser: what a Markdown line starts with.

At the start of a line (after indentation and ``>`` quote markers, which go):

* fenced code (a line opening with 3+ backticks or tildes) is dropped entirely, fences
  included, up to a closing fence at least as long, or to the end of the turn;
* ``#`` heading marks, list bullets (``-``, ``*``, ``+`` then a space; ``•``) and task
  boxes (``[ ]``, ``[x]``) are dropped; numbering (``1.``, ``2)``) is kept, since a spoken
  list is read with its numbers ("1. Preheat the oven");
* horizontal rules and setext underlines (a line of 3+ ``-``, ``*``, ``_`` or ``=``, spaces
  allowed) are dropped, and so are table delimiter rows (``|---|:--:|``);
* a line starting with ``|`` is a table row: its pipes become spaces.
"""

from __future__ import annotations

import re

from voxgate.sessions.markdown_reader import LOOKAHEAD, NEWLINES, MarkdownReader, Mode

__all__ = ["BlockSyntax"]

_RULE_CHARS = frozenset("-*_=")
_BULLETS = frozenset("-*+•◦▪‣")
_SPACED_BULLETS = frozenset("-*+")  # a bullet only when a space follows ("-5", "*em*")
_TASK_BOXES = ("[ ]", "[x]", "[X]")
_DELIMITER_ROW = re.compile(r"\|[ \t]*:?-+:?[ \t]*")
_DELIMITER_START = re.compile(r"\|[ \t]*:?")


class BlockSyntax(MarkdownReader):
    """The handlers of the modes at a line start and inside fenced code."""

    def _line_start(self, final: bool) -> int | None:
        c = self._raw[self._pos]
        if c in NEWLINES:
            return self._newline()
        if c.isspace():
            self._whitespace(False)
            return 1
        if c == ">":
            return 1
        if c in "`~":
            return self._fence_open(c, final)
        if c == "#":
            return self._heading(final)
        if c in _RULE_CHARS or c in _BULLETS:
            return self._rule_or_bullet(c, final)
        if c.isdigit():
            return self._numbering(final)
        if c == "|":
            return self._table_row_start(final)
        return self._to_inline()

    def _fence_open(self, mark: str, final: bool) -> int | None:
        length = self._run_length(mark, final)
        if length is None:
            return None
        if length < 3:
            return self._to_inline()
        info = self._line_ahead(length, final)
        if info is None:
            return None
        if mark == "`" and "`" in info:  # ```x``` on one line is inline code, not a fence
            return self._to_inline()
        self._fence = (mark, length)
        self._mode = Mode.FENCE_REST
        return length

    def _heading(self, final: bool) -> int | None:
        length = self._run_length("#", final)
        if length is None:
            return None
        after = self._peek(length)
        if length <= 6 and (after == "" or after.isspace()):
            self._mode = Mode.INLINE
            return length
        return self._to_inline()  # "#hashtag", "####### x"

    def _rule_or_bullet(self, mark: str, final: bool) -> int | None:
        if mark in _RULE_CHARS:
            rule = self._is_rule(mark, final)
            if rule is None:
                return None
            if rule:
                self._mode = Mode.DROP_LINE
                return 0
        if mark not in _BULLETS:
            return self._to_inline()
        after = self._peek(1)
        if after == "" and not final:
            return None
        spaced = after in (" ", "\t")
        if spaced or (mark not in _SPACED_BULLETS and after not in NEWLINES and after):
            self._mode = Mode.AFTER_BULLET
            return 1
        return self._to_inline()

    def _is_rule(self, mark: str, final: bool) -> bool | None:
        raw, start = self._raw, self._pos
        stop = min(len(raw), start + LOOKAHEAD)
        count = 0
        for i in range(start, stop):
            c = raw[i]
            if c == mark:
                count += 1
            elif c in NEWLINES:
                return count >= 3
            elif c not in " \t":
                return False  # decided early, so "- item" is not held back
        if stop == len(raw) and stop - start < LOOKAHEAD and not final:
            return None
        return count >= 3

    def _numbering(self, final: bool) -> int | None:
        raw, start = self._raw, self._pos
        end = start
        while end < min(len(raw), start + 4) and raw[end].isdigit():
            end += 1
        digits = end - start
        if digits > 3:  # "2024. was a year" is a sentence, not item 2024
            return self._to_inline()
        if end == len(raw) and not final:
            return None
        if self._peek(digits) not in (".", ")"):
            return self._to_inline()
        after = self._peek(digits + 1)
        if after == "" and not final:
            return None
        if after in (" ", "\t"):
            self._emit(raw[start : end + 1])  # said, unlike a bullet: only a task box may go
            self._mode = Mode.AFTER_BULLET
            return digits + 1
        return self._to_inline()  # "3.14", "1.5x"

    def _after_bullet(self, final: bool) -> int | None:
        c = self._raw[self._pos]
        if c in " \t":
            self._whitespace(False)
            return 1
        if c == "[":
            box = self._raw[self._pos : self._pos + 4]
            if len(box) < 4 and not final:
                return None
            end = box[3:]
            if box[:3] in _TASK_BOXES and (end in ("", " ", "\t") or end in NEWLINES):
                self._mode = Mode.INLINE
                return 3
        return self._to_inline()

    def _table_row_start(self, final: bool) -> int | None:
        delimiter = self._is_delimiter_row(final)
        if delimiter is None:
            return None
        if delimiter:
            self._mode = Mode.DROP_LINE
            return 0
        self._table_row = True
        return self._to_inline()  # the inline handler turns the pipe into a space

    def _is_delimiter_row(self, final: bool) -> bool | None:
        window = self._raw[self._pos : self._pos + LOOKAHEAD]
        complete = final or len(window) >= LOOKAHEAD
        found = _DELIMITER_ROW.match(window)
        if found is None:
            maybe = _DELIMITER_START.fullmatch(window) is not None
            return None if maybe and not complete else False
        if found.end() == len(window):
            return True if complete else None
        after = window[found.end()]
        return after == "|" or after in NEWLINES

    def _fence_rest(self, final: bool) -> int | None:
        skipped = self._skip_line()
        if skipped:
            return skipped
        self._mode = Mode.FENCE_LINE
        return 1

    def _fence_line(self, final: bool) -> int | None:
        c = self._raw[self._pos]
        if c in " \t>" or c in NEWLINES:
            return 1
        mark, length = self._fence
        if c == mark:
            run = self._run_length(mark, final)
            if run is None:
                return None
            if run >= length:
                self._mode = Mode.DROP_LINE
                return run
        self._mode = Mode.FENCE_REST
        return 0

    def _drop_line(self, final: bool) -> int | None:
        return self._skip_line() or self._newline()
