"""The upstream every test talks to: the embedded engine on loopback, or the real API.

With ``VOXTRAL_API_KEY`` (and optionally ``VOXTRAL_BASE_URL``) set, the contract suite runs
unchanged against the real Voxtral API; tests that need the engine's own controls are
marked ``engine_only`` and skipped there.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest

from voxgate.upstream import Upstream, UpstreamConfig
from voxgate.upstream.engine.background import BackgroundEngine

REAL_API_KEY = os.environ.get("VOXTRAL_API_KEY")


@dataclass
class Target:
    base_url: str
    api_key: str
    engine: BackgroundEngine | None  # None against the real API

    def config(self, **overrides: object) -> UpstreamConfig:
        fields: dict[str, object] = {"base_url": self.base_url, "api_key": self.api_key}
        fields.update(overrides)
        return UpstreamConfig(**fields)  # type: ignore[arg-type]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "engine_only: needs the embedded engine's own controls")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if not REAL_API_KEY:
        return
    skip = pytest.mark.skip(reason="needs the embedded engine (VOXTRAL_API_KEY is set)")
    for item in items:
        if "engine_only" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def target() -> Iterator[Target]:
    if REAL_API_KEY:
        base = os.environ.get("VOXTRAL_BASE_URL", "https://voxtral.com/api/tts")
        yield Target(base, REAL_API_KEY, None)
        return
    with BackgroundEngine() as engine:
        yield Target(engine.base_url, engine.api_key, engine)


@pytest.fixture
def engine(target: Target) -> BackgroundEngine:
    assert target.engine is not None, "engine_only tests are skipped against the real API"
    return target.engine


@pytest.fixture
async def upstream(target: Target) -> AsyncIterator[Upstream]:
    async with Upstream(target.config()) as client:
        yield client
