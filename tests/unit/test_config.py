"""Settings from the environment: WebRTC Opus settings parse and are range-checked."""

from __future__ import annotations

import pytest

from voxgate.config import Settings
from voxgate.errors import ConfigError


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
