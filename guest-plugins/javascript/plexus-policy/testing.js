// Running `plexus policy test` case files natively, under `node --test`: the very files the
// component is tested with, read the way the host reads them (kebab-case keys, absent
// fields at their defaults, unknown keys refused), outputs compared as the host compares
// them (`exact` or `subset`, a `null` value the same as an absent key, an `error` matched
// as a substring). This module uses node's `fs`; a component never imports it.
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join, basename } from 'node:path';
import { complete, toWire } from './types.js';
import { MemoryStore } from './store.js';

const REQUESTS = { select: 'selectRequest', merge: 'mergeRequest' };
const CASE_KEYS = new Set(['name', 'input', 'output', 'match', 'error']);

/**
 * The cases of a case file, or of every `*.json` file of a directory (sorted), as
 * `{ name, call, request, store, expected }` objects for `runCase`. `kind` is the
 * policy's: `select`, `merge` or `ipam`.
 * @param {string} path @param {'select' | 'merge' | 'ipam'} kind
 */
export function loadCases(path, kind) {
  const files = statSync(path).isDirectory()
    ? readdirSync(path).filter((file) => file.endsWith('.json')).sort().map((file) => join(path, file))
    : [path];
  return files.flatMap((file) => {
    const json = JSON.parse(readFileSync(file, 'utf8'));
    const list = json !== null && typeof json === 'object' && 'cases' in json ? json.cases : [json];
    return list.map((raw, index) => readCase(raw, kind, `${basename(file)}: ${raw.name ?? `case ${index + 1}`}`));
  });
}

function readCase(raw, kind, name) {
  for (const key of Object.keys(raw)) if (!CASE_KEYS.has(key)) throw new Error(`${name}: unknown field \`${key}\``);
  if (('output' in raw) === ('error' in raw)) throw new Error(`${name}: a case needs exactly one of \`output\` and \`error\``);
  const expected = 'error' in raw ? { error: raw.error } : { output: raw.output, match: raw.match ?? 'exact' };
  if (kind !== 'ipam') return { name, call: kind, request: complete(REQUESTS[kind], raw.input, { wire: true }), expected };
  const { call = 'allocate', request, store = {} } = raw.input;
  const record = call === 'gc' ? 'gcRequest' : 'ipamRequest';
  return { name, call, request: complete(record, request, { wire: true }), store, expected };
}

/**
 * Calls `policy` (what `defineSelector`, `defineMerger` or `defineIpam` returned) on the
 * case's request and judges the outcome; throws an `Error` saying how it differs.
 */
export function runCase(policy, testCase) {
  let outcome;
  try {
    outcome = { output: call(policy, testCase) };
  } catch (error) {
    outcome = { error: typeof error === 'string' ? error : String(error?.message ?? error) };
  }
  const { expected } = testCase;
  if ('error' in expected) {
    if ('error' in outcome && outcome.error.includes(expected.error)) return;
    throw new Error('error' in outcome
      ? `error ${JSON.stringify(outcome.error)} does not contain ${JSON.stringify(expected.error)}`
      : `expected an error containing ${JSON.stringify(expected.error)}, got output ${JSON.stringify(outcome.output)}`);
  }
  if ('error' in outcome) throw new Error(`expected output, got error: ${outcome.error}`);
  const matches = expected.match === 'subset' ? isSubset : isSame;
  if (!matches(expected.output, outcome.output)) {
    throw new Error(`output differs\n  expected: ${JSON.stringify(expected.output)}\n  actual:   ${JSON.stringify(outcome.output)}`);
  }
}

/** The case's call, its answer spelt as `plexus policy test` prints it. */
function call(policy, testCase) {
  const { request } = testCase;
  if (testCase.call === 'select') return policy.selectNetworks(request).map((a) => toWire('attachment', a));
  if (testCase.call === 'merge') return toWire('cniResult', policy.merge(request));
  const store = new MemoryStore();
  for (const [key, value] of Object.entries(testCase.store)) store.compareAndSwap(key, null, value);
  const answer = policy.withStore(store)[testCase.call](request);
  const result = testCase.call === 'allocate' ? toWire('cniResult', answer) : null;
  return { result, store: Object.fromEntries(store.contents()) };
}

const isObject = (value) => value !== null && typeof value === 'object' && !Array.isArray(value);

/** Whether every key of `wanted` has a value in `found` that `matches` its own (absent as `null`). */
function covers(wanted, found, matches) {
  return Object.entries(wanted).every(([key, value]) => matches(value, found[key] ?? null));
}

/** Equal JSON, a `null` value and an absent key being the same. */
export function isSame(expected, actual) {
  if (isObject(expected) && isObject(actual)) return covers(expected, actual, isSame) && covers(actual, expected, isSame);
  if (Array.isArray(expected) && Array.isArray(actual)) {
    return expected.length === actual.length && expected.every((value, i) => isSame(value, actual[i]));
  }
  return expected === actual;
}

/** Every key `expected` names has a matching value in `actual`; lists element by element. */
export function isSubset(expected, actual) {
  if (isObject(expected) && isObject(actual)) return covers(expected, actual, isSubset);
  if (Array.isArray(expected) && Array.isArray(actual)) {
    return expected.length === actual.length && expected.every((value, i) => isSubset(value, actual[i]));
  }
  return expected === actual;
}
