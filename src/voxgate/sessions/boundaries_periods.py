"""What a period means, for the boundary scanner: the turn's boundaries and the rules of
the session's language.

:class:`PeriodReader` is the part of :class:`~voxgate.sessions.boundaries.BoundaryScanner`
that decides whether a period after a word ends a sentence: the word's tables
(:mod:`voxgate.sessions.languages`: titles, abbreviations, before numbers, ordinals,
times and eras), initials ("J. R. R.", "U. A. E."), list markers, numbered ("1.", "2.)")
and lettered ("a.", "b."), each item starting a sentence, and the opening of the sentence
(a fronted "At 5 a.m." goes on). It keeps what a turn has shown so far: whether a list has
begun, where the current sentence began, and the boundaries found and not yet cut.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from voxgate.sessions.languages import LanguageRules, rules_for

__all__ = [
    "CLAUSE",
    "HARD_STOPS",
    "ITEM_MARKS",
    "ITEM_REACH",
    "LOOKBEHIND",
    "SENTENCE",
    "Boundary",
    "NeedMore",
    "Next",
    "PeriodReader",
    "is_number",
]

CLAUSE, SENTENCE = 1, 2
ITEM_REACH = 3  # a list item's boundary is found up to this far before the scan ("123.")
ITEM_MARKS = frozenset("•⁃")  # inside a line, each starts a list item
HARD_STOPS = frozenset("。！？।॥؟۔")  # end a sentence whatever case follows
LOOKBEHIND = 40  # enough for any abbreviation and the word before it
_FIRST_WORD = re.compile(r"[\W\d_]*?([^\W\d_]+)")
_ELISION = re.compile("^[^\\W\\d_]{1,3}['’]")  # "l'", "dell'", "d’": before an abbreviation


class Boundary(NamedTuple):
    """A place where a chunk may end."""

    pos: int  # where the next chunk would start
    strength: int  # CLAUSE or SENTENCE
    nested: bool  # inside open quotes or brackets


class Next(NamedTuple):
    pos: int  # the boundary, moved past any unspeakable words
    char: str  # first letter or digit of the next speakable word ("" when not looked for)
    at: int  # where that character is
    stack: list[str]  # open quotes and brackets at pos


class NeedMore(Exception):
    """A decision needs text that has not arrived yet; scanning resumes on the next push."""


class PeriodReader:
    """The boundaries of one turn and what its periods mean; the base of the scanner.

    ``_buf`` is the text of the current call, from offset ``_base``; offsets are absolute.
    """

    leading = ""  # marks stripped from the front of a word before looking it up

    def __init__(self, start: int, rules: LanguageRules | None = None) -> None:
        self._rules = rules if rules is not None else rules_for("en")
        self._turn_start = start
        self._numbered = False  # a numbered list started with "1." in this turn
        self._lettered = ""  # the last letter of a lettered list ("a.", "b.") in this turn
        self._opener_at = start  # where the current sentence (or text after a colon) began
        self.boundaries: list[Boundary] = []  # found so far and not yet cut, in order
        self._stack: list[str] = []  # closers expected for the open quotes and brackets
        self._buf = ""  # the text of the current call, from offset _base
        self._base = start

    def _add(self, found: Boundary) -> None:
        if found.strength == SENTENCE:
            self._opener_at = found.pos
        cands = self.boundaries
        if cands and found.pos <= cands[-1].pos:
            last = cands[-1]
            if found.pos == last.pos:  # "Title:\nNext": the clause and the line break agree
                strength = max(last.strength, found.strength)
                cands[-1] = Boundary(found.pos, strength, last.nested and found.nested)
            return
        cands.append(found)

    def _period_ends(self, i: int, cluster: str, nxt: Next, final: bool) -> bool:
        word, previous = self._words_before(i)
        rules = self._rules
        if word.isdigit() and len(word) <= 3:
            if cluster.startswith(".)") or self._list_marker(i - len(word)):
                self._numbered = True
                return False  # "1. Preheat", "oven. 2. Mix", "2.) The"
            if self._numbered and previous and previous[-1].isalpha():
                self._item_start(i)  # "1. The first item 2. The second item"
                return False
            if rules.ordinal_words:  # "am 3. Mai", "im 1. Jahrhundert"
                return self._next_letters(nxt.at, final).lower() not in rules.ordinal_words
            return True
        if len(word) == 1 and word.isalpha() and self._letter_item(i):
            return False  # "a. The first item b. The second item"
        key = _ELISION.sub("", word.lower())  # "l'Ing." is "Ing."
        if key in rules.may_end:  # "at 6 a.m. The birds", "in 753 B.C. Augustus became"...
            return self._starter(nxt.at, final) or not self._fronted(i - len(word))
        if is_number(previous):  # "5 ms." and "5 lb." are units...
            return not nxt.char.isdigit()  # ...and "2 lb. 4 oz." goes on
        pair = f"{previous.lower().rstrip('.')} {key}"  # "ad es.", "Dr. med."
        last = key.rpartition(".")[2]  # "Tuesday.Mr." ends with a title
        if key in rules.titles or pair in rules.titles or last in rules.titles:
            return False
        if len(word) == 1 and word.isalpha():  # an initial ("J. R. R."), "z. Z."...
            return self._starter(nxt.at, final)  # ...but "you and I. Did you"
        if key in rules.before_numbers and (nxt.char.isdigit() or self._roman(nxt.at, final)):
            return False  # "No. 5", "Vol. II"
        if key in rules.abbreviations or pair in rules.abbreviations or _is_dotted(key):
            # "the U.S. Army", "z.B. Äpfel", but "in the U.S. How about you?"
            return self._starter(nxt.at, final)
        return True

    def _letter_item(self, dot: int) -> bool:
        """ "a. The first item b. The second": a lettered list begins with "a." where a list
        marker may stand and goes on letter by letter, each item starting at its letter."""
        letter, at = self._buf[dot - 1].lower(), dot - 1
        if letter == "a" and self._list_marker(at):
            self._lettered = "a"
            return True
        if not self._lettered or letter != chr(ord(self._lettered) + 1):
            return False  # an initial: "J. R. R. Tolkien", "Plan B. Then"
        self._lettered = letter
        if at and self._buf[at - 1] == " ":
            self._add(Boundary(self._base + at, SENTENCE, bool(self._stack)))
        return True

    def _fronted(self, before: int) -> bool:
        """Whether the current sentence (or the text after a colon) opened with a word of
        the language's ``openers`` ("At 5 a.m. Mr. Smith went"), ending before ``before``."""
        at = self._opener_at - self._base
        found = _FIRST_WORD.match(self._buf, max(0, at))
        if at < 0 or found is None or found.end() > before:
            return False
        return found.group(1).lower() in self._rules.openers

    def _roman(self, at: int, final: bool) -> bool:
        """Whether a Roman numeral of two letters or more is at ``at``: "Vol. II", "Kap. IV"
        (a lone "I" is the pronoun as often)."""
        word = self._next_letters(at, final)
        return len(word) > 1 and not word.strip("IVXLCDM")

    def _starter(self, at: int, final: bool) -> bool:
        """Whether the word at ``at`` is one that typically starts a sentence ("The")."""
        word = self._next_letters(at, final)
        if at + len(word) == len(self._buf) and not final:
            raise NeedMore
        if len(word) == 1 and self._buf[at + 1 : at + 2] == ".":
            return False  # "U. A. E.": an initial, not the article
        return word.lower() in self._rules.starters

    def _list_marker(self, i: int) -> bool:
        """Whether the number at ``i`` starts a list item: it starts the text or a line, or
        follows a sentence end or another item mark."""
        if self._base + i == self._turn_start:
            return True
        buf = self._buf
        k = i - 1
        while k >= 0 and buf[k] == " ":
            k -= 1
        if k < 0:
            return False
        c = buf[k]
        if c == ".":  # after a sentence end, not after "núm." or "S."
            word = buf[max(0, k - LOOKBEHIND) : k].split()[-1:]
            key = word[0].lower() if word else ""
            rules = self._rules
            return len(key) > 1 and key not in rules.before_numbers and key not in rules.titles
        return c in "!?:;…\n" or c in ITEM_MARKS or c in HARD_STOPS

    def _item_start(self, dot: int) -> None:
        """ "item 2.) The": a list item starts at the number, when a space is before it."""
        buf = self._buf
        start = dot
        while start > 0 and buf[start - 1].isdigit():
            start -= 1
        if 0 < start < dot and dot - start <= 3 and buf[start - 1] == " ":
            self._add(Boundary(self._base + start, SENTENCE, bool(self._stack)))

    def _words_before(self, i: int) -> tuple[str, str]:
        """The word ending at i (openers stripped) and the word before it."""
        buf = self._buf
        lo = max(0, i - LOOKBEHIND)
        words = buf[lo:i].split()
        if lo and words and not buf[lo - 1].isspace() and not buf[lo].isspace():
            words.pop(0)  # cut short by the window: too long to be an abbreviation
        if not words or buf[i - 1].isspace():
            return "", ""
        return words[-1].lstrip(self.leading), words[-2] if len(words) > 1 else ""

    def _next_letters(self, index: int, final: bool) -> str:
        buf = self._buf
        end = index
        while end < len(buf) and end - index < 12 and buf[end].isalpha():
            end += 1
        if end == len(buf) and end - index < 12 and not final:
            raise NeedMore
        return buf[index:end]


def is_number(word: str) -> bool:
    return word.replace(",", "").replace(".", "").isdigit()


def _is_dotted(key: str) -> bool:
    """ "e.g", "z.b", "u.s.a", "ph.d": short letter groups joined by dots."""
    parts = key.split(".")
    return len(parts) > 1 and all(0 < len(p) <= 2 and p.isalpha() for p in parts)
