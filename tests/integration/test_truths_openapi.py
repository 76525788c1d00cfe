"""``/openapi.json`` documents every route the gateway registers, and nothing it does not."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from tests.gateway_harness import Gateway
from voxgate.gateway.app import create_gateway_app

pytestmark = pytest.mark.engine_only

# aiohttp answers HEAD on every GET route with the GET's handler: documented by the GET.
IMPLIED = {"HEAD"}


async def served_document(gateway: Gateway) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http:
        response = await http.get(f"{gateway.url}/openapi.json")
        assert response.status == 200
        document: dict[str, Any] = await response.json()
        return document


def routed(gateway: Gateway) -> set[tuple[str, str]]:
    """(method, path template) of every route of the app the gateway serves."""
    app = create_gateway_app(gateway.services)
    return {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.method not in IMPLIED and route.resource is not None
    }


def documented(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method != "parameters"
    }


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" or (key == "mapping" and isinstance(value, dict)):
                yield from ([value] if key == "$ref" else value.values())
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


async def test_every_route_is_documented_and_every_documented_path_is_routed(
    gateway: Gateway,
) -> None:
    document = await served_document(gateway)
    routes = routed(gateway)
    assert routes - documented(document) == set(), "routes missing from /openapi.json"
    assert documented(document) - routes == set(), "/openapi.json documents unrouted paths"
    for must in (
        ("POST", "/v1/sessions/{session_id}/whep"),
        ("POST", "/v1/whep"),
        ("DELETE", "/v1/whep/{resource_id}"),
        ("PATCH", "/v1/whep/{resource_id}"),
        ("OPTIONS", "/v1/whep"),
        ("POST", "/v1/dev/client_token"),
        ("GET", "/api/tts/audio/{audio_id}"),
    ):
        assert must in routes


async def test_templated_paths_declare_their_parameters(gateway: Gateway) -> None:
    document = await served_document(gateway)
    for path, item in document["paths"].items():
        names = {part[1:-1] for part in path.split("/") if part.startswith("{")}
        declared = {p["name"] for p in item.get("parameters", []) if p["in"] == "path"}
        assert declared == names, path


async def test_every_reference_resolves(gateway: Gateway) -> None:
    document = await served_document(gateway)
    targets = list(refs(document))
    assert "#/components/schemas/TextAppend" in targets
    for target in targets:
        node: Any = document
        for part in target.removeprefix("#/").split("/"):
            assert part in node, target
            node = node[part]


async def test_ref_audio_and_the_seq_bound_are_in_the_schemas(gateway: Gateway) -> None:
    document = await served_document(gateway)
    for path in ("/api/tts/generate", "/api/tts/stream", "/api/tts/voices/clone"):
        body = document["paths"][path]["post"]["requestBody"]["content"]["application/json"]
        assert body["schema"]["properties"]["ref_audio"]["format"] == "byte", path
    schemas = document["components"]["schemas"]
    assert "ref_audio" in schemas["SessionUpdate"]["properties"]
    seq = schemas["TextAppend"]["properties"]["seq"]["anyOf"][0]
    assert (seq["minimum"], seq["maximum"]) == (0, 2**53 - 1)
    whep = document["paths"]["/v1/sessions/{session_id}/whep"]["post"]
    assert "application/sdp" in whep["requestBody"]["content"]
    assert "application/sdp" in whep["responses"]["201"]["content"]
