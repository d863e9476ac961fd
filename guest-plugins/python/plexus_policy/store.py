"""The address store an IPAM policy allocates from: the `Store` protocol, implemented by
the host's store (`HostStore`, in a component) and by `MemoryStore` (for tests).

The host scopes the store to the network of the call and makes every operation atomic.
The only way to write is compare-and-swap, so an allocator claims a free key with
`compare_and_swap(key, None, owner)` and, when that answers `False` (another allocator got
there first), tries the next one. Operations raise `StoreError` when the store fails.
"""

import dataclasses
from typing import List, Optional, Protocol


@dataclasses.dataclass
class Entry:
    """One key of the store, its value and the revision of the write that set it."""

    key: str
    value: str
    revision: int


class StoreError(Exception):
    """The store did not do an operation (nothing was written). `str()` is the message a
    policy's error should carry."""

    def __init__(self, unavailable, message):
        self.unavailable = unavailable
        super().__init__(
            f"address store unavailable: {message}" if unavailable else f"address store refused the request: {message}"
        )


class Store(Protocol):
    """A key-value store with compare-and-swap writes, scoped to one network."""

    def get(self, key: str) -> Optional[Entry]:
        """The entry of `key`, if it exists."""

    def list(self, prefix: str) -> List[Entry]:
        """Every entry whose key starts with `prefix`, sorted by key."""

    def compare_and_swap(self, key: str, expected: Optional[int], value: str) -> bool:
        """Writes `value` if `key` is still at revision `expected` (`None`: must not exist);
        `False`, writing nothing, when it is not."""

    def delete(self, key: str, expected: int) -> bool:
        """Deletes `key` if it is still at `expected`; `False`, deleting nothing, otherwise."""


class HostStore:
    """The host's store, through the `ipam` world's `store` import: only inside a
    component (the export helper hands it to the policy). The import is made when the
    helper creates it, at the component's initialisation, as a call may import nothing."""

    def __init__(self):
        from componentize_py_types import Err
        from wit_world.imports import store

        self._store = store
        self._err = Err

    def _call(self, operation, *args):
        try:
            return operation(*args)
        except self._err as err:
            error = err.value
            raise StoreError(type(error).__name__.endswith("Unavailable"), error.value) from None

    def get(self, key):
        return self._call(self._store.get, key)

    def list(self, prefix):
        return self._call(self._store.list, prefix)

    def compare_and_swap(self, key, expected, value):
        return self._call(self._store.compare_and_swap, key, expected, value)

    def delete(self, key, expected):
        return self._call(self._store.delete, key, expected)


class MemoryStore:
    """A store in memory with the host stores' semantics (revisions never reused), for
    testing a policy natively."""

    def __init__(self, contents=None):
        # key -> (value, revision)
        self._entries = {}
        self._last_revision = 0
        for key, value in (contents or {}).items():
            self.compare_and_swap(key, None, value)

    def contents(self):
        """The keys and values it holds, by key: what a test asserts on."""
        return {key: self._entries[key][0] for key in sorted(self._entries)}

    def get(self, key):
        if key not in self._entries:
            return None
        value, revision = self._entries[key]
        return Entry(key, value, revision)

    def list(self, prefix):
        return [self.get(key) for key in sorted(self._entries) if key.startswith(prefix)]

    def compare_and_swap(self, key, expected, value):
        current = self._entries.get(key)
        if (current[1] if current else None) != expected:
            return False
        self._last_revision += 1
        self._entries[key] = (value, self._last_revision)
        return True

    def delete(self, key, expected):
        current = self._entries.get(key)
        if current is None or current[1] != expected:
            return False
        del self._entries[key]
        return True
