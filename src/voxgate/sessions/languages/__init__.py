"""Per-language boundary data: what a period after a word, a number or a list marker means.

A period ends a sentence unless the word before it is an abbreviation of the session's
language. :class:`LanguageRules` holds that knowledge for one language, in seven tables:

* ``titles``: words that never end a sentence, since a name follows them ("Dr.", "Lic.",
  "Dott.", "Avv.", "Ing."). Two-word titles ("dr med") are written with a space.
* ``abbreviations``: words used inside sentences ("z.B.", "ad es.", "kath.", "bzw.",
  "Inc."), and any dotted abbreviation ("U.S.", "Ph.D."): they end a sentence only
  when a word of ``starters`` follows ("in the U.S. How about you?", "usw. Dann").
* ``starters``: words that typically start a sentence (pronouns, articles, "Then").
* ``before_numbers``: words that end no sentence when a number follows them ("No. 5",
  "S. 225", "Jan. 5", "mar. 23", "N°. 3"): abbreviated months and weekdays are here,
  since as words of their own ("mar", the sea, "may") they may end a sentence.
* ``ordinal_words``: in languages that write ordinals with a period ("am 3. Mai", "1.
  Jahrhundert"), the words after which "3." is an ordinal, not a sentence end.
* ``may_end``: dotted abbreviations that close a phrase, times, eras and degrees ("a.m.",
  "B.C.", "Ph.D.", "etc."): they end a sentence before a capital or a number, unless the
  sentence opened with a word of ``openers`` and no starter follows.
* ``openers``: prepositions that front a time adverbial: "At 5 a.m. Mr. Smith went", "In 44
  B.C. Caesar died" (the subject comes after it), but "She left at 6 a.m. Mr. Smith
  stayed".

Single letters ("J. R. R. Tolkien", "z. Z.") never end a sentence; neither does a list
marker (a number of up to three digits at the start of the text or of a line, or after a
sentence end: "1. Preheat the oven").

Keys are lower case, without the final period; an elided article ("l'Ing.") is stripped
before looking up. What every language shares (Latin abbreviations, "N°") is in
:mod:`voxgate.sessions.languages.tables` as ``COMMON``; the data of each language is in
the same module, with its sources.

A session's ``language`` (``SegmenterOptions.language``) chooses the rules; a language
without tables of its own gets the common ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from voxgate.sessions.languages.tables import COMMON, TABLES, Table

__all__ = ["SUPPORTED_LANGUAGES", "LanguageRules", "is_supported", "rules_for"]

SUPPORTED_LANGUAGES: tuple[str, ...] = tuple(sorted(TABLES))
"""Languages with tables of their own: the API's nine, and others espeak-ng speaks well."""


@dataclass(frozen=True, slots=True)
class LanguageRules:
    """What periods mean in one language; the module docstring describes the tables."""

    language: str
    titles: frozenset[str]
    abbreviations: frozenset[str]
    before_numbers: frozenset[str]
    ordinal_words: frozenset[str]
    may_end: frozenset[str]
    starters: frozenset[str]
    openers: frozenset[str]


def is_supported(language: str) -> bool:
    """Whether ``language`` (an ISO 639-1 code such as "de") has boundary tables."""
    return language in TABLES


@cache
def rules_for(language: str) -> LanguageRules:
    """The rules of ``language``, merged with what all languages share."""
    table = TABLES.get(language, Table())
    return LanguageRules(
        language=language,
        titles=_words(COMMON.titles, table.titles),
        abbreviations=_words(COMMON.abbreviations, table.abbreviations),
        before_numbers=_words(COMMON.before_numbers, table.before_numbers),
        ordinal_words=_words(table.ordinal_words),
        may_end=_words(COMMON.may_end, table.may_end),
        starters=_words(table.starters),
        openers=_words(table.openers),
    )


def _words(*tables: str) -> frozenset[str]:
    words: set[str] = set()
    for table in tables:
        for line in table.split(";"):
            words.update(w.strip().lower() for w in line.split(",") if w.strip())
    return frozenset(words)
