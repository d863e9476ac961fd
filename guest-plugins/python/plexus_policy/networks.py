"""Finding a network configuration by the name a pod or an operator uses for it."""

from .error import PolicyError, quoted
from .ifnames import IfnameAllocator
from .types import Attachment

_RULES = (
    ("name", lambda network: network.name),
    ("file name", lambda network: genie_file_name(network.file)),
    ("plugin type", lambda network: network.plugin_type),
)


def lookup(networks, wanted):
    """The network called `wanted` among `networks` (the request's), by the first of these
    rules that matches any configuration: 1. its `name` is `wanted`; 2. CNI-Genie's file
    rule, its `genie_file_name` is `wanted` (`10-calico.conf` is `calico`); 3. its plugin
    `type` is `wanted`. More than one match under that rule, or none at all, raises a
    `PolicyError` naming the candidates or listing what is available."""
    for rule, key in _RULES:
        matches = [network for network in networks if key(network) == wanted]
        if len(matches) == 1:
            return matches[0]
        if matches:
            files = ", ".join(network.file for network in matches)
            raise PolicyError(
                f"network {quoted(wanted)} is ambiguous: configurations {files} all match it by {rule}; "
                "refer to the network by a `name` that only one configuration has"
            )
    raise PolicyError(_not_found(networks, wanted))


def attach_in_order(request, names):
    """Attachments to the networks called `names` (each found with `lookup`), in order,
    named as CNI-Genie names them: the first takes the pod's `CNI_IFNAME`, the others
    `eth1`, `eth2`, ... skipping a name already taken, so no two share a name."""
    ifnames = IfnameAllocator()
    attachments = []
    for index, name in enumerate(names):
        network = lookup(request.networks, name)
        if index == 0:
            ifnames.claim(request.pod.ifname, name)
            ifname = request.pod.ifname
        else:
            ifname = ifnames.next("eth", name)
        attachments.append(Attachment(network_file=network.file, ifname=ifname))
    return attachments


def _not_found(networks, wanted):
    if not networks:
        return f"network {quoted(wanted)} not found: networksDir holds no network configurations"
    available = ", ".join(f"{network.name} ({network.file}, type {network.plugin_type})" for network in networks)
    return (
        f"network {quoted(wanted)} not found: no configuration in networksDir has that name, "
        f"file name or plugin type; available: {available}"
    )


def genie_file_name(file):
    """The name CNI-Genie gives a configuration file: the part after the first `-`,
    without its extension (`10-calico.conf` is `calico`, `20-my-net.conflist` is
    `my-net`, `calico.conf` is `calico`)."""
    after_order = file.split("-", 1)[1] if "-" in file else file
    return after_order.rsplit(".", 1)[0] if "." in after_order else after_order
