import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ifnames, networks, results, types, config, debug } from '../plexus-policy/index.js';

const network = (name, pluginType, file) => types.network({ name, pluginType, cniVersion: '1.0.0', file });
const nodeNetworks = () => [
  network('k8s-pod-network', 'calico', '10-calico.conf'),
  network('cbr0', 'flannel', '10-flannel.conflist'),
  network('storage', 'macvlan', '30-storage.json'),
  network('storage-b', 'macvlan', '31-backup.json'),
];
const errorOf = (fn) => { try { fn(); } catch (error) { return error; } assert.fail('no error'); };

test('lookup: name, then the Genie file rule, then the plugin type', () => {
  assert.equal(networks.lookup(nodeNetworks(), 'storage').file, '30-storage.json');
  assert.equal(networks.lookup(nodeNetworks(), 'calico').file, '10-calico.conf');
  assert.equal(networks.lookup(nodeNetworks(), 'backup').file, '31-backup.json');
  assert.equal(networks.genieFileName('20-my-net.json'), 'my-net');
  assert.equal(networks.genieFileName('00-noext'), 'noext');
});

test('lookup errors are the Rust SDK\'s', () => {
  assert.equal(errorOf(() => networks.lookup(nodeNetworks(), 'macvlan')),
    'network "macvlan" is ambiguous: configurations 30-storage.json, 31-backup.json all match it by plugin type; '
    + 'refer to the network by a `name` that only one configuration has');
  assert.match(errorOf(() => networks.lookup(nodeNetworks(), 'weave')),
    /^network "weave" not found: .* available: k8s-pod-network \(10-calico.conf, type calico\), /);
  assert.equal(errorOf(() => networks.lookup([], 'weave')),
    'network "weave" not found: networksDir holds no network configurations');
});

test('attachInOrder names by position and never twice', () => {
  const names = (ifname) => networks.attachInOrder(
    types.selectRequest({ pod: types.pod({ ifname }), networks: nodeNetworks() }), ['calico', 'cbr0', 'storage'],
  ).map((a) => a.ifname);
  assert.deepEqual(names('eth0'), ['eth0', 'eth1', 'eth2']);
  assert.deepEqual(names('eth1'), ['eth1', 'eth2', 'eth3']);
  assert.deepEqual(names('eth2'), ['eth2', 'eth1', 'eth3']);
});

test('ifnames: validation and clashes', () => {
  assert.equal(errorOf(() => ifnames.validate('a-very-long-name')), 'invalid interface name "a-very-long-name": it is longer than 15 bytes');
  assert.equal(errorOf(() => ifnames.validate('a\u0085b')), 'invalid interface name "a\\u{85}b": it contains whitespace');
  const allocator = new ifnames.IfnameAllocator();
  allocator.claim('eth0', 'calico');
  assert.equal(allocator.next('eth', 'weave'), 'eth1');
  assert.equal(errorOf(() => allocator.claim('eth1', 'macvlan')), 'interface name "eth1" is used twice: by weave and by macvlan');
});

test('results.append shifts interface indexes; a dangling index changes nothing', () => {
  const merged = types.cniResult({ interfaces: [types.iface({ name: 'eth0' })], ips: [types.ipConfig({ address: '10.1.0.5/24', interface: 0 })] });
  results.append(merged, types.cniResult({
    interfaces: [types.iface({ name: 'veth1' }), types.iface({ name: 'eth1' })],
    ips: [types.ipConfig({ address: '10.2.0.5/24', interface: 1 }), types.ipConfig({ address: '10.3.0.5/24' })],
    dns: types.dns({ nameservers: ['10.96.0.10'], domain: 'cluster.local' }),
  }));
  assert.deepEqual(merged.ips.map((ip) => ip.interface), [0, 2, null]);
  assert.equal(merged.dns.domain, 'cluster.local');
  const before = structuredClone(merged);
  assert.equal(errorOf(() => results.append(merged, types.cniResult({ ips: [types.ipConfig({ address: '10.9.0.1/24', interface: 0 })] }))),
    'address 10.9.0.1/24 refers to interface #0, but its result has 0 interface(s)');
  assert.deepEqual(merged, before);
});

test('config.parse: blank is {}, only objects, errors say policyConfig', () => {
  assert.deepEqual(config.parse(' '), {});
  assert.equal(errorOf(() => config.parse('[1]')), 'policyConfig: must be a JSON object, not [1]');
  assert.match(errorOf(() => config.parse('{')), /^policyConfig: not valid JSON: /);
});

test('debug writes strings as Rust\'s {:?}', () => {
  assert.equal(debug('a"b\\c\n\t\u0000\u007f\u200b\u0301 é'), '"a\\"b\\\\c\\n\\t\\0\\u{7f}\\u{200b}\\u{301} é"');
});
