// Hostile: never returns. The host stops it at its CPU time limit.
import { defineSelector } from '../../../../guest-plugins/javascript/plexus-policy/index.js';

export const { metadata, selectNetworks } = defineSelector({
  name: 'loop-forever',
  version: '0.1.0',
  select() {
    for (;;) { /* spin */ }
  },
});
