"""How a realtime connection ends on a fault: the close code to retry, and the error that
carries its close code up to the connection."""

from __future__ import annotations

from voxgate.errors import VoxgateError

CLOSE_TRY_AGAIN = 1013  # the client is too slow, the server is draining, the store is away


class Fatal(Exception):
    """The connection ends with ``error``, then closes with ``close_code``."""

    def __init__(self, code: int, error: VoxgateError) -> None:
        super().__init__(error.message)
        self.close_code = code
        self.error = error
