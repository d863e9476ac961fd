// A few of the builtin's own tests (guest-plugins/annotations/src/lib.rs), natively; the
// full check, against the builtin itself on the fuzz corpus, is tests/tests/javascript_policies.rs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { types } from '../plexus-policy/index.js';
import policy from './policy.js';

const network = (name, pluginType, file) => types.network({ name, pluginType, cniVersion: '1.0.0', file });
const request = (annotations, defaultNetworks = []) => types.selectRequest({
  pod: types.pod({ namespace: 'default', name: 'web', ifname: 'eth0' }),
  annotations,
  networks: [
    network('k8s-pod-network', 'calico', '10-calico.conf'), network('cbr0', 'flannel', '10-flannel.conflist'),
    network('storage', 'macvlan', '30-storage.json'), network('backup', 'macvlan', '31-backup.json'),
  ],
  defaultNetworks,
  policyConfig: '{}',
});
const chosen = (req) => policy.selectNetworks(req).map((a) => [a.networkFile, a.ifname]);

test('genie names by position; its clashes are errors', () => {
  assert.deepEqual(chosen(request([['cni', 'calico,storage@eth5,flannel']])),
    [['10-calico.conf', 'eth0'], ['30-storage.json', 'eth5'], ['10-flannel.conflist', 'eth2']]);
  assert.throws(() => policy.selectNetworks(request([['cni', 'calico,flannel,storage@eth1']])), /"eth1" is used twice/);
});

test('multus comes after the defaults, named net<position>', () => {
  assert.deepEqual(chosen(request([['k8s.v1.cni.cncf.io/networks', 'storage, kube-system/backup@data']], ['calico'])),
    [['10-calico.conf', 'eth0'], ['30-storage.json', 'net1'], ['31-backup.json', 'data']]);
});

test('no choice says how to choose', () => {
  assert.throws(() => policy.selectNetworks(request([])),
    (error) => error.startsWith('pod default/web chooses no network: annotate the pod with `cni:'));
});
