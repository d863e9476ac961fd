// Pod annotations that choose networks: CNI-Genie's `cni` and Multus's
// `k8s.v1.cni.cncf.io/networks`. Both parse into network requests, so a policy treats them
// alike after parsing. Errors (thrown strings) name the annotation and the entry at fault,
// word for word as the Rust SDK's.
import { debug, jsonText, jsonKind, trim, trimStart } from './text.js';
import { parseIp } from './ip.js';

/** CNI-Genie's annotation: `cni: "calico,flannel@eth1"`. */
export const GENIE = 'cni';
/** Multus's annotation: a short list (`"ns/name@ifname, other"`) or a JSON list of objects. */
export const MULTUS = 'k8s.v1.cni.cncf.io/networks';

/**
 * One network a pod asks for. CNI-Genie's annotation fills only `name` and `interface`.
 * @typedef {{ name: string, namespace: string | null, interface: string | null, ips: string[],
 *   mac: string | null, defaultRoute: string[], cniArgs: string | null }} NetworkRequest
 */

/** @param {Partial<NetworkRequest>} fields @returns {NetworkRequest} */
export function networkRequest(fields) {
  return {
    name: '', namespace: null, interface: null, ips: [], mac: null, defaultRoute: [], cniArgs: null, ...fields,
  };
}

/**
 * The value of annotation `key`, or `null` when the pod does not carry it or its value is
 * blank (Kubernetes, CNI-Genie and Multus treat a blank value as absent).
 * @param {[string, string][]} annotations @param {string} key @returns {string | null}
 */
export function get(annotations, key) {
  const found = annotations.find(([name]) => name === key);
  return found && trim(found[1]) !== '' ? found[1] : null;
}

/**
 * Parses CNI-Genie's `cni` annotation: networks separated by `,`, each `name` or
 * `name@ifname`; whitespace around names is ignored; an empty entry is an error.
 * @param {string} value @returns {NetworkRequest[]}
 */
export function parseGenie(value) {
  return splitEntries(GENIE, value).map((entry) => {
    const [name, iface] = splitInterface(GENIE, entry);
    return networkRequest({ name, interface: iface });
  });
}

/**
 * Parses Multus's annotation in either form: short (`"name, ns/name@ifname"`), or JSON
 * (when the value starts with `[` or `{`): a list of objects with `name` (required),
 * `namespace`, `interface`, `ips`, `mac`, `default-route` and `cni-args` (an object);
 * other keys are ignored, as Multus ignores keys it does not know.
 * @param {string} value @returns {NetworkRequest[]}
 */
export function parseMultus(value) {
  const trimmed = trimStart(value);
  return trimmed.startsWith('[') || trimmed.startsWith('{') ? parseMultusJson(trimmed) : parseMultusShort(value);
}

function parseMultusShort(value) {
  return splitEntries(MULTUS, value).map((entry) => {
    const [qualified, iface] = splitInterface(MULTUS, entry);
    const slash = qualified.indexOf('/');
    if (slash < 0) return networkRequest({ name: qualified, interface: iface });
    const namespace = trim(qualified.slice(0, slash));
    const name = trim(qualified.slice(slash + 1));
    if (namespace === '' || name === '' || name.includes('/')) {
      throw `annotation ${MULTUS}: entry ${debug(entry)} is not of the form [namespace/]name[@interface]`;
    }
    return networkRequest({ name, namespace, interface: iface });
  });
}

// The fields of one JSON selection that are read, by their annotation names.
const SELECTION_FIELDS = {
  name: 'string', namespace: 'string?', interface: 'string?', ips: 'strings', mac: 'string?',
  'default-route': 'strings', 'cni-args': 'any',
};

function parseMultusJson(value) {
  const notList = (why) => `annotation ${MULTUS}: not a JSON list of network objects: ${why}`;
  let selections;
  try {
    selections = JSON.parse(value);
  } catch (error) {
    throw notList(error.message);
  }
  if (!Array.isArray(selections)) throw notList(`invalid type: ${jsonKind(selections)}, expected a sequence`);
  selections.forEach((selection) => {
    const problem = selectionProblem(selection);
    if (problem) throw notList(problem);
  });
  if (selections.length === 0) throw `annotation ${MULTUS}: the JSON list names no network`;
  return selections.map(multusRequest);
}

/** What makes `selection` not a network object, in serde's words; `null` if nothing. */
function selectionProblem(selection) {
  if (selection === null || typeof selection !== 'object' || Array.isArray(selection)) {
    return `invalid type: ${jsonKind(selection)}, expected struct MultusSelection`;
  }
  for (const [field, type] of Object.entries(SELECTION_FIELDS)) {
    const present = Object.hasOwn(selection, field);
    const value = selection[field];
    if (!present) {
      if (field === 'name') return 'missing field `name`';
    } else if (type === 'string' && typeof value !== 'string') {
      return `invalid type: ${jsonKind(value)}, expected a string`;
    } else if (type === 'string?' && value !== null && typeof value !== 'string') {
      return `invalid type: ${jsonKind(value)}, expected a string`;
    } else if (type === 'strings') {
      if (!Array.isArray(value)) return `invalid type: ${jsonKind(value)}, expected a sequence`;
      const wrong = value.find((item) => typeof item !== 'string');
      if (wrong !== undefined) return `invalid type: ${jsonKind(wrong)}, expected a string`;
    }
  }
  return null;
}

/** Checks one JSON selection and turns it into a request; `index` locates it in errors. */
function multusRequest(selection, index) {
  const at = (what) => `annotation ${MULTUS}: network #${index + 1} (${debug(selection.name)}): ${what}`;
  const name = trim(selection.name);
  if (name === '') throw `annotation ${MULTUS}: network #${index + 1}: \`name\` is empty`;
  const ips = selection.ips ?? [];
  for (const cidr of ips) {
    if (!isCidr(cidr)) throw at(`\`ips\`: ${debug(cidr)} is not an address in CIDR notation (like 10.1.0.5/24)`);
  }
  const mac = selection.mac ?? null;
  if (mac !== null && !isMac(mac)) throw at(`\`mac\`: ${debug(mac)} is not a MAC address (like 02:42:ac:11:00:02)`);
  const defaultRoute = selection['default-route'] ?? [];
  for (const gateway of defaultRoute) {
    if (parseIp(gateway) === null) throw at(`\`default-route\`: ${debug(gateway)} is not an IP address`);
  }
  let cniArgs = null;
  const args = selection['cni-args'];
  if (args !== undefined && args !== null) {
    if (typeof args !== 'object' || Array.isArray(args)) {
      throw at(`\`cni-args\` must be a JSON object, not ${jsonText(args)}`);
    }
    cniArgs = jsonText(args);
  }
  const namespace = selection.namespace ?? null;
  return networkRequest({
    name,
    namespace: namespace !== null && trim(namespace) !== '' ? namespace : null,
    interface: selection.interface ?? null,
    ips,
    mac,
    defaultRoute,
    cniArgs,
  });
}

/** The comma-separated entries of a list annotation, trimmed; an empty entry is an error. */
function splitEntries(annotation, value) {
  return value.split(',').map((entry, index) => {
    const trimmed = trim(entry);
    if (trimmed === '') throw `annotation ${annotation}: entry #${index + 1} of ${debug(value)} is empty`;
    return trimmed;
  });
}

/** Splits `name@ifname` into the name and the interface name (or `null`), both trimmed. */
function splitInterface(annotation, entry) {
  const at = entry.indexOf('@');
  if (at < 0) return [entry, null];
  const name = trim(entry.slice(0, at));
  const iface = trim(entry.slice(at + 1));
  if (name === '' || iface === '' || iface.includes('@')) {
    throw `annotation ${annotation}: entry ${debug(entry)} is not of the form name@interface`;
  }
  return [name, iface];
}

/** Whether `cidr` is `address/prefix` with a prefix (digits only) the address family allows. */
function isCidr(cidr) {
  const slash = cidr.indexOf('/');
  if (slash < 0) return false;
  const address = parseIp(cidr.slice(0, slash));
  const prefix = cidr.slice(slash + 1);
  if (address === null || !/^[0-9]+$/.test(prefix)) return false;
  return Number(prefix) <= (address.v6 ? 128 : 32);
}

/** Whether `mac` is six two-digit hexadecimal octets separated by `:`. */
function isMac(mac) {
  const octets = mac.split(':');
  return octets.length === 6 && octets.every((octet) => /^[0-9A-Fa-f]{2}$/.test(octet));
}
