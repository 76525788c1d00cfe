"""The Segmenter's boundary scanner: where a turn's normalised text may be cut, as it arrives.

:class:`BoundaryScanner` reads the text the :class:`~voxgate.sessions.segmenter.Segmenter`
buffers and lists the clause and sentence boundaries in it: punctuation, quotes, brackets,
line breaks and list marks here, what a period after a word means (the language's tables,
initials, list markers) in :mod:`voxgate.sessions.boundaries_periods`. Which of them make
a chunk (by length, first chunk or not) is the Segmenter's decision. A decision that needs
text that has not arrived yet waits for the next push, so without the time bound the
boundaries depend only on the text, never on how it was split into tokens.

A boundary is punctuation followed by a space (or by anything, for CJK marks and an attached
em dash), confirmed only once the next word begins. It is not a boundary inside a number
(3.14, 1,000, 10:30), a version, a URL or an e-mail address (no space follows), after an
abbreviation of the session's language (Dr., e.g., z.B., Lic., ad es.; the tables are in
:mod:`voxgate.sessions.languages`), a single letter (J. R. R. Tolkien, z. Z.), an ordinal
(am 3. Mai), or a list marker (a number at the start of the text or of a line, or after a
sentence end: "1. ", "2.)"; "a. ", "b. " in order), nor inside open quotes or brackets
(which reset at a line break; a straight quote opens one before a word, "'Stop. Think.'"). A
period, ellipsis (``...``, ``…``, ``. . .``), ``?`` or ``!`` followed by a lower-case word
ends nothing ("Yahoo! in", "I was... thinking"). A line break is a sentence boundary
(headings, list items), and so is the start of a list item inside a line ("• 10.", "⁃10.",
"2.)"). Words with nothing to say (``:)``, ``—``, emoji) after a boundary join the chunk
before it.
"""

from __future__ import annotations

import re

from voxgate.sessions.boundaries_periods import (
    CLAUSE,
    HARD_STOPS,
    ITEM_MARKS,
    ITEM_REACH,
    LOOKBEHIND,
    SENTENCE,
    Boundary,
    NeedMore,
    Next,
    PeriodReader,
    is_number,
)
from voxgate.sessions.languages import LanguageRules

__all__ = [
    "CLAUSE",
    "ITEM_REACH",
    "NO_BREAK_BEFORE",
    "SENTENCE",
    "WORD_ENDS",
    "Boundary",
    "BoundaryScanner",
]

_ITEM_MARKS = ITEM_MARKS
_HARD_STOPS = HARD_STOPS
_CJK_MARKS = frozenset("。！？，、；：")  # need no space after them
_CLAUSE_MARKS = frozenset(",;:，、；：،؛—")
_LOOSE_DASHES = frozenset("-–")  # clause marks only between spaces: "a - b", "a – b"
_PUNCT = frozenset(".?!…") | _HARD_STOPS | _CLAUSE_MARKS | _LOOSE_DASHES
_PAIRS = {
    "(": ")", "[": "]", "{": "}", "“": "”", "„": "“”", "‘": "’", "‚": "‘’", "«": "»",
    "»": "«", "‹": "›", "›": "‹", '"': '"', "「": "」", "『": "』", "【": "】", "《": "》",
    "〈": "〉", "（": "）",
}  # fmt: skip
_APOSTROPHES = frozenset("'’")  # closers only at a word's end ("don't" is one word)
_CLOSERS = frozenset("".join(_PAIRS.values())) | _APOSTROPHES
_AMBIGUOUS = _CLOSERS & frozenset(_PAIRS)  # “ « » ‹ › " ‘ open or close, by context
_SURE_CLOSERS = _CLOSERS - _AMBIGUOUS - _APOSTROPHES
_LEADING = "".join(_PAIRS) + "¿¡'’"
NO_BREAK_BEFORE = _PUNCT | _CLOSERS | {"%"}  # never start a chunk with "?" (French "Quoi ?")
WORD_ENDS = (_PUNCT - _LOOSE_DASHES) | _CLOSERS - _APOSTROPHES  # "you." is a whole word
_SPECIAL = _PUNCT | _CLOSERS | frozenset(_PAIRS) | _ITEM_MARKS | {" ", "\n"}
_PLAIN = re.compile("[^" + re.escape("".join(sorted(_SPECIAL))) + "]+")
_LEADING_MARKS = _LEADING + "".join(_ITEM_MARKS)
_CITATION = r"\[\d{1,3}(?:[–-]\d{1,3})?\]"  # "[1]", "[2–11]"
_CITED = re.compile(f"([.!?…]+[\"'”’)]*)(?:{_CITATION})+")  # "martyr.[1][2]"
_PARTIAL_CITATION = re.compile(r"(?:\[\d{0,3}(?:[–-]\d{0,3})?\]?)*")
_CITATION_WORD = re.compile(f"(?:{_CITATION})+(?=[ \n]|$)")  # "gas. [1] It"
_MAX_DEPTH = 16  # unbalanced openers beyond this are ignored
_SKIP_LIMIT = 32  # how far unspeakable words after a boundary may move it


_OPENERS = frozenset(_PAIRS) | frozenset("¿¡")
# Words that a straight quote starts as an elision, not a quotation (English, Dutch):
# "'s", "'t is", "'em", "'cause", "rock 'n' roll".
_ELIDED = frozenset({
    "s", "t", "d", "ll", "re", "ve", "m", "n", "k", "em", "tis", "twas", "cause", "cos", "til",
    "bout", "round", "nuff", "ere",
})  # fmt: skip


class BoundaryScanner(PeriodReader):
    """Lists the boundaries of one turn's text; a new turn takes a new scanner.

    The Segmenter owns the text: each call passes it as ``buf``, the text from offset
    ``base`` on (the Segmenter drops released text from its front), and offsets are
    absolute, like the Segmenter's.
    """

    leading = _LEADING_MARKS

    def __init__(self, start: int, rules: LanguageRules | None = None) -> None:
        super().__init__(start, rules)
        self.scanned = start  # the first character the scanner has not seen

    def scan(self, buf: str, base: int, final: bool) -> None:
        """Scan ``buf`` up to its end, or to where a decision needs more text.

        ``final`` says no more text comes this turn, so nothing waits for it.
        """
        self._buf, self._base = buf, base
        i = self.scanned - base
        try:
            while i < len(buf):
                i = self._scan_at(i, final)
        except NeedMore:
            pass
        self.scanned = base + i

    def cut(self, buf: str, base: int, pos: int) -> None:
        """Forget the boundaries up to a chunk cut at ``pos``, and catch up with it."""
        self._buf, self._base = buf, base
        if self.scanned < pos:
            self._skip_scan(pos)
        boundaries = self.boundaries
        kept = 0
        while kept < len(boundaries) and boundaries[kept].pos <= pos:
            kept += 1
        del boundaries[:kept]

    def _scan_at(self, i: int, final: bool) -> int:
        buf = self._buf
        plain = _PLAIN.match(buf, i)
        if plain:
            return plain.end()
        c = buf[i]
        if c == "\n":
            self._line_break(i, final)
        elif c in _ITEM_MARKS:
            if i and buf[i - 1] == " ":  # known once the item's first word begins
                nxt = self._next_word(i, self._stack, final)
                if nxt is not None:
                    self._add(Boundary(self._base + i, SENTENCE, bool(self._stack)))
        elif c in _PUNCT or c in _CLOSERS:
            stack = self._stack.copy()
            end = self._cluster_end(i, stack, final)
            if end > i:
                found = self._cluster_boundary(i, end, stack, final)
                if len(stack) == len(self._stack) and self._opens_line(i, end):
                    stack.append("'")  # "' No, they'll not", as tokenised text spaces it
                self._stack = stack
                if found is not None:
                    self._add(found)
                return end
            if c in _PAIRS:
                self._open(i)
            elif self._quote_opens(i, final):
                self._open(i, "'")  # "'Gosh, Tom", but "'em", "'90s", "don't"
        elif c in _PAIRS:
            self._open(i)
        return i + 1

    def _skip_scan(self, pos: int) -> None:
        """Catch the scanner up with a cut made beyond it (time bound): brackets only."""
        buf = self._buf
        for i in range(self.scanned - self._base, pos - self._base):
            c = buf[i]
            if c == "\n":
                self._stack = []
            elif c in _APOSTROPHES and buf[i + 1 : i + 2].isalpha():
                if self._quote_opens(i, True):
                    self._open(i, "'")
            elif _close(self._stack, c):
                continue
            elif c in _PAIRS:
                self._open(i)
        self.scanned = pos

    def _open(self, i: int, closer: str = "") -> None:
        c = self._buf[i]
        if c == '"' and i and self._buf[i - 1].isdigit():
            return  # 12" is inches, not a quote
        if len(self._stack) < _MAX_DEPTH:
            self._stack.append(closer or _PAIRS[c])

    def _opens_line(self, i: int, end: int) -> bool:
        """Whether straight quotes alone between spaces open a quote at a line's start: a
        quote between spaces elsewhere may close one opened before the turn."""
        buf = self._buf
        line_start = self._base + i == self._turn_start or (i and buf[i - 1] == "\n")
        return bool(line_start) and not buf[i:end].strip("'") and buf[end : end + 1] == " "

    def _quote_opens(self, i: int, final: bool) -> bool:
        """Whether the straight quote at ``i`` starts a quotation: at a word's start, before
        a word ("'Gosh, Tom") and no elision ("'em", "'s", "'90s"), or alone between spaces
        (" ' Guess you could"), which closes nothing when this is asked."""
        buf = self._buf
        if buf[i] != "'" or (i and not (buf[i - 1].isspace() or buf[i - 1] in _OPENERS)):
            return False
        j = i + 1
        while j < len(buf) and buf[j] == "'":  # "''", as some corpora write a double quote
            j += 1
        if j == len(buf):
            if not final:
                raise NeedMore
            return False
        if buf[j].isspace():
            return True
        if not buf[j].isalpha():
            return False
        word = self._next_letters(j, final)
        return word.lower() not in _ELIDED

    def _cluster_end(self, i: int, stack: list[str], final: bool) -> int:
        """End of the run of punctuation and closers at i, closing brackets in ``stack``."""
        buf = self._buf
        j = i
        while j < len(buf):
            c = buf[j]
            if c in _APOSTROPHES:
                if j + 1 == len(buf) and not final:
                    raise NeedMore
                if j + 1 < len(buf) and buf[j + 1].isalpha():
                    break  # "don't", "l'homme"
                _close(stack, c)
            elif c in _PUNCT or c in _SURE_CLOSERS:
                _close(stack, c)
            elif not (c in _AMBIGUOUS and _close(stack, c)):
                break
            j += 1
        if j == len(buf) and not final:
            raise NeedMore
        return j

    def _cluster_boundary(self, i: int, end: int, stack: list[str], final: bool) -> Boundary | None:
        buf = self._buf
        cluster = buf[i:end]
        kind = _kind(cluster)
        if kind is None and cluster[0] in ")]":
            i, kind = self._after_marker(i, end, stack)
            cluster = buf[i:end]
        if kind is None or end == len(buf):
            return None  # at the end of the turn the flush takes the rest anyway
        after = buf[end]
        if kind == "ellipsis" and i and buf[i - 1] in "[(":
            return None  # "[...]": an omission, not the end of anything
        if kind == "period" and i >= 2 and buf[i - 2 : i] == ". ":
            kind = "ellipsis"  # the last dot of ". . ."
        if kind in ("period", "ellipsis") and after == " ":
            if end + 1 == len(buf) and not final:
                raise NeedMore
            if buf[end + 1 : end + 2] == ".":
                return None  # ". . ." goes on: its last dot decides
        if kind == "period" and cluster.startswith(".)"):
            self._item_start(i)
        if after == " " or after == "\n":
            if kind == "dash" and i and not buf[i - 1].isspace():
                return None  # "well-known", "2010–2020"
            pos = end + 1
        elif self._attached(cluster, kind, i, after) or (
            cluster == "." and self._glued(i, end, final)
        ):
            pos = end
        else:
            return None  # inside a token: 3.14, 1,000, 10:30, v1.2.3, a.b@c.de, URLs
        nxt = self._next_word(pos, stack, final)
        if nxt is None:
            return None
        strength = self._strength(kind, cluster, i, nxt, final)
        if strength and ":" in cluster:
            self._opener_at = self._base + nxt.pos  # "He noted: In 44 B.C. Caesar died."
        if pos == end and cluster[-1] in _CLOSERS:
            strength = min(strength, CLAUSE)  # 「…。」と言った: a quote inside a sentence
        return Boundary(self._base + nxt.pos, strength, bool(nxt.stack)) if strength else None

    def _after_marker(self, i: int, end: int, stack: list[str]) -> tuple[int, str | None]:
        """A ")" or "]" that no punctuation precedes: "item 2) The" starts an item there;
        "martyr.[1] The" ends a sentence at its period, the citation joining it."""
        buf = self._buf
        if buf[i] == ")" and len(stack) == len(self._stack):  # it closed no bracket
            self._item_start(i)
            return i, None
        found = _CITED.search(buf, max(0, i - LOOKBEHIND), i + 1)
        if found is None or found.end() != i + 1:
            return i, None
        return found.start(), _kind(found.group(1))

    def _glued(self, dot: int, end: int, final: bool) -> bool:
        """ "Hello world.Today is": a period a space was left out after, between a word
        ending in two lower-case letters (or a number) and a capitalised word; never in a
        URL, an e-mail address or a dotted name ("example.com", "ASP.NET")."""
        buf = self._buf
        if end + 1 >= len(buf):
            if not final:
                raise NeedMore
            return False
        if not (buf[end].isupper() and buf[end + 1].islower()):
            return False
        token = buf[max(0, dot - LOOKBEHIND) : dot].rpartition(" ")[2]
        if any(c in token for c in "./@:") or len(token) < 2:
            return False
        word = self._next_letters(end, final)
        if buf[end + len(word) : end + len(word) + 1] in ("@", "/", "_"):
            return False  # "Jane.Doe@example.com"
        return (token[-2:].isalpha() and token[-2:].islower()) or is_number(token)

    def _attached(self, cluster: str, kind: str, i: int, after: str) -> bool:
        """Whether a boundary needs no space after it: CJK marks, "word—word"."""
        if after in _PUNCT or after in _CLOSERS:
            return False
        if any(c in _CJK_MARKS for c in cluster):
            return True
        before = self._buf[i - 1] if i else ""
        return kind == "clause" and "—" in cluster and not (before.isdigit() and after.isdigit())

    def _strength(self, kind: str, cluster: str, i: int, nxt: Next, final: bool) -> int:
        if kind == "stop":
            return SENTENCE
        lower = nxt.char.islower()
        clause = CLAUSE if any(c in _CLAUSE_MARKS for c in cluster) else 0
        if kind in ("ask", "ellipsis"):  # 'at Yahoo! in the', "I was... thinking"
            return clause if lower else SENTENCE
        if kind == "period":
            if not lower and self._period_ends(i, cluster, nxt, final):
                return SENTENCE
            return clause
        return CLAUSE

    def _next_word(self, pos: int, stack: list[str], final: bool) -> Next | None:
        """Find the next speakable word after a boundary at ``pos``.

        Words with nothing to say (":)", "—", "🎉") move the boundary past them, so they
        end the chunk before instead of making one of their own. None when only such
        words remain before the end of the turn.
        """
        buf = self._buf
        boundary = k = pos
        frozen = False  # a line break, or the skip limit, fixes the boundary
        while True:
            m = k
            if not frozen and buf[k : k + 1] == "[":  # "gas. [1] It": the citation joins
                if _PARTIAL_CITATION.match(buf, k).end() == len(buf) and not final:  # type: ignore[union-attr]
                    raise NeedMore
                cited = _CITATION_WORD.match(buf, k)
                m = cited.end() if cited else m
            while m < len(buf) and buf[m] != " " and buf[m] != "\n":
                c = buf[m]
                if c.isalnum():
                    return Next(boundary, c, m, stack)
                if not frozen:
                    closed = _closed(stack, c) if c in _CLOSERS else stack
                    # An opener ("«", "¿", "(") starts the next chunk: the boundary stays.
                    frozen = closed is stack and (
                        c in _PAIRS or c in "¿¡" or (m == k and self._quote_opens(m, final))
                    )
                    stack = closed
                m += 1
                if m - pos > _SKIP_LIMIT:
                    return Next(boundary, "", m, stack)
            if m == len(buf):
                if final:
                    return None
                raise NeedMore
            if not frozen:
                boundary = m + 1
            if buf[m] == "\n":  # the line break is a boundary of its own
                stack, frozen = [], True
            frozen = frozen or m + 1 - pos > _SKIP_LIMIT
            k = m + 1

    def _line_break(self, i: int, final: bool) -> None:
        nxt = self._next_word(i + 1, [], final)
        self._stack = []
        if nxt is not None:
            self._add(Boundary(self._base + nxt.pos, SENTENCE, False))


def _kind(cluster: str) -> str | None:
    if any(c in _HARD_STOPS for c in cluster):
        return "stop"
    if "?" in cluster or "!" in cluster:
        return "ask"
    if "…" in cluster or ".." in cluster:
        return "ellipsis"
    if "." in cluster:
        return "period"
    if any(c in _CLAUSE_MARKS for c in cluster):
        return "clause"
    if any(c in _LOOSE_DASHES for c in cluster):
        return "dash"
    return None


def _close(stack: list[str], char: str) -> bool:
    """Close the innermost open pair that ``char`` closes, and any left open inside it."""
    for k in range(len(stack) - 1, -1, -1):
        if char in stack[k]:
            del stack[k:]
            return True
    return False


def _closed(stack: list[str], char: str) -> list[str]:
    copy = stack.copy()
    return copy if _close(copy, char) else stack
