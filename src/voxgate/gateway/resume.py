"""A session's side of resuming on a new socket: its secret, its wait, the handover.

A socket that drops without a close frame leaves its session *detached* for the grace
(``VOXGATE_RESUME_GRACE_S``): nothing goes out, the session keeps its place. A new socket
that names the session with its token *claims* it (checked at once, so two resumers
cannot both win), then lets its own fresh session go and hands its socket over: the
session is *attached* again. The connection whose socket was handed over waits until the
session is done with it (``released``).
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
from collections import deque
from typing import Literal

from voxgate.errors import AuthError, LimitExceeded

Outcome = Literal["resumed", "expired", "ended"]

# Replies and notices (telephony, DTMF) produced while detached wait for the next socket;
# beyond this many the oldest go.
HELD_MESSAGES = 256
# A claimed session waits this long past its grace for the claimer's socket to arrive.
CLAIM_TIMEOUT_S = 5.0


class Resumption:
    """Whether a session's socket is there, and what a new one needs to take it over."""

    def __init__(self, grace_s: float) -> None:
        self.grace_s = grace_s
        self.token: str | None = secrets.token_urlsafe(24) if grace_s > 0 else None
        self.attached = asyncio.Event()  # cleared while no socket serves the session
        self.attached.set()
        self.claimed = False
        self._outcome: asyncio.Future[Outcome] | None = None  # while detached
        self._release: asyncio.Future[None] | None = None  # a carried socket's handler waits
        self._held: deque[str] = deque(maxlen=HELD_MESSAGES)

    @property
    def detached(self) -> bool:
        return self._outcome is not None and not self._outcome.done()

    def check(self, token: str, account_id: str, owner_account_id: str) -> None:
        """A resumer's credentials against the session's; raises what is wrong."""
        expected = (self.token or "").encode()
        if self.token is None or not hmac.compare_digest(expected, token.encode()):
            raise AuthError("wrong resume_token for that session", code="invalid_resume_token")
        if account_id != owner_account_id:
            raise AuthError("that session belongs to another account", code="forbidden")
        if not self.detached or self.claimed:
            raise LimitExceeded(
                "that session is still attached to a socket; retry once that one dropped",
                code="session_attached",
            )

    def detach(self) -> None:
        self.attached.clear()
        self.claimed = False
        self._outcome = asyncio.get_running_loop().create_future()
        self.release()

    async def wait(self) -> Outcome:
        """Until a socket takes the session over, the grace ends, or the session ends."""
        outcome = self._outcome
        assert outcome is not None
        try:
            try:
                return await asyncio.wait_for(asyncio.shield(outcome), self.grace_s)
            except TimeoutError:
                if not self.claimed:
                    return "expired"
            # A resumer holds it: its socket comes as soon as its own session is let go.
            try:
                return await asyncio.wait_for(outcome, CLAIM_TIMEOUT_S)
            except TimeoutError:
                return "expired"
        finally:
            self._outcome = None
            self.claimed = False

    def attach(self) -> asyncio.Future[None]:
        """The claimer's socket arrived; the future is done when the session lets it go."""
        assert self._outcome is not None
        assert self.claimed
        self.claimed = False
        self._outcome.set_result("resumed")
        self._release = asyncio.get_running_loop().create_future()
        return self._release

    def end(self) -> None:
        """No resume any more (drain, a gap, the session closed): the wait ends now."""
        if self._outcome is not None and not self._outcome.done():
            self._outcome.set_result("ended")

    def release(self) -> None:
        if self._release is not None and not self._release.done():
            self._release.set_result(None)
        self._release = None

    def hold(self, message: str) -> None:
        self._held.append(message)

    def take_held(self) -> list[str]:
        held = list(self._held)
        self._held.clear()
        return held
