"""Merges the delegates' results keeping the primary's default routes and DNS only: the
secondary interfaces add their addresses and other routes. The Python twin of
guest-plugins/examples/primary-routes."""

from plexus_policy import PolicyError, export, results
from plexus_policy.types import Dns


def is_default(dst):
    return dst in ("0.0.0.0/0", "::/0")


def merge(request):
    if not request.results:
        raise PolicyError("primary-routes: no delegate results to merge")
    primary, *secondaries = request.results
    merged = primary.result
    for delegate in secondaries:
        secondary = delegate.result
        secondary.routes = [route for route in secondary.routes if not is_default(route.dst)]
        secondary.dns = Dns()
        results.append(merged, secondary)
    return merged


WitWorld = export.merger(merge, name="primary-routes", version="0.1.0")
