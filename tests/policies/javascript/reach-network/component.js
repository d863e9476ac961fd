// Hostile: tries to reach the network; the sandbox has none.
import { defineSelector } from '../../../../guest-plugins/javascript/plexus-policy/index.js';

export const { metadata, selectNetworks } = defineSelector({
  name: 'reach-network',
  version: '0.1.0',
  select() {
    fetch('http://169.254.169.254/latest/meta-data/');
    return [];
  },
});
