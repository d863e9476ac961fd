"""Exporting a policy's function as the component's world: `selector`, `merger`, `ipam`.

Each returns the class componentize-py instantiates, which the policy's `app.py` names
`WitWorld`:

    WitWorld = export.selector(select, name="my-policy", version="0.1.0")

Every call of the world goes through `_call`, which turns what Python can do wrong into the
call's error instead of a trap that names nothing: a `PolicyError` becomes its message word
for word; any other exception `TypeName: message`; what the policy printed is added to the
error. Inside a component (`sys.platform == "wasi"`, built with `--stub-wasi`) the export
also makes the sandbox's walls explicit: files, environment variables and the network raise
`PermissionError` naming what was tried (otherwise the stubbed WASI call traps as
`unreachable`), and stdout/stderr go to a buffer (a stubbed write would trap too).

The walls go up when componentize-py makes the world, while it initialises the component,
so they are in the snapshot every call starts from and no call pays for them; all but the
environment's, which that initialisation reads after making the world: it goes up at the
start of each call.
"""

import builtins
import io
import os
import sys

from . import MIN_HOST_VERSION
from .error import PolicyError
from .types import PolicyMetadata

# The whole SDK, imported now: inside a component only modules imported while the component
# is initialised exist; an `import` during a call traps.
from . import annotations, config, ifnames, ipam, networks, results, store, types  # noqa: F401

IN_COMPONENT = sys.platform == "wasi"

try:
    import socket
except ImportError:  # Not in every interpreter: then there is no socket to wall off.
    socket = None

if IN_COMPONENT:
    from componentize_py_types import Err
else:

    class Err(Exception):
        """Natively, what the component's `componentize_py_types.Err` is: a `result`'s error."""

        def __init__(self, value):
            super().__init__(value)
            self.value = value


# What the policy printed during the current call (inside a component).
_output = io.StringIO()


def _refuse(what):
    def refused(*args, **kwargs):
        shown = ", ".join(repr(arg) for arg in args[:1])
        raise PermissionError(f"a Plexus policy cannot reach {what}: {refused.__name__}({shown}) refused")

    return refused


class _NoEnvironment(dict):
    """`os.environ` in a component: a policy gets no environment, so reading it says so."""

    def _refuse(self, *args, **kwargs):
        raise PermissionError("a Plexus policy cannot reach environment variables: os.environ refused")

    __getitem__ = get = __iter__ = __len__ = __contains__ = keys = items = values = copy = _refuse
    __setitem__ = __delitem__ = setdefault = pop = update = _refuse


def _wall_off_files_network_and_output():
    """Replaces the ways out of the sandbox, but the environment, with a clear
    `PermissionError`, and captures what the policy prints."""
    for module, name in ((builtins, "open"), (io, "open"), (os, "open"), (os, "listdir"), (os, "scandir")):
        refused = _refuse("files")
        refused.__name__ = name
        setattr(module, name, refused)
    if socket is not None:
        for name in ("socket", "create_connection", "getaddrinfo", "gethostbyname"):
            refused = _refuse("the network")
            refused.__name__ = name
            setattr(socket, name, refused)
    sys.stdout = sys.stderr = _output


def _wall_off_the_environment():
    os.environ = _NoEnvironment()
    os.getenv = os.environ._refuse


class _World:
    """What every world's class does when componentize-py makes it (once, while it
    initialises the component): walls off the sandbox."""

    def __init__(self):
        if IN_COMPONENT:
            _wall_off_files_network_and_output()


def _call(function, *args):
    """`function(*args)`, any exception raised as the world's `Err(message)`."""
    if IN_COMPONENT and not isinstance(os.environ, _NoEnvironment):
        _wall_off_the_environment()
    _output.seek(0)
    _output.truncate()
    try:
        return function(*args)
    except Err:
        raise
    except PolicyError as err:
        message = str(err)
    except MemoryError:
        # In a component, memory runs out when the host refuses to grow it further.
        message = "MemoryError: the policy ran out of memory (the node's policyMemoryMiB limit)"
    except BaseException as err:  # noqa: BLE001 -- every failure must reach the operator
        message = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
    printed = _output.getvalue().strip()
    if printed:
        message = f"{message} (the policy printed: {printed})"
    raise Err(message)


def _metadata(name, version, min_host_version):
    if not name or not version:
        raise ValueError("a policy's export needs its name and version")
    return PolicyMetadata(name=name, version=version, min_host_version=min_host_version)


def selector(select, *, name, version, min_host_version=MIN_HOST_VERSION):
    """The `selector` world, answering `select-networks` with `select(request)`: a list of
    `Attachment`s, the first the pod's primary interface."""
    metadata = _metadata(name, version, min_host_version)

    class WitWorld(_World):
        def metadata(self):
            return metadata

        def select_networks(self, request):
            return _call(select, request)

    return WitWorld


def merger(merge, *, name, version, min_host_version=MIN_HOST_VERSION):
    """The `merger` world, answering `merge` with `merge(request)`: the pod's `CniResult`."""
    metadata = _metadata(name, version, min_host_version)

    class WitWorld(_World):
        def metadata(self):
            return metadata

        def merge(self, request):
            return _call(merge, request)

    return WitWorld


def ipam(policy, *, name, version, min_host_version=MIN_HOST_VERSION):
    """The `ipam` world: `policy` has methods `allocate(request, store)` (the `CniResult`),
    `release`, `check` (each `(request, store)`, answering `None`) and `gc(gc_request, store)`.
    The store is the host's (`store.HostStore`) in a component; natively a test makes the
    world with its own, `WitWorld(store.MemoryStore())`."""
    metadata = _metadata(name, version, min_host_version)

    class WitWorld(_World):
        def __init__(self, the_store=None):
            super().__init__()
            # componentize-py makes the world with no argument, at initialisation, when the
            # store's import may still be made.
            self.store = the_store if the_store is not None else store.HostStore()

        def metadata(self):
            return metadata

        def allocate(self, request):
            return _call(policy.allocate, request, self.store)

        def release(self, request):
            return _call(policy.release, request, self.store)

        def check(self, request):
            return _call(policy.check, request, self.store)

        def gc(self, request):
            return _call(policy.gc, request, self.store)

    return WitWorld
