"""Settings from the environment: they parse and are range-checked, and the README's
configuration table is the one ``voxgate serve --help-config`` prints."""

from __future__ import annotations

from pathlib import Path

import pytest

from voxgate.config import Settings, settings_table
from voxgate.errors import ConfigError

README = Path(__file__).parents[2] / "README.md"


def test_webrtc_settings_from_the_environment() -> None:
    settings = Settings.from_env(
        {
            "VOXGATE_WEBRTC_OPUS_BITRATE": "32000",
            "VOXGATE_WEBRTC_OPUS_COMPLEXITY": "1",
            "VOXGATE_WEBRTC_DTX": "off",
        }
    )
    assert settings.webrtc_opus_bitrate == 32000
    assert settings.webrtc_opus_complexity == 1
    assert settings.webrtc_dtx is False
    defaults = Settings.from_env({})
    assert (defaults.webrtc_opus_bitrate, defaults.webrtc_dtx) == (24000, True)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("VOXGATE_WEBRTC_OPUS_COMPLEXITY", "11"),
        ("VOXGATE_WEBRTC_OPUS_COMPLEXITY", "five"),
        ("VOXGATE_WEBRTC_OPUS_BITRATE", "5000"),
        ("VOXGATE_WEBRTC_DTX", "maybe"),
    ],
)
def test_bad_webrtc_settings_are_config_errors(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        Settings.from_env({variable: value})


def test_upstream_idle_timeout_from_the_environment() -> None:
    assert Settings.from_env({"VOXTRAL_IDLE_TIMEOUT": "2.5"}).upstream.idle_timeout == 2.5
    assert Settings.from_env({}).upstream.idle_timeout == 10.0


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0", "idle_timeout must be positive"),
        ("-1", "idle_timeout must be positive"),
        ("nan", "idle_timeout must be positive"),
        ("soon", "VOXTRAL_IDLE_TIMEOUT"),
    ],
)
def test_bad_upstream_idle_timeout_is_a_config_error(value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env({"VOXTRAL_IDLE_TIMEOUT": value})


def test_the_readme_lists_every_setting_as_help_config_does() -> None:
    assert settings_table() in README.read_text()
