"""Who is on the other end of a request, once authenticated."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Principal:
    """An API key's holder, or a browser holding a client token minted from that key.

    A token narrows what the key allows: one voice, a credit cap, one session.
    """

    account_id: str
    key_id: str
    max_sessions: int
    voice_id: str | None = None
    max_credits: int | None = None
    session_id: str | None = None
    via_token: bool = False
