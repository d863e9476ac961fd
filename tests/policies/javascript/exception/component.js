// Hostile: a bug, an uncaught exception (reading a field of undefined). The error names it.
import { defineSelector } from '../../../../guest-plugins/javascript/plexus-policy/index.js';

export const { metadata, selectNetworks } = defineSelector({
  name: 'exception',
  version: '0.1.0',
  select(request) {
    return request.pod.missing.file;
  },
});
