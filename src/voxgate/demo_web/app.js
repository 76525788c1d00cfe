/*
 * The voxgate demo page: text in, live speech out over WebRTC. ES modules, no build step,
 * nothing loaded from anywhere but the gateway.
 *
 *   api.js       HTTP calls to the gateway (dev token, voices, clone) and its error envelope
 *   link.js      Link: one WebRTC session (WHEP offer/answer, the "voxgate" data channel, state)
 *   meter.js     Meter: a Web Audio analyser on the remote track, level and rolling envelope
 *   turn.js      Turn: one utterance (one context), what was sent, its chunks, its timings
 *   problems.js  what each error code means for the person at the page
 *   voices.js    VoicePicker: languages, voices, variants, and cloning a voice
 *   app.js       the page itself: controls, figures, errors, settings -> new session
 *
 * A session's voice and speed are fixed by its first text, and client tokens are
 * single-use, so changing them means a new session: hang up, fetch a token, reconnect.
 * The page does that by itself when the settings change while nothing is playing.
 *
 * Tests drive this page in Chromium and read `window.voxgate` (end of this file).
 */

import { ApiError } from './api.js';
import { Link } from './link.js';
import { Meter } from './meter.js';
import { PROBLEMS, QUIET_ERRORS } from './problems.js';
import { Turn } from './turn.js';
import { VoicePicker } from './voices.js';

// -- constants ---------------------------------------------------------------------------

const SOUND_RMS = 0.004; // analyser RMS above this is sound (the gateway's silence is exact zeros)
const SILENT_RMS = 0.002; // below this is silence...
const SILENCE_HOLD_MS = 150; // ...once it has lasted this long (a pause between words is shorter)
const INTERRUPT_WATCHDOG_MS = 3000;
const MAX_BUFFER_MS = 2000; // the gateway's playout buffer bound, for the buffer bar
const LOG_LIMIT = 80;

const SAMPLES = {
  en: 'Thanks for calling. Your order shipped on Monday and should arrive by Thursday. ' +
    'If you like, I can also send the tracking link by text message, or read out the ' +
    'delivery address we have on file so that you can check it.',
  fr: 'Merci de votre appel. Votre commande est partie lundi et devrait arriver jeudi. ' +
    'Si vous voulez, je peux aussi vous envoyer le lien de suivi par message.',
  es: 'Gracias por llamar. Su pedido salió el lunes y debería llegar el jueves. ' +
    'Si quiere, también puedo enviarle el enlace de seguimiento por mensaje.',
  pt: 'Obrigado pela chamada. A sua encomenda foi enviada na segunda-feira e deve chegar ' +
    'na quinta-feira. Se quiser, posso enviar o link de acompanhamento por mensagem.',
  it: 'Grazie per la chiamata. Il suo ordine è partito lunedì e dovrebbe arrivare giovedì. ' +
    'Se vuole, posso anche inviarle il link di tracciamento con un messaggio.',
  nl: 'Bedankt voor uw oproep. Uw bestelling is maandag verzonden en komt donderdag aan. ' +
    'Als u wilt, stuur ik u ook de link om de zending te volgen.',
  de: 'Danke für Ihren Anruf. Ihre Bestellung wurde am Montag verschickt und kommt am ' +
    'Donnerstag an. Wenn Sie möchten, schicke ich Ihnen auch den Link zur Sendungsverfolgung.',
  hi: 'कॉल करने के लिए धन्यवाद। आपका ऑर्डर सोमवार को भेजा गया था और गुरुवार तक पहुँच जाएगा।',
  ar: 'شكرا لاتصالك. تم شحن طلبك يوم الاثنين وسيصل يوم الخميس. ' +
    'إذا أردت، يمكنني أيضا إرسال رابط التتبع في رسالة.',
};

// -- the page ----------------------------------------------------------------------------

const $ = (id) => document.getElementById(id);
const ui = Object.fromEntries([
  'connection', 'connection-label', 'peer-state', 'channel-state', 'session-label', 'reconnect',
  'alert', 'alert-title', 'alert-message', 'alert-hint', 'alert-close',
  'turn-state', 'text', 'speak', 'stream', 'interrupt', 'rate', 'rate-value', 'transcript',
  'outcome', 'outcome-title', 'heard', 'unheard',
  'scope', 'level', 'ttfa', 'ttfa-note', 'stop', 'stop-note', 'buffer', 'buffer-bar',
  'underruns', 'underruns-note', 'credits-used', 'credits-note', 'credits-left', 'credits-cap', 'rtp',
  'language', 'voice', 'variant', 'speed', 'speed-value', 'voice-note',
  'clone', 'clone-form', 'clone-name', 'clone-language', 'clone-gender', 'clone-file',
  'clone-submit', 'clone-status', 'log', 'log-count', 'announcer', 'player',
].map((id) => [id.replace(/-(\w)/g, (_, c) => c.toUpperCase()), $(id)]));

const link = new Link();
const meter = new Meter(ui.scope, ui.level);
const voices = new VoicePicker(ui, {
  onChange: () => onSettingsChanged(),
  onLanguage: (code) => {
    if (!state.textEdited) ui.text.value = SAMPLES[code] ?? SAMPLES.en;
  },
});
const number = new Intl.NumberFormat('en');
const state = {
  turn: null,
  turns: 0, // per session: context ids are never reused (docs/protocol.md, known issue 1)
  creditsPast: 0, // charged in this page's earlier sessions
  session: { characters: 0, held: 0 }, // the current session's, from its last `usage`
  balance: null,
  playout: null,
  pendingReconnect: false,
  reconnectTimer: null,
  streamTimer: null,
  textEdited: false,
  problemScope: null,
  rtp: null,
  playouts: 0,
};

// -- errors ----------------------------------------------------------------------------------

function showProblem(error, scope = 'general') {
  const [title, hint] = PROBLEMS[error.code] ?? [`Error: ${error.code}`, ''];
  ui.alertTitle.textContent = title;
  ui.alertMessage.textContent = error.message;
  ui.alertHint.textContent = hint;
  ui.alertHint.hidden = !hint;
  ui.alert.dataset.code = error.code;
  ui.alert.hidden = false;
  state.problemScope = scope;
}

function clearProblem(scope) {
  if (scope && state.problemScope !== scope) return;
  ui.alert.hidden = true;
  state.problemScope = null;
}

// -- connection ------------------------------------------------------------------------------

function wantedConfig() {
  return { voiceId: voices.voiceId, speed: Number(ui.speed.value) };
}

function sameConfig(a, b) {
  return a && b && a.voiceId === b.voiceId && a.speed === b.speed;
}

async function connect() {
  clearTimeout(state.reconnectTimer);
  state.pendingReconnect = false;
  state.turns = 0;
  state.playout = null;
  state.creditsPast += state.session.characters;
  state.session = { characters: 0, held: 0 };
  await link.open(wantedConfig());
}

function renderConnection() {
  const labels = {
    idle: 'Not connected', connecting: 'Connecting…', ready: 'Connected: ready to speak',
    closed: 'Disconnected: Speak or Reconnect starts a new session', failed: 'Not connected',
  };
  ui.connection.dataset.state = link.state;
  ui.connectionLabel.textContent = labels[link.state];
  renderPeer();
}

link.addEventListener('state', ({ detail }) => {
  renderConnection();
  if (detail.state === 'ready') {
    clearProblem('connection');
    const token = link.token;
    state.balance = token.balance_available;
    ui.creditsCap.textContent = `on the account · session cap ${number.format(token.max_credits)}`;
    renderCredits();
    ui.voiceNote.textContent = `Session: ${voices.describe()} at ${link.config.speed.toFixed(2)}×`;
  }
  if (detail.state === 'failed') showProblem(detail.error, 'connection');
  if ((detail.state === 'closed' || detail.state === 'failed') && state.turn && !state.turn.outcome) {
    endTurn('lost');
  }
  renderControls();
});

link.addEventListener('peer', renderPeer);

link.addEventListener('track', ({ detail: stream }) => {
  ui.player.srcObject = stream;
  ui.player.play().catch(() => {
    // Autoplay without a gesture is blocked: the next Speak click calls play() again.
  });
  meter.attach(stream);
});

link.addEventListener('sent', ({ detail }) => log('→', detail));

link.addEventListener('message', ({ detail: message }) => {
  if (message.type === 'playout') state.playouts += 1;
  else log('←', message);
  handleMessage(message);
});

function renderPeer() {
  ui.peerState.textContent = link.pc?.connectionState ?? 'closed';
  ui.channelState.textContent = link.dc?.readyState ?? 'none';
  ui.sessionLabel.textContent = link.sessionId ? ` · session ${link.sessionId.slice(0, 8)}` : '';
}

// -- turns -----------------------------------------------------------------------------------

async function startTurn(mode) {
  if (state.turn && !state.turn.outcome) return;
  const text = ui.text.value.trim();
  if (!text) {
    showProblem(new ApiError('empty_text', 'Type some text to speak first.'), 'turn');
    ui.text.focus();
    return;
  }
  // This runs in a click or key handler: the moment to let audio start.
  ui.player.play().catch(() => {});
  meter.resume();
  clearProblem('turn');
  if (link.state !== 'ready' || !sameConfig(link.config, wantedConfig())) {
    await connect();
    if (link.state !== 'ready') return;
  }
  state.turns += 1;
  const turn = new Turn(`turn-${state.turns}`, text, mode);
  state.turn = turn;
  ui.outcome.hidden = true;
  resetTurnFigures();
  meter.mark(mode === 'stream' ? 'stream' : 'speak', 'start');
  renderControls();
  if (mode === 'speak') {
    sendText(turn);
    flush(turn);
  } else {
    streamTokens(turn);
  }
  renderTurn();
}

function sendText(turn) {
  const token = turn.tokens[turn.sentTokens];
  if (turn.firstSentAt === null) turn.firstSentAt = performance.now();
  link.send({ type: 'text.append', context_id: turn.contextId, text: token });
  turn.sentTokens += 1;
}

function flush(turn) {
  link.send({ type: 'text.flush', context_id: turn.contextId });
  turn.flushedAt = performance.now();
}

/** Send the turn's tokens one by one at the rate set by the slider (read at every token). */
function streamTokens(turn) {
  const step = () => {
    if (state.turn !== turn || turn.outcome || turn.interruptAt !== null || link.state !== 'ready') return;
    sendText(turn);
    renderTurn();
    renderControls();
    if (turn.sentTokens === turn.tokens.length) {
      flush(turn);
      renderControls();
      return;
    }
    state.streamTimer = setTimeout(step, 1000 / Number(ui.rate.value));
  };
  step();
}

function interrupt() {
  const turn = state.turn;
  if (!turn || turn.outcome || turn.interruptAt !== null) return;
  clearTimeout(state.streamTimer);
  turn.interruptAt = performance.now();
  meter.mark('interrupt', 'interrupt');
  try {
    // No played_ms: over WebRTC the gateway knows what it has sent.
    link.send({ type: 'interrupt' });
  } catch (error) {
    showProblem(error, 'turn');
  }
  // The answer is `interrupted`, or `context.done` if the turn had already been closed.
  setTimeout(() => {
    if (state.turn === turn && !turn.outcome) endTurn('interrupted');
  }, INTERRUPT_WATCHDOG_MS);
  renderControls();
  renderTurn();
}

/**
 * Called on each `playout` report only: one that arrives after a chunk event was measured
 * after it (both share the data channel, in order), so its buffered_ms includes that audio.
 */
function maybeClose(turn) {
  const buffered = state.playout?.buffered_ms ?? 0;
  if (!turn.readyToClose(buffered, performance.now())) return;
  turn.closed = true;
  try {
    link.send({ type: 'context.close', context_id: turn.contextId });
  } catch {
    // the session is gone; its state handler ends the turn
  }
}

function endTurn(outcome) {
  const turn = state.turn;
  if (!turn || turn.outcome) return;
  turn.outcome = outcome;
  clearTimeout(state.streamTimer);
  askUsage();
  renderCredits();
  renderTurn();
  renderFigures();
  renderControls();
  const seconds = turn.usage ? `${(turn.usage.audio_ms / 1000).toFixed(1)} s of audio, ` : '';
  const credits = turn.usage ? `${turn.usage.characters} credits` : 'no credits';
  const ttfa = turn.ttfaMs === null ? '' : `First audio after ${Math.round(turn.ttfaMs)} ms. `;
  announce(outcome === 'interrupted'
    ? `Interrupted. Heard: ${turn.heard ?? 'nothing'}. ${credits}.`
    : `${ttfa}Turn finished: ${seconds}${credits}.`);
  if (state.pendingReconnect && link.state === 'ready') scheduleReconnect();
}

/** Credits move when a chunk starts (held) and ends (charged): ask for the figures then. */
function askUsage() {
  if (link.state !== 'ready') return;
  try {
    link.send({ type: 'usage.get' });
  } catch {
    // the session just ended
  }
}

function handleMessage(message) {
  const turn = state.turn;
  const mine = turn && message.context_id === turn.contextId;
  switch (message.type) {
    case 'playout':
      state.playout = message;
      renderFigures();
      if (turn && !turn.outcome) maybeClose(turn);
      break;
    case 'usage':
      state.balance = message.balance_available;
      state.session = { characters: message.session_characters, held: message.session_held };
      renderCredits();
      break;
    case 'chunk.started':
      if (!mine) break;
      if (turn.firstChunkAt === null) turn.firstChunkAt = performance.now();
      turn.chunks.set(message.chunk_index, { text: message.text, state: 'playing' });
      renderTurn();
      askUsage();
      break;
    case 'chunk.ended':
      if (!mine) break;
      turn.chunks.set(message.chunk_index, { text: message.text, state: 'sent' });
      renderTurn();
      askUsage();
      break;
    case 'chunk.failed':
      if (!mine) break;
      turn.chunks.set(message.chunk_index, { text: message.text, state: 'failed', code: message.code });
      showProblem(new ApiError(message.code, message.message), 'turn');
      renderTurn();
      break;
    case 'context.done':
      if (!mine) break;
      turn.usage = message.usage;
      endTurn('done');
      break;
    case 'interrupted':
      if (!mine) break;
      turn.usage = message.usage;
      turn.heard = message.heard;
      turn.unheard = message.unheard;
      endTurn('interrupted');
      break;
    case 'error':
      if (QUIET_ERRORS.has(message.code) && !message.fatal) break;
      showProblem(new ApiError(message.code, message.message), message.fatal ? 'connection' : 'turn');
      break;
    default:
      break;
  }
}

/** Called every animation frame with the analyser's RMS: times first sound and silence. */
meter.onLevel = (rms, now) => {
  const turn = state.turn;
  if (!turn || turn.firstSentAt === null) return;
  if (turn.firstSoundAt === null && turn.interruptAt === null && rms > SOUND_RMS) {
    turn.firstSoundAt = now;
    meter.mark(`first audio ${Math.round(turn.ttfaMs)} ms`, 'sound');
    renderFigures();
  }
  if (turn.interruptAt !== null && turn.silentAt === null) {
    if (rms >= SILENT_RMS) {
      turn.quietSince = null;
    } else {
      turn.quietSince ??= now;
      if (now - turn.quietSince >= SILENCE_HOLD_MS) {
        turn.silentAt = turn.quietSince;
        meter.mark(`silent +${Math.round(turn.stopMs)} ms`, 'silent');
        renderFigures();
      }
    }
  }
};

// -- settings -> session -----------------------------------------------------------------------

function onSettingsChanged() {
  ui.speedValue.textContent = `${Number(ui.speed.value).toFixed(2)}×`;
  if (sameConfig(link.config, wantedConfig()) && link.state === 'ready') {
    ui.voiceNote.textContent = `Session: ${voices.describe()} at ${link.config.speed.toFixed(2)}×`;
    return;
  }
  if (state.turn && !state.turn.outcome) {
    state.pendingReconnect = true;
    ui.voiceNote.textContent = 'The new settings take over after this turn';
    return;
  }
  ui.voiceNote.textContent = 'Starting a new session with the new settings…';
  scheduleReconnect();
}

function scheduleReconnect() {
  clearTimeout(state.reconnectTimer);
  state.reconnectTimer = setTimeout(connect, 350); // a dragged slider settles first
}

async function loadVoices() {
  try {
    state.balance = await voices.load();
    renderCredits();
  } catch (error) {
    if (error.code === 'dev_tokens_off') showProblem(error, 'connection');
    else showProblem(new ApiError(error.code, `Cannot list the voices: ${error.message}`), 'voices');
  }
  voices.renderLanguages();
}

// -- rendering -------------------------------------------------------------------------------

function renderControls() {
  const turn = state.turn;
  const busy = Boolean(turn && !turn.outcome);
  ui.speak.disabled = busy || link.state === 'connecting';
  ui.stream.disabled = busy || link.state === 'connecting';
  ui.interrupt.disabled = !busy || turn.interruptAt !== null;
  ui.reconnect.disabled = link.state === 'connecting';
  let text = link.state === 'ready' ? 'Ready' : 'Speak starts a session';
  if (link.state === 'connecting') text = 'Connecting…';
  if (busy && turn.interruptAt !== null) text = 'Interrupting…';
  else if (busy && turn.mode === 'stream' && turn.flushedAt === null) {
    text = `Streaming tokens ${turn.sentTokens}/${turn.tokens.length}…`;
  } else if (busy) text = 'Speaking…';
  else if (turn?.outcome === 'done') text = 'Done';
  else if (turn?.outcome === 'interrupted') text = 'Interrupted';
  else if (turn?.outcome === 'lost') text = 'Session lost';
  ui.turnState.textContent = text;
  ui.turnState.dataset.busy = String(busy);
}

function renderTurn() {
  const turn = state.turn;
  if (!turn) return;
  const sent = el('span', 'sent', turn.sentText);
  const pending = el('span', 'pending', turn.pendingText);
  const text = el('p', 'turn-text', sent, pending);
  const head = el('p', 'turn-head', `${turn.contextId} · ${turn.mode === 'stream' ? 'streamed' : 'spoken'}`);
  const chunks = el('ol', 'chunks');
  for (const { index, text: chunkText, shown, label } of chunkViews(turn)) {
    const badge = el('span', 'chunk-state', label);
    chunks.append(el('li', `chunk ${shown}`, el('span', 'chunk-index', `#${index}`), el('span', 'chunk-text', chunkText), badge));
  }
  const parts = turn.mode === 'stream' ? [head, text] : [head];
  if (turn.chunks.size) parts.push(el('p', 'chunks-title', 'Chunks synthesised'), chunks);
  ui.transcript.replaceChildren(...parts);
  if (turn.outcome === 'interrupted') {
    ui.outcomeTitle.textContent = 'Interrupted: what the listener heard';
    ui.heard.textContent = turn.heard ?? '(the gateway did not answer)';
    ui.unheard.textContent = turn.unheard ?? '';
    ui.outcome.hidden = false;
  }
}

/**
 * How to show each chunk. While the turn runs: sending (chunk.started) or sent (chunk.ended:
 * all its audio is in the gateway's playout buffer, not yet heard). After an interrupt, the
 * chunks' texts, in order, are `heard` + `unheard`: each chunk was heard, cut, or not heard.
 */
function chunkViews(turn) {
  const heardLength = turn.outcome === 'interrupted' && turn.heard !== null ? turn.heard.length : null;
  let offset = 0;
  return [...turn.chunks.entries()].sort((a, b) => a[0] - b[0]).map(([index, chunk]) => {
    const start = offset;
    offset += chunk.text.length;
    let shown = chunk.state === 'playing' ? 'sending' : chunk.state;
    if (chunk.state === 'failed') shown = 'failed';
    else if (heardLength !== null) shown = offset <= heardLength ? 'heard' : start >= heardLength ? 'unheard' : 'cut';
    else if (turn.outcome === 'done') shown = 'spoken';
    const labels = { sending: 'sending', sent: 'sent', spoken: 'spoken', heard: 'heard', cut: 'cut', unheard: 'not heard', failed: 'failed' };
    const label = chunk.code ? `${labels[shown]}: ${chunk.code}` : labels[shown];
    return { index, text: chunk.text, shown, label };
  });
}

function resetTurnFigures() {
  ui.ttfa.textContent = '…';
  ui.ttfaNote.textContent = 'first text sent → first sound in this tab';
  // The interrupt figure stays: it is the last interrupt's until the next one.
}

function renderFigures() {
  const turn = state.turn;
  if (turn) {
    if (turn.ttfaMs !== null) ui.ttfa.textContent = `${Math.round(turn.ttfaMs)} ms`;
    else if (turn.outcome) ui.ttfa.textContent = '—';
    if (turn.firstChunkAt !== null) {
      ui.ttfaNote.textContent = `first chunk.started after ${Math.round(turn.firstChunkAt - turn.firstSentAt)} ms`;
    }
    if (turn.stopMs !== null) ui.stop.textContent = `${Math.round(turn.stopMs)} ms`;
    else if (turn.interruptAt !== null) ui.stop.textContent = '…';
  }
  const playout = state.playout;
  if (playout) {
    ui.buffer.textContent = `${Math.round(playout.buffered_ms)} ms`;
    ui.bufferBar.style.width = `${Math.min(100, (playout.buffered_ms / MAX_BUFFER_MS) * 100)}%`;
    ui.underruns.textContent = number.format(playout.underruns_upstream + playout.underruns_gateway);
    ui.underrunsNote.textContent = `upstream ${playout.underruns_upstream} · gateway ${playout.underruns_gateway} · this session`;
  }
}

function creditsUsed() {
  return state.creditsPast + state.session.characters;
}

function renderCredits() {
  ui.creditsUsed.textContent = number.format(creditsUsed());
  const turn = state.turn;
  const notes = [];
  if (state.session.held) notes.push(`${number.format(state.session.held)} held for chunks in flight`);
  else if (turn?.usage) notes.push(`last turn ${number.format(turn.usage.characters)}`);
  notes.push('1 per character spoken');
  ui.creditsNote.textContent = notes.join(' · ');
  ui.creditsLeft.textContent = state.balance === null ? '—' : number.format(state.balance);
}

function el(tag, className, ...children) {
  const node = document.createElement(tag);
  node.className = className;
  node.append(...children);
  return node;
}

function announce(text) {
  ui.announcer.textContent = '';
  requestAnimationFrame(() => { ui.announcer.textContent = text; });
}

const started = performance.now();
function log(direction, message) {
  const item = document.createElement('li');
  const time = ((performance.now() - started) / 1000).toFixed(2).padStart(7);
  let json = JSON.stringify(message);
  if (json.length > 320) json = `${json.slice(0, 320)}…`;
  item.textContent = `${time} ${direction} ${json}`;
  item.dataset.direction = direction === '→' ? 'out' : 'in';
  ui.log.prepend(item);
  while (ui.log.children.length > LOG_LIMIT) ui.log.lastChild.remove();
  ui.logCount.textContent = `(${state.playouts} playout reports not listed)`;
}

/** The receiver's RTP statistics once a second: what the network and the jitter buffer see. */
async function sampleRtp() {
  const pc = link.pc;
  if (!pc) return;
  const stats = await pc.getStats();
  let inbound = null;
  stats.forEach((report) => {
    if (report.type === 'inbound-rtp' && report.kind === 'audio') inbound = report;
  });
  if (!inbound) return;
  const previous = state.rtp;
  const rate = previous && previous.id === inbound.id
    ? ((inbound.packetsReceived - previous.packetsReceived) * 1000) / (inbound.timestamp - previous.timestamp)
    : null;
  state.rtp = inbound;
  const buffer = inbound.jitterBufferEmittedCount
    ? (inbound.jitterBufferDelay / inbound.jitterBufferEmittedCount) * 1000
    : 0;
  ui.rtp.textContent = [
    `RTP in: ${number.format(inbound.packetsReceived)} packets`,
    rate === null ? null : `${Math.round(rate)}/s`,
    `${number.format(inbound.packetsLost ?? 0)} lost`,
    `jitter ${((inbound.jitter ?? 0) * 1000).toFixed(1)} ms`,
    `jitter buffer ${Math.round(buffer)} ms`,
  ].filter(Boolean).join(' · ');
}

// -- wiring ----------------------------------------------------------------------------------

ui.speak.addEventListener('click', () => startTurn('speak'));
ui.stream.addEventListener('click', () => startTurn('stream'));
ui.interrupt.addEventListener('click', interrupt);
ui.reconnect.addEventListener('click', () => {
  if (state.turn && !state.turn.outcome) endTurn('lost');
  connect();
});
ui.alertClose.addEventListener('click', () => clearProblem());
ui.rate.addEventListener('input', () => { ui.rateValue.textContent = `${ui.rate.value} tokens/s`; });
ui.speed.addEventListener('input', onSettingsChanged);
ui.text.addEventListener('input', () => { state.textEdited = true; });
ui.text.addEventListener('keydown', (event) => {
  if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) {
    event.preventDefault();
    startTurn(event.shiftKey ? 'stream' : 'speak');
  }
});
document.addEventListener('keydown', (event) => {
  if (event.key === 'Escape' && state.turn && !state.turn.outcome) {
    event.preventDefault();
    interrupt();
  }
});
window.addEventListener('pagehide', () => link.close());
setInterval(() => sampleRtp().catch(() => {}), 1000);

// For tests and the curious: the live objects, read-only.
window.voxgate = Object.freeze({
  get pc() { return link.pc; },
  get dc() { return link.dc; },
  get state() { return link.state; },
  get sessionId() { return link.sessionId; },
  get level() { return meter.level; },
  get playout() { return state.playout; },
  get turn() { return state.turn?.summary() ?? null; },
  get creditsUsed() { return creditsUsed(); },
  get balance() { return state.balance; },
  hangup: () => link.close(),
});

ui.text.value = SAMPLES.en;
renderConnection();
renderControls();
await loadVoices();
if (state.problemScope !== 'connection') await connect();

