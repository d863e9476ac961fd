// Range allocation for IPAM policies, compatible with the reference `host-local` plugin:
// the same configuration keys, and the same addresses in the same order. A port of the Rust
// SDK's `ipam` module; its documentation describes the configuration (`ranges` or the
// legacy `subnet`, `rangeStart`, `rangeEnd`, `gateway`, `exclude`; `routes`; `dns`), the
// order of allocation, holds (`builtin:sticky`) and the store layout: `ip/<address>` holds
// the owner as JSON, `last/<set>` the address last allocated from range set `<set>`.
import { debug, jsonKind, trim } from './text.js';
import { parseIp, formatIp } from './ip.js';
import { attempt } from './store.js';
import { cniResult, dns as makeDns, route as makeRoute, ipConfig } from './types.js';

const IP_PREFIX = 'ip/';
const LAST_PREFIX = 'last/';

/** `text` as a JSON object (blank is `{}`); throws `ipam: ...` otherwise. */
function configObject(config, what) {
  let value;
  try {
    value = JSON.parse(trim(config) === '' ? '{}' : config);
  } catch (error) {
    throw `ipam: ${what}${error.message}`;
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw `ipam: ${what}invalid type: ${jsonKind(value)}, expected a map`;
  }
  return value;
}

/**
 * The value of `key` in the network's `ipam` object (`config`, JSON), or `null` if it is
 * not there: how a policy reads keys of its own. Checking its type is the caller's.
 */
export function configKey(config, key) {
  const object = configObject(config, 'not a JSON object: ');
  return Object.hasOwn(object, key) ? object[key] : null;
}

// Shapes of the configuration's values, checked as serde checks the Rust SDK's.
function expect(value, shape, place) {
  const wrong = (expected) => {
    throw `ipam: ${place ? `${place}: ` : ''}invalid type: ${jsonKind(value)}, expected ${expected}`;
  };
  if (shape === 'string') return typeof value === 'string' ? value : wrong('a string');
  if (shape === 'string?') return value === null || value === undefined ? null : expect(value, 'string', place);
  if (shape === 'object') return value !== null && typeof value === 'object' && !Array.isArray(value) ? value : wrong('a map');
  if (Array.isArray(shape)) {
    if (value === null || value === undefined) return [];
    if (!Array.isArray(value)) wrong('a sequence');
    return value.map((item) => expect(item, shape[0], place));
  }
  return shape(value, place);
}

const rawRange = (value, place) => {
  const object = expect(value, 'object', place);
  return {
    subnet: expect(object.subnet, 'string?', place),
    rangeStart: expect(object.rangeStart, 'string?', place),
    rangeEnd: expect(object.rangeEnd, 'string?', place),
    gateway: expect(object.gateway, 'string?', place),
    exclude: expect(object.exclude, ['string'], place),
  };
};

const width = (addr) => (addr.v6 ? 128n : 32n);
const allOnes = (bits) => (1n << bits) - 1n;
const hostMask = (w, prefix) => allOnes(w > prefix ? w - prefix : 0n);
const mask = (w, prefix) => allOnes(w) & ~hostMask(w, prefix);
const at = (addr, bits) => ({ v6: addr.v6, bits });
const cmp = (a, b) => (a.bits < b.bits ? -1 : a.bits > b.bits ? 1 : 0);
const same = (a, b) => a.v6 === b.v6 && a.bits === b.bits;

function parseAddr(text) {
  const addr = parseIp(text);
  if (addr === null) throw `${debug(text)} is not an IP address`;
  return addr;
}

/** `ADDRESS/PREFIX`. */
function parseCidr(text) {
  const slash = text.indexOf('/');
  if (slash < 0) throw `${debug(text)} is not in CIDR notation (address/prefix)`;
  const address = parseAddr(text.slice(0, slash));
  const prefix = text.slice(slash + 1);
  if (!/^[0-9]+$/.test(prefix) || BigInt(prefix) > width(address)) throw `${debug(text)} has an invalid prefix length`;
  return [address, BigInt(prefix)];
}

const wrap = (place, fn) => {
  try {
    return fn();
  } catch (error) {
    throw `${place}${error}`;
  }
};

class Range {
  constructor(network, prefix, start, end, gateway, exclude) {
    Object.assign(this, { network, prefix, start, end, gateway, exclude });
  }

  contains(address) {
    return address.v6 === this.network.v6 && cmp(this.start, address) <= 0 && cmp(address, this.end) <= 0;
  }

  /** The last address of the excluded block `address` is in, if it is in one. */
  excludedUntil(address) {
    let until = null;
    for (const [low, high] of this.exclude) {
      if (cmp(low, address) <= 0 && cmp(address, high) <= 0 && (until === null || cmp(high, until) > 0)) until = high;
    }
    return until;
  }

  allocatable(address) {
    return this.contains(address) && !same(address, this.gateway) && this.excludedUntil(address) === null;
  }

  describe() {
    return `${formatIp(this.start)}-${formatIp(this.end)}`;
  }

  static canonical(raw, place) {
    if (raw.subnet === null) throw `${place}: \`subnet\` is missing`;
    const subnet = raw.subnet;
    const [network, prefix] = wrap(`${place}: \`subnet\`: `, () => parseCidr(subnet));
    const w = width(network);
    if ((network.bits & ~mask(w, prefix)) !== 0n) {
      throw `${place}: \`subnet\` ${subnet} has host bits set; its network is ${formatIp(at(network, network.bits & mask(w, prefix)))}/${prefix}`;
    }
    if (prefix + 2n > w) throw `${place}: \`subnet\` ${subnet} is too small to allocate from`;
    const last = at(network, network.bits | hostMask(w, prefix));
    const range = new Range(network, prefix, at(network, network.bits + 1n), network.v6 ? last : at(last, last.bits - 1n),
      at(network, network.bits + 1n), []);
    const address = (key, value) => {
      const addr = wrap(`${place}: \`${key}\`: `, () => parseAddr(value));
      if (addr.v6 !== network.v6 || (addr.bits & mask(w, prefix)) !== network.bits) {
        throw `${place}: \`${key}\` ${value} is not in subnet ${subnet}`;
      }
      return addr;
    };
    if (raw.rangeStart !== null) range.start = address('rangeStart', raw.rangeStart);
    if (raw.rangeEnd !== null) range.end = address('rangeEnd', raw.rangeEnd);
    if (raw.gateway !== null) range.gateway = address('gateway', raw.gateway);
    if (cmp(range.start, range.end) > 0) {
      throw `${place}: \`rangeStart\` ${formatIp(range.start)} is after \`rangeEnd\` ${formatIp(range.end)}`;
    }
    for (const excluded of raw.exclude) {
      const [addr, length] = wrap(`${place}: \`exclude\`: `, () => parseCidr(excluded));
      if (addr.v6 !== network.v6) throw `${place}: \`exclude\` ${excluded} is not of the subnet's IP family`;
      const low = at(addr, addr.bits & mask(w, length));
      range.exclude.push([low, at(low, low.bits | hostMask(w, length))]);
    }
    return range;
  }
}

const describeSet = (set) => set.map((range) => range.describe()).join(', ');

/** Who holds an address: what `ip/<address>` keys hold. */
class Owner {
  constructor({ containerId, ifname, namespace = '', pod = '', releasedAt = null }) {
    Object.assign(this, { containerId, ifname, namespace, pod, releasedAt });
  }

  static of(request) {
    const { containerId, ifname, namespace, name } = request.pod;
    return new Owner({ containerId, ifname, namespace, pod: name });
  }

  static parse(text) {
    const object = JSON.parse(text);
    if (object === null || typeof object !== 'object' || Array.isArray(object)) {
      throw `invalid type: ${jsonKind(object)}, expected struct Owner`;
    }
    for (const field of ['container-id', 'ifname']) if (!Object.hasOwn(object, field)) throw `missing field \`${field}\``;
    const text_ = (field) => {
      const value = object[field] ?? '';
      if (typeof value !== 'string') throw `invalid type: ${jsonKind(value)}, expected a string`;
      return value;
    };
    const released = object['released-at'] ?? null;
    if (released !== null && !(Number.isInteger(released) && released >= 0)) {
      throw `invalid type: ${jsonKind(released)}, expected u64`;
    }
    return new Owner({
      containerId: text_('container-id'), ifname: text_('ifname'), namespace: text_('namespace'),
      pod: text_('pod'), releasedAt: released,
    });
  }

  is(containerId, ifname) {
    return this.releasedAt === null && this.containerId === containerId && this.ifname === ifname;
  }

  hasPod() {
    return this.namespace !== '' && this.pod !== '';
  }

  samePodInterface(other) {
    return this.hasPod() && this.namespace === other.namespace && this.pod === other.pod && this.ifname === other.ifname;
  }

  toJson() {
    const object = { 'container-id': this.containerId, ifname: this.ifname };
    if (this.namespace !== '') object.namespace = this.namespace;
    if (this.pod !== '') object.pod = this.pod;
    if (this.releasedAt !== null) object['released-at'] = this.releasedAt;
    return JSON.stringify(object);
  }
}

/** A parsed `ipam` configuration, ready to allocate from. */
export class Ranges {
  /**
   * Parses the network's `ipam` object. `hold` is how long, in seconds, a released address
   * stays reserved for the pod that had it (`null`: released at once).
   * @param {string} config @param {number | null} [hold]
   */
  static parse(config, hold = null) {
    const object = configObject(config, '');
    const rawSets = expect(object.ranges, [(set, place) => expect(set, [rawRange], place)], '');
    const legacy = rawRange(object, '');
    const routes = expect(object.routes, [(value) => {
      const r = expect(value, 'object', '');
      if (!Object.hasOwn(r, 'dst')) throw 'ipam: missing field `dst`';
      return makeRoute({ dst: expect(r.dst, 'string', ''), gw: expect(r.gw, 'string?', '') });
    }], '');
    const rawDns = object.dns === undefined || object.dns === null ? {} : expect(object.dns, 'object', '');
    const dns = makeDns({
      nameservers: expect(rawDns.nameservers, ['string'], ''), domain: expect(rawDns.domain, 'string?', ''),
      search: expect(rawDns.search, ['string'], ''), options: expect(rawDns.options, ['string'], ''),
    });
    const isLegacy = legacy.subnet !== null;
    if (isLegacy && rawSets.length > 0) throw 'ipam: give either `ranges` or `subnet`, not both';
    const sets = [];
    for (const [i, rawSet] of (isLegacy ? [[legacy]] : rawSets).entries()) {
      if (rawSet.length === 0) throw `ipam: ranges[${i}] is empty`;
      const set = [];
      for (const [j, raw] of rawSet.entries()) {
        const range = Range.canonical(raw, `ipam: ranges[${i}][${j}]`);
        if (set.length > 0 && set[0].network.v6 !== range.network.v6) throw `ipam: ranges[${i}] mixes IPv4 and IPv6 ranges`;
        set.push(range);
      }
      for (const [j, range] of set.entries()) {
        const other = [...sets.flat(), ...set.slice(0, j)].find((o) => o.network.v6 === range.network.v6
          && cmp(o.start, range.end) <= 0 && cmp(range.start, o.end) <= 0);
        if (other) throw `ipam: range ${range.describe()} overlaps range ${other.describe()}`;
      }
      sets.push(set);
    }
    if (sets.length === 0) throw 'ipam: `ranges` is missing or empty: no addresses to allocate from';
    return new Ranges(sets, routes, dns, hold);
  }

  constructor(sets, routes, dns, hold) {
    Object.assign(this, { sets, routes, dns, hold });
  }

  /**
   * How many addresses the ranges hold that can be given out: every range from its start
   * to its end, less its gateway and its exclusions (overlapping ones counted once).
   * @returns {bigint}
   */
  poolSize() {
    let total = 0n;
    for (const range of this.sets.flat()) {
      const blocks = range.exclude
        .map(([low, high]) => [low.bits > range.start.bits ? low.bits : range.start.bits,
          high.bits < range.end.bits ? high.bits : range.end.bits])
        .filter(([low, high]) => low <= high)
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
      let excluded = 0n;
      let countedTo = null;
      for (const [blockLow, high] of blocks) {
        const low = countedTo === null || blockLow > countedTo ? blockLow : countedTo + 1n;
        if (low <= high) {
          excluded += high - low + 1n;
          countedTo = high;
        }
      }
      const gateway = range.contains(range.gateway) && range.excludedUntil(range.gateway) === null ? 1n : 0n;
      const size = range.end.bits - range.start.bits + 1n - excluded - gateway;
      total += size > 0n ? size : 0n;
    }
    return total;
  }

  /** Allocates one address from each range set for the request's attachment (CNI ADD). */
  allocate(request, store) {
    const owner = Owner.of(request);
    const requested = this.#requested(request);
    const taken = this.#allocations(store);
    const result = cniResult({ routes: this.routes.map((r) => ({ ...r })), dns: structuredCopy(this.dns) });
    this.sets.forEach((set, index) => {
      const held = this.#heldBy(taken, set, (o) => o.is(owner.containerId, owner.ifname));
      const address = held ? held.address
        : this.#allocateFrom(index, set, requested[index], owner, request.now, taken, store);
      const range = set.find((r) => r.contains(address)) ?? set[0];
      result.ips.push(ipConfig({ address: `${formatIp(address)}/${range.prefix}`, gateway: formatIp(range.gateway) }));
    });
    return result;
  }

  /** Releases the attachment's addresses: deleted, or, with a hold, kept for its pod (CNI DEL). */
  release(request, store) {
    const owner = Owner.of(request);
    for (const { address, owner: held, entry } of this.#allocations(store).values()) {
      if (held.is(owner.containerId, owner.ifname)) this.#letGo(address, held, entry, request.now, store);
    }
  }

  /** Throws unless the attachment holds an address in every range set (CNI CHECK). */
  check(request, store) {
    const taken = this.#allocations(store);
    for (const set of this.sets) {
      if (!this.#heldBy(taken, set, (o) => o.is(request.pod.containerId, request.pod.ifname))) {
        throw `container ${request.pod.containerId} interface ${request.pod.ifname} holds no address in range set ${describeSet(set)}`;
      }
    }
  }

  /** Releases every address of an attachment not among the valid ones; deletes expired holds (CNI GC). */
  gc(request, store) {
    const valid = (owner) => request.validAttachments.some(({ containerId, ifname }) => owner.is(containerId, ifname));
    for (const { address, owner, entry } of this.#allocations(store).values()) {
      if (owner.releasedAt !== null) {
        if (this.#expired(owner, request.now)) attempt(() => store.delete(entry.key, entry.revision));
      } else if (!valid(owner)) {
        this.#letGo(address, owner, entry, request.now, store);
      }
    }
  }

  /** Every `ip/` entry, by address (sorted), keyed by the address's family and bits. */
  #allocations(store) {
    const found = [];
    for (const entry of attempt(() => store.list(IP_PREFIX))) {
      const address = wrap(`address store entry ${entry.key}: `, () => parseAddr(entry.key.slice(IP_PREFIX.length)));
      const owner = wrap(`address store entry ${entry.key} is not an allocation: `, () => {
        try {
          return Owner.parse(entry.value);
        } catch (error) {
          throw error instanceof Error ? error.message : error;
        }
      });
      found.push({ address, owner, entry });
    }
    found.sort((a, b) => Number(a.address.v6) - Number(b.address.v6) || cmp(a.address, b.address));
    return new Map(found.map((allocation) => [key(allocation.address), allocation]));
  }

  #heldBy(taken, set, holder) {
    for (const allocation of taken.values()) {
      if (set.some((range) => range.contains(allocation.address)) && holder(allocation.owner)) return allocation;
    }
    return null;
  }

  #expired(owner, now) {
    if (owner.releasedAt === null) return false;
    if (this.hold === null) return true;
    return now >= owner.releasedAt + this.hold;
  }

  /** The requested address for each range set (`null`: none asked for). */
  #requested(request) {
    const perSet = this.sets.map(() => null);
    for (const text of request.requestedIps) {
      const bare = text.includes('/') ? text.slice(0, text.indexOf('/')) : text;
      const address = wrap('requested address: ', () => parseAddr(bare));
      const index = this.sets.findIndex((set) => set.some((range) => range.contains(address)));
      if (index < 0) throw `requested address ${formatIp(address)} is in none of the configured ranges`;
      if (perSet[index] !== null) {
        throw `requested addresses ${formatIp(perSet[index])} and ${formatIp(address)} are both in range set ${describeSet(this.sets[index])}; one per set`;
      }
      perSet[index] = address;
    }
    return perSet;
  }

  #allocateFrom(index, set, requested, owner, now, taken, store) {
    const claim = (address, expected) => attempt(() => store.compareAndSwap(`${IP_PREFIX}${formatIp(address)}`, expected, owner.toJson()));
    if (requested !== null) {
      const shown = formatIp(requested);
      if (set.some((range) => same(range.gateway, requested))) throw `requested address ${shown} is the gateway of its range`;
      const held = taken.get(key(requested));
      let expected = null;
      if (held) {
        if ((owner.samePodInterface(held.owner) && held.owner.releasedAt !== null) || this.#expired(held.owner, now)) {
          expected = held.entry.revision;
        } else {
          throw `requested address ${shown} is already allocated to container ${held.owner.containerId} interface ${held.owner.ifname}`;
        }
      }
      if (claim(requested, expected)) return requested;
      throw `requested address ${shown} was allocated by another attachment meanwhile`;
    }
    if (this.hold !== null) {
      const held = this.#heldBy(taken, set, (o) => o.releasedAt !== null && owner.samePodInterface(o));
      if (held && claim(held.address, held.entry.revision)) return held.address;
    }
    const last = attempt(() => store.get(`${LAST_PREFIX}${index}`));
    const lastAddress = last ? parseIp(last.value) : null;
    for (const address of candidates(set, lastAddress)) {
      const held = taken.get(key(address));
      let expected = null;
      if (held) {
        if (!this.#expired(held.owner, now)) continue;
        expected = held.entry.revision;
      }
      if (set.some((range) => !range.allocatable(address) && range.contains(address))) continue;
      if (claim(address, expected)) {
        taken.delete(key(address));
        // Only a hint: when another allocator moved it meanwhile, theirs stands.
        attempt(() => store.compareAndSwap(`${LAST_PREFIX}${index}`, last ? last.revision : null, formatIp(address)));
        return address;
      }
    }
    throw `no free address left in range set ${describeSet(set)}`;
  }

  /** Deletes an allocation, or marks it released when its pod keeps it for a while. */
  #letGo(address, held, entry, now, store) {
    if (this.hold !== null && held.hasPod()) {
      held.releasedAt = now;
      // Lost: the entry changed meanwhile, so it is not this attachment's to release.
      attempt(() => store.compareAndSwap(`${IP_PREFIX}${formatIp(address)}`, entry.revision, held.toJson()));
      return;
    }
    // `false`: changed meanwhile, so no longer this call's to delete.
    attempt(() => store.delete(entry.key, entry.revision));
  }
}

const key = (address) => `${address.v6 ? 6 : 4}/${address.bits}`;
const structuredCopy = (dns) => ({ ...dns, nameservers: [...dns.nameservers], search: [...dns.search], options: [...dns.options] });

/**
 * The addresses of a range set in `host-local`'s order: from the one after `last` (when it
 * is in the set; else from the first range's start) through the end of each range and on
 * to the next, wrapping around, until back at the first; gateways skipped. An excluded
 * block is passed over in one step (a /64 may exclude a /65).
 */
function* candidates(set, last) {
  let rangeIndex = 0;
  let current = null;
  const resume = last === null ? -1 : set.findIndex((range) => range.contains(last));
  if (resume >= 0) {
    rangeIndex = resume;
    current = last;
  }
  let first = null;
  let started = false;
  for (;;) {
    const range = set[rangeIndex];
    let next;
    if (current === null) next = range.start;
    else if (cmp(current, range.end) >= 0) {
      rangeIndex = (rangeIndex + 1) % set.length;
      next = set[rangeIndex].start;
    } else next = at(current, current.bits + 1n);
    current = next;
    if (first === null) first = next;
    if (same(first, next) && started) return;
    started = true;
    const inRange = set[rangeIndex];
    const until = inRange.excludedUntil(next);
    if (until !== null) {
      const stop = cmp(until, inRange.end) < 0 ? until : inRange.end;
      if (cmp(next, first) < 0 && cmp(first, stop) <= 0 && inRange.contains(first)) return;
      current = stop;
      continue;
    }
    if (!same(next, inRange.gateway)) yield next;
  }
}
