// Finding a network configuration by the name a pod or an operator uses for it.
import { debug } from './text.js';
import { IfnameAllocator } from './ifnames.js';
import { attachment } from './types.js';

/**
 * Finds the network called `wanted` among `networks` (the request's `networks`), by the
 * first of these rules that matches any configuration: its `name` is `wanted`; CNI-Genie's
 * file rule (`genieFileName(file)` is `wanted`); its plugin type is `wanted`. More than one
 * match under that rule throws, naming the candidate files; no match throws, naming
 * `wanted` and what is available.
 * @param {import('./types.js').Network[]} networks @param {string} wanted
 * @returns {import('./types.js').Network}
 */
export function lookup(networks, wanted) {
  const rules = [
    ['name', (network) => network.name],
    ['file name', (network) => genieFileName(network.file)],
    ['plugin type', (network) => network.pluginType],
  ];
  for (const [rule, key] of rules) {
    const matches = networks.filter((network) => key(network) === wanted);
    if (matches.length === 1) return matches[0];
    if (matches.length > 1) {
      throw `network ${debug(wanted)} is ambiguous: configurations ${matches.map((n) => n.file).join(', ')} ` +
        `all match it by ${rule}; refer to the network by a \`name\` that only one configuration has`;
    }
  }
  throw notFound(networks, wanted);
}

/**
 * Attachments to the networks called `names` (each found with `lookup`), in order, named
 * as CNI-Genie names them: the first takes the pod's `CNI_IFNAME`, the others `eth1`,
 * `eth2`, ... skipping a name already taken.
 * @param {import('./types.js').SelectRequest} request @param {string[]} names
 * @returns {import('./types.js').Attachment[]}
 */
export function attachInOrder(request, names) {
  const ifnames = new IfnameAllocator();
  return names.map((name, index) => {
    const network = lookup(request.networks, name);
    let ifname;
    if (index === 0) {
      ifnames.claim(request.pod.ifname, name);
      ifname = request.pod.ifname;
    } else {
      ifname = ifnames.next('eth', name);
    }
    return attachment({ networkFile: network.file, ifname });
  });
}

function notFound(networks, wanted) {
  if (networks.length === 0) {
    return `network ${debug(wanted)} not found: networksDir holds no network configurations`;
  }
  const available = networks.map((n) => `${n.name} (${n.file}, type ${n.pluginType})`).join(', ');
  return `network ${debug(wanted)} not found: no configuration in networksDir has that name, ` +
    `file name or plugin type; available: ${available}`;
}

/**
 * The name CNI-Genie gives a configuration file: the part after the first `-`, without its
 * extension (`10-calico.conf` is `calico`, `20-my-net.conflist` is `my-net`).
 * @param {string} file
 */
export function genieFileName(file) {
  const dash = file.indexOf('-');
  const afterOrder = dash < 0 ? file : file.slice(dash + 1);
  const dot = afterOrder.lastIndexOf('.');
  return dot < 0 ? afterOrder : afterOrder.slice(0, dot);
}
