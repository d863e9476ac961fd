// Reading the plugin configuration's `policyConfig`.
import { jsonText, trim } from './text.js';

/**
 * Parses `policyConfig` (the request's `policyConfig`, JSON) into an object. Empty or
 * blank text counts as `{}`, and only a JSON object is accepted. Errors begin with
 * `policyConfig:`, as the Rust SDK's `config::parse` does; checking the keys a policy
 * reads is the policy's.
 * @param {string} policyConfig
 * @returns {Record<string, unknown>}
 */
export function parse(policyConfig) {
  const text = trim(policyConfig) === '' ? '{}' : policyConfig;
  let value;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw `policyConfig: not valid JSON: ${error.message}`;
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw `policyConfig: must be a JSON object, not ${jsonText(value)}`;
  }
  return value;
}
