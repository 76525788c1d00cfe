"""Cut a stream of LLM tokens into speakable chunks for TTS: pure, no I/O, explicit time.

Feed tokens with :meth:`Segmenter.push`, call :meth:`Segmenter.poll` when the clock moves
(:attr:`Segmenter.deadline` says when it matters), and :meth:`Segmenter.flush` at the end of
a turn. Each returns the chunks that became ready, in order.

**Text.** Raw text first goes through :func:`normalise` (Markdown and code stripped,
whitespace collapsed; see :mod:`voxgate.sessions.text_normalise`). Chunks are exact,
consecutive slices of that normalised stream: over a turn, ``"".join(c.text for c in
chunks) == normalise(turn_text)``, and ``start``/``end`` are offsets into the concatenation
of all turns' normalised texts. The whitespace after a boundary belongs to the chunk before
it (``"Hello there, "``), so a chunk never starts with whitespace, with one exception: when
the time bound cuts after a word whose following whitespace is not known yet, that
whitespace opens the next chunk. A turn's last chunk never ends with whitespace.

**Cuts.** The first chunk of a turn ends at the first clause or sentence boundary at least
``first_min_chars`` long; later chunks end at the first sentence boundary at least
``min_chars`` long, so short sentences are combined. What ends a clause or a sentence, and
what does not, is described in :mod:`voxgate.sessions.boundaries`. A boundary never makes a
chunk without a letter or digit: such text joins a neighbour.

**Time.** When no boundary comes, the time bound releases the pending text up to its
latest boundary making a chunk of at least ``first_min_chars``, else up to its last
complete word (one that a space, punctuation or held-back markup follows: a stall after
"for you." releases "you." too). It is counted from the arrival of the oldest pending
character, or from the previous release if that is later ("the wait"). For a first chunk
it is ``first_time_bound``, for latency. For a later chunk it is tied to the listener's
runway, which the caller gives with :meth:`Segmenter.set_runway`: the bound fires when the
listener is about to run out of audio, so a steady stream is cut only at sentence ends
however long they are, and a stalled one still gets its chunk out in time; if the
listener had already run out when the wait began, ``time_bound`` after it; while the
runway is not known, ``time_bound`` after the wait began.

**Runway.** When the audio still ahead of the listener is about to run out (the caller
knows; see :meth:`Segmenter.hurry`), a later chunk may end at its latest sentence end, or
clause boundary making at least ``first_min_chars``; when a pause is otherwise certain, at
its last complete word making at least that. Speech goes on while an LLM writes about as
fast as it is spoken, instead of pausing until ``min_chars`` or the time bound.

**Cap.** No chunk exceeds ``max_chars``: a cut is forced at the best boundary inside the
cap (sentence, clause, then boundaries inside quotes), else at the last word start, else
mid-word (only a single word longer than the cap), never between a letter and its marks.

:meth:`flush` releases the rest and resets to first-chunk mode. Without the time bound, the
cuts depend only on the text, never on how it was split into tokens (the runway, like the
time bound, depends on when text came).
"""

from __future__ import annotations

import bisect
import math
import re
import unicodedata
from collections import deque
from dataclasses import replace

from voxgate.errors import InvalidInput
from voxgate.sessions.boundaries import (
    CLAUSE,
    ITEM_REACH,
    NO_BREAK_BEFORE,
    SENTENCE,
    WORD_ENDS,
    Boundary,
    BoundaryScanner,
)
from voxgate.sessions.languages import rules_for
from voxgate.sessions.segmenter_options import (
    UPSTREAM_MAX_CHARS,
    Chunk,
    ChunkReason,
    SegmenterOptions,
)
from voxgate.sessions.text_normalise import TextNormaliser, normalise

__all__ = [
    "UPSTREAM_MAX_CHARS",
    "Chunk",
    "ChunkReason",
    "Segmenter",
    "SegmenterOptions",
    "normalise",
]


_ALNUM = re.compile(r"[^\W_]")
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_CJK_RE = re.compile(f"[{_CJK}]")
_WORD_START = re.compile(f"[ \\n]|[{_CJK}](?=[{_CJK}])")
_HISTORY = 64  # released text kept for look-behind, so cuts do not change later decisions


class Segmenter:
    """Turns pushed tokens into chunks; the module docstring gives the rules."""

    def __init__(self, options: SegmenterOptions | None = None) -> None:
        self._options = options if options is not None else SegmenterOptions()
        self._normaliser = TextNormaliser()
        self._index = 0
        self._end = 0  # offset just past the normalised text received so far
        self._now = 0.0
        self._runway: float | None = None  # when the listener runs out of audio
        self._rules = rules_for(self._options.language)
        # A flush ends the normaliser's turn, which drops the whitespace at its edges; the
        # text after it is then joined to the text before with the one space the raw
        # stream had there (none if it had none: "你好。" + "今天").
        self._after_flush = False  # no text of this turn out of the normaliser yet
        self._space_owed = False  # the raw stream had whitespace at the flush
        self._raw_since_flush = False  # a raw character came after the flush
        self._raw_space = False  # the last raw character pushed was whitespace
        self._reset_turn()

    def _reset_turn(self) -> None:
        self._first = True
        self._start = self._end  # the first character not yet released
        self._base = self._end  # offset of _buf[0]: _buf keeps some released text
        self._buf = ""
        self._scanner = BoundaryScanner(self._end, self._rules)
        self._checked = 0  # scanned boundaries before this index can never qualify
        self._word_starts: list[int] = []
        self._arrivals: deque[tuple[int, float]] = deque()  # (end offset, time) per push
        self._alnum: int | None = None  # first pending letter or digit
        self._alnum_from = self._end  # where to look for it next
        self._released_at = -math.inf  # when the last chunk went out

    @property
    def options(self) -> SegmenterOptions:
        """The thresholds this Segmenter was made with."""
        return self._options

    @property
    def deadline(self) -> float | None:
        """When :meth:`poll` will release text on the time bound; None while it cannot.

        None when nothing is pending, or no word is complete yet (the next push may change
        that), or the time bound is disabled.
        """
        if self._end == self._start:
            return None
        due = self._due()
        if math.isinf(due) or self._time_cut_pos() is None:
            return None
        return due

    def set_runway(self, out_at: float | None) -> None:
        """Say when the listener's audio runs out, on the clock of ``push`` and ``poll``.

        That is the latest moment a chunk sent upstream can leave without a pause: the end
        of the audio already queued for the listener, less the upstream's time to first
        audio. ``math.inf`` while more audio is on its way (a chunk is being synthesised);
        None when not known (the default): then ``time_bound`` alone bounds a later chunk.
        A session's context sets it before every push and poll.
        """
        if out_at is not None and (
            isinstance(out_at, bool) or not isinstance(out_at, int | float) or math.isnan(out_at)
        ):
            raise InvalidInput(f"out_at must be a time in seconds or None, got {out_at!r}")
        self._runway = out_at

    def push(self, text: str, now: float) -> list[Chunk]:
        """Add raw text received at ``now`` (seconds, any monotonic clock); return chunks."""
        if not isinstance(text, str):
            raise InvalidInput(f"text must be a string, got {type(text).__name__}")
        self._tick(now)
        normalised = self._normaliser.feed(text)
        if self._after_flush and text and not self._raw_since_flush:
            self._raw_since_flush = True
            self._space_owed = self._space_owed or text[0].isspace()
        if text:
            self._raw_space = text[-1].isspace()
        self._append(self._joined(normalised))
        return self._release(final=False)

    def poll(self, now: float) -> list[Chunk]:
        """Return the chunks the time bound releases at ``now``."""
        self._tick(now)
        return self._release(final=False)

    @property
    def pending(self) -> bool:
        """Whether text of a later chunk waits, that :meth:`hurry` may release."""
        return not self._first and self._end > self._start

    def hurry(self, now: float, to_a_word: bool = False) -> list[Chunk]:
        """The listener is about to run out of audio: release a later chunk early.

        Returns what is due anyway, then the pending text up to its latest sentence end, or
        clause boundary making at least ``first_min_chars`` (outside quotes and brackets),
        if there is one: the rest of a sentence the time bound cut ("that for you. ") may be
        short. Without such a boundary, nothing more unless ``to_a_word`` (a pause is
        certain otherwise): then up to the last complete word, as the time bound would,
        if that makes ``first_min_chars`` (never a trickle of one-word chunks).
        The first chunk of a turn is left to its own rules, already that eager.
        """
        chunks = self.poll(now)
        if not self.pending:
            return chunks
        least = self._start + self._options.first_min_chars
        cut = self._runway_boundary(least)
        if cut is None and to_a_word:
            word = self._last_word_start(
                min(self._end, self._start + self._options.max_chars), True
            )
            cut = word if word is not None and word >= least else None
        if cut is not None:
            chunks.append(self._cut(cut, "runway"))
        return chunks

    def flush(self) -> list[Chunk]:
        """Release everything buffered (end of turn); the next push starts a new turn."""
        self._append(self._joined(self._normaliser.finish()))
        chunks = self._release(final=True)
        if self._end > self._start:
            self._release_rest(chunks)
        self._reset_turn()
        if self._end:  # text came before: what comes next is joined to it
            self._space_owed = self._space_owed or self._raw_space
            self._after_flush, self._raw_since_flush = True, False
        return chunks

    # -- input -------------------------------------------------------------------------

    def _joined(self, normalised: str) -> str:
        """The first normalised text after a flush, with the one space the raw stream had
        there; it may come from a later push or from the next flush (the normaliser holds
        a number back until it knows where it ends: "5" then flush)."""
        if self._after_flush and normalised:
            if self._space_owed:
                normalised = " " + normalised
            self._after_flush = self._space_owed = False
        return normalised

    def _tick(self, now: float) -> None:
        if isinstance(now, bool) or not isinstance(now, int | float) or math.isnan(now):
            raise InvalidInput(f"now must be a time in seconds, got {now!r}")
        self._now = float(now)

    def _append(self, text: str) -> None:
        if not text:
            return
        end = self._end
        if self._buf and _CJK_RE.match(self._buf[-1]) and _CJK_RE.match(text[0]):
            self._word_starts.append(end)
        self._word_starts.extend(end + m.end() for m in _WORD_START.finditer(text))
        self._buf += text
        self._end += len(text)
        self._arrivals.append((self._end, self._now))

    # -- releasing ---------------------------------------------------------------------

    def _release(self, final: bool) -> list[Chunk]:
        chunks: list[Chunk] = []
        while True:
            self._scanner.scan(self._buf, self._base, final)
            cut = self._boundary_cut(final) or self._length_cut(final)
            if cut is None and not final:
                cut = self._time_cut()
            if cut is None:
                return chunks
            chunks.append(self._cut(*cut))

    def _boundary_cut(self, final: bool) -> tuple[int, ChunkReason] | None:
        limit = self._start + self._options.max_chars
        cands = self._scanner.boundaries
        scanned = self._scanner.scanned
        while self._checked < len(cands):
            found = cands[self._checked]
            if found.pos > scanned or found.pos > limit:
                return None  # not final yet, or too long: the length cut will decide
            if not final and self._may_become_item(found, scanned):
                return None  # "Hello, 1.) Hello": a list item may start there
            if not self._qualifies(found):
                self._checked += 1
                continue
            if self._only_marks_after(found.pos):
                if not final:
                    return None  # what follows may still say something: wait for it
                self._checked += 1
                continue
            self._checked += 1
            return found.pos, "sentence" if found.strength == SENTENCE else "clause"
        return None

    def _may_become_item(self, found: Boundary, scanned: int) -> bool:
        """Whether a clause boundary may still turn out to start a list item."""
        near = found.strength < SENTENCE and scanned <= found.pos + ITEM_REACH
        return near and _ALNUM.match(self._buf, found.pos - self._base) is not None

    def _qualifies(self, found: Boundary) -> bool:
        options = self._options
        if self._first:
            strength = CLAUSE if options.first_clause_boundaries else SENTENCE
            least = options.first_min_chars
        else:
            strength, least = SENTENCE, options.min_chars
        if found.nested or found.strength < strength or found.pos - self._start < least:
            return False
        return self._speakable_before(found.pos)

    def _only_marks_after(self, pos: int) -> bool:
        """Whether the text already received after ``pos`` is punctuation with nothing to say:
        cut there, it would leave a chunk of its own that is never spoken but charged."""
        tail = self._buf[pos - self._base :]
        return bool(tail.strip()) and _ALNUM.search(tail) is None

    def _length_cut(self, final: bool) -> tuple[int, ChunkReason] | None:
        limit = self._start + self._options.max_chars
        # Every boundary up to the cap must be known first: a list item's is found only
        # once its number is read ("oven 12. Mix" starts an item at "12").
        if self._scanner.scanned <= limit + (0 if final else ITEM_REACH):
            return None
        waiting = self._waiting_boundary(limit)
        if waiting is not None:  # as if what follows it had said something: see below
            return waiting.pos, "sentence" if waiting.strength == SENTENCE else "clause"
        pos = self._best_boundary(limit) or self._last_word_start(limit) or self._hard_cut(limit)
        return pos, "length"

    def _waiting_boundary(self, limit: int) -> Boundary | None:
        """The boundary ``_boundary_cut`` waits at to see whether speech follows its marks.

        The cap allows no more waiting, so the cut falls there: where it would have fallen
        had speech come, and where the whole text, read at once, would have put it.
        """
        cands = self._scanner.boundaries
        if self._checked >= len(cands):
            return None
        found = cands[self._checked]
        if found.pos > min(self._scanner.scanned, limit) or not self._qualifies(found):
            return None
        return found if self._only_marks_after(found.pos) else None

    def _best_boundary(self, limit: int, least: int = 1) -> int | None:
        """The latest strongest boundary up to ``limit`` making a chunk of ``least`` chars."""
        best: Boundary | None = None
        for found in self._scanner.boundaries:
            if found.pos > limit:
                break
            if found.pos - self._start < least:
                continue
            rank = (not found.nested, found.strength)
            better = best is None or rank >= (not best.nested, best.strength)
            if better and self._speakable_before(found.pos):
                best = found
        return best.pos if best else None

    def _last_word_start(self, limit: int, at_end: bool = False) -> int | None:
        alnum = self._first_alnum()
        if alnum is None:
            return None
        if at_end and alnum < self._end <= limit and self._ends_word():
            return self._end
        starts = self._word_starts
        for k in range(bisect.bisect_right(starts, limit) - 1, -1, -1):
            if starts[k] <= alnum:
                return None
            if self._buf[starts[k] - self._base] not in NO_BREAK_BEFORE:
                return starts[k]
        return None

    def _ends_word(self) -> bool:
        """Whether the text so far ends a word, so the time bound may cut right there.

        Besides a following space, punctuation or held-back markup ("you.", "**done**")
        ends a word: an LLM that stalls for a tool call after "for you." is heard whole.
        """
        last = self._buf[-1]
        normaliser = self._normaliser
        ends = last in WORD_ENDS or bool(_CJK_RE.match(last))
        return ends or normaliser.at_word_end or normaliser.holding

    def _hard_cut(self, limit: int) -> int:
        pos = limit
        while pos > self._start + 1 and _joined(self._buf, pos - self._base):
            pos -= 1
        return pos

    def _runway_boundary(self, least: int) -> int | None:
        """The latest final boundary outside quotes and brackets: a sentence end, or a
        clause boundary at ``least`` or later."""
        limit = min(self._scanner.scanned, self._start + self._options.max_chars)
        latest = None
        for found in self._scanner.boundaries:
            if found.pos > limit:
                break
            long_enough = found.strength == SENTENCE or found.pos >= least
            if long_enough and not found.nested and self._speakable_before(found.pos):
                latest = found.pos
        return latest

    def _time_cut(self) -> tuple[int, ChunkReason] | None:
        if self._end == self._start or self._now < self._due():
            return None
        pos = self._time_cut_pos()
        return (pos, "time") if pos is not None else None

    def _time_cut_pos(self) -> int | None:
        limit = min(self._end, self._start + self._options.max_chars)
        # A boundary makes a better chunk than the last word, unless it makes a tiny one.
        best = self._best_boundary(limit, self._options.first_min_chars)
        return best or self._last_word_start(limit, at_end=True)

    def _due(self) -> float:
        """When the time bound fires (see the module docstring, **Time**)."""
        options, since = self._options, self._pending_since()
        if self._first:
            return since + options.first_time_bound
        runway = self._runway
        if runway is None or runway <= since or math.isinf(options.time_bound):
            return since + options.time_bound
        return runway

    def _pending_since(self) -> float:
        """When the time bound started: text cannot be due before the previous chunk left."""
        while self._arrivals[0][0] <= self._start:
            self._arrivals.popleft()
        return max(self._arrivals[0][1], self._released_at)

    def _cut(self, pos: int, reason: ChunkReason) -> Chunk:
        text = self._buf[self._start - self._base : pos - self._base]
        chunk = Chunk(text, self._index, self._start, pos, reason)
        self._index += 1
        self._start, self._first, self._checked = pos, False, 0
        self._released_at = self._now
        self._scanner.cut(self._buf, self._base, pos)
        del self._word_starts[: bisect.bisect_right(self._word_starts, pos)]
        if self._alnum is not None and self._alnum < pos:
            self._alnum = None
        self._alnum_from = max(self._alnum_from, pos)
        self._compact()
        return chunk

    def _release_rest(self, chunks: list[Chunk]) -> None:
        rest = self._buf[self._start - self._base :]
        last = chunks[-1] if chunks else None
        fits = last is not None and len(last.text) + len(rest) <= self._options.max_chars
        if last is not None and fits and self._first_alnum() is None:
            chunks[-1] = replace(last, text=last.text + rest, end=self._end)
        else:
            chunks.append(Chunk(rest, self._index, self._start, self._end, "flush"))
            self._index += 1
        self._start = self._end

    def _compact(self) -> None:
        drop = self._start - _HISTORY - self._base
        if drop > 1024:  # rarely, so appends stay cheap
            self._buf = self._buf[drop:]
            self._base += drop

    def _first_alnum(self) -> int | None:
        if self._alnum is None and self._alnum_from < self._end:
            found = _ALNUM.search(self._buf, self._alnum_from - self._base)
            if found:
                self._alnum = self._base + found.start()
            else:
                self._alnum_from = self._end
        return self._alnum

    def _speakable_before(self, pos: int) -> bool:
        alnum = self._first_alnum()
        return alnum is not None and alnum < pos


def _joined(buf: str, i: int) -> bool:
    """Whether cutting before buf[i] would split a character from its combining marks."""
    return unicodedata.category(buf[i]).startswith("M") or "\u200d" in buf[i - 1 : i + 1]
