// Turning a policy's functions into a component's exports (`plexus:policy@0.4.0`): its
// metadata, the world's functions, errors as the bindings want them, and a sandbox that
// says what it refuses.
import { complete } from './types.js';

/**
 * The oldest Plexus host that serves `plexus:policy@0.4.0`, the WIT this SDK builds
 * against: the `minHostVersion` a policy declares unless it names a later one.
 */
export const MIN_HOST_VERSION = '0.1.0';

/** Lines the policy wrote to the console during the call, added to an error it returns. */
let consoleLines = [];

/**
 * The message of whatever a policy threw: a string as it is (the way a policy returns an
 * error, like the Rust SDK's `Err(message)`), an exception as `Name: message`, so that the
 * operator sees the cause, never an empty trap.
 */
function messageOf(thrown) {
  let message;
  if (typeof thrown === 'string') message = thrown;
  else if (thrown instanceof Error) message = `${thrown.name}: ${thrown.message}`;
  else message = `exception: ${String(thrown)}`;
  if (consoleLines.length > 0) message += ` (console: ${consoleLines.join('; ')})`;
  return message;
}

/** Calls `fn(...args)`; an exception becomes the error of the WIT `result` (`throw` of a string). */
function guarded(fn, shape) {
  return (...args) => {
    consoleLines = [];
    let answer;
    try {
      answer = fn(...args);
    } catch (thrown) {
      throw messageOf(thrown);
    }
    return shape(answer);
  };
}

function metadataOf({ name, version, minHostVersion = MIN_HOST_VERSION }) {
  if (typeof name !== 'string' || typeof version !== 'string') throw new Error('a policy needs a `name` and a `version`');
  return () => ({ name, version, minHostVersion });
}

/**
 * A selection policy. `select(request)` returns the pod's attachments in order (each
 * completed with defaults, so `{ networkFile, ifname }` is enough) or throws a message
 * that becomes the CNI error.
 * @param {{ name: string, version: string, minHostVersion?: string,
 *   select(request: import('./types.js').SelectRequest): Partial<import('./types.js').Attachment>[] }} policy
 */
export function defineSelector(policy) {
  lockDown();
  const selectNetworks = guarded(policy.select, (attachments) => attachments.map((a) => complete('attachment', a)));
  // WIT 0.4.0 names the export `select-networks`; `select` is the same, for tests.
  return { metadata: metadataOf(policy), selectNetworks, select: selectNetworks };
}

/**
 * A merge policy. `merge(request)` returns the pod's CNI result (completed with
 * defaults) or throws a message that becomes the CNI error.
 * @param {{ name: string, version: string, minHostVersion?: string,
 *   merge(request: import('./types.js').MergeRequest): Partial<import('./types.js').CniResult> }} policy
 */
export function defineMerger(policy) {
  lockDown();
  return { metadata: metadataOf(policy), merge: guarded(policy.merge, (result) => complete('cniResult', result)) };
}

/**
 * An IPAM policy: `allocate`, `release`, `check` and `gc`, each called with the request
 * and the network's store (see `store.js`). `withStore(store)` gives the exports bound to
 * a store: the host's in the component entry (`withStore(hostStore(imported))`), a
 * `MemoryStore` in tests.
 * @param {{ name: string, version: string, minHostVersion?: string,
 *   allocate(request, store): Partial<import('./types.js').CniResult>, release(request, store): void,
 *   check(request, store): void, gc(request, store): void }} policy
 */
export function defineIpam(policy) {
  lockDown();
  const metadata = metadataOf(policy);
  const nothing = () => undefined;
  return {
    metadata,
    withStore: (store) => ({
      metadata,
      allocate: guarded((request) => policy.allocate(request, store), (result) => complete('cniResult', result)),
      release: guarded((request) => policy.release(request, store), nothing),
      check: guarded((request) => policy.check(request, store), nothing),
      gc: guarded((request) => policy.gc(request, store), nothing),
    }),
  };
}

/**
 * Inside a component (no `process`: not node), gives the usual ways of reaching out an
 * answer that names what was refused, instead of a missing name or a trap without a
 * cause: the sandbox has no files, environment, network or clock. `console` collects what
 * is written, for the error. Under node (tests) nothing changes.
 */
function lockDown() {
  if (typeof globalThis.process !== 'undefined' || globalThis.plexusLockedDown) return;
  const refuse = (what, how) => () => {
    throw new Error(`a policy cannot ${what} (${how}): the sandbox gives it none; decide from the request`);
  };
  const refuseProperty = (what, how) => ({ get: refuse(what, how), enumerable: true });
  const write = (...values) => { consoleLines.push(values.map(String).join(' ')); };
  Object.defineProperties(globalThis, {
    plexusLockedDown: { value: true },
    fetch: { value: refuse('reach the network', 'fetch'), writable: true, configurable: true },
    WebSocket: { value: refuse('reach the network', 'WebSocket'), writable: true, configurable: true },
    require: { value: refuse('load modules, files or sockets', 'require'), writable: true, configurable: true },
    process: {
      value: Object.defineProperties({}, {
        env: refuseProperty('read environment variables', 'process.env'),
        argv: refuseProperty('read a command line', 'process.argv'),
      }),
      writable: true,
      configurable: true,
    },
    console: { value: { log: write, info: write, warn: write, error: write, debug: write }, writable: true, configurable: true },
  });
  Date.now = refuse('read a clock', 'Date.now; the request has `now` for IPAM');
}
