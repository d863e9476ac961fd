"""Tries to read a file of the node."""

from plexus_policy import export


def select(request):
    with open("/etc/passwd") as passwd:
        return passwd.read()


WitWorld = export.selector(select, name="reach-files", version="0.1.0")
