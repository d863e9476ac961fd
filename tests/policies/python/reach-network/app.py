"""Tries to connect to a service of the node."""

import socket

from plexus_policy import export


def select(request):
    return socket.create_connection(("127.0.0.1", 22))


WitWorld = export.selector(select, name="reach-network", version="0.1.0")
