"""Combining CNI results, for merge policies."""

from .error import PolicyError

_U32_MAX = 2**32 - 1


def append(into, other):
    """Appends CniResult `other` to `into`: its interfaces after `into`'s, its ips with
    their `interface` indexes shifted to the same interfaces in the combined list, its
    routes, and its DNS merged with `merge_dns`. Raises `PolicyError`, leaving `into`
    unchanged, if an ip of `other` refers to an interface `other` does not have: shifted,
    it would point at another delegate's interface."""
    offset = len(into.interfaces)
    ips = []
    for ip in other.ips:
        index = ip.interface
        if index is not None:
            if index >= len(other.interfaces):
                raise PolicyError(
                    f"address {ip.address} refers to interface #{index}, "
                    f"but its result has {len(other.interfaces)} interface(s)"
                )
            if index + offset > _U32_MAX:
                raise PolicyError("too many interfaces to index")
            ip = type(ip)(address=ip.address, gateway=ip.gateway, interface=index + offset)
        ips.append(ip)
    into.interfaces.extend(other.interfaces)
    into.ips.extend(ips)
    into.routes.extend(other.routes)
    merge_dns(into.dns, other.dns)


def merge_dns(into, other):
    """Merges Dns `other` into `into`: nameservers, search domains and options appended
    unless present, in first-seen order; `into`'s domain wins, `other`'s only fills a gap."""
    for field in ("nameservers", "search", "options"):
        values = getattr(into, field)
        for value in getattr(other, field):
            if value not in values:
                values.append(value)
    if into.domain is None:
        into.domain = other.domain
