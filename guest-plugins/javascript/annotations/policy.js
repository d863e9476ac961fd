// `builtin:annotations` (guest-plugins/annotations), Plexus's default selection policy, in
// JavaScript: the pod's annotations choose its networks, the way CNI-Genie and Multus read
// them. It answers as the builtin does, errors word for word (tested on the fuzz corpus).
//
// 1. CNI-Genie's `cni: "calico,flannel"`: exactly these networks, in order; the first is
//    named `CNI_IFNAME`, the others `eth<position>`; `name@ifname` picks a name.
// 2. Else Multus's `k8s.v1.cni.cncf.io/networks`: the `defaultNetworks` first (named as
//    above), then these, named `net<position in the annotation>` unless they say.
// 3. Else the `defaultNetworks`.
import { annotations, config, defineSelector, ifnames, networks, types } from '../plexus-policy/index.js';

/** Prefix of the names CNI-Genie gives attachments after the first, and of defaults. */
const GENIE_PREFIX = 'eth';
/** Prefix of the names Multus gives the networks its annotation adds. */
const MULTUS_PREFIX = 'net';

export default defineSelector({
  name: 'annotations',
  version: '0.1.0',
  select(request) {
    // No keys yet, but a malformed policyConfig is reported, not ignored.
    config.parse(request.policyConfig);
    const podIfname = request.pod.ifname;
    let planned;
    const genie = annotations.get(request.annotations, annotations.GENIE);
    const multus = annotations.get(request.annotations, annotations.MULTUS);
    if (genie !== null) {
      planned = named(annotations.parseGenie(genie), podIfname, GENIE_PREFIX);
    } else if (multus !== null) {
      planned = [
        ...named(defaultRequests(request), podIfname, GENIE_PREFIX),
        ...named(annotations.parseMultus(multus), null, MULTUS_PREFIX),
      ];
    } else if (request.defaultNetworks.length > 0) {
      planned = named(defaultRequests(request), podIfname, GENIE_PREFIX);
    } else {
      throw noChoiceError(request);
    }
    const allocator = new ifnames.IfnameAllocator();
    return planned.map(([network, ifname]) => {
      allocator.claim(ifname, network.name);
      const { file } = networks.lookup(request.networks, network.name);
      return types.attachment({
        networkFile: file, ifname, ips: network.ips, mac: network.mac, cniArgs: network.cniArgs, defaultRoute: network.defaultRoute,
      });
    });
  },
});

function defaultRequests(request) {
  return request.defaultNetworks.map((name) => annotations.networkRequest({ name }));
}

/**
 * Names each request: its own `interface` if it asked for one, else `firstIfname` for the
 * first if given, else `<prefix><position>`, counting the first as 0 when it takes
 * `firstIfname` (Genie's `eth1` is the second network) and as 1 otherwise (Multus's `net1`
 * is the first network of its annotation).
 */
function named(requests, firstIfname, prefix) {
  const firstNumber = firstIfname === null ? 1 : 0;
  return requests.map((request, index) => {
    if (request.interface !== null) return [request, request.interface];
    if (firstIfname !== null && index === 0) return [request, firstIfname];
    return [request, `${prefix}${firstNumber + index}`];
  });
}

function noChoiceError(request) {
  const { pod } = request;
  const who = pod.name === '' ? `container ${pod.containerId}` : `pod ${pod.namespace}/${pod.name}`;
  return `${who} chooses no network: annotate the pod with \`${annotations.GENIE}: "<network>[,<network>...]"\` `
    + `(CNI-Genie) or \`${annotations.MULTUS}: "<network>[,<network>...]"\` (Multus), or set \`defaultNetworks\` `
    + 'in the Plexus configuration';
}
