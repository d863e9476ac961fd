"""Reading the plugin configuration's `policyConfig`."""

import json

from .error import PolicyError, compact_json


def parse(policy_config):
    """`policy_config` (the request's `policy_config`, JSON text) as a dict. Empty or blank
    text counts as `{}`; only a JSON object is accepted. Errors begin with `policyConfig:`."""
    text = policy_config if policy_config.strip() else "{}"
    try:
        value = json.loads(text)
    except ValueError as err:
        raise PolicyError(f"policyConfig: not valid JSON: {err}") from None
    if not isinstance(value, dict):
        raise PolicyError(f"policyConfig: must be a JSON object, not {compact_json(value)}")
    return value


def string_list(config, key):
    """`config[key]` as a list of strings, or `None` when absent or null."""
    value = config.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise PolicyError(f"policyConfig: `{key}`: expected a list of strings, got {compact_json(value)}")
    return value


def string_lists(config, key):
    """`config[key]` as a dict of lists of strings (`{}` when absent or null)."""
    value = config.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise PolicyError(f"policyConfig: `{key}`: expected an object, got {compact_json(value)}")
    return {name: string_list(value, name) or [] for name in value}


def string(config, key):
    """`config[key]` as a string, or `None` when absent or null."""
    value = config.get(key)
    if value is not None and not isinstance(value, str):
        raise PolicyError(f"policyConfig: `{key}`: expected a string, got {compact_json(value)}")
    return value
