// The component's entry: what `jco componentize` builds (see ../../README.md).
import policy from './policy.js';

export const { metadata, selectNetworks } = policy;
