"""WebRTC delivery of a session's audio: the media layer under the WHEP endpoint.

``clock.MediaClock`` is one 20 ms clock task per process driving every stream (spread over
a few phases of the period); ``track.SessionAudioTrack`` is an aiortc audio track that
turns a session's PCM into one ready Opus packet per tick (playout buffer, libopus at
24 kHz, constant silence frames, barge-in); ``sdp`` holds the negotiation helpers (Opus
only, mono, 20 ms packets).
"""
