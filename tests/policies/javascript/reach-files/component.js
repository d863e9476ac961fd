// Hostile: tries to read a file of the node, the ways JavaScript offers (node's and
// others'); the sandbox has no files.
import { defineSelector } from '../../../../guest-plugins/javascript/plexus-policy/index.js';

export const { metadata, selectNetworks } = defineSelector({
  name: 'reach-files',
  version: '0.1.0',
  select() {
    return require('fs').readFileSync('/etc/passwd', 'utf8');
  },
});
