"""The demo page at ``/`` and the dev-only endpoints it uses.

The page holds no API key. It asks ``/v1/dev/client_token`` for a short-lived client token
minted from the dev key, and lists and clones voices through ``/v1/dev/voices``. These dev
endpoints answer only when ``VOXGATE_DEV_TOKENS`` allows (by default: when the gateway
listens on loopback), only to loopback clients, and only while the dev key exists (no key
configured); in production the app's own backend mints tokens with its API key.
"""

from __future__ import annotations

import importlib.resources
import re
from typing import Any

from aiohttp import web

from voxgate.envelope import ok
from voxgate.errors import AuthError, InvalidInput
from voxgate.gateway.access.principal import Principal
from voxgate.gateway.rest import api_base
from voxgate.upstream.engine.validation import parse_json_object

_LOOPBACK = ("127.0.0.1", "::1")
_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html"}
_ASSET_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,40}\.(js|css|html)$")
_MAX_TOKEN_CREDITS = 20_000


class DemoPage:
    def __init__(self, services: Any, rest: Any) -> None:
        self.services = services
        self.rest = rest
        self._files = importlib.resources.files("voxgate.demo_web")

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/", self.index),
            web.get("/demo/{name}", self.asset),
            web.post("/v1/dev/client_token", self.client_token),
            web.get("/v1/dev/voices", self.voices),
            web.post("/v1/dev/voices/clone", self.clone),
        ]

    async def index(self, request: web.Request) -> web.Response:
        return self._serve("index.html")

    async def asset(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if not _ASSET_NAME.match(name) or not self._files.joinpath(name).is_file():
            raise web.HTTPNotFound()
        return self._serve(name)

    async def client_token(self, request: web.Request) -> web.Response:
        principal = await self._dev(request)
        body = await _json(request)
        key = await self.services.authenticate_key(self.services.dev_api_key)
        session_id = body.get("session_id")
        if session_id is not None and not isinstance(session_id, str):
            raise InvalidInput("session_id must be a string", code="invalid_session_id")
        max_credits = body.get("max_credits", _MAX_TOKEN_CREDITS)
        if (
            isinstance(max_credits, bool)
            or not isinstance(max_credits, int)
            or not 1 <= max_credits <= _MAX_TOKEN_CREDITS
        ):
            raise InvalidInput(
                f"max_credits must be an integer from 1 to {_MAX_TOKEN_CREDITS}",
                code="invalid_max_credits",
            )
        token, claims = await self.services.tokens.mint(
            key, voice_id=None, max_credits=max_credits, ttl_s=60.0, session_id=session_id
        )
        balance = await self.services.ledger.balance(principal.account_id)
        return ok(
            {
                "token": token,
                "expires_at": claims.expires_at,
                "max_credits": claims.max_credits,
                "balance_available": balance.available,
            }
        )

    async def voices(self, request: web.Request) -> web.Response:
        principal = await self._dev(request)
        presets = await self.services.upstream_client.list_presets()
        mine = await self.rest.voices_of(principal, 1, 100, api_base(request))
        balance = await self.services.ledger.balance(principal.account_id)
        return ok(
            {"presets": presets, "mine": mine["voices"], "balance_available": balance.available}
        )

    async def clone(self, request: web.Request) -> web.Response:
        principal = await self._dev(request)
        return ok(await self.rest.clone_for(principal, await _json(request)))

    async def _dev(self, request: web.Request) -> Principal:
        services = self.services
        if not services.settings.dev_tokens_enabled or services.dev_api_key is None:
            raise AuthError(
                "the dev endpoints are off: run `voxgate serve` on loopback with no "
                "API key configured, or set VOXGATE_DEV_TOKENS",
                code="dev_tokens_off",
            )
        if (request.remote or "") not in _LOOPBACK:
            raise AuthError("the dev endpoints only answer loopback clients", code="dev_tokens_off")
        principal: Principal = await services.authenticate_bearer(f"Bearer {services.dev_api_key}")
        return principal

    def _serve(self, name: str) -> web.Response:
        data = self._files.joinpath(name).read_bytes()
        return web.Response(
            body=data,
            content_type=_TYPES[name[name.rindex(".") :]],
            headers={"Cache-Control": "no-cache"},
        )


async def _json(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object; an empty body is an empty object."""
    return parse_json_object(await request.read() or b"{}")
