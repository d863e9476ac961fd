// IP addresses as numbers wide enough for either family ({ v6, bits: BigInt }), parsed
// and printed as Rust's `std::net::IpAddr` parses and prints them, so that what a policy
// accepts and writes is what the Rust SDK accepts and writes.

/**
 * @typedef {{ v6: boolean, bits: bigint }} Addr
 */

/** IPv4: four decimal octets, no leading zeros (Rust refuses `010.0.0.1`). */
function parseV4(text) {
  const octets = text.split('.');
  if (octets.length !== 4) return null;
  let bits = 0n;
  for (const octet of octets) {
    if (!/^(0|[1-9][0-9]{0,2})$/.test(octet) || Number(octet) > 255) return null;
    bits = (bits << 8n) | BigInt(octet);
  }
  return bits;
}

/** IPv6: eight groups of 1-4 hex digits, one `::` for a run of zeros, a dotted IPv4 tail allowed. */
function parseV6(text) {
  const halves = text.split('::');
  if (halves.length > 2) return null;
  const groups = (half) => {
    if (half === '') return [];
    const parts = half.split(':');
    const out = [];
    for (const [i, part] of parts.entries()) {
      if (i === parts.length - 1 && part.includes('.')) {
        const v4 = parseV4(part);
        if (v4 === null) return null;
        out.push(Number(v4 >> 16n), Number(v4 & 0xffffn));
      } else if (/^[0-9A-Fa-f]{1,4}$/.test(part)) {
        out.push(parseInt(part, 16));
      } else {
        return null;
      }
    }
    return out;
  };
  const head = groups(halves[0]);
  const tail = halves.length === 2 ? groups(halves[1]) : [];
  if (head === null || tail === null) return null;
  // A dotted tail may only end the address.
  if (halves.length === 2 && halves[0].includes('.')) return null;
  const missing = 8 - head.length - tail.length;
  if (halves.length === 2 ? missing < 1 : missing !== 0) return null;
  const all = [...head, ...Array(missing).fill(0), ...tail];
  return all.reduce((bits, group) => (bits << 16n) | BigInt(group), 0n);
}

/** `text` as an address, or `null` when it is not one. @returns {Addr | null} */
export function parseIp(text) {
  if (text.includes(':')) {
    const bits = parseV6(text);
    return bits === null ? null : { v6: true, bits };
  }
  const bits = parseV4(text);
  return bits === null ? null : { v6: false, bits };
}

/** `address` as Rust prints it (RFC 5952 for IPv6, `::ffff:a.b.c.d` for a mapped IPv4). */
export function formatIp({ v6, bits }) {
  const v4 = (value) => [24n, 16n, 8n, 0n].map((shift) => String((value >> shift) & 0xffn)).join('.');
  if (!v6) return v4(bits);
  if (bits >> 32n === 0xffffn) return `::ffff:${v4(bits & 0xffffffffn)}`;
  const groups = [];
  for (let shift = 112n; shift >= 0n; shift -= 16n) groups.push(Number((bits >> shift) & 0xffffn));
  // The longest run of two or more zero groups, the first of equals, becomes `::`.
  let best = { start: -1, length: 1 };
  for (let start = 0; start < 8; ) {
    let end = start;
    while (end < 8 && groups[end] === 0) end++;
    if (end - start > best.length) best = { start, length: end - start };
    start = end === start ? start + 1 : end;
  }
  const hex = (list) => list.map((group) => group.toString(16)).join(':');
  if (best.start < 0) return hex(groups);
  return `${hex(groups.slice(0, best.start))}::${hex(groups.slice(best.start + best.length))}`;
}
