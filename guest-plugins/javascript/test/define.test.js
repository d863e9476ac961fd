import { test } from 'node:test';
import assert from 'node:assert/strict';
import { defineIpam, defineSelector, MIN_HOST_VERSION, store as stores, types } from '../plexus-policy/index.js';

test('a selector exports metadata and select-networks; answers are completed records', () => {
  const policy = defineSelector({ name: 'p', version: '1.2.3', select: () => [{ networkFile: 'a.conf', ifname: 'eth0' }] });
  assert.deepEqual(policy.metadata(), { name: 'p', version: '1.2.3', minHostVersion: MIN_HOST_VERSION });
  assert.deepEqual(policy.selectNetworks(types.selectRequest()), [types.attachment({ networkFile: 'a.conf', ifname: 'eth0' })]);
});

test('every exception becomes an error message with its cause', () => {
  const thrower = (thrown) => defineSelector({ name: 'p', version: '1', select: () => { throw thrown; } }).selectNetworks;
  assert.throws(() => thrower('no network')(), (error) => error === 'no network');
  assert.throws(() => thrower(new TypeError('x is undefined'))(), (error) => error === 'TypeError: x is undefined');
  const missing = defineSelector({ name: 'p', version: '1', select: (request) => request.nothing.here });
  assert.throws(() => missing.selectNetworks(types.selectRequest()), (error) => typeof error === 'string' && error.startsWith('TypeError: '));
});

test('an IPAM policy runs against the store it is given', () => {
  const policy = defineIpam({
    name: 'i', version: '1', minHostVersion: '0.2.0',
    allocate: (request, store) => { store.compareAndSwap('ip/x', null, request.pod.containerId); return {}; },
    release: () => {}, check: () => { throw 'nothing held'; }, gc: () => {},
  });
  const store = new stores.MemoryStore();
  const bound = policy.withStore(store);
  assert.deepEqual(bound.allocate(types.ipamRequest({ pod: types.pod({ containerId: 'c1' }) })), types.cniResult());
  assert.deepEqual(store.contents(), [['ip/x', 'c1']]);
  assert.throws(() => bound.check(types.ipamRequest()), (error) => error === 'nothing held');
  assert.equal(bound.metadata().minHostVersion, '0.2.0');
});
