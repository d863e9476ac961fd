"""Pod annotations that choose networks: CNI-Genie's `cni` and Multus's
`k8s.v1.cni.cncf.io/networks`.

Both parse into `NetworkRequest`s, so a policy treats them alike after parsing. Errors
(`PolicyError`) name the annotation and the entry at fault, ready to be the CNI error.
"""

import dataclasses
import ipaddress
import json
from typing import List, Optional

from .error import PolicyError, compact_json, quoted

GENIE = "cni"
"""CNI-Genie's annotation: `cni: "calico,flannel@eth1"`."""

MULTUS = "k8s.v1.cni.cncf.io/networks"
"""Multus's annotation: a short list (`"ns/name@ifname, other"`) or a JSON list of objects."""


@dataclasses.dataclass
class NetworkRequest:
    """One network a pod asks for, with what it asks of the attachment. CNI-Genie's
    annotation fills only `name` and `interface`."""

    name: str = ""
    # Multus's namespace of the network (`ns/name`); informational, as Plexus finds
    # networks in one directory.
    namespace: Optional[str] = None
    interface: Optional[str] = None
    ips: List[str] = dataclasses.field(default_factory=list)
    mac: Optional[str] = None
    default_route: List[str] = dataclasses.field(default_factory=list)
    # Multus's `cni-args` object, as JSON, for the delegate's `args.cni`.
    cni_args: Optional[str] = None


def get(annotations, key):
    """The value of annotation `key` among `(name, value)` pairs, or `None` when the pod
    does not carry it or its value is blank (Kubernetes, CNI-Genie and Multus treat a blank
    value as absent)."""
    for name, value in annotations:
        if name == key:
            return value if value.strip() else None
    return None


def parse_genie(value):
    """CNI-Genie's `cni` annotation: networks separated by `,`, each `name` or
    `name@ifname`; whitespace around names is ignored; an empty entry is an error."""
    requests = []
    for entry in _split_entries(GENIE, value):
        name, interface = _split_interface(GENIE, entry)
        requests.append(NetworkRequest(name=name, interface=interface))
    return requests


def parse_multus(value):
    """Multus's annotation in either form: short, `"name, ns/name@ifname"`; or JSON (when
    the value starts with `[` or `{`), a list of objects with `name` (required),
    `namespace`, `interface`, `ips`, `mac`, `default-route` and `cni-args`; other keys are
    ignored, as Multus ignores keys it does not know."""
    trimmed = value.lstrip()
    if trimmed.startswith(("[", "{")):
        return _parse_multus_json(trimmed)
    return _parse_multus_short(value)


def _parse_multus_short(value):
    requests = []
    for entry in _split_entries(MULTUS, value):
        qualified_name, interface = _split_interface(MULTUS, entry)
        namespace, name = None, qualified_name
        if "/" in qualified_name:
            namespace, name = (part.strip() for part in qualified_name.split("/", 1))
            if not namespace or not name or "/" in name:
                raise PolicyError(
                    f"annotation {MULTUS}: entry {quoted(entry)} is not of the form "
                    "[namespace/]name[@interface]"
                )
        requests.append(NetworkRequest(name=name, namespace=namespace, interface=interface))
    return requests


def _json_kind(value):
    """How serde_json names a JSON value's type in its errors."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean `{json.dumps(value)}`"
    if isinstance(value, int):
        return f"integer `{value}`"
    if isinstance(value, float):
        return f"floating point `{value}`"
    if isinstance(value, str):
        return f"string {quoted(value)}"
    return "sequence" if isinstance(value, list) else "map"


def _typed(selection, key, expected, optional):
    """`selection[key]`, checked as serde reads the Rust SDK's `MultusSelection`."""
    value = selection.get(key)
    if value is None and (optional or key not in selection):
        return None
    if expected == "a string" and isinstance(value, str):
        return value
    if expected == "a sequence" and isinstance(value, list):
        for item in value:
            if not isinstance(item, str):
                raise ValueError(f"invalid type: {_json_kind(item)}, expected a string")
        return value
    raise ValueError(f"invalid type: {_json_kind(value)}, expected {expected}")


def _parse_multus_json(value):
    def not_a_list(detail):
        return PolicyError(f"annotation {MULTUS}: not a JSON list of network objects: {detail}")

    try:
        selections = json.loads(value)
    except ValueError as err:
        raise not_a_list(err) from None
    if not isinstance(selections, list):
        raise not_a_list(f"invalid type: {_json_kind(selections)}, expected a sequence")
    parsed = []
    for selection in selections:
        if not isinstance(selection, dict):
            raise not_a_list(f"invalid type: {_json_kind(selection)}, expected struct MultusSelection")
        if "name" not in selection:
            raise not_a_list("missing field `name`")
        try:
            parsed.append(
                {
                    "name": _typed(selection, "name", "a string", optional=False),
                    "namespace": _typed(selection, "namespace", "a string", optional=True),
                    "interface": _typed(selection, "interface", "a string", optional=True),
                    "ips": _typed(selection, "ips", "a sequence", optional=False) or [],
                    "mac": _typed(selection, "mac", "a string", optional=True),
                    "default_route": _typed(selection, "default-route", "a sequence", optional=False) or [],
                    "cni_args": selection.get("cni-args"),
                }
            )
        except ValueError as err:
            raise not_a_list(err) from None
    if not parsed:
        raise PolicyError(f"annotation {MULTUS}: the JSON list names no network")
    return [_multus_request(index, selection) for index, selection in enumerate(parsed)]


def _multus_request(index, selection):
    def at(what):
        return PolicyError(f"annotation {MULTUS}: network #{index + 1} ({quoted(selection['name'])}): {what}")

    name = selection["name"].strip()
    if not name:
        raise PolicyError(f"annotation {MULTUS}: network #{index + 1}: `name` is empty")
    for cidr in selection["ips"]:
        problem = _cidr_problem(cidr)
        if problem:
            raise at(f"`ips`: {problem}")
    mac = selection["mac"]
    if mac is not None and not _is_mac(mac):
        raise at(f"`mac`: {quoted(mac)} is not a MAC address (like 02:42:ac:11:00:02)")
    for gateway in selection["default_route"]:
        if _ip(gateway) is None:
            raise at(f"`default-route`: {quoted(gateway)} is not an IP address")
    cni_args = selection["cni_args"]
    if cni_args is not None and not isinstance(cni_args, dict):
        raise at(f"`cni-args` must be a JSON object, not {compact_json(cni_args)}")
    namespace = selection["namespace"]
    return NetworkRequest(
        name=name,
        namespace=namespace if namespace is not None and namespace.strip() else None,
        interface=selection["interface"],
        ips=selection["ips"],
        mac=mac,
        default_route=selection["default_route"],
        cni_args=None if cni_args is None else compact_json(cni_args),
    )


def _split_entries(annotation, value):
    """The comma-separated entries of a list annotation, trimmed; an empty entry is an
    error, as it is almost always a typo (`"calico,,flannel"`) that would otherwise hide."""
    entries = [entry.strip() for entry in value.split(",")]
    for index, entry in enumerate(entries):
        if not entry:
            raise PolicyError(f"annotation {annotation}: entry #{index + 1} of {quoted(value)} is empty")
    return entries


def _split_interface(annotation, entry):
    """`name@ifname` as the name and the interface name (or `None`), both trimmed."""
    if "@" not in entry:
        return entry, None
    name, interface = (part.strip() for part in entry.split("@", 1))
    if not name or not interface or "@" in interface:
        raise PolicyError(f"annotation {annotation}: entry {quoted(entry)} is not of the form name@interface")
    return name, interface


def _ip(text):
    """`text` as an IP address as Rust's parser reads one (no IPv6 zone), else `None`."""
    if "%" in text:
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _cidr_problem(cidr):
    """Why `cidr` is not `address/prefix` with a prefix its family allows, or `None`."""
    address, slash, prefix = cidr.partition("/")
    ip = _ip(address) if slash else None
    # Digits only: a sign (`+8`) is refused by the host's CIDR parser and Go's.
    if ip is None or not prefix.isascii() or not prefix.isdigit() or int(prefix) > ip.max_prefixlen:
        return f"{quoted(cidr)} is not an address in CIDR notation (like 10.1.0.5/24)"
    return None


def _is_mac(mac):
    octets = mac.split(":")
    hexdigits = "0123456789abcdefABCDEF"
    return len(octets) == 6 and all(len(octet) == 2 and all(c in hexdigits for c in octet) for octet in octets)
