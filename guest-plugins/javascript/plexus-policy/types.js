// The records of `plexus:policy/types@0.4.0` as a component sees them: objects with
// camelCase fields, `null` for an absent `option`, arrays for lists and tuples, numbers
// for integers (`u64` too: the QuickJS bindings pass it as a number).
//
// The constructors fill every field a record has with its default (empty string, empty
// list, `null`, `false`, `0`), as the Rust SDK's `..Default::default()` does, so a policy
// names only what it sets: `attachment({ networkFile, ifname })`.

/**
 * @typedef {{ namespace: string, name: string, uid: string, containerId: string, ifname: string }} Pod
 * @typedef {{ name: string, pluginType: string, cniVersion: string, file: string }} Network
 * @typedef {{ pod: Pod, annotations: [string, string][], cniArgs: [string, string][],
 *   runtimeConfig: string, networks: Network[], defaultNetworks: string[], policyConfig: string,
 *   vm: boolean }} SelectRequest
 * @typedef {{ networkFile: string, ifname: string, ips: string[], mac: string | null,
 *   cniArgs: string | null, defaultRoute: string[] }} Attachment
 * @typedef {{ name: string, mac: string | null, mtu: number | null, sandbox: string | null,
 *   socketPath: string | null, pciId: string | null }} Interface
 * @typedef {{ address: string, gateway: string | null, interface: number | null }} IpConfig
 * @typedef {{ dst: string, gw: string | null, mtu: number | null, advmss: number | null,
 *   priority: number | null, table: number | null, scope: number | null }} Route
 * @typedef {{ nameservers: string[], domain: string | null, search: string[], options: string[] }} Dns
 * @typedef {{ interfaces: Interface[], ips: IpConfig[], routes: Route[], dns: Dns }} CniResult
 * @typedef {{ attachment: Attachment, network: Network, result: CniResult }} DelegateResult
 * @typedef {{ pod: Pod, results: DelegateResult[], policyConfig: string }} MergeRequest
 * @typedef {{ name: string, version: string, minHostVersion: string }} PolicyMetadata
 * @typedef {{ pod: Pod, network: string, config: string, requestedIps: string[],
 *   cniArgs: [string, string][], now: number }} IpamRequest
 * @typedef {{ containerId: string, ifname: string }} AttachmentId
 * @typedef {{ network: string, config: string, validAttachments: AttachmentId[], now: number }} GcRequest
 */

// Each record's fields and their types: a scalar ('string', 'bool', 'number'), an optional
// scalar ('string?', 'number?'), a pair of strings ('pair'), a record (its name) or a list
// of one of these (`[type]`).
export const RECORDS = {
  pod: { namespace: 'string', name: 'string', uid: 'string', containerId: 'string', ifname: 'string' },
  network: { name: 'string', pluginType: 'string', cniVersion: 'string', file: 'string' },
  selectRequest: {
    pod: 'pod', annotations: ['pair'], cniArgs: ['pair'], runtimeConfig: 'string',
    networks: ['network'], defaultNetworks: ['string'], policyConfig: 'string', vm: 'bool',
  },
  attachment: {
    networkFile: 'string', ifname: 'string', ips: ['string'], mac: 'string?',
    cniArgs: 'string?', defaultRoute: ['string'],
  },
  interface: {
    name: 'string', mac: 'string?', mtu: 'number?', sandbox: 'string?', socketPath: 'string?', pciId: 'string?',
  },
  ipConfig: { address: 'string', gateway: 'string?', interface: 'number?' },
  route: {
    dst: 'string', gw: 'string?', mtu: 'number?', advmss: 'number?', priority: 'number?',
    table: 'number?', scope: 'number?',
  },
  dns: { nameservers: ['string'], domain: 'string?', search: ['string'], options: ['string'] },
  cniResult: { interfaces: ['interface'], ips: ['ipConfig'], routes: ['route'], dns: 'dns' },
  delegateResult: { attachment: 'attachment', network: 'network', result: 'cniResult' },
  mergeRequest: { pod: 'pod', results: ['delegateResult'], policyConfig: 'string' },
  policyMetadata: { name: 'string', version: 'string', minHostVersion: 'string' },
  ipamRequest: {
    pod: 'pod', network: 'string', config: 'string', requestedIps: ['string'], cniArgs: ['pair'], now: 'number',
  },
  attachmentId: { containerId: 'string', ifname: 'string' },
  gcRequest: { network: 'string', config: 'string', validAttachments: ['attachmentId'], now: 'number' },
};

function defaultOf(type) {
  if (Array.isArray(type)) return [];
  if (type === 'string') return '';
  if (type === 'bool') return false;
  if (type === 'number') return 0;
  if (type.endsWith('?')) return null;
  return build(type, {});
}

function build(record, fields) {
  const out = {};
  for (const [field, type] of Object.entries(RECORDS[record])) {
    out[field] = fields[field] === undefined ? defaultOf(type) : fields[field];
  }
  return out;
}

/** @param {Partial<Pod>} [fields] @returns {Pod} */
export const pod = (fields = {}) => build('pod', fields);
/** @param {Partial<Network>} [fields] @returns {Network} */
export const network = (fields = {}) => build('network', fields);
/** @param {Partial<SelectRequest>} [fields] @returns {SelectRequest} */
export const selectRequest = (fields = {}) => build('selectRequest', fields);
/** @param {Partial<Attachment>} [fields] @returns {Attachment} */
export const attachment = (fields = {}) => build('attachment', fields);
/** @param {Partial<Interface>} [fields] @returns {Interface} */
export const iface = (fields = {}) => build('interface', fields);
/** @param {Partial<IpConfig>} [fields] @returns {IpConfig} */
export const ipConfig = (fields = {}) => build('ipConfig', fields);
/** @param {Partial<Route>} [fields] @returns {Route} */
export const route = (fields = {}) => build('route', fields);
/** @param {Partial<Dns>} [fields] @returns {Dns} */
export const dns = (fields = {}) => build('dns', fields);
/** @param {Partial<CniResult>} [fields] @returns {CniResult} */
export const cniResult = (fields = {}) => build('cniResult', fields);
/** @param {Partial<MergeRequest>} [fields] @returns {MergeRequest} */
export const mergeRequest = (fields = {}) => build('mergeRequest', fields);
/** @param {Partial<IpamRequest>} [fields] @returns {IpamRequest} */
export const ipamRequest = (fields = {}) => build('ipamRequest', fields);
/** @param {Partial<GcRequest>} [fields] @returns {GcRequest} */
export const gcRequest = (fields = {}) => build('gcRequest', fields);

const camel = (kebab) => kebab.replace(/-([a-z])/g, (_, letter) => letter.toUpperCase());
const kebab = (camelCase) => camelCase.replace(/[A-Z]/g, (letter) => `-${letter.toLowerCase()}`);

/**
 * `value` as a complete record of type `record` (a key of `RECORDS`): every field present,
 * absent ones with their defaults, `undefined` made `null`, nested records likewise.
 * With `wire`, `value` is spelt as JSON requests and case files spell it (kebab-case keys,
 * as `plexus policy run` reads them), and a key the record does not have is an error.
 */
export function complete(record, value, { wire = false } = {}) {
  const fields = RECORDS[record];
  const out = {};
  for (const [key, fieldValue] of Object.entries(value ?? {})) {
    const field = wire ? camel(key) : key;
    if (!(field in fields)) {
      if (wire) throw new Error(`unknown field \`${key}\` in ${kebab(record)}`);
      continue;
    }
    out[field] = fieldValue;
  }
  for (const [field, type] of Object.entries(fields)) {
    out[field] = completeValue(type, out[field], wire);
  }
  return out;
}

function completeValue(type, value, wire) {
  if (value === undefined || value === null) return defaultOf(type);
  if (Array.isArray(type)) return value.map((item) => completeValue(type[0], item, wire));
  if (type in RECORDS) return complete(type, value, { wire });
  return value;
}

/** `value` (a record of type `record`) as JSON spells it: kebab-case keys, `null` for none. */
export function toWire(record, value) {
  const out = {};
  for (const [field, type] of Object.entries(RECORDS[record])) out[kebab(field)] = wireValue(type, value[field]);
  return out;
}

function wireValue(type, value) {
  if (value === undefined || value === null) return null;
  if (Array.isArray(type)) return value.map((item) => wireValue(type[0], item));
  if (type in RECORDS) return toWire(type, value);
  return value;
}
