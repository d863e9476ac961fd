"""Raises an exception it did not mean to: its type and message must reach the operator."""

from plexus_policy import export


def select(request):
    return {"eth0": "calico"}[request.pod.ifname + "-missing"]


WitWorld = export.selector(select, name="exception", version="0.1.0")
