/* What is playing: the level of the remote audio and a rolling envelope with event marks. */

const SCOPE_SECONDS = 6;
const MARK_ROWS = ['start', 'sound', 'interrupt', 'silent'];

/**
 * The level of the remote audio from an AnalyserNode, sampled every animation frame, and a
 * rolling envelope of the last SCOPE_SECONDS with event marks. The analyser is not connected
 * to the speakers: the <audio> element plays the stream (Chrome feeds a remote WebRTC stream
 * to Web Audio only while a media element plays it).
 */
export class Meter {
  level = 0;
  history = []; // [time ms, rms]
  marks = []; // {at, label, kind}
  onLevel = () => {};

  constructor(canvas, meterElement) {
    this.canvas = canvas;
    this.meterElement = meterElement;
    this.samples = null;
    this.context = null;
    this.analyser = null;
    this.source = null;
    requestAnimationFrame(() => this.#frame());
  }

  attach(stream) {
    this.context ??= new AudioContext({ latencyHint: 'interactive' });
    if (!this.analyser) {
      this.analyser = this.context.createAnalyser();
      this.analyser.fftSize = 1024; // ~21 ms at 48 kHz: short enough to time the silence
      this.samples = new Float32Array(this.analyser.fftSize);
    }
    this.source?.disconnect();
    this.source = this.context.createMediaStreamSource(stream);
    this.source.connect(this.analyser);
  }

  /** Browsers start audio only after a gesture: call from a click or key handler. */
  resume() {
    return this.context?.state === 'suspended' ? this.context.resume() : Promise.resolve();
  }

  mark(label, kind) {
    this.marks.push({ at: performance.now(), label, kind });
  }

  #frame() {
    const now = performance.now();
    if (this.analyser) {
      this.analyser.getFloatTimeDomainData(this.samples);
      let sum = 0;
      for (const sample of this.samples) sum += sample * sample;
      this.level = Math.sqrt(sum / this.samples.length);
    }
    this.meterElement.value = Math.min(1, this.level * 3);
    this.history.push([now, this.level]);
    const horizon = now - SCOPE_SECONDS * 1000;
    while (this.history.length && this.history[0][0] < horizon) this.history.shift();
    this.marks = this.marks.filter((m) => m.at >= horizon);
    this.onLevel(this.level, now);
    this.#draw(now);
    requestAnimationFrame(() => this.#frame());
  }

  #draw(now) {
    const { canvas } = this;
    const ratio = window.devicePixelRatio || 1;
    const width = Math.round(canvas.clientWidth * ratio);
    const height = Math.round(canvas.clientHeight * ratio);
    if (!width || !height) return;
    if (canvas.width !== width || canvas.height !== height) {
      canvas.width = width;
      canvas.height = height;
    }
    const g = canvas.getContext('2d');
    const style = getComputedStyle(canvas);
    const color = (name) => style.getPropertyValue(name).trim();
    g.clearRect(0, 0, width, height);
    const mid = height / 2;
    const x = (t) => width - ((now - t) / (SCOPE_SECONDS * 1000)) * width;

    g.strokeStyle = color('--scope-grid');
    g.lineWidth = ratio;
    g.beginPath();
    for (let s = 1; s < SCOPE_SECONDS; s += 1) {
      const gx = Math.round(x(now - s * 1000)) + 0.5;
      g.moveTo(gx, 0);
      g.lineTo(gx, height);
    }
    g.moveTo(0, mid);
    g.lineTo(width, mid);
    g.stroke();

    // The envelope: each frame's RMS as a bar mirrored around the middle line.
    g.fillStyle = color('--scope-wave');
    const gain = (height / 2 - 4 * ratio) * 2.6;
    let previous = null;
    for (const [t, rms] of this.history) {
      const px = x(t);
      const half = Math.max(ratio / 2, Math.min(height / 2 - 2 * ratio, rms * gain));
      if (previous !== null) g.fillRect(previous, mid - half, Math.max(ratio, px - previous + 0.5), half * 2);
      previous = px;
    }

    g.font = `${11 * ratio}px system-ui, sans-serif`;
    g.textBaseline = 'top';
    for (const mark of this.marks) {
      const mx = Math.round(x(mark.at)) + 0.5;
      g.strokeStyle = color(`--mark-${mark.kind}`);
      g.fillStyle = g.strokeStyle;
      g.setLineDash([4 * ratio, 3 * ratio]);
      g.beginPath();
      g.moveTo(mx, 0);
      g.lineTo(mx, height);
      g.stroke();
      g.setLineDash([]);
      // Each kind of mark has its own text row, so that close marks do not overwrite each other.
      const textWidth = g.measureText(mark.label).width;
      const tx = mx + 4 * ratio + textWidth > width ? mx - 4 * ratio - textWidth : mx + 4 * ratio;
      const ty = (4 + 15 * MARK_ROWS.indexOf(mark.kind)) * ratio;
      g.fillStyle = color('--scope-label-bg'); // keeps a label readable over the envelope
      g.fillRect(tx - 2 * ratio, ty - ratio, textWidth + 4 * ratio, 14 * ratio);
      g.fillStyle = g.strokeStyle;
      g.fillText(mark.label, tx, ty);
    }
  }
}
