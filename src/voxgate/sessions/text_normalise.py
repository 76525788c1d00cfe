"""Speakable text from what LLMs write: the normalisation the Segmenter applies.

:func:`normalise` is the whole-text function; :class:`TextNormaliser` computes the same
function from pieces split anywhere, even inside a marker, so
``n.feed(a) + n.feed(b) + n.finish() == normalise(a + b)`` for every split. The rules are a
deliberately small, local subset of Markdown, chosen so that every decision needs only a
bounded look ahead (``_LOOKAHEAD`` characters at most) and speech is never held for long.

Block syntax, at the start of a line (after indentation and ``>`` quote markers, which go):

* fenced code (a line opening with 3+ backticks or tildes) is dropped entirely, fences
  included, up to a closing fence at least as long, or to the end of the turn;
* ``#`` heading marks, list bullets (``-``, ``*``, ``+`` then a space; ``•``), numbering of
  1–3 digits (``1.``, ``2)``) and task boxes (``[ ]``, ``[x]``) are dropped;
* horizontal rules and setext underlines (a line of 3+ ``-``, ``*``, ``_`` or ``=``, spaces
  allowed) are dropped, and so are table delimiter rows (``|---|:--:|``);
* a line starting with ``|`` is a table row: its pipes become spaces.

Inline syntax:

* runs of ``*``, ``_`` and ``~~`` are emphasis marks, dropped when they touch a word
  (CommonMark's flanking rule, decided locally, without pairing) and always when doubled;
  kept when a single one stands between spaces (``5 * 3``), for ``_`` inside a word
  (``snake_case``), for ``*`` between digits (``2*3``), for a single ``~`` (``~5 min``),
  and anywhere inside a URL;
* inline code loses its backticks and keeps its content verbatim;
* links ``[text](url)`` become ``text``; images ``![alt](url)`` (after a space or at a line
  start) vanish; other square brackets are dropped and keep their content (they carry no
  speech);
* a backslash escape (``\\*``) yields the escaped character.

Whitespace: each run becomes one ``"\\n"`` if it holds a line break, else one ``" "``, and a
turn's text never starts or ends with whitespace. So a run is only emitted once the next
visible character arrives; :attr:`TextNormaliser.at_word_end` says one is pending.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable

__all__ = ["TextNormaliser", "normalise"]

_NEWLINE_CHARS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
_NEWLINES = frozenset(_NEWLINE_CHARS)
_NEWLINE_RE = re.compile(f"[{_NEWLINE_CHARS}]")
# The most raw text held back to decide what a marker is. The bound keeps feed() amortised
# O(len(text)) and stops a stray marker from holding speech back for long.
_LOOKAHEAD = 64
_WORD_PREFIX = 24  # how much of a word is kept to recognise a URL ("https://", "www.")
_ASCII_PUNCT = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
_RULE_CHARS = frozenset("-*_=")
_BULLETS = frozenset("-*+•◦▪‣")
_SPACED_BULLETS = frozenset("-*+")  # a bullet only when a space follows ("-5", "*em*")
_TASK_BOXES = ("[ ]", "[x]", "[X]")
_INLINE_PLAIN = re.compile(r"[^\s\\`*_~\[\]!|]+")
_CODE_PLAIN = re.compile(r"[^\s`]+")
_URL_PLAIN = re.compile(f"[^(){_NEWLINE_CHARS}]+")
_ALT_PLAIN = re.compile(f"[^\\[\\]{_NEWLINE_CHARS}]+")
_DELIMITER_ROW = re.compile(r"\|[ \t]*:?-+:?[ \t]*")
_DELIMITER_START = re.compile(r"\|[ \t]*:?")

_Handler = Callable[[bool], int | None]


class _Mode(enum.Enum):
    LINE_START = enum.auto()  # block markers are possible here
    AFTER_BULLET = enum.auto()  # a task box is possible here
    INLINE = enum.auto()
    CODE = enum.auto()  # inside `inline code`
    LINK_URL = enum.auto()  # inside the (url) of a link or image: dropped
    IMAGE_ALT = enum.auto()  # inside the [alt] of an image: dropped
    FENCE_LINE = enum.auto()  # at a line start inside fenced code: a closing fence?
    FENCE_REST = enum.auto()  # the rest of a line of fenced code: dropped
    DROP_LINE = enum.auto()  # the rest of a rule, delimiter row or closing fence


def normalise(text: str) -> str:
    """The speakable text of one turn: Markdown and code stripped, whitespace collapsed.

    This is exactly the text the Segmenter's chunks of that turn add up to.
    """
    normaliser = TextNormaliser()
    return normaliser.feed(text) + normaliser.finish()


class TextNormaliser:
    """:func:`normalise` computed incrementally: feed raw text, get what is certain."""

    def __init__(self) -> None:
        self._raw = ""
        self._pos = 0
        self._out: list[str] = []
        self._handlers: dict[_Mode, _Handler] = {
            _Mode.LINE_START: self._line_start,
            _Mode.AFTER_BULLET: self._after_bullet,
            _Mode.INLINE: self._inline,
            _Mode.CODE: self._code,
            _Mode.LINK_URL: self._link_url,
            _Mode.IMAGE_ALT: self._image_alt,
            _Mode.FENCE_LINE: self._fence_line,
            _Mode.FENCE_REST: self._fence_rest,
            _Mode.DROP_LINE: self._drop_line,
        }
        self._marks: dict[str, _Handler] = {
            "\\": self._escape,
            "`": self._code_open,
            "*": self._emphasis,
            "_": self._emphasis,
            "~": self._emphasis,
            "[": self._bracket_open,
            "]": self._bracket_close,
            "!": self._bang,
        }
        self._reset()

    def _reset(self) -> None:
        self._mode = _Mode.LINE_START
        self._space = ""  # collapsed whitespace waiting for the next visible character
        self._emitted = False  # whether this turn has produced any text yet
        self._prev = "\n"  # the last raw character consumed, for the flanking rules
        self._fence = ("", 0)
        self._ticks = 0  # length of the backtick run that opened the code span
        self._depth = 0  # nesting inside a link URL's parentheses or an image's alt
        self._brackets = 0  # "[" open on this line, which a "](" may turn into a link
        self._table_row = False
        self._word = ""  # the start of the current word, to recognise URLs
        self._in_url = False

    @property
    def at_word_end(self) -> bool:
        """True when whitespace is known to follow the text returned so far."""
        return self._emitted and bool(self._space)

    @property
    def holding(self) -> bool:
        """True when raw text (a marker, maybe) is held back until more text decides it."""
        return self._pos < len(self._raw)

    def feed(self, text: str) -> str:
        """Add raw text; return the normalised text it made certain (maybe empty)."""
        self._raw = self._raw[self._pos :] + text
        self._pos = 0
        return self._run(final=False)

    def finish(self) -> str:
        """End the turn: return everything still held, then start afresh."""
        out = self._run(final=True)
        self._raw, self._pos = "", 0
        self._reset()
        return out

    def _run(self, final: bool) -> str:
        raw = self._raw
        while self._pos < len(raw):
            consumed = self._handlers[self._mode](final)
            if consumed is None:
                break
            if consumed:
                self._pos += consumed
                self._prev = raw[self._pos - 1]
        out = "".join(self._out)
        self._out.clear()
        return out

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
        self._mode = _Mode.LINE_START
        self._table_row = False
        self._brackets = 0
        return 1

    def _to_inline(self) -> int:
        self._mode = _Mode.INLINE
        return 0

    # -- looking ahead -----------------------------------------------------------------

    def _peek(self, offset: int) -> str:
        i = self._pos + offset
        return self._raw[i] if i < len(self._raw) else ""

    def _run_length(self, char: str, final: bool) -> int | None:
        """Length of the run of ``char`` at pos, or None while it may still grow."""
        raw, start = self._raw, self._pos
        stop = min(len(raw), start + _LOOKAHEAD)
        end = start
        while end < stop and raw[end] == char:
            end += 1
        if end == len(raw) and end - start < _LOOKAHEAD and not final:
            return None
        return end - start

    def _line_ahead(self, offset: int, final: bool) -> str | None:
        """The rest of the line from pos+offset (at most _LOOKAHEAD chars), None if unknown."""
        window = self._raw[self._pos + offset : self._pos + offset + _LOOKAHEAD]
        found = _NEWLINE_RE.search(window)
        if found:
            return window[: found.start()]
        if len(window) < _LOOKAHEAD and not final:
            return None
        return window

    def _skip_line(self) -> int:
        """Drop up to the line break; return 0 at the break so the caller can handle it."""
        found = _NEWLINE_RE.search(self._raw, self._pos)
        if found is None:
            return len(self._raw) - self._pos
        return found.start() - self._pos

    # -- block syntax ------------------------------------------------------------------

    def _line_start(self, final: bool) -> int | None:
        c = self._raw[self._pos]
        if c in _NEWLINES:
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
        self._mode = _Mode.FENCE_REST
        return length

    def _heading(self, final: bool) -> int | None:
        length = self._run_length("#", final)
        if length is None:
            return None
        after = self._peek(length)
        if length <= 6 and (after == "" or after.isspace()):
            self._mode = _Mode.INLINE
            return length
        return self._to_inline()  # "#hashtag", "####### x"

    def _rule_or_bullet(self, mark: str, final: bool) -> int | None:
        if mark in _RULE_CHARS:
            rule = self._is_rule(mark, final)
            if rule is None:
                return None
            if rule:
                self._mode = _Mode.DROP_LINE
                return 0
        if mark not in _BULLETS:
            return self._to_inline()
        after = self._peek(1)
        if after == "" and not final:
            return None
        spaced = after in (" ", "\t")
        if spaced or (mark not in _SPACED_BULLETS and after not in _NEWLINES and after):
            self._mode = _Mode.AFTER_BULLET
            return 1
        return self._to_inline()

    def _is_rule(self, mark: str, final: bool) -> bool | None:
        raw, start = self._raw, self._pos
        stop = min(len(raw), start + _LOOKAHEAD)
        count = 0
        for i in range(start, stop):
            c = raw[i]
            if c == mark:
                count += 1
            elif c in _NEWLINES:
                return count >= 3
            elif c not in " \t":
                return False  # decided early, so "- item" is not held back
        if stop == len(raw) and stop - start < _LOOKAHEAD and not final:
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
            self._mode = _Mode.AFTER_BULLET
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
            if box[:3] in _TASK_BOXES and (end in ("", " ", "\t") or end in _NEWLINES):
                self._mode = _Mode.INLINE
                return 3
        return self._to_inline()

    def _table_row_start(self, final: bool) -> int | None:
        delimiter = self._is_delimiter_row(final)
        if delimiter is None:
            return None
        if delimiter:
            self._mode = _Mode.DROP_LINE
            return 0
        self._table_row = True
        return self._to_inline()  # the inline handler turns the pipe into a space

    def _is_delimiter_row(self, final: bool) -> bool | None:
        window = self._raw[self._pos : self._pos + _LOOKAHEAD]
        complete = final or len(window) >= _LOOKAHEAD
        found = _DELIMITER_ROW.match(window)
        if found is None:
            maybe = _DELIMITER_START.fullmatch(window) is not None
            return None if maybe and not complete else False
        if found.end() == len(window):
            return True if complete else None
        after = window[found.end()]
        return after == "|" or after in _NEWLINES

    def _fence_rest(self, final: bool) -> int | None:
        skipped = self._skip_line()
        if skipped:
            return skipped
        self._mode = _Mode.FENCE_LINE
        return 1

    def _fence_line(self, final: bool) -> int | None:
        c = self._raw[self._pos]
        if c in " \t>" or c in _NEWLINES:
            return 1
        mark, length = self._fence
        if c == mark:
            run = self._run_length(mark, final)
            if run is None:
                return None
            if run >= length:
                self._mode = _Mode.DROP_LINE
                return run
        self._mode = _Mode.FENCE_REST
        return 0

    def _drop_line(self, final: bool) -> int | None:
        return self._skip_line() or self._newline()

    # -- inline syntax -----------------------------------------------------------------

    def _inline(self, final: bool) -> int | None:
        raw, pos = self._raw, self._pos
        plain = _INLINE_PLAIN.match(raw, pos)
        if plain:
            self._emit(plain.group())
            return plain.end() - pos
        c = raw[pos]
        if c in _NEWLINES:
            return self._newline()
        if c.isspace() or (c == "|" and self._table_row):
            self._whitespace(False)
            return 1
        if c == "|":
            self._emit(c)
            return 1
        return self._marks[c](final)

    def _escape(self, final: bool) -> int | None:
        after = self._peek(1)
        if after == "" and not final:
            return None
        if after and after in _ASCII_PUNCT:
            self._emit(after)
            return 2
        if after and after in _NEWLINES:
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
        self._mode = _Mode.CODE
        return length

    def _code(self, final: bool) -> int | None:
        raw, pos = self._raw, self._pos
        plain = _CODE_PLAIN.match(raw, pos)
        if plain:
            self._emit(plain.group())
            return plain.end() - pos
        c = raw[pos]
        if c in _NEWLINES:  # an unclosed span ends with its line
            return self._newline()
        if c.isspace():
            self._whitespace(False)
            return 1
        length = self._run_length("`", final)
        if length is None:
            return None
        if length == self._ticks:
            self._mode = _Mode.INLINE
        else:
            self._emit("`" * length)
        return length

    def _bracket_open(self, final: bool) -> int | None:
        self._brackets += 1
        return 1

    def _bracket_close(self, final: bool) -> int | None:
        if not self._brackets:
            return 1
        after = self._peek(1)
        if after == "" and not final:
            return None
        self._brackets -= 1
        if after == "(":
            self._mode, self._depth = _Mode.LINK_URL, 1
            return 2
        return 1

    def _bang(self, final: bool) -> int | None:
        if not (self._prev.isspace() or self._prev in "(["):
            self._emit("!")  # "Wow!" cannot start an image: no need to wait for a "["
            return 1
        after = self._peek(1)
        if after == "" and not final:
            return None
        if after == "[":
            self._mode, self._depth = _Mode.IMAGE_ALT, 0
            return 2
        self._emit("!")
        return 1

    def _image_alt(self, final: bool) -> int | None:
        raw, pos = self._raw, self._pos
        plain = _ALT_PLAIN.match(raw, pos)
        if plain:
            return plain.end() - pos
        c = raw[pos]
        if c in _NEWLINES:
            return self._newline()
        if c == "[" or self._depth:
            self._depth += 1 if c == "[" else -1
            return 1
        after = self._peek(1)
        if after == "" and not final:
            return None
        if after == "(":
            self._mode, self._depth = _Mode.LINK_URL, 1
            return 2
        self._mode = _Mode.INLINE
        return 1

    def _link_url(self, final: bool) -> int | None:
        raw, pos = self._raw, self._pos
        plain = _URL_PLAIN.match(raw, pos)
        if plain:
            return plain.end() - pos
        c = raw[pos]
        if c in _NEWLINES:
            return self._newline()
        self._depth += 1 if c == "(" else -1
        if not self._depth:
            self._mode = _Mode.INLINE
        return 1
