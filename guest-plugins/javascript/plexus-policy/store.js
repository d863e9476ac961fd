// The address store of an IPAM policy: the host's (`plexus:policy/store@0.4.0`, which only
// a component can import) and an in-memory one for native tests, behind one interface:
//
//   get(key) -> Entry | null              list(prefix) -> Entry[] (sorted by key)
//   compareAndSwap(key, expected, value) -> boolean     (expected: revision or null)
//   delete(key, expected) -> boolean
//
// An `Entry` is `{ key, value, revision }`. A failing operation throws a store error,
// `{ tag: 'unavailable' | 'invalid', val: message }`, as the component bindings throw it;
// `describe` turns one into the message the Rust SDK gives.
import { compareText } from './text.js';

/**
 * @typedef {{ key: string, value: string, revision: number }} Entry
 * @typedef {{ get(key: string): Entry | null, list(prefix: string): Entry[],
 *   compareAndSwap(key: string, expected: number | null, value: string): boolean,
 *   delete(key: string, expected: number): boolean }} Store
 */

/**
 * The host's store, from the module the component entry imports
 * (`import * as store from 'plexus:policy/store@0.4.0'`), passed in by the entry so that
 * nothing else imports a `plexus:` module and every other module runs under node.
 * @returns {Store}
 */
export function hostStore(imported) {
  return {
    get: (key) => imported.get(key) ?? null,
    list: (prefix) => imported.list(prefix),
    compareAndSwap: (key, expected, value) => imported.compareAndSwap(key, expected ?? null, value),
    delete: (key, expected) => imported.delete(key, expected),
  };
}

/** A store in memory, for tests: revisions count up from 1, as the host's in-memory store. */
export class MemoryStore {
  #entries = new Map();
  #lastRevision = 0;

  /** Every key and value, sorted by key. @returns {[string, string][]} */
  contents() {
    return this.list('').map(({ key, value }) => [key, value]);
  }

  get(key) {
    const found = this.#entries.get(key);
    return found ? { key, ...found } : null;
  }

  list(prefix) {
    return [...this.#entries.keys()]
      .filter((key) => key.startsWith(prefix))
      .sort(compareText)
      .map((key) => ({ key, ...this.#entries.get(key) }));
  }

  compareAndSwap(key, expected, value) {
    if ((this.#entries.get(key)?.revision ?? null) !== (expected ?? null)) return false;
    this.#lastRevision += 1;
    this.#entries.set(key, { value, revision: this.#lastRevision });
    return true;
  }

  delete(key, expected) {
    if (this.#entries.get(key)?.revision !== expected) return false;
    this.#entries.delete(key);
    return true;
  }
}

/** The message for a store error, as the Rust SDK's `store::describe` words it. */
export function describe(error) {
  if (error?.tag === 'unavailable') return `address store unavailable: ${error.val}`;
  if (error?.tag === 'invalid') return `address store refused the request: ${error.val}`;
  throw error;
}

/** Runs a store operation, turning a store error into its message (thrown). */
export function attempt(operation) {
  try {
    return operation();
  } catch (error) {
    throw describe(error);
  }
}
