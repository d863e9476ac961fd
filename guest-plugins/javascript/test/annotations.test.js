import { test } from 'node:test';
import assert from 'node:assert/strict';
import { annotations } from '../plexus-policy/index.js';

const { GENIE, MULTUS, get, parseGenie, parseMultus, networkRequest } = annotations;
const request = (name, iface = null) => networkRequest({ name, interface: iface });
const errorOf = (fn) => { try { fn(); } catch (error) { return error; } assert.fail('no error'); };

test('get finds the annotation and treats blank as absent', () => {
  const pod = [['cni', '  '], [MULTUS, 'macvlan']];
  assert.equal(get(pod, GENIE), null);
  assert.equal(get(pod, MULTUS), 'macvlan');
  assert.equal(get(pod, 'other'), null);
});

test('genie: order, whitespace and ifnames', () => {
  assert.deepEqual(parseGenie('calico,flannel'), [request('calico'), request('flannel')]);
  assert.deepEqual(parseGenie(' calico @ eth7 ,\tflannel '), [request('calico', 'eth7'), request('flannel')]);
});

test('genie errors are the Rust SDK\'s', () => {
  assert.equal(errorOf(() => parseGenie('calico,,flannel')), 'annotation cni: entry #2 of "calico,,flannel" is empty');
  for (const value of ['calico@', '@eth1', 'calico@eth1@eth2']) {
    assert.match(errorOf(() => parseGenie(value)), /is not of the form name@interface$/);
  }
});

test('multus short form with namespace and interface', () => {
  assert.deepEqual(parseMultus('kube-system/macvlan@data0, sriov ,ns2/ipvlan'), [
    { ...request('macvlan', 'data0'), namespace: 'kube-system' },
    request('sriov'),
    { ...request('ipvlan'), namespace: 'ns2' },
  ]);
  assert.equal(errorOf(() => parseMultus('a/b/c')),
    'annotation k8s.v1.cni.cncf.io/networks: entry "a/b/c" is not of the form [namespace/]name[@interface]');
});

test('multus JSON form carries every field', () => {
  const value = `[{"name": "macvlan", "namespace": "kube-system", "interface": "data0",
    "ips": ["10.1.1.5/24", "fd00::5/64"], "mac": "02:42:ac:11:00:02", "default-route": ["10.1.1.1"],
    "cni-args": {"vlan": 7, "a": [1.5, null]}, "infiniband-guid": "ignored"}, {"name": "sriov"}]`;
  assert.deepEqual(parseMultus(value), [
    {
      name: 'macvlan', namespace: 'kube-system', interface: 'data0', ips: ['10.1.1.5/24', 'fd00::5/64'],
      mac: '02:42:ac:11:00:02', defaultRoute: ['10.1.1.1'], cniArgs: '{"a":[1.5,null],"vlan":7}',
    },
    request('sriov'),
  ]);
});

test('multus JSON errors say what is wrong', () => {
  const cases = [
    ['{"name": "a"}', 'not a JSON list'],
    ['[{"interface": "x"}]', 'missing field `name`'],
    ['[]', 'names no network'],
    ['[{"name": " "}]', '`name` is empty'],
    ['[{"name": "a", "ips": ["10.1.1.5"]}]', 'CIDR'],
    ['[{"name": "a", "ips": ["10.0.0.1/+8"]}]', 'CIDR'],
    ['[{"name": "a", "mac": "02:42:ac:11:00"}]', 'not a MAC'],
    ['[{"name": "a", "default-route": ["gw"]}]', 'not an IP'],
    ['[{"name": "a", "cni-args": "x=1"}]', 'must be a JSON object'],
    ['[{"name": "a"}', 'not a JSON list'],
  ];
  for (const [value, expected] of cases) {
    const error = errorOf(() => parseMultus(value));
    assert.ok(error.startsWith('annotation k8s.v1.cni.cncf.io/networks:'), error);
    assert.ok(error.includes(expected), `${value}: ${error}`);
  }
  assert.equal(errorOf(() => parseMultus('[{"name": "ok"}, {"name": "macvlan", "mac": "zz"}]')),
    'annotation k8s.v1.cni.cncf.io/networks: network #2 ("macvlan"): `mac`: "zz" is not a MAC address (like 02:42:ac:11:00:02)');
});
