// Which spoken phrases pick a suggestion chip, and which stay command lines.
import test from 'node:test';
import assert from 'node:assert/strict';
import { pickNumber } from '../suggest.js';

test('a number alone picks its chip', () => {
  for (const [said, n] of [['one', 1], ['One.', 1], ['two', 2], ['to', 2], ['three', 3], ['3', 3], ['first', 1], ['second', 2], ['for', 4]]) {
    assert.equal(pickNumber(said), n, said);
  }
});

test('a lead word and a number pick it', () => {
  for (const [said, n] of [['number one', 1], ['number two', 2], ['run three', 3], ['the first one', 1], ['option 2', 2], ['the second one', 2], ['pick three', 3]]) {
    assert.equal(pickNumber(said), n, said);
  }
});

test('command lines are not picks', () => {
  for (const said of ['go to src', 'list files', 'echo one', 'cd two', 'git log dash one', 'run tests', 'one two', 'the end', 'number', 'run', '', 'seq one to three']) {
    assert.equal(pickNumber(said), 0, said);
  }
});
