// The spoken-form normaliser, table-driven: [what was said, the command line].
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  normalize, parseNumber, DEFAULT_ALIASES, loadAliases, saveAliases, parseAliasText, aliasText, ALIAS_KEY,
} from '../normalize.js';

const TABLE = [
  // symbols
  ['l s dash l a', 'ls -la'],
  ['ls dash la', 'ls -la'],
  ['ls dash a', 'ls -a'],
  ['echo dash dash version', 'echo --version'],
  ['git dash dash version', 'git --version'],
  ['node double dash help', 'node --help'],
  ['grep dash r foo dot', 'grep -r foo .'],
  ['grep dash i error log dot txt', 'grep -i error log.txt'],
  ['cat readme dot md', 'cat readme.md'],
  ['cd dot dot', 'cd ..'],
  ['cd dot dot slash dot dot', 'cd ../..'],
  ['ls dot', 'ls .'],
  ['git add dot', 'git add .'],
  ['cd slash', 'cd /'],
  ['cd slash tmp', 'cd /tmp'],
  ['ls slash usr slash local slash bin', 'ls /usr/local/bin'],
  ['cat notes slash todo dot txt', 'cat notes/todo.txt'],
  ['ls dash l slash tmp', 'ls -l /tmp'],
  ['cd tilde', 'cd ~'],
  ['cd tilde slash projects', 'cd ~/projects'],
  ['ls tilde slash dot config', 'ls ~/.config'],
  ['ls star', 'ls *'],
  ['ls star dot txt', 'ls *.txt'],
  ['rm build slash star', 'rm build/*'],
  ['ls dash la pipe grep foo', 'ls -la | grep foo'],
  ['cat log pipe wc dash l', 'cat log | wc -l'],
  ['ps aux pipe grep node pipe head', 'ps aux | grep node | head'],
  ['make and then make install', 'make && make install'],
  ['cd src and then ls', 'cd src && ls'],
  ['test dash f space x or else echo missing', 'test -f x || echo missing'],
  ['tar dash x f backup dot tar', 'tar -xf backup.tar'],
  ['cd foo semicolon ls', 'cd foo; ls'],
  ['echo hi greater than out dot txt', 'echo hi > out.txt'],
  ['echo hi redirect to out dot txt', 'echo hi > out.txt'],
  ['echo hi append to log', 'echo hi >> log'],
  ['wc dash l less than file', 'wc -l < file'],
  ['sleep ten ampersand', 'sleep 10 &'],
  ['export foo equals bar', 'export foo=bar'],
  ['git log dash dash format equals oneline', 'git log --format=oneline'],
  ['cat my underscore file', 'cat my_file'],
  ['touch my hyphen file', 'touch my-file'],
  ['scp a colon b', 'scp a:b'],
  ['ssh root at sign host', 'ssh root@host'],
  ['echo dollar home', 'echo $HOME'],
  ['echo dollar path', 'echo $PATH'],
  ['echo dollar sign user', 'echo $USER'],
  ['echo a comma b', 'echo a,b'],
  ['echo fifty percent', 'echo 50%'],
  ['g plus plus main dot c', 'g++ main.c'],
  ['ls question mark', 'ls?'],
  ['echo open paren a close paren', 'echo (a)'],
  ['echo open brace a comma b close brace', 'echo {a,b}'],
  ['ls open bracket a close bracket', 'ls [a]'],
  ['cat back slash n', 'cat \\n'],
  ['echo hash', 'echo #'],
  ['git reset head caret', 'git reset head^'],
  // quotes
  ['echo quote hello world end quote', 'echo "hello world"'],
  ['git commit dash m quote fix the bug end quote', 'git commit -m "fix the bug"'],
  ['echo single quote a b end quote', "echo 'a b'"],
  ['echo quote hello', 'echo "hello"'],
  ['echo open quote hi there close quote', 'echo "hi there"'],
  ['grep quote dash dash end quote file', 'grep "dash dash" file'],
  ['echo quote Hello World unquote', 'echo "Hello World"'],
  // capitals, letters, spelling
  ['echo capital x', 'echo X'],
  ['cat capital readme dot md', 'cat Readme.md'],
  ['ls capital d', 'ls D'],
  ['echo all caps hello', 'echo HELLO'],
  ['echo uppercase hello', 'echo HELLO'],
  ['h t o p', 'htop'],
  ['p w d', 'pwd'],
  ['d u dash s h dot', 'du -sh .'],
  ['d f dash h', 'df -h'],
  ['v i m notes', 'vim notes'],
  ['echo capital a b c', 'echo Abc'],
  ['cat a', 'cat a'],
  // numbers
  ['sleep twenty five', 'sleep 25'],
  ['sleep five', 'sleep 5'],
  ['head dash n twenty', 'head -n 20'],
  ['seq one ten', 'seq 1 10'],
  ['seq one to two hundred', 'seq 1 to 200'],
  ['seq one two million', 'seq 1 2000000'],
  ['seq one space two million', 'seq 1 2000000'],
  ['sleep zero point five', 'sleep 0.5'],
  ['python three', 'python 3'],
  ['echo nineteen eighty four', 'echo 19 84'],
  ['echo one nine eight four', 'echo 1984'],
  ['echo one two three', 'echo 123'],
  ['echo two hundred and six', 'echo 206'],
  ['echo three thousand two hundred one', 'echo 3201'],
  ['echo one hundred', 'echo 100'],
  ['kill dash nine space one two three four', 'kill -9 1234'],
  ['kill dash nine twelve thirty four', 'kill -9 12 34'],
  ['echo zero', 'echo 0'],
  ['echo zero seven', 'echo 07'],
  ['echo a hundred', 'echo a 100'],
  ['tail dash n fifty log', 'tail -n 50 log'],
  ['git log dash n three', 'git log -n 3'],
  ['git checkout head tilde two', 'git checkout head ~2'],
  // space, glue, literal
  ['echo a space b', 'echo a b'],
  ['echo foo no space bar', 'echo foobar'],
  ['echo literal dash', 'echo dash'],
  ['echo literally pipe', 'echo pipe'],
  // recognizer output: capitals, punctuation, already-symbolic text
  ['List files.', 'ls -la'],
  ['Echo hello world.', 'echo hello world'],
  ['ls -la', 'ls -la'],
  ['cd ..', 'cd ..'],
  ['git status', 'git status'],
  ['Git status?', 'git status'],
  ['echo hello', 'echo hello'],
  ['  echo   hello  ', 'echo hello'],
  ['', ''],
  // aliases
  ['list files', 'ls -la'],
  ['go up', 'cd ..'],
  ['go home', 'cd ~'],
  ['show changes', 'git diff'],
  ['clear', 'clear'],
  ['where am I', 'pwd'],
  ['list files slash tmp', 'ls -la /tmp'],
  ['show changes dash dash stat', 'git diff --stat'],
  ['go up and then list files', 'cd .. && list files'],
];

test('the phrase table', () => {
  for (const [said, want] of TABLE) assert.equal(normalize(said), want, `"${said}"`);
});

// Every number from zero to a hundred, said the usual way.
const UNITS = ['zero', 'one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight', 'nine'];
const TEENS = ['ten', 'eleven', 'twelve', 'thirteen', 'fourteen', 'fifteen', 'sixteen', 'seventeen', 'eighteen', 'nineteen'];
const TENS = ['', '', 'twenty', 'thirty', 'forty', 'fifty', 'sixty', 'seventy', 'eighty', 'ninety'];
function say(n) {
  if (n < 10) return UNITS[n];
  if (n < 20) return TEENS[n - 10];
  if (n < 100) return TENS[Math.floor(n / 10)] + (n % 10 ? ` ${UNITS[n % 10]}` : '');
  if (n < 1000) return `${UNITS[Math.floor(n / 100)]} hundred${n % 100 ? ` ${say(n % 100)}` : ''}`;
  return `${say(Math.floor(n / 1000))} thousand${n % 1000 ? ` ${say(n % 1000)}` : ''}`;
}

test('numbers 0..1000 and some larger ones, in a command', () => {
  const ns = [...Array(1001).keys(), 1001, 2500, 10000, 65535, 99999, 123456];
  for (const n of ns) assert.equal(normalize(`sleep ${say(n)}`), `sleep ${n}`, say(n));
  assert.equal(parseNumber(['two', 'million']), '2000000');
  assert.equal(parseNumber(['one', 'million', 'five', 'hundred', 'thousand']), '1500000');
});

test('every letter spelled, and each symbol word', () => {
  const letters = 'abcdefghijklmnopqrstuvwxyz'.split('');
  assert.equal(normalize(`echo ${letters.join(' ')}`), `echo ${letters.join('')}`);
  for (const l of letters) {
    assert.equal(normalize(`ls dash ${l}`), `ls -${l}`);
    assert.equal(normalize(`echo capital ${l}`), `echo ${l.toUpperCase()}`);
  }
  const syms = [
    ['pipe', 'a | b'], ['and then', 'a && b'], ['or else', 'a || b'],
    ['greater than', 'a > b'], ['append to', 'a >> b'], ['less than', 'a < b'],
  ];
  for (const [w, want] of syms) assert.equal(normalize(`a ${w} b`), want, w);
});

test('aliases: edited, kept in storage, parsed from the editor', () => {
  const store = new Map();
  const storage = { getItem: (k) => store.get(k) ?? null, setItem: (k, v) => store.set(k, v) };
  assert.deepEqual(loadAliases(storage), DEFAULT_ALIASES);
  const edited = parseAliasText(`${aliasText(DEFAULT_ALIASES)}\n# a comment\nrun tests = cargo test\nbroken line\n`);
  assert.equal(edited['run tests'], 'cargo test');
  assert.equal(edited['go up'], 'cd ..');
  assert.equal(Object.keys(edited).length, Object.keys(DEFAULT_ALIASES).length + 1);
  saveAliases(storage, edited);
  assert.ok(store.has(ALIAS_KEY));
  const back = loadAliases(storage);
  assert.deepEqual(back, edited);
  assert.equal(normalize('Run tests dash dash release', back), 'cargo test --release');
  delete back['go up'];
  assert.equal(normalize('go up', back), 'go up');
  store.set(ALIAS_KEY, '{not json');
  assert.deepEqual(loadAliases(storage), DEFAULT_ALIASES);
});
