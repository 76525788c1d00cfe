"""Every error code the gateway can raise is in docs/protocol.md's error table, and the
WebRTC and REST errors a client provokes over a real gateway carry the status it states."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiortc import RTCPeerConnection

from tests.conftest import Target
from tests.gateway_harness import Gateway, Received, receive_until, running_gateway

pytestmark = pytest.mark.engine_only

ROOT = Path(__file__).parents[2]
GATEWAY_SOURCE = ROOT / "src" / "voxgate" / "gateway"
PROTOCOL_MD = ROOT / "docs" / "protocol.md"

_LITERAL_CODE = re.compile(r'\bcode\s*=\s*(f?)"([^"]+)"')
_ERROR_RESPONSE = re.compile(r'error_response\(\s*\d+,\s*"([a-z_]+)"')
# Codes built from a field name, and where their names come from.
_EXPANSIONS = {"invalid_{name}": re.compile(r'_(?:optional_str|int|number)\(body, "(\w+)"')}


def raised_codes() -> dict[str, str]:
    """Every error code written in the gateway's source, and the file it is in."""
    codes: dict[str, str] = {}
    for path in sorted(GATEWAY_SOURCE.rglob("*.py")):
        source = path.read_text()
        where = str(path.relative_to(ROOT))
        for is_f, code in _LITERAL_CODE.findall(source):
            if not is_f:
                codes[code] = where
                continue
            assert code in _EXPANSIONS, f"{where}: teach this test how {code!r} expands"
            names = _EXPANSIONS[code].findall(source)
            assert names, f"{where}: no field names found for {code!r}"
            codes.update({code.format(name=name): where for name in names})
        codes.update({code: where for code in _ERROR_RESPONSE.findall(source)})
    return codes


def error_table() -> dict[str, str]:
    """docs/protocol.md's error table: each code in a row's first cell -> its HTTP cell."""
    section = PROTOCOL_MD.read_text().split("\n## Error codes\n", 1)[1].split("\n## ", 1)[0]
    table: dict[str, str] = {}
    for line in section.splitlines():
        if not line.startswith("| ") or line.startswith(("| code ", "|---")):
            continue
        cells = [cell.strip() for cell in line.strip("|").split(" | ")]
        for code in re.findall(r"`([a-z_]+)`", cells[0]):
            table.setdefault(code, cells[-1])
    return table


def test_every_code_the_gateway_raises_is_in_the_error_table() -> None:
    codes = raised_codes()
    for expected in ("bad_sdp", "no_audio", "no_data_channel", "forbidden", "invalid_ttl_s"):
        assert expected in codes, "the source scan misses codes"
    table = error_table()
    missing = {code: where for code, where in codes.items() if code not in table}
    assert missing == {}, "codes raised but not in docs/protocol.md's error table"


@pytest.fixture
async def gateway(target: Target) -> AsyncIterator[Gateway]:
    async with running_gateway(
        target, api_keys=("vg_codes_key_0123456789:1000", "vg_other_key_0123456789:1000")
    ) as gw:
        yield gw


async def offer(*, audio: bool = True, data_channel: bool = False) -> str:
    pc = RTCPeerConnection()
    if audio:
        pc.addTransceiver("audio", direction="recvonly")
    if data_channel:
        pc.createDataChannel("voxgate")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = str(pc.localDescription.sdp)
    await pc.close()
    return sdp


async def test_errors_a_client_provokes_have_the_documented_status(gateway: Gateway) -> None:
    table = error_table()
    mine = {"Authorization": f"Bearer {gateway.api_key}"}
    other = {"Authorization": "Bearer vg_other_key_0123456789"}
    sdp = {"Content-Type": "application/sdp"}
    async with aiohttp.ClientSession(gateway.url) as http:
        ws = await http.ws_connect("/v1/realtime", headers=mine)
        created = await receive_until(ws, "session.created", Received())
        session = f"/v1/sessions/{created.of('session.created')[0]['session_id']}/whep"
        listener = await offer()
        provoked = {
            "not_found": await http.post(
                "/v1/sessions/nope/whep", data=listener, headers=mine | sdp
            ),
            "forbidden": await http.post(session, data=listener, headers=other | sdp),
            "unsupported_media_type": await http.post(
                session, data=listener, headers=mine | {"Content-Type": "text/plain"}
            ),
            "bad_sdp": await http.post(session, data="not sdp", headers=mine | sdp),
            "no_audio": await http.post(
                session, data=await offer(audio=False, data_channel=True), headers=mine | sdp
            ),
            "no_data_channel": await http.post("/v1/whep", data=listener, headers=mine | sdp),
            "missing_api_key": await http.post(session, data=listener, headers=sdp),
            "invalid_api_key": await http.get(
                "/api/tts/voices/mine", headers={"Authorization": "Bearer vg_nobody_0123456789"}
            ),
        }
        for code, response in provoked.items():
            body = await response.json()
            assert body["error"] == code
            assert str(response.status) == table[code], code
            assert body["code"] == response.status
        await ws.close()
