"""A session follows its voice's language, a saved voice's too (from the upstream's list)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.gateway_harness import Gateway, Received, receive_until
from voxgate.upstream import SpeechRequest, Upstream

pytestmark = pytest.mark.engine_only

JANE = "82c99ee6-f932-423f-a4a3-d403c8914b8d"  # an English preset


@pytest.fixture
async def french_voice(gateway: Gateway) -> AsyncIterator[str]:
    """A voice saved upstream with language "fr", cloned from the upstream's own speech."""
    upstream: Upstream = gateway.services.upstream_client
    text = "Ceci est mon enregistrement de référence. " * 3
    wav = (await upstream.generate(SpeechRequest(text, voice_id=JANE, response_format="wav"))).audio
    voice = await upstream.clone_voice("Voix", wav, language="fr")
    try:
        yield voice.id
    finally:
        await upstream.delete_voice(voice.id)


async def updated(http: aiohttp.ClientSession, gateway: Gateway, **update: Any) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {gateway.api_key}"}
    ws = await http.ws_connect(gateway.ws_url, headers=headers)
    try:
        await receive_until(ws, "session.created", Received())
        await ws.send_json({"type": "session.update", **update})
        config: dict[str, Any] = (await receive_until(ws, "session.updated", Received())).of(
            "session.updated"
        )[0]["config"]
        return config
    finally:
        await ws.close()


async def test_a_saved_voice_brings_its_language(
    http: aiohttp.ClientSession, gateway: Gateway, french_voice: str
) -> None:
    assert (await updated(http, gateway, voice_id=french_voice))["language"] == "fr"
    # A language the session names wins; a preset brings its own.
    assert (await updated(http, gateway, voice_id=french_voice, language="it"))["language"] == "it"
    assert (await updated(http, gateway, voice_id=JANE))["language"] == "en"
