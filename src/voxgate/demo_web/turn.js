/* One utterance (one context): what was sent, its chunks, its timings. */

const CLOSE_BELOW_MS = 600; // see Turn.readyToClose
const CLOSE_FALLBACK_MS = 3000;

export class Turn {
  constructor(contextId, text, mode) {
    this.contextId = contextId;
    this.text = text;
    this.mode = mode; // "speak" or "stream"
    this.tokens = mode === 'stream' ? (text.match(/\s*\S+/g) ?? []) : [text];
    this.sentTokens = 0;
    this.chunks = new Map(); // chunk_index -> {text, state: playing | sent | failed, code?}
    this.firstSentAt = null;
    this.firstChunkAt = null;
    this.firstSoundAt = null;
    this.flushedAt = null;
    this.closed = false;
    this.interruptAt = null;
    this.quietSince = null;
    this.silentAt = null;
    this.outcome = null; // "done" | "interrupted"
    this.usage = null;
    this.heard = null;
    this.unheard = null;
  }

  get sentText() {
    return this.tokens.slice(0, this.sentTokens).join('');
  }

  get pendingText() {
    return this.tokens.slice(this.sentTokens).join('');
  }

  get ttfaMs() {
    return this.firstSoundAt === null ? null : this.firstSoundAt - this.firstSentAt;
  }

  get stopMs() {
    return this.silentAt === null ? null : Math.max(0, this.silentAt - this.interruptAt);
  }

  /**
   * Whether to send context.close now. The page ends a turn's text with text.flush, not
   * context.close, and closes only when the turn's audio is nearly played out: the gateway
   * answers context.done as soon as the last audio is in its playout buffer (up to 2 s
   * ahead of the listener), and an interrupt after context.done no longer stops anything.
   * Closing while CLOSE_BELOW_MS are still queued keeps the playout buffer from counting
   * the turn's natural end as an underrun. Closing early is harmless: what is queued is
   * still spoken.
   */
  readyToClose(bufferedMs, now) {
    if (this.closed || this.flushedAt === null || this.outcome || this.interruptAt !== null) return false;
    const open = [...this.chunks.values()].some((c) => c.state === 'playing');
    if (this.chunks.size && !open && bufferedMs <= CLOSE_BELOW_MS) return true;
    return !open && now - this.flushedAt > CLOSE_FALLBACK_MS && bufferedMs <= CLOSE_BELOW_MS;
  }

  summary() {
    return {
      contextId: this.contextId,
      mode: this.mode,
      text: this.text,
      sentText: this.sentText,
      tokensSent: this.sentTokens,
      tokensTotal: this.tokens.length,
      ttfaMs: this.ttfaMs,
      firstChunkMs: this.firstChunkAt === null ? null : this.firstChunkAt - this.firstSentAt,
      stopMs: this.stopMs,
      outcome: this.outcome,
      heard: this.heard,
      unheard: this.unheard,
      usage: this.usage,
      chunks: [...this.chunks.entries()].map(([index, c]) => ({ index, ...c })),
    };
  }
}
