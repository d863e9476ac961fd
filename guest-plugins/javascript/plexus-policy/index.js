// @plexus/policy-sdk: write Plexus policies in JavaScript. The modules are plain ESM
// without imports of the host, so a policy and its tests run under node as they are; only
// the component's entry file imports `plexus:policy/...` (the store, for IPAM).
export * as annotations from './annotations.js';
export * as config from './config.js';
export * as ifnames from './ifnames.js';
export * as ipam from './ipam.js';
export * as networks from './networks.js';
export * as results from './results.js';
export * as store from './store.js';
export * as types from './types.js';
export { MIN_HOST_VERSION, defineIpam, defineMerger, defineSelector } from './define.js';
export { debug } from './text.js';
