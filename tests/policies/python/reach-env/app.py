"""Tries to read an environment variable of the plugin."""

import os

from plexus_policy import export


def select(request):
    return os.environ["PATH"]


WitWorld = export.selector(select, name="reach-env", version="0.1.0")
