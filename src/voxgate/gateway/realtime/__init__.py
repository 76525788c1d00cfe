"""``/v1/realtime``: one WebSocket, one Session, several contexts.

Three tasks per socket: the reader validates client messages and drives the Session; the
pump takes Session events and turns them into wire messages; the sender writes them,
paced if the client asked for real time. See docs/protocol.md for the protocol itself.

A socket that drops without a close frame leaves its session detached for the resume
grace: a new socket that sends ``session.resume`` takes it over (see ``handover``), and
the connection that accepted the new socket only carries it until the session lets it go.

- ``connection``: ``RealtimeConnection``, the socket's lifecycle, composed of
- ``reader``: authentication, the read loop and the client's commands;
- ``playback``: the pump and the audio sinks (the socket, a WebRTC track, a call leg);
- ``sender``: the socket's writer and the slow-reader watch;
- ``handover``: detach, claim, adopt; a resuming socket carried to its session.
"""

from voxgate.gateway.realtime.closing import CLOSE_TRY_AGAIN
from voxgate.gateway.realtime.connection import RealtimeConnection
from voxgate.gateway.realtime.playback import PLAYOUT_REPORT_S, WEBRTC_LEAD_MS
from voxgate.gateway.realtime.sender import SLOW_READER_GRACE_S, STALL_CHECK_S

SUBPROTOCOL = "voxgate.v1"
TOKEN_SUBPROTOCOL_PREFIX = "voxgate.token."

__all__ = [
    "CLOSE_TRY_AGAIN",
    "PLAYOUT_REPORT_S",
    "SLOW_READER_GRACE_S",
    "STALL_CHECK_S",
    "SUBPROTOCOL",
    "TOKEN_SUBPROTOCOL_PREFIX",
    "WEBRTC_LEAD_MS",
    "RealtimeConnection",
]
