/* Picking a voice: the languages, voices and variants the gateway lists, and cloning one. */

import { ApiError, api } from './api.js';
import { PROBLEMS } from './problems.js';

const MAX_CLONE_BASE64 = 12_000_000;

const LANGUAGE_NAMES = {
  en: 'English', fr: 'French', es: 'Spanish', pt: 'Portuguese', it: 'Italian',
  nl: 'Dutch', de: 'German', hi: 'Hindi', ar: 'Arabic',
};


/**
 * The language, voice and variant selects and the clone form. `onChange()` runs when the
 * chosen voice changes (picked, or just cloned); `onLanguage(code)` when the language does.
 */
export class VoicePicker {
  presets = [];
  mine = [];

  constructor(ui, { onChange, onLanguage }) {
    this.ui = ui;
    this.onChange = onChange;
    ui.language.addEventListener('change', () => {
      this.renderVoices();
      ui.cloneLanguage.value = ui.language.value;
      onLanguage(ui.language.value);
      onChange();
    });
    ui.voice.addEventListener('change', () => {
      this.#renderVariants();
      onChange();
    });
    ui.variant.addEventListener('change', onChange);
    ui.cloneForm.addEventListener('submit', (event) => this.#clone(event));
  }

  /** Lists the voices; returns the balance the gateway reported with them. */
  async load() {
    const data = await api.voices();
    this.presets = data.presets ?? [];
    this.mine = data.mine ?? [];
    return data.balance_available;
  }

  get voiceId() {
    return this.ui.variant.disabled ? this.ui.voice.value : this.ui.variant.value;
  }

  describe() {
    const { voice, variant } = this.ui;
    const name = voice.selectedOptions[0]?.textContent ?? 'default voice';
    const style = variant.disabled ? '' : ` (${variant.selectedOptions[0]?.textContent})`;
    return `${name.split(' · ')[0]}${style}`;
  }

  renderLanguages() {
    const { ui } = this;
    const present = new Set([...this.presets, ...this.mine].map((v) => v.language).filter(Boolean));
    const codes = Object.keys(LANGUAGE_NAMES).filter((c) => present.has(c));
    const wanted = ui.language.value || (codes.includes('en') ? 'en' : codes[0]);
    fillSelect(ui.language, codes.map((c) => [c, `${LANGUAGE_NAMES[c]} (${c})`]), wanted);
    fillSelect(ui.cloneLanguage, Object.entries(LANGUAGE_NAMES).map(([c, n]) => [c, n]), wanted || 'en');
    if (!codes.length) fillSelect(ui.language, [['', 'Default']], '');
    this.renderVoices();
  }

  renderVoices(preferred = null) {
    const { ui } = this;
    const language = ui.language.value;
    const matches = (v) => !language || !v.language || v.language === language;
    ui.voice.replaceChildren();
    const groups = [
      ['Presets', this.presets.filter(matches), (v) => `${v.name} · ${v.gender ?? 'voice'}`],
      ['Your cloned voices', this.mine.filter(matches), (v) => `${v.name} · cloned`],
    ];
    for (const [label, voices, text] of groups) {
      if (!voices.length) continue;
      const group = document.createElement('optgroup');
      group.label = label;
      for (const voice of voices) group.append(new Option(text(voice), voice.id));
      ui.voice.append(group);
    }
    if (!ui.voice.options.length) ui.voice.append(new Option('Default voice', ''));
    if (preferred) ui.voice.value = preferred;
    this.#renderVariants();
  }

  #renderVariants() {
    const { ui } = this;
    const preset = this.presets.find((p) => p.id === ui.voice.value);
    const variants = preset?.variants ?? [];
    fillSelect(ui.variant, variants.length ? variants.map((v) => [v.id, v.emotion]) : [['', 'as recorded']], variants[0]?.id ?? '');
    ui.variant.disabled = !variants.length;
  }

  async #clone(event) {
    event.preventDefault();
    const { ui } = this;
    const name = ui.cloneName.value.trim();
    const file = ui.cloneFile.files[0];
    const status = (text, kind = '') => {
      ui.cloneStatus.textContent = text;
      ui.cloneStatus.dataset.kind = kind;
    };
    if (!name) {
      status('Give the voice a name.', 'error');
      ui.cloneName.focus();
      return;
    }
    if (!file) {
      status('Choose a recording of 5 to 30 seconds.', 'error');
      ui.cloneFile.focus();
      return;
    }
    if (Math.ceil(file.size / 3) * 4 > MAX_CLONE_BASE64) {
      status(`This file is ${(file.size / 1e6).toFixed(1)} MB; the limit is about 9 MB.`, 'error');
      return;
    }
    ui.cloneSubmit.disabled = true;
    status('Uploading and cloning…', 'busy');
    try {
      const fields = { name, ref_audio: await base64Of(file), language: ui.cloneLanguage.value };
      if (ui.cloneGender.value) fields.gender = ui.cloneGender.value;
      const voice = await api.clone(fields);
      this.mine.unshift(voice);
      ui.language.value = voice.language ?? ui.language.value;
      this.renderLanguages();
      this.renderVoices(voice.id);
      status(`Cloned “${voice.name}”: the page now speaks with it.`, 'ok');
      this.onChange();
    } catch (error) {
      // The gateway's own problems have their titles; anything else is about the recording.
      const own = ['unreachable', 'dev_tokens_off', 'upstream_unavailable', 'upstream_timeout', 'voice_limit_reached'];
      const title = own.includes(error.code) ? PROBLEMS[error.code][0] : 'Cannot clone from this recording';
      status(`${title}: ${error.message}`, 'error');
    } finally {
      ui.cloneSubmit.disabled = false;
    }
  }
}

function fillSelect(select, entries, value) {
  select.replaceChildren(...entries.map(([v, text]) => new Option(text, v)));
  if (entries.some(([v]) => v === value)) select.value = value;
}

function base64Of(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result).split(',', 2)[1] ?? '');
    reader.onerror = () => reject(new ApiError('unreadable_file', 'The browser could not read this file.'));
    reader.readAsDataURL(file);
  });
}
