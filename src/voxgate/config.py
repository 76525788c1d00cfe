"""One settings object, read from the environment (``VOXTRAL_*``, ``VOXGATE_*``) and flags.

Every setting is listed in ``SETTINGS`` with its variable, default and meaning; the README's
configuration table is written from the same list.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from voxgate.errors import ConfigError
from voxgate.upstream.client import DEFAULT_BASE_URL, UpstreamConfig


@dataclass(frozen=True, slots=True)
class Setting:
    env: str
    default: str
    help: str


SETTINGS: tuple[Setting, ...] = (
    Setting("VOXTRAL_API_KEY", "", "Key of the real Voxtral API; unset = embedded engine"),
    Setting("VOXTRAL_BASE_URL", DEFAULT_BASE_URL, "Base URL of the Voxtral API"),
    Setting("VOXTRAL_PCM_SAMPLE_RATE", "24000", "Sample rate of the upstream's PCM stream"),
    Setting("VOXTRAL_FIRST_BYTE_TIMEOUT", "15", "Seconds to wait for an upstream's first byte"),
    Setting("VOXTRAL_TOTAL_TIMEOUT", "120", "Seconds one upstream request may take in all"),
    Setting("VOXTRAL_LOCAL_API_KEYS", "", "Embedded engine keys, comma-separated KEY[:CREDITS]"),
)


@dataclass(frozen=True, slots=True)
class Settings:
    upstream: UpstreamConfig = field(default_factory=UpstreamConfig)
    local_api_keys: tuple[str, ...] = ()

    @property
    def uses_embedded_engine(self) -> bool:
        return not self.upstream.api_key

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        upstream = UpstreamConfig(
            base_url=env.get("VOXTRAL_BASE_URL", DEFAULT_BASE_URL),
            api_key=env.get("VOXTRAL_API_KEY") or None,
            pcm_sample_rate=_int(env, "VOXTRAL_PCM_SAMPLE_RATE", 24000),
            first_byte_timeout=_float(env, "VOXTRAL_FIRST_BYTE_TIMEOUT", 15.0),
            total_timeout=_float(env, "VOXTRAL_TOTAL_TIMEOUT", 120.0),
        )
        keys = tuple(
            k.strip() for k in env.get("VOXTRAL_LOCAL_API_KEYS", "").split(",") if k.strip()
        )
        return cls(upstream=upstream, local_api_keys=keys)


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, not {raw!r}") from None


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, not {raw!r}") from None
