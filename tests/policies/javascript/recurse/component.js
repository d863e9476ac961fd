// Hostile: recurses without end. The engine's stack limit stops it.
import { defineSelector } from '../../../../guest-plugins/javascript/plexus-policy/index.js';

const deeper = (depth) => deeper(depth + 1) + 1;

export const { metadata, selectNetworks } = defineSelector({
  name: 'recurse',
  version: '0.1.0',
  select() {
    return deeper(0);
  },
});
