"""Every bad input of the reference answers 4xx with a clear {code, error, message}.

Raw HTTP, because our own client refuses most of these before they leave the process.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.conftest import Target
from voxgate.upstream.engine.background import BackgroundEngine

pytestmark = pytest.mark.engine_only

JANE = "82c99ee6-f932-423f-a4a3-d403c8914b8d"
NOISE_WAV = base64.b64encode(b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x00" * 30).decode()


@pytest.fixture
async def http(target: Target) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {target.api_key}"}
    async with httpx.AsyncClient(
        base_url=target.base_url + "/", headers=headers, trust_env=False, timeout=30
    ) as client:
        yield client


def expect(response: httpx.Response, status: int, error: str) -> dict[str, Any]:
    body: dict[str, Any] = response.json()
    assert response.status_code == status, body
    assert body["code"] == status
    assert body["error"] == error
    assert body["message"]
    assert body["data"] is None
    return body


SPEECH_CASES = [
    ({"input": "x" * 5001, "voice_id": JANE}, 400, "text_too_long"),
    ({"input": "", "voice_id": JANE}, 400, "missing_input"),
    ({"voice_id": JANE}, 400, "missing_input"),
    ({"input": "hi", "voice_id": JANE, "ref_audio": NOISE_WAV}, 400, "voice_selection"),
    ({"input": "hi"}, 400, "voice_selection"),
    ({"input": "hi", "voice_id": "00000000-0000-0000-0000-000000000000"}, 404, "voice_not_found"),
    ({"input": "hi", "voice_id": JANE, "response_format": "aac"}, 400, "invalid_format"),
    ({"input": "hi", "voice_id": JANE, "speed": 0.1}, 400, "invalid_speed"),
    ({"input": "hi", "voice_id": JANE, "speed": 4.5}, 400, "invalid_speed"),
    ({"input": "hi", "voice_id": JANE, "speed": "fast"}, 400, "invalid_speed"),
    ({"input": "hi", "ref_audio": "not base64!"}, 400, "invalid_base64"),
    (
        {"input": "hi", "ref_audio": base64.b64encode(b"garbage" * 100).decode()},
        422,
        "undecodable_audio",
    ),
    ({"input": "hi", "voice_id": JANE, "language": "xx"}, 400, "unsupported_language"),
]


@pytest.mark.parametrize(("body", "status", "error"), SPEECH_CASES)
@pytest.mark.parametrize("path", ["generate", "stream"])
async def test_bad_speech_requests(
    http: httpx.AsyncClient, path: str, body: dict[str, Any], status: int, error: str
) -> None:
    expect(await http.post(path, json=body), status, error)


async def test_malformed_json(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "generate", content=b"{nope", headers={"Content-Type": "application/json"}
    )
    expect(response, 400, "invalid_json")
    expect(await http.post("generate", json=[1, 2]), 400, "invalid_json")


async def test_reference_audio_too_large_is_refused_before_decoding(
    http: httpx.AsyncClient,
) -> None:
    huge = "A" * 12_000_004
    expect(
        await http.post("voices/clone", json={"name": "big", "ref_audio": huge}),
        413,
        "ref_audio_too_large",
    )


async def test_reference_audio_too_short(http: httpx.AsyncClient) -> None:
    short = await http.post(
        "generate", json={"input": "Two seconds.", "voice_id": JANE, "response_format": "wav"}
    )
    audio = short.json()["data"]["audio_data"]
    expect(
        await http.post("voices/clone", json={"name": "short", "ref_audio": audio}),
        422,
        "audio_duration",
    )


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"ref_audio": NOISE_WAV}, 400, "invalid_name"),
        ({"name": "x"}, 400, "missing_ref_audio"),
        ({"name": "x", "ref_audio": NOISE_WAV, "language": "klingon"}, 400, "unsupported_language"),
        ({"name": "x", "ref_audio": NOISE_WAV, "gender": "robot"}, 400, "invalid_gender"),
        ({"name": "x", "ref_audio": "%%%"}, 400, "invalid_base64"),
        ({"name": "x", "ref_audio": NOISE_WAV}, 422, "undecodable_audio"),
    ],
)
async def test_bad_clone_requests(
    http: httpx.AsyncClient, body: dict[str, Any], status: int, error: str
) -> None:
    expect(await http.post("voices/clone", json=body), status, error)


async def test_bad_voice_listing_and_updates(http: httpx.AsyncClient) -> None:
    expect(await http.get("voices/mine", params={"page": 0}), 400, "invalid_paging")
    expect(await http.get("voices/mine", params={"limit": 1000}), 400, "invalid_paging")
    expect(await http.patch("voices/nope", json={"name": "x"}), 404, "voice_not_found")
    expect(await http.delete("voices/nope"), 404, "voice_not_found")
    expect(await http.get("nowhere"), 404, "not_found")


async def test_auth_is_required(target: Target) -> None:
    async with httpx.AsyncClient(base_url=target.base_url + "/", trust_env=False) as anonymous:
        expect(
            await anonymous.post("generate", json={"input": "hi", "voice_id": JANE}),
            401,
            "unauthorized",
        )
        wrong = {"Authorization": "Bearer vxl_wrong"}
        expect(await anonymous.get("voices/mine", headers=wrong), 401, "unauthorized")
        basic = {"Authorization": "Basic abc"}
        expect(await anonymous.get("voices/mine", headers=basic), 401, "unauthorized")


async def test_credits_are_charged_on_success_only(
    engine: BackgroundEngine, target: Target
) -> None:
    key, account = engine.add_key(credits=30)
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(
        base_url=target.base_url + "/", headers=headers, trust_env=False, timeout=30
    ) as http:
        ok = await http.post("generate", json={"input": "Twenty characters!!!", "voice_id": JANE})
        assert ok.json()["data"]["credits_used"] == 20
        expect(
            await http.post("generate", json={"input": "x" * 11, "voice_id": "nope"}),
            404,
            "voice_not_found",
        )
        body = expect(
            await http.post("stream", json={"input": "x" * 11, "voice_id": JANE}),
            402,
            "insufficient_credits",
        )
        assert "10" in body["message"]
        stream = await http.post("stream", json={"input": "Ten chars!", "voice_id": JANE})
        assert "speech.audio.done" in stream.text
        assert '"credits_used":10' in stream.text
    assert (account.balance, account.used, account.held) == (0, 30, 0)


async def test_twenty_first_voice_is_refused(engine: BackgroundEngine, target: Target) -> None:
    key, _ = engine.add_key(credits=1000)
    headers = {"Authorization": f"Bearer {key}"}
    reference = None
    async with httpx.AsyncClient(
        base_url=target.base_url + "/", headers=headers, trust_env=False, timeout=60
    ) as http:
        made = await http.post(
            "generate",
            json={
                "input": "A reference voice needs at least five seconds of speech to clone.",
                "voice_id": JANE,
                "response_format": "wav",
                "speed": 0.7,
            },
        )
        reference = made.json()["data"]["audio_data"]
        for i in range(20):
            created = await http.post(
                "voices/clone", json={"name": f"v{i}", "ref_audio": reference}
            )
            assert created.status_code == 200, created.text
        expect(
            await http.post("voices/clone", json={"name": "v21", "ref_audio": reference}),
            403,
            "voice_limit_reached",
        )
        listing = (await http.get("voices/mine", params={"limit": 100})).json()["data"]
        assert listing["total"] == 20
