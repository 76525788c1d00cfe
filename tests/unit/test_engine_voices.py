"""The preset catalogue: stable ids, all languages, distinct voices and emotions."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import espeakng_loader
import pytest

from voxgate.upstream.engine import voices
from voxgate.upstream.engine.voices import (
    LANGUAGES,
    PRESETS,
    Prosody,
    find_voice,
    preset_catalogue,
    prosody_for_clone,
)

JANE = "82c99ee6-f932-423f-a4a3-d403c8914b8d"
DATA = Path(espeakng_loader.get_data_path())


def preset(name: str) -> voices.PresetVoice:
    return next(p for p in PRESETS if p.name == name)


def test_seventeen_presets_cover_the_nine_languages() -> None:
    assert len(PRESETS) == 17
    assert {p.language for p in PRESETS} == set(LANGUAGES)
    assert LANGUAGES == ("en", "fr", "es", "pt", "it", "nl", "de", "hi", "ar")


def test_jane_and_paul_match_the_public_reference() -> None:
    jane, paul = preset("Jane"), preset("Paul")
    assert (jane.id, jane.language, jane.gender, len(jane.variants)) == (JANE, "en", "female", 9)
    assert (paul.language, paul.gender, len(paul.variants)) == ("en", "male", 8)


def test_ids_never_change() -> None:
    # Clients store these: a change here breaks them. Derived ids are pinned too.
    assert find_voice(JANE) == (preset("Jane"), preset("Jane").variants[0])
    happy = next(v for v in preset("Jane").variants if v.emotion == "happy")
    assert happy.id == "698b09bb-9b3f-5cbc-a284-f96f986fcafc"
    assert preset("Paul").id == "c56da398-a7b5-4a2d-862b-47f252d16d16"
    warm = next(v for v in preset("Paul").variants if v.emotion == "warm")
    assert warm.id == "9ee518c8-0908-5fde-acb6-e464338b0968"


def test_ids_are_unique_uuids() -> None:
    ids = [v.id for p in PRESETS for v in p.variants]
    assert len(ids) == len(set(ids))
    assert all(str(uuid.UUID(i)) == i for i in ids)


def test_a_preset_id_selects_its_neutral_variant() -> None:
    for p in PRESETS:
        assert p.variants[0].emotion == "neutral"
        assert find_voice(p.id) == (p, p.variants[0])
        for variant in p.variants:
            assert find_voice(variant.id) == (p, variant)


def test_find_voice_ignores_case_and_refuses_strangers() -> None:
    assert find_voice(JANE.upper()) == find_voice(JANE)
    assert find_voice(str(uuid.uuid4())) is None
    assert find_voice("") is None


def test_espeak_has_every_voice_and_variant_used() -> None:
    lang_files = {p.name.lower() for p in (DATA / "lang").rglob("*") if p.is_file()}
    assert set(voices.ESPEAK_VOICES.values()) <= lang_files
    for p in PRESETS:
        for v in p.variants:
            assert (DATA / "voices" / "!v" / v.prosody.variant).is_file()


def test_presets_and_emotions_are_all_distinct() -> None:
    neutral = [p.variants[0].prosody for p in PRESETS]
    assert len(set(neutral)) == len(neutral)
    for p in PRESETS:
        assert len({v.prosody for v in p.variants}) == len(p.variants)
    for language in LANGUAGES:
        timbres = [p.variants[0].prosody.variant for p in PRESETS if p.language == language]
        assert len(set(timbres)) == len(timbres), f"two {language} presets share a timbre"


def test_emotions_move_prosody_the_expected_way() -> None:
    by_emotion = {v.emotion: v.prosody for v in preset("Jane").variants}
    neutral, happy, sad = by_emotion["neutral"], by_emotion["happy"], by_emotion["sad"]
    assert happy.pitch > neutral.pitch > sad.pitch
    assert happy.pitch_range > neutral.pitch_range > sad.pitch_range
    assert happy.rate > neutral.rate > sad.rate
    assert by_emotion["whisper"].variant == "whisperf"


def test_catalogue_is_json_ready() -> None:
    catalogue = json.loads(json.dumps(preset_catalogue()))
    assert len(catalogue) == 17
    jane = next(entry for entry in catalogue if entry["id"] == JANE)
    assert (jane["name"], jane["language"], jane["gender"]) == ("Jane", "en", "female")
    assert jane["variants"][0] == {"id": JANE, "emotion": "neutral"}
    assert len(jane["variants"]) == 9


@pytest.mark.parametrize(
    "changes",
    [{"pitch": 101}, {"pitch_range": -1}, {"volume": 201}, {"rate": 0.0},
     {"espeak_voice": "xx-yy"}, {"variant": "nope"}, {"variant": "../f3"}],
)  # fmt: skip
def test_prosody_refuses_values_espeak_cannot_take(changes: dict[str, object]) -> None:
    fields: dict[str, object] = {
        "espeak_voice": "en-us", "variant": "f3", "pitch": 50, "pitch_range": 50, "rate": 1.0
    }  # fmt: skip
    fields.update(changes)
    with pytest.raises(ValueError):  # noqa: PT011 - each field has its own message
        Prosody(**fields)  # type: ignore[arg-type]


def test_clone_follows_the_measured_pitch() -> None:
    low, deep_male = prosody_for_clone("en", None, 130.0), prosody_for_clone("en", None, 95.0)
    high = prosody_for_clone("fr", None, 240.0)
    assert low.variant.startswith("m")
    assert deep_male.variant.startswith("m")
    assert high.variant.startswith("f")
    assert high.espeak_voice == "fr"
    assert low.espeak_voice == "en-us"


def test_explicit_gender_picks_the_family() -> None:
    assert prosody_for_clone("de", "male", None).variant.startswith("m")
    assert prosody_for_clone("de", "female", None).variant.startswith("f")
    # A low female voice stays female, pitched low.
    low_female = prosody_for_clone("en", "female", 140.0)
    assert low_female.variant.startswith("f")
    assert low_female.pitch < 40
    assert prosody_for_clone("en", None, None).variant.startswith("f")


@pytest.mark.parametrize("hz", [0.0, -5.0, float("nan"), float("inf")])
def test_clone_treats_a_meaningless_pitch_as_unknown(hz: float) -> None:
    assert prosody_for_clone("en", "male", hz) == prosody_for_clone("en", "male", None)


def test_clone_refuses_unknown_gender_and_language() -> None:
    with pytest.raises(ValueError, match="gender"):
        prosody_for_clone("en", "robot", None)
    with pytest.raises(ValueError, match="language"):
        prosody_for_clone("zz", "male", None)
