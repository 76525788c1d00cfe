"""Who may do what: API keys and their store, client tokens for browsers, the principal a
request acts as, origin checks, and the rate limits on what a client sends."""
