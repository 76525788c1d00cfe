/* One WebRTC session over WHEP: the offer/answer, the "voxgate" data channel, its state. */

import { ApiError, api, errorOf, send } from './api.js';

const ICE_GATHER_MS = 2500;
const SESSION_TIMEOUT_MS = 10000;

/**
 * One session over WHEP: audio on a recvonly transceiver, text on the "voxgate" data channel.
 * The state lives in `state` and changes only in setState():
 *   idle -> connecting -> ready -> closed | failed
 * Events: "state", "peer" (ICE/peer/channel states changed), "track", "message".
 */
export class Link extends EventTarget {
  state = 'idle';
  pc = null;
  dc = null;
  stream = null;
  sessionId = null;
  token = null; // what /v1/dev/client_token answered: max_credits, balance_available
  config = null; // the voice and speed this session was opened with
  error = null;
  #generation = 0; // bumped by close(): an open() in progress sees it and gives up
  #waiters = new Set();

  setState(next, error = null) {
    if (next === this.state) return;
    console.debug(`voxgate link: ${this.state} -> ${next}`);
    this.state = next;
    this.error = error;
    this.dispatchEvent(new CustomEvent('state', { detail: { state: next, error } }));
  }

  async open(config) {
    this.close();
    const generation = this.#generation;
    const current = () => generation === this.#generation;
    this.config = config;
    this.setState('connecting');
    try {
      const [token, iceServers] = await Promise.all([api.token(), api.iceServers()]);
      if (!current()) return;
      this.token = token;
      const pc = new RTCPeerConnection({ iceServers });
      this.pc = pc;
      pc.addTransceiver('audio', { direction: 'recvonly' });
      // The data channel must exist before the offer: POST /v1/whep needs its m=application line.
      this.dc = pc.createDataChannel('voxgate');
      this.#watch(pc, this.dc);
      const created = this.#expect('session.created');
      created.catch(() => {}); // awaited below; a failure before that must not go unhandled
      await pc.setLocalDescription(await pc.createOffer());
      await iceGathered(pc, ICE_GATHER_MS); // no trickle ICE: every candidate goes in the offer
      if (!current()) return;
      const response = await send('/v1/whep', {
        method: 'POST',
        headers: { 'Content-Type': 'application/sdp', Authorization: `Bearer ${token.token}` },
        body: pc.localDescription.sdp,
      });
      if (response.status !== 201) throw await errorOf(response);
      const answer = await response.text();
      if (!current()) return;
      await pc.setRemoteDescription({ type: 'answer', sdp: answer });
      this.sessionId = (await created).session_id;
      const updated = this.#expect('session.updated', 'cfg');
      updated.catch(() => {});
      const update = { type: 'session.update', event_id: 'cfg', speed: config.speed };
      if (config.voiceId) update.voice_id = config.voiceId;
      this.send(update);
      await updated;
      if (current()) this.setState('ready');
    } catch (error) {
      if (!current()) return;
      this.#teardown();
      this.setState('failed', error instanceof ApiError ? error : new ApiError('webrtc_failed', String(error.message ?? error)));
    }
  }

  send(message) {
    if (this.dc?.readyState !== 'open') throw new ApiError('closed', 'The data channel is not open.');
    this.dc.send(JSON.stringify(message));
    this.dispatchEvent(new CustomEvent('sent', { detail: message }));
  }

  /**
   * Hang up. Closing the peer connection ends the data channel, which ends the session on
   * the gateway. (A WHEP DELETE would need a credential, and the page's token is spent.)
   */
  close() {
    this.#generation += 1;
    this.#teardown();
    if (this.state !== 'idle') this.setState('closed');
  }

  #teardown() {
    for (const waiter of this.#waiters) waiter.reject(new ApiError('closed', 'The session closed.'));
    this.#waiters.clear();
    if (this.dc) this.dc.onclose = null;
    this.pc?.close();
    this.pc = null;
    this.dc = null;
    this.sessionId = null;
    this.dispatchEvent(new Event('peer'));
  }

  #watch(pc, dc) {
    const peer = () => this.dispatchEvent(new Event('peer'));
    pc.addEventListener('connectionstatechange', () => {
      peer();
      if (pc === this.pc && pc.connectionState === 'failed') {
        this.#teardown();
        this.setState('failed', new ApiError('webrtc_failed', 'ICE/DTLS could not connect the browser to the gateway.'));
      }
    });
    pc.addEventListener('iceconnectionstatechange', peer);
    pc.addEventListener('track', (event) => {
      this.stream = event.streams[0] ?? new MediaStream([event.track]);
      this.dispatchEvent(new CustomEvent('track', { detail: this.stream }));
    });
    dc.addEventListener('open', peer);
    dc.onclose = () => {
      // The gateway ended the session: idle timeout, shutdown, or a fatal error.
      peer();
      if (dc !== this.dc) return;
      this.#teardown();
      this.setState('closed');
    };
    dc.addEventListener('message', (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return; // the gateway sends JSON only on the data channel
      }
      for (const waiter of [...this.#waiters]) waiter.offer(message);
      this.dispatchEvent(new CustomEvent('message', { detail: message }));
    });
  }

  /** Resolves with the next message of `type`; rejects on its error, a fatal error, or time. */
  #expect(type, eventId = null) {
    return new Promise((resolve, reject) => {
      const waiter = {
        offer: (message) => {
          if (message.type === type) settle(resolve, message);
          else if (message.type === 'error' && (message.fatal || (eventId && message.event_id === eventId))) {
            settle(reject, new ApiError(message.code, message.message));
          }
        },
        reject: (error) => settle(reject, error),
      };
      const timer = setTimeout(
        () => waiter.reject(new ApiError('timeout', `No ${type} from the gateway within ${SESSION_TIMEOUT_MS / 1000} s.`)),
        SESSION_TIMEOUT_MS,
      );
      const settle = (fn, value) => {
        clearTimeout(timer);
        this.#waiters.delete(waiter);
        fn(value);
      };
      this.#waiters.add(waiter);
    });
  }
}

function iceGathered(pc, limitMs) {
  return new Promise((resolve) => {
    const check = () => {
      if (pc.iceGatheringState !== 'complete') return;
      clearTimeout(timer);
      pc.removeEventListener('icegatheringstatechange', check);
      resolve();
    };
    // An unreachable STUN server can hold gathering for long: send what we have by then.
    const timer = setTimeout(() => {
      pc.removeEventListener('icegatheringstatechange', check);
      resolve();
    }, limitMs);
    pc.addEventListener('icegatheringstatechange', check);
    check();
  });
}
