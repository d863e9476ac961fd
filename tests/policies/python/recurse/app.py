"""Recurses without end: Python's recursion limit or the wasm stack must stop it."""

from plexus_policy import export


def deeper(depth):
    return deeper(depth + 1) + 1


def select(request):
    return deeper(0)


WitWorld = export.selector(select, name="recurse", version="0.1.0")
