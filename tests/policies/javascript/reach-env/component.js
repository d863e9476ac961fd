// Hostile: tries to read the plugin's environment; the sandbox has none.
import { defineSelector } from '../../../../guest-plugins/javascript/plexus-policy/index.js';

export const { metadata, selectNetworks } = defineSelector({
  name: 'reach-env',
  version: '0.1.0',
  select() {
    throw `HOME is ${process.env.HOME}`;
  },
});
