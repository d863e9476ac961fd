// The first delegate's result is the pod's, with the others' interfaces and addresses
// added but not their default routes or DNS (the Rust example
// guest-plugins/examples/primary-routes, in JavaScript).
import { defineMerger, results, types } from '../../plexus-policy/index.js';

const isDefault = (dst) => dst === '0.0.0.0/0' || dst === '::/0';

export default defineMerger({
  name: 'primary-routes',
  version: '0.1.0',
  merge(request) {
    const [primary, ...others] = request.results;
    if (primary === undefined) throw 'primary-routes: no delegate results to merge';
    const merged = primary.result;
    for (const { result } of others) {
      results.append(merged, { ...result, routes: result.routes.filter((r) => !isDefault(r.dst)), dns: types.dns() });
    }
    return merged;
  },
});
