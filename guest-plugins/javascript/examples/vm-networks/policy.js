// VM pods get policyConfig `vm`, the others `other`, either falling back to the
// `defaultNetworks` (the Rust example guest-plugins/examples/vm-networks, in JavaScript).
import { config, defineSelector, networks } from '../../plexus-policy/index.js';

export default defineSelector({
  name: 'vm-networks',
  version: '0.1.0',
  select(request) {
    const lists = config.parse(request.policyConfig);
    const [kind, key] = request.vm ? ['VM', 'vm'] : ['non-VM', 'other'];
    const wanted = lists[key] ?? request.defaultNetworks;
    if (wanted.length === 0) throw `no networks for ${kind} pods: set policyConfig ${key} or defaultNetworks`;
    return networks.attachInOrder(request, wanted);
  },
});
