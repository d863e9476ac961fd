"""Allocates until something stops it: the host's memory limit must."""

from plexus_policy import export


def select(request):
    hoard = []
    while True:
        hoard.append(bytearray(1 << 20))


WitWorld = export.selector(select, name="alloc-unbounded", version="0.1.0")
