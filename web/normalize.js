// normalize.js: spoken form → command line. "l s dash l a" → "ls -la",
// "cd tilde slash projects" → "cd ~/projects", "echo quote hello world end quote"
// → `echo "hello world"`, "sleep twenty five" → "sleep 25", "make and then make
// install" → "make && make install". Table-driven: SYMBOLS says what each spoken
// symbol becomes and how it attaches to its neighbours; the rest is letters,
// numbers, quotes, capitals and the user's phrase aliases (applied first).

// gl: when the symbol attaches to the token before it: 'always', 'never', 'arg'
// (after an argument word, not after the command word or an option), 'dot' (like
// 'arg', and only when something follows: "git add dot" keeps "git add .").
// gr: whether the token after it attaches to it. op: an operator that starts a
// new command. upper: the next word is upper-cased ("dollar home" → "$HOME").
export const SYMBOLS = [
  [['dash', 'dash'], '--', 'never', true],
  [['double', 'dash'], '--', 'never', true],
  [['dash'], '-', 'never', true],
  [['minus'], '-', 'never', true],
  [['hyphen'], '-', 'always', true],
  [['dot'], '.', 'dot', true],
  [['period'], '.', 'dot', true],
  [['forward', 'slash'], '/', 'arg', true],
  [['back', 'slash'], '\\', 'arg', true],
  [['backslash'], '\\', 'arg', true],
  [['slash'], '/', 'arg', true],
  [['pipe'], '|', 'never', false, { op: true }],
  [['and', 'then'], '&&', 'never', false, { op: true }],
  [['or', 'else'], '||', 'never', false, { op: true }],
  [['semicolon'], ';', 'always', false, { op: true }],
  [['semi', 'colon'], ';', 'always', false, { op: true }],
  [['append', 'to'], '>>', 'never', false, { op: true, redirect: true }],
  [['greater', 'than'], '>', 'never', false, { op: true, redirect: true }],
  [['redirect', 'to'], '>', 'never', false, { op: true, redirect: true }],
  [['less', 'than'], '<', 'never', false, { op: true, redirect: true }],
  [['ampersand'], '&', 'never', false, { op: true }],
  [['star'], '*', 'never', true],
  [['asterisk'], '*', 'never', true],
  [['tilde'], '~', 'never', true],
  [['equals', 'sign'], '=', 'always', true],
  [['equals'], '=', 'always', true],
  [['equal'], '=', 'always', true],
  [['underscore'], '_', 'always', true],
  [['colon'], ':', 'always', true],
  [['comma'], ',', 'always', true],
  [['at', 'sign'], '@', 'always', true],
  [['dollar', 'sign'], '$', 'never', true, { upper: true }],
  [['dollar'], '$', 'never', true, { upper: true }],
  [['hash'], '#', 'never', true],
  [['pound', 'sign'], '#', 'never', true],
  [['percent', 'sign'], '%', 'always', false],
  [['percent'], '%', 'always', false],
  [['caret'], '^', 'always', true],
  [['plus'], '+', 'always', false],
  [['question', 'mark'], '?', 'always', false],
  [['exclamation', 'mark'], '!', 'never', true],
  [['bang'], '!', 'never', true],
  [['open', 'paren'], '(', 'never', true],
  [['close', 'paren'], ')', 'always', false],
  [['open', 'bracket'], '[', 'never', true],
  [['close', 'bracket'], ']', 'always', false],
  [['open', 'brace'], '{', 'never', true],
  [['close', 'brace'], '}', 'always', false],
].map(([words, text, gl, gr, extra = {}]) => ({ words, text, gl, gr, ...extra }))
  .sort((a, b) => b.words.length - a.words.length);

const UNITS = ['zero', 'one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight', 'nine'];
const TEENS = ['ten', 'eleven', 'twelve', 'thirteen', 'fourteen', 'fifteen', 'sixteen', 'seventeen', 'eighteen', 'nineteen'];
const TENS = ['', '', 'twenty', 'thirty', 'forty', 'fifty', 'sixty', 'seventy', 'eighty', 'ninety'];
const SCALES = { hundred: 100, thousand: 1000, million: 1000000 };

function numberWord(w) {
  let i = UNITS.indexOf(w);
  if (i >= 0) return { kind: 'unit', v: i };
  i = TEENS.indexOf(w);
  if (i >= 0) return { kind: 'teen', v: 10 + i };
  i = TENS.indexOf(w);
  if (i >= 2) return { kind: 'tens', v: i * 10 };
  if (w in SCALES) return { kind: w === 'hundred' ? 'hundred' : 'scale', v: SCALES[w] };
  return null;
}

/**
 * Number words → digits. Words that make one number ("twenty five", "two
 * hundred and six", "two million") give it; digits said one by one ("one two
 * three") are one number (123); other numbers said one after another are
 * separate words ("one ten" → "1 10", "one two million" → "1 2000000").
 */
export function parseNumber(words) {
  const parts = [];
  let digits = true;
  let count = 0;
  let total = 0;
  let current = 0;
  let last = null;
  const flush = () => {
    if (last !== null) {
      parts.push(String(total + current));
      if (count !== 1 || last !== 'unit') digits = false;
    }
    count = 0;
    total = 0;
    current = 0;
    last = null;
  };
  for (const w of words) {
    const n = numberWord(w);
    const fresh = last === null || last === 'hundred' || last === 'scale';
    if (n.kind === 'hundred') {
      if (last === 'hundred' || last === 'scale') flush();
      current = (current || 1) * 100;
      last = 'hundred';
    } else if (n.kind === 'scale') {
      if (last === 'scale' && current === 0) flush();
      total += (current || 1) * n.v;
      current = 0;
      last = 'scale';
    } else if (n.kind === 'tens' || n.kind === 'teen') {
      if (!fresh) flush();
      current += n.v;
      last = n.kind;
    } else {
      const fits = fresh || (last === 'tens' && n.v !== 0);
      if (!fits || (n.v === 0 && last !== null)) flush();
      current += n.v;
      last = 'unit';
    }
    count += 1;
  }
  flush();
  return parts.join(digits ? '' : ' ');
}

/** The aliases every user starts with; the page lets them edit and keep them. */
export const DEFAULT_ALIASES = {
  'list files': 'ls -la',
  'go up': 'cd ..',
  'go home': 'cd ~',
  'show changes': 'git diff',
  'where am i': 'pwd',
  clear: 'clear',
};

/** Words of a transcript: lower case, recognizer punctuation dropped. */
export function words(text) {
  return text
    .replace(/(\p{L})[.,!?;:]+(?=\s|$)/gu, '$1')
    .trim()
    .split(/\s+/)
    .filter(Boolean);
}

const isLetters = (w) => /^[a-z]+$/i.test(w);

/**
 * The command line a person said. `aliases` maps spoken phrases to command
 * lines; the longest one the phrase starts with is replaced and the rest is
 * normalised after it ("list files slash tmp" → "ls -la /tmp").
 */
export function normalize(text, aliases = DEFAULT_ALIASES) {
  const raw = words(text);
  // Lower-case plain words (recognizers capitalise the first one); keep the
  // originals for quotes.
  const low = raw.map((w) => (isLetters(w) ? w.toLowerCase() : w));
  const tokens = [];
  let i = 0;
  const keys = Object.keys(aliases)
    .map((k) => [words(k.toLowerCase()), aliases[k]])
    .filter(([k]) => k.length)
    .sort((a, b) => b[0].length - a[0].length);
  for (const [key, line] of keys) {
    if (key.length <= low.length && key.every((w, j) => low[j] === w)) {
      tokens.push({ kind: 'word', text: line, cmd: true });
      i = key.length;
      break;
    }
  }
  let upperNext = false;
  while (i < low.length) {
    const w = low[i];
    // Quotes: everything up to "end quote" (or the end) as said.
    const single = w === 'single' && low[i + 1] === 'quote';
    if (w === 'quote' || w === 'open' && low[i + 1] === 'quote' || single) {
      i += single || w === 'open' ? 2 : 1;
      const inside = [];
      while (i < low.length) {
        if ((low[i] === 'end' || low[i] === 'close') && low[i + 1] === 'quote') { i += 2; break; }
        if (low[i] === 'end' && low[i + 1] === 'single' && low[i + 2] === 'quote') { i += 3; break; }
        if (low[i] === 'unquote') { i += 1; break; }
        inside.push(raw[i]);
        i += 1;
      }
      const q = single ? "'" : '"';
      tokens.push({ kind: 'word', text: q + inside.join(' ') + q });
      continue;
    }
    if (w === 'space') { tokens.push({ kind: 'space' }); i += 1; continue; }
    if (w === 'no' && low[i + 1] === 'space') { tokens.push({ kind: 'glue' }); i += 2; continue; }
    if ((w === 'literal' || w === 'literally') && i + 1 < low.length) {
      tokens.push({ kind: 'word', text: raw[i + 1] });
      i += 2;
      continue;
    }
    if (w === 'capital' && i + 1 < low.length) {
      const next = low[i + 1];
      if (next.length === 1 && isLetters(next)) tokens.push({ kind: 'letter', text: next.toUpperCase() });
      else tokens.push({ kind: 'word', text: next.charAt(0).toUpperCase() + next.slice(1) });
      i += 2;
      continue;
    }
    if ((w === 'all' && low[i + 1] === 'caps' || w === 'uppercase') && i + 1 < low.length) {
      const skip = w === 'all' ? 2 : 1;
      if (i + skip < low.length) {
        tokens.push({ kind: 'word', text: low[i + skip].toUpperCase() });
        i += skip + 1;
        continue;
      }
    }
    const sym = SYMBOLS.find((s) => s.words.every((sw, j) => low[i + j] === sw));
    if (sym) {
      tokens.push({ kind: sym.op ? 'op' : 'sym', text: sym.text, gl: sym.gl, gr: sym.gr, redirect: sym.redirect });
      upperNext = !!sym.upper;
      i += sym.words.length;
      continue;
    }
    // "point" between numbers is a decimal point.
    if (w === 'point' && tokens.at(-1)?.kind === 'number' && numberWord(low[i + 1] ?? '')) {
      tokens.push({ kind: 'sym', text: '.', gl: 'always', gr: true });
      i += 1;
      continue;
    }
    if (numberWord(w)) {
      const run = [];
      while (i < low.length) {
        if (numberWord(low[i])) run.push(low[i]);
        // "two hundred and six"
        else if (low[i] === 'and' && (run.at(-1) === 'hundred' || run.at(-1) === 'thousand') && numberWord(low[i + 1] ?? '') && low[i + 1] !== 'then') {
          i += 1;
          continue;
        } else break;
        i += 1;
      }
      tokens.push({ kind: 'number', text: parseNumber(run) });
      continue;
    }
    let text = w;
    if (upperNext && isLetters(w)) text = w.toUpperCase();
    upperNext = false;
    if (text.length === 1 && isLetters(text)) tokens.push({ kind: 'letter', text });
    else tokens.push({ kind: 'word', text });
    i += 1;
  }
  return join(mergeLetters(tokens));
}

/** Spelled letters said one after another are one word ("l s" → "ls"). */
function mergeLetters(tokens) {
  const out = [];
  for (const t of tokens) {
    const prev = out.at(-1);
    if (t.kind === 'letter' && prev?.kind === 'letters') prev.text += t.text;
    else if (t.kind === 'letter') out.push({ kind: 'letters', text: t.text });
    else out.push(t);
  }
  return out.map((t) => (t.kind === 'letters' ? { kind: 'word', text: t.text } : t));
}

function join(tokens) {
  let out = '';
  let prev = null;
  let commandPos = true; // the next word is a command name
  let prevWasCommand = false;
  let force = null; // 'space' | 'glue'
  let word = ''; // the shell word being built
  for (let k = 0; k < tokens.length; k++) {
    const t = tokens[k];
    if (t.kind === 'space' || t.kind === 'glue') {
      force = t.kind;
      continue;
    }
    let glue = false;
    if (prev) {
      if (force) glue = force === 'glue';
      else if (prev.gr && t.kind !== 'op') glue = true;
      else if (t.kind === 'sym') {
        const afterArg = !prevWasCommand && prev.kind !== 'op' && !word.startsWith('-');
        if (t.gl === 'always') glue = prev.kind !== 'op';
        else if (t.gl === 'arg') glue = afterArg;
        else if (t.gl === 'dot') glue = afterArg && k + 1 < tokens.length && tokens[k + 1].kind !== 'op';
      } else if (t.kind === 'op' && t.gl === 'always') glue = true;
    }
    if (prev && !glue) {
      out += ' ';
      word = '';
    }
    out += t.text;
    word = t.cmd ? t.text.split(' ').at(-1) : word + t.text;
    force = null;
    if (t.kind === 'op') {
      prevWasCommand = false;
      commandPos = !t.redirect;
    } else if (glue) {
      // A glued piece belongs to the word before it.
    } else {
      prevWasCommand = commandPos || !!t.cmd && t.text.indexOf(' ') < 0;
      commandPos = false;
    }
    if (t.cmd) {
      prevWasCommand = t.text.indexOf(' ') < 0;
      commandPos = false;
    }
    prev = t;
  }
  return out;
}

/** Aliases kept in `storage` (localStorage) under this key, over the defaults. */
export const ALIAS_KEY = 'voxterm.aliases';

export function loadAliases(storage) {
  try {
    const saved = JSON.parse(storage?.getItem(ALIAS_KEY) ?? 'null');
    if (saved && typeof saved === 'object' && !Array.isArray(saved)) return saved;
  } catch {
    // A damaged entry falls back to the defaults.
  }
  return { ...DEFAULT_ALIASES };
}

export function saveAliases(storage, aliases) {
  storage?.setItem(ALIAS_KEY, JSON.stringify(aliases));
}

/**
 * Aliases from the editor's text, one `phrase = command line` a line; lines
 * without `=` and `#` comments are ignored.
 */
export function parseAliasText(text) {
  const out = {};
  for (const line of text.split('\n')) {
    const l = line.trim();
    if (!l || l.startsWith('#')) continue;
    const at = l.indexOf('=');
    if (at <= 0) continue;
    const phrase = words(l.slice(0, at).toLowerCase()).join(' ');
    const command = l.slice(at + 1).trim();
    if (phrase && command) out[phrase] = command;
  }
  return out;
}

export function aliasText(aliases) {
  return Object.entries(aliases).map(([k, v]) => `${k} = ${v}`).join('\n');
}
