// app.js: the voice terminal page. Wires the protocol client (voxterm.js), the
// terminals (xterm.js through termview.js), speech (voice.js), the spoken-form
// normaliser (normalize.js) and the read-back gate (confirm.js) to the DOM.
import { Terminal } from '/vendor/xterm.mjs';
import { FitAddon } from '/vendor/addon-fit.mjs';
import { VoxtermClient, wsUrlFor } from '/voxterm.js';
import { normalize, loadAliases, saveAliases, parseAliasText, aliasText, DEFAULT_ALIASES } from '/normalize.js';
import { Voice, Speaker, findRecognition } from '/voice.js';
import { Gate, answer, readBack } from '/confirm.js';
import { TermView } from '/termview.js';
import { Chips, pickNumber } from '/suggest.js';
import { Timings } from '/measure.js';

performance.mark('app-start');
const $ = (id) => document.getElementById(id);
const store = (() => {
  try {
    return window.localStorage;
  } catch {
    return null;
  }
})();

const MAX_BLOCKS = 200;
const HISTORY_KEY = 'voxterm.history';
const TOKEN_KEY = 'voxterm.token';
const SPEAK_KEY = 'voxterm.speak';
const decoder = new TextDecoder();
/** How long a command's header waits for its answer to be painted with it (one frame). */
const HOLD_MS = 16;
const KILLED = { Timeout: 'timed out', Cancelled: 'cancelled', OutputLimit: 'output limit', Shutdown: 'server shutdown' };

// ------------------------------------------------------------------ connection

const fragToken = new URLSearchParams(location.hash.slice(1)).get('token');
if (fragToken) {
  store?.setItem(TOKEN_KEY, fragToken);
  history.replaceState(null, '', location.pathname + location.search);
}
let client = makeClient();

// A token given later in the address (#token=…) replaces the kept one.
window.addEventListener('hashchange', () => {
  const t = new URLSearchParams(location.hash.slice(1)).get('token');
  if (!t) return;
  store?.setItem(TOKEN_KEY, t);
  history.replaceState(null, '', location.pathname + location.search);
  reconnect();
});

function reconnect() {
  client.close();
  client = makeClient();
  if (window.__voxterm) window.__voxterm.client = client;
  client.connect().catch(() => {});
}

function makeClient() {
  const c = new VoxtermClient(wsUrlFor(location), {
    token: store?.getItem(TOKEN_KEY) || null,
    clientName: 'voxterm-web/1',
    // Debugging aid: localStorage['voxterm.compression'] = 'none' offers no compression.
    compression: store?.getItem('voxterm.compression') === 'none' ? ['None'] : null,
    suggestions: 3,
  });
  c.on('state', onState);
  c.on('session', (m) => {
    const tab = tabs.find((t) => t.handle === m.session);
    if (tab) setCwd(tab, m.cwd);
  });
  c.on('error', (m) => announce(`server: ${m.code} ${m.message}`));
  c.on('suggestions', (m) => {
    const tab = tabs.find((t) => t.handle === m.session);
    if (!tab) return;
    tab.suggestions = m.lines;
    if (tab === current) chips.show(m.lines);
  });
  return c;
}

let stateSeq = 0;

async function onState(state, detail) {
  const el = $('conn');
  const seq = ++stateSeq;
  gate.forget();
  el.dataset.state = state;
  if (state === 'open') {
    if (!performance.getEntriesByName('voxterm-connected').length) performance.mark('voxterm-connected');
    el.textContent = `connected · ${client.welcome?.tenant ?? ''}`;
    for (const tab of tabs) refreshCwd(tab);
    return;
  }
  if (state === 'connecting') {
    el.textContent = 'connecting…';
    return;
  }
  if (detail && !detail.opened) {
    // A browser hides why an upgrade failed; the server's own /healthz tells
    // "down" from "refused" (token or origin).
    const up = await fetch('/healthz', { cache: 'no-store' }).then((r) => r.ok, () => false);
    // A newer state came while /healthz was asked (the server may be back,
    // and the client connected): this answer is about a connection gone.
    if (seq !== stateSeq) return;
    if (up) {
      el.dataset.state = 'refused';
      el.textContent = store?.getItem(TOKEN_KEY)
        ? 'refused: the server did not accept this token (settings → Token)'
        : 'refused: this server needs a token (settings → Token) or does not allow this origin';
      announce(el.textContent);
      if (state === 'reconnecting') return;
    } else {
      el.textContent = state === 'reconnecting' ? `server unreachable, retrying (${detail.attempt})…` : 'disconnected';
      return;
    }
  }
  if (state === 'reconnecting' && detail?.opened) el.textContent = 'connection lost, reconnecting…';
  else if (state === 'closed') el.textContent = 'disconnected';
}

// ------------------------------------------------------------------ tabs

const tabs = [];
let current = null;

function newTab(handle, name) {
  const host = document.createElement('div');
  host.className = 'term';
  host.id = `term-${handle}`;
  host.setAttribute('role', 'tabpanel');
  $('terms').append(host);
  const term = new Terminal({
    scrollback: 5000,
    convertEol: true,
    disableStdin: true,
    cursorBlink: false,
    fontFamily: 'ui-monospace, "DejaVu Sans Mono", monospace',
    fontSize: 14,
    theme: { background: '#111418', foreground: '#d8dee9' },
  });
  const fit = new FitAddon();
  term.loadAddon(fit);
  term.open(host);
  const button = document.createElement('button');
  button.type = 'button';
  button.setAttribute('role', 'tab');
  button.id = `tab-${handle}`;
  button.setAttribute('aria-controls', host.id);
  button.addEventListener('click', () => select(tab));
  $('tabs').insertBefore(button, $('tab-add'));
  const tab = { handle, name, term, fit, view: new TermView(term), host, button, cwd: '', running: new Set(), suggestions: [] };
  tabs.push(tab);
  setCwd(tab, '');
  return tab;
}

function select(tab) {
  current = tab;
  for (const t of tabs) {
    t.host.hidden = t !== tab;
    t.button.setAttribute('aria-selected', String(t === tab));
  }
  safeFit(tab);
  chips.show(tab.suggestions);
  $('cwd').textContent = tab.cwd || '~';
  updateStop();
  if (tab.running.size && !tab.term.options.disableStdin) tab.term.focus();
  else $('line').focus();
}

function safeFit(tab) {
  try {
    tab.fit.fit();
  } catch {
    // Hidden terminals have no size yet.
  }
}

function setCwd(tab, cwd) {
  tab.cwd = cwd;
  const short = cwd ? cwd.split('/').filter(Boolean).slice(-2).join('/') || '/' : '…';
  tab.button.textContent = `${tab.name} · ${short}`;
  tab.button.title = cwd;
  if (tab === current) $('cwd').textContent = cwd || '~';
}

async function refreshCwd(tab) {
  try {
    const r = client.exec('pwd', { session: tab.handle, cache: 'Bypass' });
    const out = [];
    r.onOutput = (d) => out.push(decoder.decode(d));
    await r.done;
    setCwd(tab, out.join('').trim());
  } catch {
    // Not connected: the next connection refreshes it.
  }
}

$('tab-add').addEventListener('click', async () => {
  const n = tabs.length + 1;
  const handle = Math.max(...tabs.map((t) => t.handle)) + 1;
  const tab = newTab(handle, `tab ${n}`);
  select(tab);
  try {
    const opened = await client.openSession(`web-${n}`, handle);
    setCwd(tab, opened.cwd);
  } catch (e) {
    tab.term.write(`\x1b[31mcould not open a session: ${e.message}\x1b[0m\r\n`);
  }
});

// The terminal follows its box (window size, the block list growing).
new ResizeObserver(() => current && safeFit(current)).observe($('terms'));

// ------------------------------------------------------------------ running lines

const speaker = new Speaker();
speaker.on = store?.getItem(SPEAK_KEY) !== 'off';
$('speak-out').checked = speaker.on;
$('speak-out').addEventListener('change', (e) => {
  speaker.on = e.target.checked;
  store?.setItem(SPEAK_KEY, speaker.on ? 'on' : 'off');
});

const gate = new Gate({ classify: (line, o) => client.classify(line, o) }, askConfirm);
const chips = new Chips($('chips'), (line) => submit(line));
// Alt+1…5 runs a suggestion from the keyboard.
document.addEventListener('keydown', (e) => {
  if (!e.altKey || e.ctrlKey || e.metaKey || pendingConfirm) return;
  const line = chips.line(Number(e.key));
  if (!line) return;
  e.preventDefault();
  submit(line);
});
const timings = new Timings();

function announce(text) {
  $('live').textContent = text;
}

let blockSeq = 0;

function block(tab, line) {
  const li = document.createElement('li');
  li.className = 'block';
  li.dataset.n = String(++blockSeq);
  li.dataset.state = 'running';
  li.innerHTML = '<span class="status">running</span><span class="cmd"></span><span class="meta"></span>'
    + '<button type="button" class="stop">stop</button><button type="button" class="copy">copy</button>';
  li.querySelector('.cmd').textContent = line;
  li.querySelector('.cmd').title = `${tab.name}: ${line}`;
  $('blocks').append(li);
  while ($('blocks').children.length > MAX_BLOCKS) $('blocks').firstElementChild.remove();
  // In the next frame, where layout happens anyway: here it would force one
  // on Enter's way to the server.
  requestAnimationFrame(() => li.scrollIntoView({ block: 'nearest' }));
  return li;
}

function finishBlock(li, state, status, meta) {
  li.dataset.state = state;
  li.querySelector('.status').textContent = status;
  li.querySelector('.meta').textContent = meta;
  li.querySelector('.stop').remove();
}

function updateStop() {
  $('stop').disabled = !current || current.running.size === 0;
}

/** Cancels what runs in the current tab (the stop button, Ctrl-C, "stop"). */
function stopCurrent() {
  if (!current) return false;
  let any = false;
  for (const r of current.running) {
    r.stop();
    any = true;
  }
  return any;
}

/**
 * Runs a line in the current tab. `pty`: as a Spawn on a terminal the size of
 * the tab's, with the keyboard going to it (Ctrl+Enter, or "in a terminal").
 */
async function submit(raw, { pty = false } = {}) {
  const line = raw.trim();
  if (!line) return;
  const rec = timings.begin(line);
  pushHistory(line);
  $('line').value = '';
  $('interim').textContent = '';
  if (line === 'clear') {
    current.term.clear();
    return;
  }
  const tab = current;
  // The next ones come when this one ends.
  tab.suggestions = [];
  chips.show([]);
  const li = block(tab, line);
  li.dataset.phase = 'classifying';
  const decision = await gate.decide(line, tab.handle);
  li.dataset.phase = decision.run ? 'running' : 'refused';
  timings.decided(rec, decision);
  if (!decision.run) {
    const why = decision.class === 'Denied'
      ? `refused by the server's policy${decision.detail ? `: ${decision.detail}` : ''}`
      : decision.asked ? 'you said no' : decision.detail;
    finishBlock(li, 'refused', 'not run', why);
    tab.view.write(`\x1b[2m❯ ${line}\x1b[0m \x1b[33m(not run: ${why})\x1b[0m\n`);
    announce(`${line}: ${why}`);
    if (decision.class === 'Denied') speaker.say(`Refused. ${decision.detail}`);
    return;
  }
  let req;
  try {
    req = pty
      ? client.spawn(line, { session: tab.handle, pty: { rows: tab.term.rows, cols: tab.term.cols, term: '' } })
      : client.exec(line, { session: tab.handle });
  } catch (e) {
    finishBlock(li, 'error', 'error', e.message);
    return;
  } finally {
    // After the request is on its way: nothing delays the send. Held with
    // the answer for up to a frame (termview.js), so a quick command is
    // painted whole in one frame.
    if (!pty) tab.view.hold(HOLD_MS);
    tab.view.write(`\x1b[1;36m❯\x1b[0m \x1b[1m${line}\x1b[0m\n`);
  }
  tab.running.add(req);
  updateStop();
  const detach = pty ? attachTerminal(tab, req) : () => {};
  let note = '';
  req.onNotice = (m) => {
    tab.view.write(`\x1b[33m${m.message}\x1b[0m\n`);
    announce(m.message);
    if (m.kind === 'NeedsTerminal' && !pty) {
      // It would wait for a terminal until its timeout: stop it, and say how.
      req.stop();
      needsTerminal = line;
      note = ' · needs a terminal: Ctrl+Enter runs it on one';
      speaker.say('That needs a terminal. Press control enter, or say: in a terminal.');
    }
  };
  const copy = [];
  let copied = 0;
  let lastOut = '';
  let bytes = 0;
  let hidden = 0;
  // Stopping shows at once: the Cancel goes out, the backlog already queued for
  // the terminal is dropped and later output of this command is not painted
  // (what was in flight still arrives before the Exit).
  req.stop = () => {
    if (req.stopping) return;
    req.stopping = true;
    req.cancel();
    hidden += tab.view.discard();
    tab.view.write('\x1b[33m^C\x1b[0m\n');
    // Shown as cancelled at once: the person asked, and nothing more of it
    // is painted. The block still ends on the Exit (duration, served_from),
    // which says otherwise if the command had already ended on its own.
    li.dataset.phase = 'cancelled';
    li.querySelector('.status').textContent = KILLED.Cancelled;
    li.querySelector('.stop').disabled = true;
    announce(`${line}: cancelled`);
  };
  li.querySelector('.stop').addEventListener('click', () => req.stop());
  req.onOutput = (data) => {
    timings.output(rec);
    bytes += data.length;
    if (req.stopping) {
      hidden += data.length;
      return;
    }
    tab.view.write(data);
    if (copied < 65536) {
      const text = decoder.decode(data, { stream: true });
      copy.push(text);
      copied += text.length;
    }
    if (bytes < 4096) lastOut += decoder.decode(data);
  };
  li.querySelector('.copy').addEventListener('click', () => {
    navigator.clipboard?.writeText(copy.join('').replace(/\x1b\[[0-9;?]*[A-Za-z]/g, ''));
  });
  let state;
  let status;
  let meta;
  let spoken;
  try {
    const exit = await req.done;
    timings.exited(rec, exit);
    const ms = req.elapsedMs;
    const dur = ms < 1000 ? `${ms.toFixed(ms < 10 ? 1 : 0)} ms` : `${(ms / 1000).toFixed(2)} s`;
    const how = exit.killed !== 'None' && exit.signal !== null ? ` · signal ${exit.signal}` : '';
    const trunc = (exit.truncated ? ' · output cut' : '') + (hidden ? ` · ${hidden} bytes after stop not shown` : '');
    if (exit.code === 0) {
      state = 'ok';
      status = 'exit 0';
    } else {
      state = 'failed';
      status = exit.code !== null ? `exit ${exit.code}` : `signal ${exit.signal}`;
    }
    if (exit.killed !== 'None') status = KILLED[exit.killed] ?? exit.killed;
    meta = `${dur} · ${exit.served_from}${how}${trunc}`;
    const summary = lastOut.trim().split('\n').slice(-1)[0] ?? '';
    spoken = state === 'ok'
      ? (bytes > 0 && bytes < 120 ? summary : bytes === 0 ? 'Done.' : null)
      : `Failed, ${status}. ${exit.killed !== 'None' ? exit.killed : summary.slice(0, 100)}`;
  } catch (e) {
    state = 'error';
    status = e.code ?? 'error';
    meta = e.detail ?? e.message;
    spoken = `Error: ${meta}`;
  }
  detach();
  meta += note;
  // The terminal first (it is what the person watches), then the block.
  const color = state === 'ok' ? '32' : '31';
  tab.view.write(`\x1b[${color}m${state === 'ok' ? '✓' : '✗'} ${status}\x1b[0m \x1b[2m· ${meta}\x1b[0m\n`);
  tab.view.release();
  tab.running.delete(req);
  updateStop();
  finishBlock(li, state, status, meta);
  announce(`${line}: ${status}, ${meta}.${lastOut && bytes < 200 ? ` ${lastOut.trim()}` : ''}`);
  if (/^\s*(cd|pushd|popd)\b/.test(line) && state === 'ok') refreshCwd(tab);
  // Output painted: everything parsed, then the frame after it (measure.js).
  timings.painted(rec, tab.view);
  // Spoken after this task, off the way to the frame.
  if (spoken) setTimeout(() => speaker.say(spoken), 0);
}

$('stop').addEventListener('click', () => stopCurrent());

let needsTerminal = null;

/** While a Spawn runs on a terminal: keys and size go to it; returns the undo. */
function attachTerminal(tab, req) {
  tab.term.options.disableStdin = false;
  tab.term.options.cursorBlink = true;
  tab.term.focus();
  const keys = tab.term.onData((d) => req.write(d));
  const size = tab.term.onResize(({ rows, cols }) => req.resize(rows, cols));
  $('line').disabled = true;
  return () => {
    keys.dispose();
    size.dispose();
    tab.term.options.disableStdin = true;
    tab.term.options.cursorBlink = false;
    $('line').disabled = false;
    $('line').focus();
  };
}

// ------------------------------------------------------------------ the read-back

let pendingConfirm = null;

function askConfirm({ line, class: cls, detail, reason }) {
  return new Promise((resolve) => {
    const box = $('confirm');
    $('confirm-title').textContent = cls === 'Mutating' ? 'This line changes things. Run it?' : 'Run this line?';
    $('confirm-line').textContent = line;
    const li = [...document.querySelectorAll('#blocks .block')].at(-1);
    if (li) {
      li.dataset.phase = 'asking';
      li.querySelector('.status').textContent = 'asking…';
    }
    $('confirm-reason').textContent = [detail, reason].filter(Boolean).join(' · ');
    box.hidden = false;
    const done = (yes) => {
      box.hidden = true;
      pendingConfirm = null;
      $('line').focus();
      resolve(yes);
    };
    pendingConfirm = done;
    $('confirm-no').focus();
    speaker.say(readBack({ line, class: cls, detail }));
  });
}

$('confirm-yes').addEventListener('click', () => pendingConfirm?.(true));
$('confirm-no').addEventListener('click', () => pendingConfirm?.(false));
$('confirm').addEventListener('keydown', (e) => {
  if (e.key === 'Escape' || e.key === 'n') pendingConfirm?.(false);
  else if (e.key === 'y') pendingConfirm?.(true);
});

// ------------------------------------------------------------------ input, history

let hist = [];
try {
  hist = JSON.parse(store?.getItem(HISTORY_KEY) ?? '[]');
} catch {
  hist = [];
}
let histAt = hist.length;
let draft = '';

let histSave = 0;
const saveHistory = () => {
  clearTimeout(histSave);
  histSave = 0;
  store?.setItem(HISTORY_KEY, JSON.stringify(hist));
};
// Leaving the page writes what is not written yet.
window.addEventListener('pagehide', () => histSave && saveHistory());

function pushHistory(line) {
  if (hist.at(-1) !== line) hist.push(line);
  if (hist.length > 500) hist = hist.slice(-500);
  histAt = hist.length;
  // Kept in localStorage a moment later, not on Enter's way (serialising the
  // list and a synchronous storage write cost about a millisecond).
  clearTimeout(histSave);
  histSave = setTimeout(saveHistory, 300);
}

$('line').addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && e.ctrlKey) {
    e.preventDefault();
    const line = $('line').value || needsTerminal || '';
    needsTerminal = null;
    submit(line, { pty: true });
  }
});

// A pause in typing asks the server about the line ahead of Enter (confirm.js).
let typed = 0;
$('line').addEventListener('input', () => {
  clearTimeout(typed);
  typed = setTimeout(() => client.state === 'open' && gate.prefetch($('line').value.trim(), current.handle), 150);
});

$('prompt').addEventListener('submit', (e) => {
  e.preventDefault();
  submit($('line').value);
});

let spaceHeld = false;
$('line').addEventListener('keydown', (e) => {
  const input = e.target;
  if (e.key === 'ArrowUp' && histAt > 0) {
    if (histAt === hist.length) draft = input.value;
    histAt -= 1;
    input.value = hist[histAt];
    e.preventDefault();
  } else if (e.key === 'ArrowDown' && histAt < hist.length) {
    histAt += 1;
    input.value = histAt === hist.length ? draft : hist[histAt];
    e.preventDefault();
  } else if (e.key === 'c' && e.ctrlKey && input.selectionStart === input.selectionEnd) {
    if (stopCurrent()) e.preventDefault();
  } else if (e.key === ' ' && input.value === '' && voice.available && voice.mode !== 'handsfree') {
    e.preventDefault();
    if (!spaceHeld) {
      spaceHeld = true;
      voice.start('ptt');
    }
  }
});
$('line').addEventListener('keyup', (e) => {
  if (e.key === ' ' && spaceHeld) {
    spaceHeld = false;
    voice.stop();
  }
});

// ------------------------------------------------------------------ voice

let aliases = loadAliases(store);
$('aliases').value = aliasText(aliases);
$('aliases-save').addEventListener('click', () => {
  aliases = parseAliasText($('aliases').value);
  saveAliases(store, aliases);
  $('aliases').value = aliasText(aliases);
  announce('aliases kept');
});
$('aliases-reset').addEventListener('click', () => {
  aliases = { ...DEFAULT_ALIASES };
  saveAliases(store, aliases);
  $('aliases').value = aliasText(aliases);
});

const Recognition = window.__voxtermRecognition || findRecognition(window);
const voice = new Voice(Recognition, {
  onInterim: (text) => {
    $('interim').textContent = `“${text}”`;
  },
  onFinal: heard,
  onState: (listening) => $('mic').setAttribute('aria-pressed', String(listening)),
  onError: (why) => {
    $('voice-note').textContent = `Voice: ${why}. Typing works.`;
    speaker.say(`Voice problem: ${why}`);
  },
});

/** A final transcript: an answer, a control word, or a line to edit and run. */
function heard(text) {
  const said = text.trim();
  $('interim').textContent = `heard: “${said}”`;
  const word = said.toLowerCase().replace(/[.!?,]/g, '');
  if (pendingConfirm) {
    const yes = answer(said);
    if (yes !== null) pendingConfirm(yes);
    else speaker.say('Please say yes or no.');
    return;
  }
  if (word === 'stop') {
    if (!stopCurrent()) speaker.say('Nothing is running.');
    return;
  }
  if (['in a terminal', 'run in a terminal', 'terminal'].includes(word)) {
    const line = $('line').value || needsTerminal || '';
    needsTerminal = null;
    submit(line, { pty: true });
    return;
  }
  if (['run', 'run it', 'enter', 'go'].includes(word)) {
    submit($('line').value);
    return;
  }
  if (['cancel', 'never mind', 'scratch that'].includes(word)) {
    $('line').value = '';
    return;
  }
  const picked = chips.line(pickNumber(word));
  if (picked) {
    submit(picked);
    return;
  }
  const line = normalize(said, aliases);
  $('line').value = line;
  gate.prefetch(line.trim(), current.handle);
  $('line').focus();
  announce(`will run: ${line}. Press Enter or say run.`);
}

if (!voice.available) {
  $('mic').disabled = true;
  $('hands-free').disabled = true;
  $('voice-note').textContent = 'Voice is off: this browser has no speech recognition (Web Speech API; Chrome, Edge and Safari have it). Typing works.';
} else if (!window.isSecureContext) {
  $('voice-note').textContent = 'Voice needs a secure page (https, or localhost); typing works.';
}

const mic = $('mic');
mic.addEventListener('pointerdown', (e) => {
  e.preventDefault();
  // Hands-free already listens: holding the button changes nothing.
  if (voice.mode !== 'handsfree') voice.start('ptt');
});
for (const ev of ['pointerup', 'pointerleave']) {
  mic.addEventListener(ev, () => voice.mode === 'ptt' && voice.stop());
}
mic.addEventListener('keydown', (e) => {
  if ((e.key === 'Enter' || e.key === ' ') && !e.repeat) {
    e.preventDefault();
    if (voice.mode) voice.stop();
    else voice.start('ptt');
  }
});
$('hands-free').addEventListener('change', (e) => {
  if (e.target.checked) voice.start('handsfree');
  else voice.stop();
});

// ------------------------------------------------------------------ settings

$('token').value = store?.getItem(TOKEN_KEY) ?? '';
$('token-save').addEventListener('click', () => {
  const t = $('token').value.trim();
  if (t) store?.setItem(TOKEN_KEY, t);
  else store?.removeItem(TOKEN_KEY);
  reconnect();
});

// ------------------------------------------------------------------ start

select(newTab(0, 'default'));
tabs[0].view.write(`\x1b[2mType a command and press Enter${Recognition ? ', or hold Space (or the talk button) and speak' : ''}. Ctrl+Enter: run in a terminal (vi, top, REPLs) · ↑/↓: history · Ctrl-C or "stop": cancel.\x1b[0m\n`);
window.__voxterm = { client, tabs, timings, speaker, voice, normalize: (t) => normalize(t, aliases) };
client.connect().catch(() => {});
performance.mark('app-ready');
document.documentElement.dataset.ready = 'true';
