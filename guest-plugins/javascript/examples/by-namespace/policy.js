// Chooses a pod's networks by a label annotation, else by its namespace, else the
// `defaultNetworks` (the Rust example guest-plugins/examples/by-namespace, in JavaScript).
// policyConfig: {"label": "example.com/tier", "byLabel": {"fast": [...]}, "byNamespace": {"storage": [...]}}
import { annotations, config, debug, defineSelector, networks } from '../../plexus-policy/index.js';

export default defineSelector({
  name: 'by-namespace',
  version: '0.1.0',
  select(request) {
    const { label = null, byLabel = {}, byNamespace = {} } = config.parse(request.policyConfig);
    const value = label === null ? null : annotations.get(request.annotations, label);
    const wanted = (value !== null && Object.hasOwn(byLabel, value) ? byLabel[value] : null)
      ?? (Object.hasOwn(byNamespace, request.pod.namespace) ? byNamespace[request.pod.namespace] : null)
      ?? request.defaultNetworks;
    if (wanted.length === 0) {
      throw `no networks for namespace ${debug(request.pod.namespace)}: add it to policyConfig byNamespace or set defaultNetworks`;
    }
    return networks.attachInOrder(request, wanted);
  },
});
