"""Interface names inside the pod: checking them and handing out `eth1`, `net1`, ..."""

from .error import PolicyError, quoted

MAX_LEN = 15
"""The longest interface name Linux accepts, in bytes (`IFNAMSIZ` minus the NUL)."""


def validate(name):
    """Raises `PolicyError` unless `name` is an interface name Linux accepts: 1 to 15
    bytes, not `.` or `..`, and without `/`, `:` or whitespace."""
    if not name:
        problem = "it is empty"
    elif len(name.encode()) > MAX_LEN:
        problem = "it is longer than 15 bytes"
    elif name in (".", ".."):
        problem = "`.` and `..` are not interface names"
    elif "/" in name or ":" in name:
        problem = "it contains `/` or `:`"
    elif any(char.isspace() for char in name):
        problem = "it contains whitespace"
    elif "\0" in name:
        problem = "it contains a NUL byte"
    else:
        return
    raise PolicyError(f"invalid interface name {quoted(name)}: {problem}")


class IfnameAllocator:
    """Hands out unique interface names for one pod: `claim` the fixed ones (asked for by
    the pod, or `CNI_IFNAME`) first, then draw generated ones with `next`, which skips
    every name already claimed."""

    def __init__(self):
        # Each claimed name with what claimed it, so a clash can name both claimants.
        self._claimed = {}

    def is_taken(self, name):
        return name in self._claimed

    def claim(self, name, owner):
        """Takes `name` for `owner` (what asked for it, for messages); raises if the name is
        invalid or already taken, naming both owners."""
        try:
            validate(name)
        except PolicyError as err:
            raise PolicyError(f"{owner}: {err}") from None
        if name in self._claimed:
            raise PolicyError(f"interface name {quoted(name)} is used twice: by {self._claimed[name]} and by {owner}")
        self._claimed[name] = owner

    def next(self, prefix, owner):
        """Takes and returns the first free name `<prefix>1`, `<prefix>2`, ... for `owner`."""
        # Among one more candidate than there are claimed names, one is always free.
        for index in range(1, len(self._claimed) + 2):
            name = f"{prefix}{index}"
            if not self.is_taken(name):
                self.claim(name, owner)
                return name
        raise PolicyError(f"{owner}: no free interface name starts with {quoted(prefix)}")


def check_attachments(attachments):
    """Checks the interface names of a selector's answer: each valid, none used twice.
    Errors name the attachment's network file."""
    allocator = IfnameAllocator()
    for attachment in attachments:
        allocator.claim(attachment.ifname, attachment.network_file)
