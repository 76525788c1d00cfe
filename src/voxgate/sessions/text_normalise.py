"""Speakable text from what LLMs write: the normalisation the Segmenter applies.

:func:`normalise` is the whole-text function; :class:`TextNormaliser` computes the same
function from pieces split anywhere, even inside a marker, so
``n.feed(a) + n.feed(b) + n.finish() == normalise(a + b)`` for every split. The rules are a
deliberately small, local subset of Markdown, chosen so that every decision needs only a
bounded look ahead (:data:`~voxgate.sessions.markdown_reader.LOOKAHEAD` characters at
most) and speech is never held for long.

:class:`TextNormaliser` is a state machine over the raw text, built from three parts, each
with its rules in its docstring:

* :mod:`voxgate.sessions.markdown_blocks`: block syntax, at the start of a line (fenced
  code, headings, list bullets and numbering, task boxes, rules, tables);
* :mod:`voxgate.sessions.markdown_inline`: inline syntax (emphasis, inline code, links and
  images, backslash escapes);
* :mod:`voxgate.sessions.markdown_reader`: the raw text held back, the look ahead, and the
  output, whose whitespace it collapses.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from voxgate.sessions.markdown_blocks import BlockSyntax
from voxgate.sessions.markdown_inline import InlineSyntax
from voxgate.sessions.markdown_reader import Mode

__all__ = ["TextNormaliser", "normalise"]


def normalise(text: str) -> str:
    """The speakable text of one turn: Markdown and code stripped, whitespace collapsed.

    This is exactly the text the Segmenter's chunks of that turn add up to.
    """
    normaliser = TextNormaliser()
    return normaliser.feed(text) + normaliser.finish()


class TextNormaliser(BlockSyntax, InlineSyntax):
    """:func:`normalise` computed incrementally: feed raw text, get what is certain."""

    # The handler of each mode: it reads the raw text at the cursor (``final`` at the end
    # of the turn) and returns how much it consumed (0 when it only changed the mode), or
    # None to wait for more text. The class's own functions, so that a normaliser holds
    # no bound methods of itself (a cycle only the garbage collector could free). Set below.
    _HANDLERS: ClassVar[dict[Mode, Callable[[TextNormaliser, bool], int | None]]]

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
            consumed = self._HANDLERS[self._mode](self, final)
            if consumed is None:
                break
            if consumed:
                self._pos += consumed
                self._prev = raw[self._pos - 1]
        out = "".join(self._out)
        self._out.clear()
        return out


TextNormaliser._HANDLERS = {
    Mode.LINE_START: TextNormaliser._line_start,
    Mode.AFTER_BULLET: TextNormaliser._after_bullet,
    Mode.INLINE: TextNormaliser._inline,
    Mode.CODE: TextNormaliser._code,
    Mode.LINK_URL: TextNormaliser._link_url,
    Mode.IMAGE_ALT: TextNormaliser._image_alt,
    Mode.FENCE_LINE: TextNormaliser._fence_line,
    Mode.FENCE_REST: TextNormaliser._fence_rest,
    Mode.DROP_LINE: TextNormaliser._drop_line,
}
