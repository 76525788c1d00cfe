"""Telephony call legs: a provider's media socket attached to a live realtime session.

One ``CallLeg`` (``leg.py``) carries a session's audio to a call and reports what the phone
played; each provider's protocol is a ``Dialect`` (``dialect.py``), one small module each
(``twilio.py``, ``telnyx.py``, ``plivo.py``, ``vonage.py``, read through ``messages.py``);
``endpoint.py`` accepts the provider's WebSocket, attaches it to the session its token
names, and runs it. ``rtp.py`` and ``rtp_endpoint.py`` send a session's audio as RTP to a
SIP media server through the same leg. Events stay on the agent's ``/v1/realtime`` socket.
"""
