"""The error a policy raises for anything its input can get wrong."""

import json


class PolicyError(Exception):
    """A message for the operator: the export helpers return it as the call's error, word
    for word (any other exception is returned as `TypeName: message`). The SDK's helpers
    raise it with the Rust SDK's messages, so policies in either language pass the same
    case files."""

    @property
    def message(self):
        return str(self)


def quoted(text):
    """`text` quoted as the Rust SDK's `{:?}` quotes a string, so messages match it."""
    escapes = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t", "\0": "\\0"}
    out = []
    for char in text:
        if char in escapes:
            out.append(escapes[char])
        elif char.isprintable() or char == " ":
            out.append(char)
        else:
            out.append(f"\\u{{{ord(char):x}}}")
    return '"' + "".join(out) + '"'


def compact_json(value):
    """`value` as JSON the way the Rust SDK prints it (serde_json: compact, keys sorted)."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
