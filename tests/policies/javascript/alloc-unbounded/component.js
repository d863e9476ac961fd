// Hostile: allocates without end. The host stops it at its memory limit.
import { defineSelector } from '../../../../guest-plugins/javascript/plexus-policy/index.js';

export const { metadata, selectNetworks } = defineSelector({
  name: 'alloc-unbounded',
  version: '0.1.0',
  select() {
    const hoard = [];
    for (;;) hoard.push(new Array(1 << 16).fill(hoard.length));
  },
});
