"""How callers are admitted: configured API keys, the Authorization header, browser origins.

The stores themselves live in :mod:`voxgate.gateway.access.keys` (API keys) and
:mod:`voxgate.gateway.access.client_tokens` (single-use browser tokens); this module holds what sits
around them: ``keys_from_specs`` and ``dev_key`` for the in-process setup, ``bearer_token``
for the header, and ``OriginPolicy`` for the browser's ``Origin``.

Why a request without ``Origin`` is allowed: the header is how a *browser* says which page
made a request, so that a server can refuse pages of other sites (browsers always send it on
WebSocket handshakes and cross-origin requests, and pages cannot forge it). A request without
it comes from a backend, a telephony bridge or a command-line client, which could put any
``Origin`` it liked; refusing those would break every server-side client and stop no
attacker. Origins guard browser use only; the API key or the client token authenticates.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from voxgate.errors import AuthError, ConfigError, InvalidInput
from voxgate.gateway.access.keys import DEFAULT_MAX_SESSIONS, KeyRecord, KeyStore, generate_key
from voxgate.sessions.ledger import Ledger

DEV_KEY_PREFIX = "vg_dev_"
DEFAULT_SPEC_CREDITS = 1_000_000

# ---- configuration: --api-key KEY[:CREDITS], VOXGATE_API_KEYS, and the dev key


def split_key_specs(value: str) -> list[str]:
    """The specs in ``VOXGATE_API_KEYS``: comma-separated ``KEY[:CREDITS]``."""
    return [spec.strip() for spec in value.split(",") if spec.strip()]


def parse_key_spec(spec: str) -> tuple[str, int]:
    """``KEY`` or ``KEY:CREDITS`` -> (key, credits); credits default to 1,000,000."""
    key, sep, credits = spec.strip().rpartition(":")
    if not sep:
        return spec.strip(), DEFAULT_SPEC_CREDITS
    # Keys cannot contain ':', so the last ':' always starts the credits.
    if not credits.isascii() or not credits.isdigit():
        raise ConfigError("the credits of an API key spec (after ':') must be a whole number")
    return key, int(credits)


async def keys_from_specs(
    specs: Iterable[str],
    store: KeyStore,
    ledger: Ledger | None = None,
    *,
    max_sessions: int = DEFAULT_MAX_SESSIONS,
) -> list[KeyRecord]:
    """Register the keys of ``--api-key`` / ``VOXGATE_API_KEYS``; their records, in order.

    Keys are stored by digest, each on its own account with its credits. Safe at every
    start: a key already known keeps its record and balance. ``ledger``, if given, must be
    the store's own: credits always go to ``store.ledger``. ``ConfigError`` on a bad spec;
    its message never contains the key.
    """
    _check_ledger(store, ledger)
    records = []
    for number, spec in enumerate(specs, start=1):
        key, credits = parse_key_spec(spec)
        try:
            record = await store.add(
                key, name="configured", credits=credits, max_sessions=max_sessions
            )
        except InvalidInput as error:
            raise ConfigError(f"API key spec #{number}: {error.message}") from None
        records.append(record)
    return records


async def dev_key(
    store: KeyStore, ledger: Ledger | None = None, *, max_sessions: int = DEFAULT_MAX_SESSIONS
) -> tuple[str, KeyRecord]:
    """A fresh ``vg_dev_`` key with 1,000,000 credits, for a run with no key configured.

    Returns (plain key, record); the caller prints the plain key once, it is not kept.
    """
    _check_ledger(store, ledger)
    plain_key = generate_key(DEV_KEY_PREFIX)
    record = await store.add(
        plain_key, name="dev", credits=DEFAULT_SPEC_CREDITS, max_sessions=max_sessions
    )
    return plain_key, record


def _check_ledger(store: KeyStore, ledger: Ledger | None) -> None:
    if ledger is not None and ledger is not store.ledger:
        raise ConfigError("keys must be funded in their store's ledger, not in another one")


# ---- the Authorization header


def bearer_token(authorization: str | None) -> str:
    """The credential of ``Authorization: Bearer <credential>``.

    ``AuthError`` with code ``missing_api_key`` (no header) or ``invalid_authorization``.
    """
    if authorization is None or not authorization.strip():
        raise AuthError("send 'Authorization: Bearer <API key>'", code="missing_api_key")
    scheme, _, credential = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        raise AuthError("Authorization must be 'Bearer <API key>'", code="invalid_authorization")
    return credential.strip()


# ---- browser origins

_DEFAULT_PORTS = {"http": 80, "https": 443}
_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]"})
_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*")
_HOST = re.compile(r"[a-z0-9_.-]+|\[[0-9a-f:.]+\]")
MAX_ORIGIN_LENGTH = 2048


@dataclass(frozen=True, slots=True)
class Origin:
    """An origin, normalised: lower case, default port dropped (``port`` None)."""

    scheme: str
    host: str  # an IPv6 address keeps its brackets
    port: int | None

    def __str__(self) -> str:
        return f"{self.scheme}://{self.host}" + ("" if self.port is None else f":{self.port}")


def parse_origin(value: str) -> Origin | None:
    """``scheme://host[:port]`` normalised, or None if ``value`` is not an origin.

    ``"null"`` (sandboxed frames, ``file:`` pages) is not an origin: it matches only ``*``.
    """
    if not isinstance(value, str) or len(value) > MAX_ORIGIN_LENGTH or not value.isascii():
        return None
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    scheme, host = parts.scheme.lower(), (parts.hostname or "")
    if ":" in host:
        host = f"[{host}]"
    extras = parts.username or parts.password or parts.query or parts.fragment
    if not _SCHEME.fullmatch(scheme) or not _HOST.fullmatch(host) or extras:
        return None
    if parts.path not in ("", "/"):
        return None
    return Origin(scheme, host, None if port == _DEFAULT_PORTS.get(scheme) else port)


@dataclass(frozen=True)
class OriginPolicy:
    """Which browser origins may use the gateway.

    ``allowed`` holds exact origins (``https://app.example.com``), wildcard subdomains
    (``https://*.example.com``: any depth, not the apex itself) and ``*`` (any origin). Case
    and default ports do not matter. With ``allow_loopback`` (the default), pages served from
    ``http(s)://localhost``, ``127.0.0.1`` and ``[::1]`` on any port are allowed too: they run
    on the user's own machine (local development, the demo page). A request without
    ``Origin`` is allowed, see the module docstring. ``ConfigError`` for a bad pattern.
    """

    allowed: tuple[str, ...] = ()
    allow_loopback: bool = True
    _any: bool = field(init=False, repr=False, compare=False)
    _exact: frozenset[Origin] = field(init=False, repr=False, compare=False)
    _wildcards: tuple[Origin, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        exact: set[Origin] = set()
        wildcards: list[Origin] = []
        for pattern in self.allowed:
            if pattern.strip() == "*":
                continue
            if "*" in pattern:
                wildcards.append(_wildcard(pattern))
            else:
                exact.add(_exact(pattern))
        object.__setattr__(self, "_any", any(p.strip() == "*" for p in self.allowed))
        object.__setattr__(self, "_exact", frozenset(exact))
        object.__setattr__(self, "_wildcards", tuple(wildcards))

    @classmethod
    def parse(cls, value: str, *, allow_loopback: bool = True) -> OriginPolicy:
        """A policy from a comma-separated list (``VOXGATE_ALLOWED_ORIGINS``)."""
        allowed = tuple(p.strip() for p in value.split(",") if p.strip())
        return cls(allowed, allow_loopback=allow_loopback)

    def allows(self, origin: str | None) -> bool:
        """Whether a request with this ``Origin`` header (None: none) may proceed."""
        if origin is None or self._any:
            return True
        parsed = parse_origin(origin)
        if parsed is None:
            return False
        if parsed in self._exact:
            return True
        loopback = parsed.scheme in _DEFAULT_PORTS and parsed.host in _LOOPBACK_HOSTS
        if self.allow_loopback and loopback:
            return True
        return any(_under(parsed, wildcard) for wildcard in self._wildcards)

    def check(self, origin: str | None) -> None:
        """Return if ``origin`` is allowed; else ``AuthError(code="origin_not_allowed")``."""
        if not self.allows(origin):
            shown = origin if origin is None or len(origin) <= 100 else origin[:100] + "…"
            raise AuthError(f"origin {shown!r} is not allowed", code="origin_not_allowed")


def _exact(pattern: str) -> Origin:
    origin = parse_origin(pattern)
    if origin is None:
        raise ConfigError(f"allowed origin {pattern!r} is not scheme://host[:port]")
    return origin


def _wildcard(pattern: str) -> Origin:
    """``scheme://*.domain[:port]``, as an Origin whose host is the domain."""
    scheme, sep, rest = pattern.strip().partition("://*.")
    origin = parse_origin(f"{scheme}://{rest}") if sep and "*" not in rest else None
    if origin is None:
        raise ConfigError(f"allowed origin {pattern!r} is not scheme://*.domain[:port]")
    if "." not in origin.host or origin.host.startswith("["):
        # "https://*.com" would let in every site of a top-level domain.
        raise ConfigError(f"allowed origin {pattern!r} is too broad: name a domain")
    return origin


def _under(origin: Origin, wildcard: Origin) -> bool:
    return (
        origin.scheme == wildcard.scheme
        and origin.port == wildcard.port
        and origin.host.endswith("." + wildcard.host)
    )
