"""The Python equivalent of `builtin:annotations` (guest-plugins/annotations): the pod's
annotations choose its networks, the way CNI-Genie and Multus read them, answering as
the builtin answers.

1. CNI-Genie's `cni: "calico,flannel"`: exactly these networks, in order; the first is
   named `CNI_IFNAME`, the others `eth<position>`; `name@ifname` picks a name.
2. Else Multus's `k8s.v1.cni.cncf.io/networks` (short or JSON list): the
   `defaultNetworks` first (named as in 1), then these, named `net<position>` unless the
   annotation says; their `ips`, `mac`, `default-route` and `cni-args` go into the
   attachment.
3. Else the `defaultNetworks`, named as in 1.

`policyConfig` takes no keys: it must be a JSON object (or empty).
"""

from plexus_policy import PolicyError, annotations, config, export, networks
from plexus_policy.annotations import NetworkRequest
from plexus_policy.ifnames import IfnameAllocator
from plexus_policy.types import Attachment

GENIE_PREFIX = "eth"
MULTUS_PREFIX = "net"


def select(request):
    config.parse(request.policy_config)
    pod_ifname = request.pod.ifname
    genie = annotations.get(request.annotations, annotations.GENIE)
    multus = annotations.get(request.annotations, annotations.MULTUS)
    if genie is not None:
        planned = named(annotations.parse_genie(genie), pod_ifname, GENIE_PREFIX)
    elif multus is not None:
        planned = named(default_requests(request), pod_ifname, GENIE_PREFIX)
        planned += named(annotations.parse_multus(multus), None, MULTUS_PREFIX)
    elif request.default_networks:
        planned = named(default_requests(request), pod_ifname, GENIE_PREFIX)
    else:
        raise PolicyError(no_choice_error(request))
    return attachments(request, planned)


def default_requests(request):
    return [NetworkRequest(name=name) for name in request.default_networks]


def named(requests, first_ifname, prefix):
    """Each request with its interface name: the one it asks for; else `first_ifname` for
    the first (when given); else `<prefix><position>`, counting from 1 when there is no
    `first_ifname` (Multus's `net1`), from 0 otherwise (CNI-Genie's `eth1` is the second)."""
    first_number = 1 if first_ifname is None else 0
    planned = []
    for index, network in enumerate(requests):
        if network.interface is not None:
            ifname = network.interface
        elif first_ifname is not None and index == 0:
            ifname = first_ifname
        else:
            ifname = f"{prefix}{first_number + index}"
        planned.append((network, ifname))
    return planned


def attachments(request, planned):
    allocator = IfnameAllocator()
    chosen = []
    for network, ifname in planned:
        allocator.claim(ifname, network.name)
        file = networks.lookup(request.networks, network.name).file
        chosen.append(
            Attachment(
                network_file=file,
                ifname=ifname,
                ips=network.ips,
                mac=network.mac,
                cni_args=network.cni_args,
                default_route=network.default_route,
            )
        )
    return chosen


def no_choice_error(request):
    pod = request.pod
    who = f"container {pod.container_id}" if not pod.name else f"pod {pod.namespace}/{pod.name}"
    return (
        f"{who} chooses no network: annotate the pod with `{annotations.GENIE}: "
        '"<network>[,<network>...]"` (CNI-Genie) or '
        f'`{annotations.MULTUS}: "<network>[,<network>...]"` (Multus), or set `defaultNetworks` '
        "in the Plexus configuration"
    )


WitWorld = export.selector(select, name="annotations", version="0.1.0")
