import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ipam, store as stores, types } from '../plexus-policy/index.js';

const { Ranges } = ipam;
const request = (containerId, fields = {}) => types.ipamRequest({
  pod: types.pod({ namespace: 'default', name: `pod-${containerId}`, containerId, ifname: 'eth0' }),
  network: 'net', now: 1000, ...fields,
});
const errorOf = (fn) => { try { fn(); } catch (error) { return error; } assert.fail('no error'); };
const addresses = (result) => result.ips.map((ip) => ip.address);

test('allocates in host-local order, skipping the gateway, and wraps around', () => {
  const ranges = Ranges.parse('{"subnet": "10.1.0.0/29", "routes": [{"dst": "0.0.0.0/0"}]}');
  const store = new stores.MemoryStore();
  const got = [];
  for (const id of ['a', 'b', 'c', 'd', 'e']) got.push(...addresses(ranges.allocate(request(id), store)));
  assert.deepEqual(got, ['10.1.0.2/29', '10.1.0.3/29', '10.1.0.4/29', '10.1.0.5/29', '10.1.0.6/29']);
  assert.equal(errorOf(() => ranges.allocate(request('f'), store)), 'no free address left in range set 10.1.0.1-10.1.0.6');
  ranges.release(request('b'), store);
  assert.deepEqual(addresses(ranges.allocate(request('g'), store)), ['10.1.0.3/29']);
  assert.deepEqual(addresses(ranges.allocate(request('a'), store)), ['10.1.0.2/29'], 'ADD is idempotent');
  assert.equal(store.get('ip/10.1.0.3').value, '{"container-id":"g","ifname":"eth0","namespace":"default","pod":"pod-g"}');
});

test('dual stack, requested addresses, check and gc', () => {
  const ranges = Ranges.parse('{"ranges": [[{"subnet": "10.1.0.0/24"}], [{"subnet": "fd00::/120", "exclude": ["fd00::/126"]}]]}');
  const store = new stores.MemoryStore();
  assert.deepEqual(addresses(ranges.allocate(request('a', { requestedIps: ['10.1.0.9/24'] }), store)), ['10.1.0.9/24', 'fd00::4/120']);
  assert.equal(errorOf(() => ranges.allocate(request('b', { requestedIps: ['10.1.0.9'] }), store)),
    'requested address 10.1.0.9 is already allocated to container a interface eth0');
  ranges.check(request('a'), store);
  assert.equal(errorOf(() => ranges.check(request('b'), store)),
    'container b interface eth0 holds no address in range set 10.1.0.1-10.1.0.254');
  ranges.gc(types.gcRequest({ validAttachments: [] }), store);
  assert.deepEqual(store.list('ip/'), []);
});

test('a hold keeps a released address for its pod', () => {
  const ranges = Ranges.parse('{"subnet": "10.1.0.0/24"}', 60);
  const store = new stores.MemoryStore();
  ranges.allocate(request('a'), store);
  ranges.release(request('a'), store);
  assert.match(store.get('ip/10.1.0.2').value, /"released-at":1000/);
  assert.deepEqual(addresses(ranges.allocate(request('b'), store)), ['10.1.0.3/24'], 'another pod does not take it');
  const again = request('a2', { pod: types.pod({ namespace: 'default', name: 'pod-a', containerId: 'a2', ifname: 'eth0' }) });
  assert.deepEqual(addresses(ranges.allocate(again, store)), ['10.1.0.2/24'], 'the pod, in a new sandbox, gets it back');
});

test('configuration errors are the Rust SDK\'s', () => {
  assert.equal(errorOf(() => Ranges.parse('{}')), 'ipam: `ranges` is missing or empty: no addresses to allocate from');
  assert.equal(errorOf(() => Ranges.parse('{"subnet": "10.1.0.1/24"}')),
    'ipam: ranges[0][0]: `subnet` 10.1.0.1/24 has host bits set; its network is 10.1.0.0/24');
  assert.equal(errorOf(() => Ranges.parse('{"ranges": [[{"subnet": "10.1.0.0/24"}, {"subnet": "10.1.0.0/25"}]]}')),
    'ipam: range 10.1.0.1-10.1.0.126 overlaps range 10.1.0.1-10.1.0.254');
  assert.equal(errorOf(() => Ranges.parse('{"subnet": "10.1.0.0/24", "rangeStart": "10.2.0.1"}')),
    'ipam: ranges[0][0]: `rangeStart` 10.2.0.1 is not in subnet 10.1.0.0/24');
  assert.equal(Ranges.parse('{"subnet": "10.1.0.0/24", "exclude": ["10.1.0.0/28", "10.1.0.8/29"]}').poolSize(), 239n);
  assert.equal(ipam.configKey('{"gracePeriodSeconds": 60}', 'gracePeriodSeconds'), 60);
});

test('store errors become the Rust SDK\'s messages', () => {
  const broken = { list: () => { throw { tag: 'unavailable', val: 'etcd down' }; } };
  assert.equal(errorOf(() => Ranges.parse('{"subnet": "10.1.0.0/24"}').check(request('a'), broken)),
    'address store unavailable: etcd down');
});
