// Combining CNI results, for merge policies.

/**
 * Appends `other` to `into` (both CNI results): its interfaces after `into`'s, its
 * addresses with their interface indexes shifted to match, its routes, and its DNS merged
 * (see `mergeDns`). Throws, leaving `into` as it was, when an address of `other` refers to
 * an interface `other` does not have.
 * @param {import('./types.js').CniResult} into @param {import('./types.js').CniResult} other
 */
export function append(into, other) {
  const offset = into.interfaces.length;
  const count = other.interfaces.length;
  const ips = other.ips.map((ip) => {
    if (ip.interface === null || ip.interface === undefined) return ip;
    if (ip.interface >= count) {
      throw `address ${ip.address} refers to interface #${ip.interface}, but its result has ${count} interface(s)`;
    }
    const shifted = ip.interface + offset;
    if (shifted > 0xffffffff) throw 'too many interfaces to index';
    return { ...ip, interface: shifted };
  });
  into.interfaces.push(...other.interfaces);
  into.ips.push(...ips);
  into.routes.push(...other.routes);
  mergeDns(into.dns, other.dns);
}

/**
 * Merges DNS settings: nameservers, search domains and options of `other` that `into`
 * lacks are appended; `into`'s domain stays unless it has none.
 * @param {import('./types.js').Dns} into @param {import('./types.js').Dns} other
 */
export function mergeDns(into, other) {
  for (const list of ['nameservers', 'search', 'options']) {
    for (const value of other[list]) if (!into[list].includes(value)) into[list].push(value);
  }
  if (into.domain === null || into.domain === undefined) into.domain = other.domain ?? null;
}
