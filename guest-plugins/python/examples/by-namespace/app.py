"""Chooses a pod's networks by a label-like annotation, else by its namespace, else the
node's defaultNetworks; the Python twin of guest-plugins/examples/by-namespace.

policyConfig: {"label": ANNOTATION, "byLabel": {VALUE: [NETWORK...]},
               "byNamespace": {NAMESPACE: [NETWORK...]}}
"""

from plexus_policy import PolicyError, annotations, config, export, networks
from plexus_policy.error import quoted


def select(request):
    rules = config.parse(request.policy_config)
    label = config.string(rules, "label")
    by_label = config.string_lists(rules, "byLabel")
    by_namespace = config.string_lists(rules, "byNamespace")
    value = annotations.get(request.annotations, label) if label is not None else None
    wanted = by_label.get(value) if value is not None else None
    if wanted is None:
        wanted = by_namespace.get(request.pod.namespace, request.default_networks)
    if not wanted:
        raise PolicyError(
            f"no networks for namespace {quoted(request.pod.namespace)}: "
            "add it to policyConfig byNamespace or set defaultNetworks"
        )
    return networks.attach_in_order(request, wanted)


WitWorld = export.selector(select, name="by-namespace", version="0.1.0")
