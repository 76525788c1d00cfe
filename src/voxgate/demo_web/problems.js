/* What each error code means for the person looking at the page: a title and what to do. */

export const PROBLEMS = {
  unreachable: ['voxgate is not reachable', 'Is `voxgate serve` still running? Reload the page once it is.'],
  dev_tokens_off: ['Dev tokens are off',
    'This page needs `voxgate serve` on loopback with no API key configured (or VOXGATE_DEV_TOKENS=on). ' +
    'In production, your backend mints client tokens with POST /v1/client_tokens.'],
  insufficient_credits: ['Out of credits', 'The account or this session\'s token cap cannot pay for the text. Add credits with `voxgate keys`, or speak less.'],
  upstream_unavailable: ['The TTS upstream is down', 'voxgate cannot reach the Voxtral API. Check VOXTRAL_BASE_URL and the network, then try again.'],
  upstream_timeout: ['The TTS upstream timed out', 'The Voxtral API did not answer in time. Try again in a moment.'],
  upstream_error: ['The TTS upstream failed', 'It refused or broke off; the gateway\'s log says why. Try again in a moment.'],
  voice_not_found: ['The voice does not exist', 'Pick a preset or one of your saved voices.'],
  undecodable_audio: ['The reference audio is not usable', 'Record or upload a few seconds of clear speech (WAV, MP3, Ogg, WebM).'],
  audio_duration: ['The reference audio has the wrong length', 'Use a few seconds of speech, within the limits the message gives.'],
  upstream_stream_error: ['The TTS upstream broke off', 'The audio stream ended early. Try again.'],
  invalid_token: ['The client token was refused', 'Reconnect to get a fresh token.'],
  token_used: ['The client token was already used', 'Tokens are single-use: reconnect to get a fresh one.'],
  token_expired: ['The client token expired', 'Tokens live 60 s: reconnect to get a fresh one.'],
  origin_not_allowed: ['This page\'s origin is not allowed', 'Open the page at localhost, or add its origin to VOXGATE_ALLOWED_ORIGINS.'],
  too_many_sessions: ['Too many live sessions', 'Close other tabs of this demo, or wait for their sessions to end.'],
  draining: ['voxgate is shutting down', 'Reconnect once it is back.'],
  webrtc_failed: ['The WebRTC connection failed', 'The browser could not reach the gateway over UDP. Across NAT or a firewall, configure a TURN server (VOXGATE_TURN_URL).'],
  no_data_channel: ['The offer had no data channel', 'This page must create the "voxgate" data channel before its offer.'],
  bad_sdp: ['The gateway refused the WebRTC offer', ''],
  voice_limit_reached: ['No room for another voice', 'Delete a saved voice first (20 at most).'],
  timeout: ['The gateway did not answer', 'Try again; if it persists, look at the gateway\'s log.'],
  closed: ['The session ended', 'Press Speak or Reconnect to start a new one.'],
};
export const QUIET_ERRORS = new Set(['unknown_context', 'context_closed', 'nothing_to_interrupt']); // an interrupt racing the end of its turn
