"""Gives VM pods (KubeVirt's virt-launcher) one list of networks and other pods another;
the Python twin of guest-plugins/examples/vm-networks.

policyConfig: {"vm": [NETWORK...], "other": [NETWORK...]}; a list left out means the
node's defaultNetworks.
"""

from plexus_policy import PolicyError, config, export, networks


def select(request):
    lists = config.parse(request.policy_config)
    key, kind = ("vm", "VM") if request.vm else ("other", "non-VM")
    wanted = config.string_list(lists, key)
    if wanted is None:
        wanted = request.default_networks
    if not wanted:
        raise PolicyError(f"no networks for {kind} pods: set policyConfig {key} or defaultNetworks")
    return networks.attach_in_order(request, wanted)


WitWorld = export.selector(select, name="vm-networks", version="0.1.0")
