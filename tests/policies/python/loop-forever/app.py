"""Never answers: the host's CPU-time limit must stop it."""

from plexus_policy import export


def select(request):
    while True:
        pass


WitWorld = export.selector(select, name="loop-forever", version="0.1.0")
