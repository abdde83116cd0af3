// voice.js: speech in and out. Recognition is the Web Speech API's
// SpeechRecognition (webkitSpeechRecognition in Chrome), or any class with the
// same shape passed in (the browser test injects one, so the page's own handlers
// run on its results). Push-to-talk listens while held; hands-free listens
// continuously and restarts after each result.

export function findRecognition(win = globalThis) {
  return win.SpeechRecognition || win.webkitSpeechRecognition || null;
}

export class Voice {
  /**
   * `Recognition`: the constructor, or null (voice off). Callbacks: onInterim(text),
   * onFinal(text), onState(listening, mode), onError(message).
   */
  constructor(Recognition, callbacks = {}) {
    this.Recognition = Recognition;
    this.cb = callbacks;
    this.rec = null;
    this.mode = null; // 'ptt' | 'handsfree' | null
    this.available = !!Recognition;
  }

  start(mode) {
    if (!this.available) return false;
    if (this.rec) {
      this.mode = mode;
      return true;
    }
    const rec = new this.Recognition();
    rec.lang = this.cb.lang || (globalThis.navigator?.language ?? 'en-US');
    rec.interimResults = true;
    rec.continuous = mode === 'handsfree';
    rec.maxAlternatives = 1;
    rec.onresult = (ev) => {
      let interim = '';
      for (let i = ev.resultIndex; i < ev.results.length; i++) {
        const r = ev.results[i];
        const text = r[0].transcript;
        if (r.isFinal) this.cb.onFinal?.(text.trim());
        else interim += text;
      }
      if (interim) this.cb.onInterim?.(interim.trim());
    };
    rec.onerror = (ev) => {
      const why = {
        'not-allowed': 'the microphone is blocked for this page',
        'service-not-allowed': 'speech recognition is not allowed here',
        network: 'the speech service cannot be reached',
        'no-speech': null,
        aborted: null,
      }[ev.error];
      if (why !== null) this.cb.onError?.(why ?? `speech error: ${ev.error}`);
      if (ev.error === 'not-allowed' || ev.error === 'service-not-allowed' || ev.error === 'network') {
        this.mode = null;
      }
    };
    rec.onend = () => {
      this.rec = null;
      if (this.mode === 'handsfree') {
        // Recognition ends on its own after silence: listen again.
        setTimeout(() => this.mode === 'handsfree' && this.start('handsfree'), 100);
      } else {
        this.mode = null;
      }
      this.cb.onState?.(!!this.rec, this.mode);
    };
    this.rec = rec;
    this.mode = mode;
    try {
      rec.start();
    } catch (e) {
      this.rec = null;
      this.mode = null;
      this.cb.onError?.(`speech cannot start: ${e.message}`);
      return false;
    }
    this.cb.onState?.(true, mode);
    return true;
  }

  /** Ends listening (push-to-talk released, or hands-free off); the last result still arrives. */
  stop() {
    this.mode = null;
    this.rec?.stop();
  }
}

/** Spoken feedback through speechSynthesis, when on and present. */
export class Speaker {
  constructor(synth = globalThis.speechSynthesis, Utterance = globalThis.SpeechSynthesisUtterance) {
    this.synth = synth;
    this.Utterance = Utterance;
    this.on = true;
    this.spoken = []; // what was said, for the page's log and tests
  }

  get available() {
    return !!(this.synth && this.Utterance);
  }

  say(text) {
    if (!this.on || !text) return;
    this.spoken.push(text);
    if (this.spoken.length > 50) this.spoken.shift();
    if (!this.available) return;
    this.synth.cancel();
    this.synth.speak(new this.Utterance(text));
  }
}
