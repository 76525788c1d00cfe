"""API keys and credits of the embedded engine: 1 character = 1 credit, on success only.

Credits are held while a request runs and charged only when it succeeds, so two
concurrent requests cannot both spend the last credits, and a failed one costs nothing.
Keys are kept as SHA-256 digests; the plain key is only ever printed at start.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from voxgate.errors import AuthError, ConfigError, QuotaExceeded

DEFAULT_CREDITS = 1_000_000
KEY_PREFIX = "vxl_"


@dataclass
class Account:
    key_id: str  # the first characters of the key's digest: safe to log
    balance: int
    used: int = 0
    held: int = 0

    @property
    def available(self) -> int:
        return self.balance - self.held


@dataclass(frozen=True, slots=True)
class Hold:
    account: Account
    amount: int


class Accounts:
    """Keys and balances of one engine process."""

    def __init__(self) -> None:
        self._by_digest: dict[str, Account] = {}

    @staticmethod
    def generate_key() -> str:
        return KEY_PREFIX + secrets.token_urlsafe(24)

    def add_key(self, key: str, credits: int = DEFAULT_CREDITS) -> Account:
        if len(key) < 8:
            raise ConfigError("API keys must be at least 8 characters long")
        if credits < 0:
            raise ConfigError("credits cannot be negative")
        digest = _digest(key)
        account = Account(key_id=digest[:12], balance=credits)
        self._by_digest[digest] = account
        return account

    def add_spec(self, spec: str) -> Account:
        """``KEY`` or ``KEY:CREDITS``, as given on the command line or in the environment."""
        key, sep, credits = spec.strip().rpartition(":") if ":" in spec else (spec.strip(), "", "")
        if sep and not credits.isdigit():
            raise ConfigError(f"bad credits in API key spec ending {credits!r}")
        return self.add_key(key, int(credits) if sep else DEFAULT_CREDITS)

    def authenticate(self, authorization: str | None) -> Account:
        if not authorization:
            raise AuthError("missing Authorization header (expected 'Bearer <API key>')")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError("Authorization must be 'Bearer <API key>'")
        # Looking up a digest leaks nothing useful about the key through timing.
        account = self._by_digest.get(_digest(token.strip()))
        if account is None:
            raise AuthError("invalid API key")
        return account

    def hold(self, account: Account, amount: int) -> Hold:
        if amount > account.available:
            raise QuotaExceeded(
                f"this request needs {amount} credits; {account.available} are available",
                needed=amount,
                available=account.available,
            )
        account.held += amount
        return Hold(account, amount)

    def charge(self, hold: Hold) -> int:
        hold.account.held -= hold.amount
        hold.account.balance -= hold.amount
        hold.account.used += hold.amount
        return hold.amount

    def release(self, hold: Hold) -> None:
        hold.account.held -= hold.amount


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()
