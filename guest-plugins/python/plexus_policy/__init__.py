"""Write Plexus policies in Python: WebAssembly components, built with componentize-py,
that choose a pod's networks (the `selector` world), merge the delegates' results (the
`merger` world) or decide a pod's addresses on a network (the `ipam` world) of the WIT
package `plexus:policy@0.4.0`.

A policy is a module `app.py` that defines its function and exports it with the helpers of
`plexus_policy.export`:

    from plexus_policy import export, networks
    from plexus_policy.types import Attachment

    def select(request):
        wanted = request.default_networks[0]
        network = networks.lookup(request.networks, wanted)
        return [Attachment(network_file=network.file, ifname=request.pod.ifname)]

    WitWorld = export.selector(select, name="first-network", version="0.1.0")

Built with `componentize-py -d wit -w selector componentize --stub-wasi app -o policy.wasm`.
The same module imports natively, so pytest calls `select(...)` like any function, and
`plexus_policy.testing` runs the case files `plexus policy test` reads. The helpers raise
`PolicyError` with the same messages as the Rust SDK's, so policies in either language pass
the same case files.
"""

from .error import PolicyError

MIN_HOST_VERSION = "0.1.0"
"""The `min-host-version` a policy declares unless it names a later one."""

__all__ = ["PolicyError", "MIN_HOST_VERSION"]
