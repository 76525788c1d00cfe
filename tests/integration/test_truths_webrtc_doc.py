"""docs/webrtc.md against a real gateway: its error table, its settings and defaults, and
what the WHEP resource's OPTIONS, PATCH and DELETE answer."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiortc import RTCPeerConnection

from tests.conftest import Target
from tests.gateway_harness import Gateway, running_gateway
from voxgate.config import SETTINGS, Settings
from voxgate.gateway import whep
from voxgate.gateway.realtime import PLAYOUT_REPORT_S, WEBRTC_LEAD_MS

pytestmark = pytest.mark.engine_only

ROOT = Path(__file__).parents[2]
WEBRTC_MD = (ROOT / "docs" / "webrtc.md").read_text()
STUN = "stun:stun.example.net:3478"
TURN = "turn:turn.example.net:3478?transport=udp"


def documented_errors() -> dict[str, int]:
    """The page's error table: each `code` -> its status."""
    section = WEBRTC_MD.split("\n## Errors\n", 1)[1].split("\n## ", 1)[0]
    table: dict[str, int] = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split(" | ")]
        if line.startswith("| ") and cells[0].isdigit():
            table.update({code: int(cells[0]) for code in re.findall(r"`([a-z_]+)`", cells[1])})
    return table


def test_every_code_whep_raises_is_in_the_pages_error_table() -> None:
    raised = set(re.findall(r'code="([a-z_]+)"', Path(whep.__file__).read_text()))
    assert {"bad_sdp", "no_audio", "no_opus", "forbidden"} <= raised
    assert raised - documented_errors().keys() == set()


def test_the_settings_and_figures_the_page_names_are_the_codes() -> None:
    variables = {setting.env for setting in SETTINGS}
    named = set(re.findall(r"`(VOXGATE_[A-Z_]+)`", WEBRTC_MD))
    assert named - variables == set(), "settings that do not exist"
    defaults = Settings()
    assert f"`VOXGATE_WEBRTC_OPUS_BITRATE` ({defaults.webrtc_opus_bitrate:,} bit/s)" in WEBRTC_MD
    assert f"`VOXGATE_WEBRTC_OPUS_COMPLEXITY` ({defaults.webrtc_opus_complexity};" in WEBRTC_MD
    assert f"{whep.CONNECT_TIMEOUT_S:g} s after the answer" in WEBRTC_MD
    assert f"about {WEBRTC_LEAD_MS} ms" in WEBRTC_MD
    assert f"every {PLAYOUT_REPORT_S * 1000:g} ms" in WEBRTC_MD
    assert f"{whep._MAX_SDP_BYTES // 1024} KiB" in WEBRTC_MD
    assert f"labelled `{whep.DATA_CHANNEL_LABEL}`" in WEBRTC_MD


@pytest.fixture
async def gateway(target: Target) -> AsyncIterator[Gateway]:
    async with running_gateway(
        target,
        stun_urls=(STUN,),
        turn_url=TURN,
        turn_username="u",
        turn_credential="p",
        api_keys=("vg_doc_key_0123456789:1000", "vg_other_key_0123456789:1000"),
    ) as gw:
        yield gw


async def test_the_resource_answers_as_the_page_says(gateway: Gateway) -> None:
    mine = {"Authorization": f"Bearer {gateway.api_key}"}
    async with aiohttp.ClientSession(gateway.url) as http:
        options = await http.options("/v1/whep")
        assert options.status == 204
        assert options.headers["Allow"] == "OPTIONS, POST"
        assert options.headers["Accept-Post"] == "application/sdp"
        assert options.headers["Link"] == (
            f'<{STUN}>; rel="ice-server", <{TURN}>; rel="ice-server"; username="u"; '
            'credential="p"; credential-type="password"'
        )
        pc = RTCPeerConnection()
        pc.addTransceiver("audio", direction="recvonly")
        pc.createDataChannel("voxgate")
        await pc.setLocalDescription(await pc.createOffer())
        created = await http.post(
            "/v1/whep",
            data=pc.localDescription.sdp,
            headers=mine | {"Content-Type": "application/sdp"},
        )
        assert created.status == 201
        assert len(created.headers.getall("Link")) == 2  # one per server
        answer = await created.text()
        assert "a=end-of-candidates" in answer  # no trickle ICE: every candidate is here
        assert "a=ptime:20" in answer
        location = created.headers["Location"]
        patch = await http.patch(location)
        assert (patch.status, patch.headers["Allow"]) == (405, "DELETE")
        other = {"Authorization": "Bearer vg_other_key_0123456789"}
        foreign = await http.delete(location, headers=other)
        assert (foreign.status, (await foreign.json())["error"]) == (403, "forbidden")
        assert (await http.delete(location)).status == 200  # the URL is the credential
        gone = await http.delete(location)
        assert (gone.status, (await gone.json())["error"]) == (404, "not_found")
        await pc.close()
