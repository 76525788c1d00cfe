"""Inline syntax for the text normaliser: emphasis, code spans, links, images, escapes.

* runs of ``*``, ``_`` and ``~~`` are emphasis marks, dropped when they touch a word
  (CommonMark's flanking rule, decided locally, without pairing) and always when doubled;
  kept when a single one stands between spaces (``5 * 3``), for ``_`` inside a word
  (``snake_case``), for ``*`` between digits (``2*3``), for a single ``~`` (``~5 min``),
  and anywhere inside a URL;
* inline code loses its backticks and keeps its content verbatim;
* links ``[text](url)`` become ``text``; images ``![alt](url)`` (after a space or at a line
  start) vanish; other square brackets are kept ("[...]", "[1]"): a ``[`` is a link's only
  when its ``](`` comes within :data:`~voxgate.sessions.markdown_reader.LOOKAHEAD`
  characters on its line, and a ``](`` always starts a URL, which is dropped;
* a backslash escape (``\\*``) yields the escaped character.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import ClassVar

from voxgate.sessions.markdown_reader import (
    LOOKAHEAD,
    NEWLINE_CHARS,
    NEWLINES,
    MarkdownReader,
    Mode,
)

__all__ = ["InlineSyntax"]

_ASCII_PUNCT = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
_INLINE_PLAIN = re.compile(r"[^\s\\`*_~\[\]!|]+")
_CODE_PLAIN = re.compile(r"[^\s`]+")
_URL_PLAIN = re.compile(f"[^(){NEWLINE_CHARS}]+")
_ALT_PLAIN = re.compile(f"[^\\[\\]{NEWLINE_CHARS}]+")


class InlineSyntax(MarkdownReader):
    """The handlers of the modes inside a line: plain text, code spans, links and images."""

    # What each marker starts: the class's own functions, so that a reader holds no bound
    # methods of itself (a cycle only the garbage collector could free). Set below.
    _MARKS: ClassVar[dict[str, Callable[[InlineSyntax, bool], int | None]]]

    def _inline(self, final: bool) -> int | None:
        raw, pos = self._raw, self._pos
        plain = _INLINE_PLAIN.match(raw, pos)
        if plain:
            self._emit(plain.group())
            return plain.end() - pos
        c = raw[pos]
        if c in NEWLINES:
            return self._newline()
        if c.isspace() or (c == "|" and self._table_row):
            self._whitespace(False)
            return 1
        if c == "|":
            self._emit(c)
            return 1
        return self._MARKS[c](self, final)

    def _escape(self, final: bool) -> int | None:
        after = self._peek(1)
        if after == "" and not final:
            return None
        if after and after in _ASCII_PUNCT:
            self._emit(after)
            return 2
        if after and after in NEWLINES:
            return 1  # a hard line break: the newline itself follows
        self._emit("\\")
        return 1

    def _emphasis(self, final: bool) -> int | None:
        mark = self._raw[self._pos]
        length = self._run_length(mark, final)
        if length is None:
            return None
        literal = self._in_url or (mark == "~" and length == 1)
        if literal or not self._is_emphasis(mark, length, self._peek(length)):
            self._emit(mark * length)
        return length

    def _is_emphasis(self, mark: str, length: int, after: str) -> bool:
        before = self._prev
        if mark == "_" and before.isalnum() and after.isalnum():
            return False  # snake_case, __dunder__ inside a word
        if mark == "*" and before.isdigit() and after.isdigit():
            return False  # 2*3, 2**8
        if length > 1:
            return True  # "**" or "__" is never prose, even alone
        opens = after != "" and not after.isspace()
        return opens or not before.isspace()

    def _code_open(self, final: bool) -> int | None:
        length = self._run_length("`", final)
        if length is None:
            return None
        self._ticks = length
        self._mode = Mode.CODE
        return length

    def _code(self, final: bool) -> int | None:
        raw, pos = self._raw, self._pos
        plain = _CODE_PLAIN.match(raw, pos)
        if plain:
            self._emit(plain.group())
            return plain.end() - pos
        c = raw[pos]
        if c in NEWLINES:  # an unclosed span ends with its line
            return self._newline()
        if c.isspace():
            self._whitespace(False)
            return 1
        length = self._run_length("`", final)
        if length is None:
            return None
        if length == self._ticks:
            self._mode = Mode.INLINE
        else:
            self._emit("`" * length)
        return length

    def _bracket_open(self, final: bool) -> int | None:
        link = self._link_ahead(final)
        if link is None:
            return None
        self._brackets.append(link)
        if not link:
            self._emit("[")
        return 1

    def _link_ahead(self, final: bool) -> bool | None:
        """Whether the "[" at pos opens a link's text: its "]" is followed by "("."""
        raw, start = self._raw, self._pos
        stop = min(len(raw), start + LOOKAHEAD)
        depth, i = 0, start + 1
        while i < stop:
            c = raw[i]
            if c in NEWLINES:
                return False
            if c == "\\":
                i += 2
                continue
            if c == "[":
                depth += 1
            elif c == "]":
                if depth == 0:
                    if i + 1 < len(raw):
                        return raw[i + 1] == "("
                    return False if final else None
                depth -= 1
            i += 1
        return False if final or stop - start >= LOOKAHEAD else None

    def _bracket_close(self, final: bool) -> int | None:
        after = self._peek(1)
        if after == "" and not final:
            return None
        link = self._brackets.pop() if self._brackets else False
        if after == "(":  # a URL is never spoken, whatever opened its text
            self._mode, self._depth = Mode.LINK_URL, 1
            return 2
        if not link:
            self._emit("]")
        return 1

    def _bang(self, final: bool) -> int | None:
        if not (self._prev.isspace() or self._prev in "(["):
            self._emit("!")  # "Wow!" cannot start an image: no need to wait for a "["
            return 1
        after = self._peek(1)
        if after == "" and not final:
            return None
        if after == "[":
            self._mode, self._depth = Mode.IMAGE_ALT, 0
            return 2
        self._emit("!")
        return 1

    def _image_alt(self, final: bool) -> int | None:
        raw, pos = self._raw, self._pos
        plain = _ALT_PLAIN.match(raw, pos)
        if plain:
            return plain.end() - pos
        c = raw[pos]
        if c in NEWLINES:
            return self._newline()
        if c == "[" or self._depth:
            self._depth += 1 if c == "[" else -1
            return 1
        after = self._peek(1)
        if after == "" and not final:
            return None
        if after == "(":
            self._mode, self._depth = Mode.LINK_URL, 1
            return 2
        self._mode = Mode.INLINE
        return 1

    def _link_url(self, final: bool) -> int | None:
        raw, pos = self._raw, self._pos
        plain = _URL_PLAIN.match(raw, pos)
        if plain:
            return plain.end() - pos
        c = raw[pos]
        if c in NEWLINES:
            return self._newline()
        self._depth += 1 if c == "(" else -1
        if not self._depth:
            self._mode = Mode.INLINE
        return 1


InlineSyntax._MARKS = {
    "\\": InlineSyntax._escape,
    "`": InlineSyntax._code_open,
    "*": InlineSyntax._emphasis,
    "_": InlineSyntax._emphasis,
    "~": InlineSyntax._emphasis,
    "[": InlineSyntax._bracket_open,
    "]": InlineSyntax._bracket_close,
    "!": InlineSyntax._bang,
}
