// The Rust example's own case files, run natively: the JavaScript port answers as it does.
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { loadCases, runCase } from '../../plexus-policy/testing.js';
import policy from './policy.js';

const cases = fileURLToPath(new URL('../../../examples/primary-routes/cases', import.meta.url));

for (const testCase of loadCases(cases, 'merge')) {
  test(testCase.name, () => runCase(policy, testCase));
}
