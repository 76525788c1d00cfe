"""Sentence ends per language: the session's language chooses the boundary tables."""

from __future__ import annotations

import pytest

from voxgate.errors import InvalidInput
from voxgate.sessions.languages import SUPPORTED_LANGUAGES, rules_for
from voxgate.sessions.segmenter import Chunk, Segmenter, SegmenterOptions, normalise


def sentences(text: str, language: str) -> list[str]:
    """Every sentence end allowed, no time bound; the text fed a character at a time too."""
    options = SegmenterOptions(
        first_min_chars=1, first_clause_boundaries=False, min_chars=1, language=language
    )
    whole = _segment(text, options, [text])
    assert _segment(text, options, list(text)) == whole
    return whole


def _segment(text: str, options: SegmenterOptions, tokens: list[str]) -> list[str]:
    segmenter = Segmenter(options)
    chunks: list[Chunk] = []
    for token in tokens:
        chunks += segmenter.push(token, 0.0)
    chunks += segmenter.flush()
    assert "".join(c.text for c in chunks) == normalise(text)
    return [c.text for c in chunks]


ABBREVIATIONS = [
    ("es", "La Lic. Pérez y el Ing. Gómez llegaron. Bien.", 2),
    ("es", "La Sra. García vive en la Avda. Libertad. Bien.", 2),
    ("it", "Sono l'Ing. Mengozzi. È presente l'Avv. Cassioni?", 2),
    ("it", "Il Dott. Bianchi arriva. Ciao.", 2),
    ("it", "Le parti (ad es. RAM, CPU) sono HW. Bene.", 2),
    ("it", "Mi saluti la Sig.na Manelli. Arrivederci.", 2),
    ("de", "Wir trafen Dr. med. Meyer in der Stadt. Gut.", 2),
    ("de", "Frau Prof. Schulze ist z. Z. nicht da. Gut.", 2),
    ("de", "Sie besucht eine kath. Schule. Gut.", 2),
    ("de", "Obst, z.B. Äpfel, usw. Dann mehr.", 2),
    ("fr", "M. Dupont et Mme Durand sont là. Bonjour.", 2),
    ("fr", "Des fruits, p.ex. Pommes. Voilà.", 2),
    ("pt", "O Sr. Costa e a Profa. Lima chegaram. Olá.", 2),
    ("nl", "Dhr. De Vries en Mevr. Bakker komen. Dag.", 2),
    ("nl", "Afkorting aanw. vnw. De rest.", 2),  # it ends before a sentence starter
    ("nl", "Afkorting aanw. vnw. Klaar.", 1),  # and only there
    ("en", "He climbed Mt. Everest. Then he rested.", 2),
    ("en", "I live in the U.S. How about you?", 2),
    ("en", "The U.S. Army left. Ok.", 2),
    ("en", "She works at Yahoo! in the accounting department. Ok.", 2),
]


@pytest.mark.parametrize(("language", "text", "count"), ABBREVIATIONS)
def test_abbreviations_of_the_language_end_no_sentence(
    language: str, text: str, count: int
) -> None:
    assert len(sentences(text, language)) == count


def test_the_language_decides() -> None:
    text = "Il Dott. Bianchi arriva. Ciao."
    assert sentences(text, "it") == ["Il Dott. Bianchi arriva. ", "Ciao."]
    assert sentences(text, "en") == ["Il Dott. ", "Bianchi arriva. ", "Ciao."]


MONTHS_AND_NUMBERS = [
    ("en", "We met on Jan. 5 at noon. It rained.", ["We met on Jan. 5 at noon. ", "It rained."]),
    ("es", "Llega el mar. 12 de Ene. por la tarde. Gracias.", None),
    ("es", "Fuimos al mar. Hace sol.", ["Fuimos al mar. ", "Hace sol."]),  # the sea
    ("es", "La Lic. llegó el Lun. 3 de Ago. a Madrid. Bien.", None),
    ("it", "Un appuntamento per mar. 23 Nov.. Grazie.", None),
    ("en", "See N°. 5 and No. 6 now. Ok.", None),
    ("de", "Das finden Sie auf S. 225. Gut.", ["Das finden Sie auf S. 225. ", "Gut."]),
    ("de", "Am 3. Mai ist Feier. Gut.", ["Am 3. Mai ist Feier. ", "Gut."]),
    ("de", "Im 19. Jahrhundert war das so. Gut.", None),
    ("pt", "Veja a pág. 12. Depois leia.", ["Veja a pág. 12. ", "Depois leia."]),
    ("en", "The bag held 2 lb. 4 oz. of nuts. Ok.", None),
    ("en", "It takes 5 ms. That is fast.", ["It takes 5 ms. ", "That is fast."]),
]


@pytest.mark.parametrize(("language", "text", "expected"), MONTHS_AND_NUMBERS)
def test_months_weekdays_and_numbers(language: str, text: str, expected: list[str] | None) -> None:
    found = sentences(text, language)
    if expected is None:  # one sentence, then a last one
        assert len(found) == 2, found
    else:
        assert found == expected


ELLIPSES = [
    ("I was... thinking about it. Ok.", ["I was... thinking about it. ", "Ok."]),
    ("I was … thinking about it. Ok.", ["I was … thinking about it. ", "Ok."]),
    ("I was . . . thinking about it. Ok.", ["I was . . . thinking about it. ", "Ok."]),
    ("Happy . . . No one said so.", ["Happy . . . ", "No one said so."]),
    ("Aspetta... I gatti miagolano.", ["Aspetta... ", "I gatti miagolano."]),
]


@pytest.mark.parametrize(("text", "expected"), ELLIPSES)
def test_an_ellipsis_inside_a_sentence_ends_nothing(text: str, expected: list[str]) -> None:
    assert sentences(text, "en") == expected


LISTS = [
    ("1. Preheat the oven. 2. Mix the flour.", ["1. Preheat the oven. ", "2. Mix the flour."]),
    ("1.) The first item 2.) The second item", ["1.) The first item ", "2.) The second item"]),
    ("1) The first item 2) The second item", ["1) The first item ", "2) The second item"]),
    ("1. The first item 2. The second item", ["1. The first item ", "2. The second item"]),
    ("⁃9. The first item ⁃10. The second item", ["⁃9. The first item ", "⁃10. The second item"]),
    ("• 9. The first item • 10. The second item", ["9. The first item ", "• 10. The second item"]),
    ("Steps:\n1. Open it.\n2. Close it.", ["Steps:\n", "1. Open it.\n", "2. Close it."]),
    ("I counted 3. Then 4.", ["I counted 3. ", "Then 4."]),
]


@pytest.mark.parametrize(("text", "expected"), LISTS)
def test_list_markers_are_kept_and_start_an_item(text: str, expected: list[str]) -> None:
    assert sentences(text, "en") == expected


LETTERED = [
    ("en", "a. Open the box b. Take out the book", ["a. Open the box ", "b. Take out the book"]),
    ("es", "a. Abra la caja b. Saque el libro", ["a. Abra la caja ", "b. Saque el libro"]),
    ("fr", "a. Ouvrez la boîte b. Sortez le livre", ["a. Ouvrez la boîte ", "b. Sortez le livre"]),
    ("en", "I got plan b. The rest failed.", ["I got plan b. ", "The rest failed."]),  # no list
    ("en", "J. R. R. Tolkien wrote it. Ok.", ["J. R. R. Tolkien wrote it. ", "Ok."]),
]


@pytest.mark.parametrize(("language", "text", "expected"), LETTERED)
def test_a_lettered_list_goes_on_letter_by_letter(
    language: str, text: str, expected: list[str]
) -> None:
    assert sentences(text, language) == expected


INITIALS_AND_NUMERALS = [
    ("en", "The U. A. E. team won. Fans cheered.", 2),  # "A." is a letter, not the article
    ("pt", "Falei com J. A. Silva ontem. Ele vem.", 2),  # nor the Portuguese "a"
    ("it", "Ho letto J. E. Hoover ieri. Era lungo.", 2),  # nor the Italian "e"
    ("en", "Read Vol. II and Chap. IV tonight. Then sleep.", 2),
    ("de", "Siehe Bd. III und Kap. IV im Anhang. Danach weiter.", 2),
    ("es", "Lea el vol. II con calma. Luego hablamos.", 2),
    ("en", "See fig. I think it is clear.", 2),  # a lone "I" is the pronoun
]


@pytest.mark.parametrize(("language", "text", "count"), INITIALS_AND_NUMERALS)
def test_initials_and_roman_numerals(language: str, text: str, count: int) -> None:
    assert len(sentences(text, language)) == count


TIMES_AND_ERAS = [
    ("en", "At 9 p.m. Mr. Lee called. Ok.", ["At 9 p.m. Mr. Lee called. ", "Ok."]),
    ("en", "She left at 9 p.m. Mr. Lee stayed.", ["She left at 9 p.m. ", "Mr. Lee stayed."]),
    ("en", "At 6 a.m. The birds sing.", ["At 6 a.m. ", "The birds sing."]),
    ("en", "He noted: In 44 B.C. Caesar died.", ["He noted: In 44 B.C. Caesar died."]),
    ("en", "Rome was founded in 753 B.C. Augustus came.", 2),
    ("en", "She earned her Ph.D. Tom was impressed.", 2),
    ("it", "Nel 44 a.C. Cesare fu ucciso. Poi regnò Augusto.", 2),
    ("es", "César murió en el 44 a.C. Augusto reinó después.", 2),
    ("de", "Er kam am 3. Mai um 9 Uhr. Gut.", 2),
]


QUOTES_AND_SPACES = [
    ("en", "He said: 'Stop. Think first.' Then he left.", 2),
    ("it", "Disse: 'Basta. Andiamo via.' Poi uscì.", 2),
    ("nl", "Hij zei: 'Kom. We gaan.' Daarna vertrok hij.", 2),
    ("en", "Rock 'n' roll is loud. We love it.", 2),  # elisions open no quote
    ("nl", "'s Avonds eten we. Dan slapen we.", 2),
    ("en", "' No, they will not. They ran.'", 1),  # a quote alone at the start opens one
    ("en", "He was done. ' Guess what? ' he said.", ["He was done. ", "' Guess what? ' he said."]),
    ("en", "It rained.Then it stopped.", ["It rained.", "Then it stopped."]),
    ("de", "Es regnete.Dann schien die Sonne.", ["Es regnete.", "Dann schien die Sonne."]),
    ("en", "Mail Jane.Doe@example.com today. Ok.", 2),
    ("en", "Visit example.com or v1.2.3 today. Ok.", 2),
]


@pytest.mark.parametrize(("language", "text", "expected"), TIMES_AND_ERAS + QUOTES_AND_SPACES)
def test_times_eras_degrees_straight_quotes_and_a_missing_space(
    language: str, text: str, expected: list[str] | int
) -> None:
    """Times, eras and degrees end a sentence unless it opened with a preposition; a straight
    quote before a word opens a quote; a period without the space after it ends a sentence."""
    found = sentences(text, language)
    assert found == expected if isinstance(expected, list) else len(found) == expected, found


BRACKETS = [
    ('"Bohr [...] used the analogy [...]" (Smith 55). Ok.', 2),
    ("Hydrogen is a gas. [1] It is colorless.", 2),
    ("It is a saint and martyr.[1] The emperor spoke.", 2),
]


@pytest.mark.parametrize(("text", "count"), BRACKETS)
def test_brackets_are_kept_and_citations_join_their_sentence(text: str, count: int) -> None:
    found = sentences(text, "en")
    assert len(found) == count
    assert "".join(found) == text


def test_every_language_has_rules_and_unknown_ones_are_refused() -> None:
    for language in ("en", "fr", "es", "pt", "it", "nl", "de", "hi", "ar"):
        assert language in SUPPORTED_LANGUAGES
        assert rules_for(language).titles
    assert len(SUPPORTED_LANGUAGES) > 9  # others espeak-ng speaks well
    with pytest.raises(InvalidInput, match=r"SegmenterOptions\.language must be one of"):
        SegmenterOptions(language="xx")
    assert SegmenterOptions().language == "en"


@pytest.mark.parametrize("language", SUPPORTED_LANGUAGES)
def test_tables_are_clean(language: str) -> None:
    rules = rules_for(language)
    for table in (rules.titles, rules.abbreviations, rules.before_numbers, rules.starters):
        assert all(word == word.strip().lower() and not word.endswith(".") for word in table)


def test_a_session_takes_its_voice_language_unless_it_names_one() -> None:
    from voxgate.gateway import protocol as p
    from voxgate.gateway.access.principal import Principal
    from voxgate.gateway.session_config import SessionConfig
    from voxgate.upstream.engine.voices import PRESETS

    principal = Principal("account", "key", 5)
    config = SessionConfig(max_contexts=4)
    assert config.options(principal).segmenter.language == "en"  # the default voice, Jane
    italian = next(preset for preset in PRESETS if preset.language == "it")
    config.update(p.SessionUpdate(voice_id=italian.id), principal)
    assert config.options(principal).segmenter.language == "it"
    assert config.public()["language"] == "it"
    config.update(p.SessionUpdate(language="de"), principal)
    assert config.options(principal).segmenter.language == "de"
    with pytest.raises(InvalidInput, match="language"):
        config.update(p.SessionUpdate(language="xx"), principal)
    assert config.options(principal).segmenter.language == "de"  # nothing changed
