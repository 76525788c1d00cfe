"""WebRTC delivery of a session's audio: the media layer under the WHEP endpoint.

``clock.MediaClock`` is one 20 ms clock task per process driving every stream (spread over
a few phases of the period, packets flushed in batches); ``track.SessionAudioTrack`` is an
aiortc audio track that turns a session's PCM into one Opus packet per tick (playout
buffer, libopus at 24 kHz, constant silence frames, DTX between turns, barge-in);
``rtp.RtpOut`` sends those packets straight to the peer's SRTP socket; ``sdp`` holds the
negotiation helpers (Opus only, mono, 20 ms packets).
"""
