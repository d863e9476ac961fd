"""Range allocation for IPAM policies, compatible with the reference `host-local` plugin:
the same configuration keys, and the same addresses in the same order.

Configuration (the network's `ipam` object; keys it does not know are ignored):
- `ranges`: a list of range sets, each a list of ranges `{subnet, rangeStart, rangeEnd,
  gateway, exclude}`. One address is allocated from each range set (one set per IP
  family makes a dual-stack attachment). The legacy form, one range's keys directly in the
  `ipam` object, is one set of one range. `rangeStart` defaults to the subnet's first
  address after the network address, `rangeEnd` to its last (IPv4: before the broadcast
  address), `gateway` to the first address; the gateway is never allocated. `exclude` (a
  list of CIDRs, not in `host-local`) is never allocated either.
- `routes`: `[{dst, gw}]`, returned as they are; `dns`: `{nameservers, domain, search,
  options}`, returned as it is.

Allocation, per range set: an address the request asks for (`requested_ips`) if it is in
the set and free; else, with a hold, the address the same pod had on the same interface;
else the next free address after the one last allocated from the set, wrapping around, as
`host-local` does. An attachment that already holds an address in a set gets it again.

Store layout: `ip/<address>` holds the owner as JSON, `last/<set>` the address last
allocated from set `<set>` (its index in `ranges`). The same as the Rust SDK's, so either
can take over the other's store.
"""

import dataclasses
import ipaddress
import json
from typing import Optional

from .error import PolicyError, quoted
from .store import StoreError
from .types import CniResult, Dns, IpConfig, Route

IP_PREFIX = "ip/"
LAST_PREFIX = "last/"


def _store_call(operation, *args):
    """A store operation, its failure as the policy's error."""
    try:
        return operation(*args)
    except StoreError as err:
        raise PolicyError(str(err)) from None


def _json_object(text, what):
    try:
        value = json.loads(text if text.strip() else "{}")
    except ValueError as err:
        raise PolicyError(f"{what}: {err}") from None
    if not isinstance(value, dict):
        raise PolicyError(f"{what}: invalid type: expected a JSON object")
    return value


def config_key(config, key):
    """The value of `key` in the network's `ipam` object (`config`, the request's JSON),
    or `None`: how a policy reads keys of its own."""
    return _json_object(config, "ipam: not a JSON object").get(key)


@dataclasses.dataclass
class Owner:
    """Who holds an address: what `ip/<address>` keys hold."""

    container_id: str
    ifname: str
    # The pod's namespace and name, empty when the runtime did not pass them.
    namespace: str = ""
    pod: str = ""
    # When the attachment released it (seconds since the epoch), for an address held for
    # its pod; `None` while in use.
    released_at: Optional[int] = None

    @classmethod
    def of(cls, request):
        return cls(request.pod.container_id, request.pod.ifname, request.pod.namespace, request.pod.name)

    @classmethod
    def from_json(cls, text):
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        for key in ("container-id", "ifname"):
            if not isinstance(data.get(key), str):
                raise ValueError(f"missing field `{key}`")
        released_at = data.get("released-at")
        return cls(data["container-id"], data["ifname"], data.get("namespace") or "", data.get("pod") or "", released_at)

    def to_json(self):
        data = {"container-id": self.container_id, "ifname": self.ifname}
        if self.namespace:
            data["namespace"] = self.namespace
        if self.pod:
            data["pod"] = self.pod
        if self.released_at is not None:
            data["released-at"] = self.released_at
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False)

    def is_(self, container_id, ifname):
        return self.released_at is None and self.container_id == container_id and self.ifname == ifname

    def has_pod(self):
        """Whether the runtime named the pod, which a hold needs."""
        return bool(self.namespace) and bool(self.pod)

    def same_pod_interface(self, other):
        """Whether `other` is the same pod's same interface (a pod known by name only)."""
        return (
            self.has_pod() and self.namespace == other.namespace and self.pod == other.pod and self.ifname == other.ifname
        )


def _parse_ip(text):
    # Rust's parser takes no IPv6 zone (`%eth0`); ipaddress would.
    try:
        if "%" in text:
            raise ValueError
        return ipaddress.ip_address(text)
    except ValueError:
        raise PolicyError(f"{quoted(text)} is not an IP address") from None


def _order(address):
    """Addresses sort as the Rust SDK's do: IPv4 before IPv6, then by value."""
    return (address.version, int(address))


def _parse_cidr(text):
    address, slash, prefix = text.partition("/")
    if not slash:
        raise PolicyError(f"{quoted(text)} is not in CIDR notation (address/prefix)")
    address = _parse_ip(address)
    if not prefix or not prefix.isascii() or not prefix.isdigit() or int(prefix) > address.max_prefixlen:
        raise PolicyError(f"{quoted(text)} has an invalid prefix length")
    return address, int(prefix)


def _block(address, prefix):
    """The first and last address of the `prefix` block `address` is in."""
    network = ipaddress.ip_network((address, prefix), strict=False)
    return network.network_address, network.broadcast_address


@dataclasses.dataclass
class _Range:
    """One range of a range set, every default filled in."""

    network: object
    prefix: int
    start: object
    end: object
    gateway: object
    exclude: list

    def contains(self, address):
        return address.version == self.network.version and self.start <= address <= self.end

    def excluded_until(self, address):
        """The last address of the excluded block `address` is in, if it is in one."""
        highs = [high for low, high in self.exclude if low.version == address.version and low <= address <= high]
        return max(highs) if highs else None

    def allocatable(self, address):
        return self.contains(address) and address != self.gateway and self.excluded_until(address) is None

    def describe(self):
        return f"{self.start}-{self.end}"


def _optional_string(raw, key, place):
    value = raw.get(key)
    if value is not None and not isinstance(value, str):
        raise PolicyError(f"ipam: {place}`{key}` must be a string")
    return value


def _string_list(raw, key, place):
    value = raw.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise PolicyError(f"ipam: {place}`{key}` must be a list of strings")
    return value


def _canonical(raw, place):
    subnet = raw.get("subnet")
    if subnet is None:
        raise PolicyError(f"{place}: `subnet` is missing")
    try:
        network, prefix = _parse_cidr(subnet)
    except PolicyError as err:
        raise PolicyError(f"{place}: `subnet`: {err}") from None
    first, last = _block(network, prefix)
    if network != first:
        raise PolicyError(f"{place}: `subnet` {subnet} has host bits set; its network is {first}/{prefix}")
    if prefix + 2 > network.max_prefixlen:
        raise PolicyError(f"{place}: `subnet` {subnet} is too small to allocate from")

    def address(key):
        value = raw[key]
        try:
            parsed = _parse_ip(value)
        except PolicyError as err:
            raise PolicyError(f"{place}: `{key}`: {err}") from None
        if parsed.version != network.version or _block(parsed, prefix)[0] != network:
            raise PolicyError(f"{place}: `{key}` {value} is not in subnet {subnet}")
        return parsed

    rng = _Range(
        network=network,
        prefix=prefix,
        start=network + 1,
        end=last if network.version == 6 else last - 1,
        gateway=network + 1,
        exclude=[],
    )
    if raw.get("rangeStart") is not None:
        rng.start = address("rangeStart")
    if raw.get("rangeEnd") is not None:
        rng.end = address("rangeEnd")
    if raw.get("gateway") is not None:
        rng.gateway = address("gateway")
    if rng.start > rng.end:
        raise PolicyError(f"{place}: `rangeStart` {rng.start} is after `rangeEnd` {rng.end}")
    for excluded in raw.get("exclude", []):
        try:
            excluded_address, excluded_prefix = _parse_cidr(excluded)
        except PolicyError as err:
            raise PolicyError(f"{place}: `exclude`: {err}") from None
        if excluded_address.version != network.version:
            raise PolicyError(f"{place}: `exclude` {excluded} is not of the subnet's IP family")
        rng.exclude.append(_block(excluded_address, excluded_prefix))
    return rng


def _raw_range(raw, place):
    if not isinstance(raw, dict):
        raise PolicyError(f"ipam: {place}must be an object")
    for key in ("subnet", "rangeStart", "rangeEnd", "gateway"):
        _optional_string(raw, key, place)
    _string_list(raw, "exclude", place)
    return raw


class Ranges:
    """A parsed `ipam` configuration, ready to allocate from."""

    def __init__(self, sets, routes, dns, hold):
        self._sets = sets
        self.routes = routes
        self.dns = dns
        # How long a released address stays with its pod, in seconds; `None`: not at all.
        self.hold = hold

    @classmethod
    def parse(cls, config, hold=None):
        """Parses the network's `ipam` object (JSON text). `hold` is how long, in seconds, a
        released address stays reserved for the pod that had it (`None`: released at once)."""
        raw = _json_object(config, "ipam")
        ranges = raw.get("ranges") or []
        if not isinstance(ranges, list) or not all(isinstance(raw_set, list) for raw_set in ranges):
            raise PolicyError("ipam: `ranges` must be a list of lists of ranges")
        legacy = _raw_range(raw, "") if raw.get("subnet") is not None else None
        if legacy is not None and ranges:
            raise PolicyError("ipam: give either `ranges` or `subnet`, not both")
        raw_sets = [[legacy]] if legacy is not None else ranges
        if not raw_sets:
            raise PolicyError("ipam: `ranges` is missing or empty: no addresses to allocate from")
        sets = []
        for i, raw_set in enumerate(raw_sets):
            if not raw_set:
                raise PolicyError(f"ipam: ranges[{i}] is empty")
            ranges_of_set = []
            for j, raw_range in enumerate(raw_set):
                place = f"ipam: ranges[{i}][{j}]"
                rng = _canonical(_raw_range(raw_range, f"ranges[{i}][{j}]: "), place)
                if ranges_of_set and ranges_of_set[0].network.version != rng.network.version:
                    raise PolicyError(f"ipam: ranges[{i}] mixes IPv4 and IPv6 ranges")
                ranges_of_set.append(rng)
            earlier = [rng for made in sets for rng in made]
            for j, rng in enumerate(ranges_of_set):
                for other in earlier + ranges_of_set[:j]:
                    if (
                        other.network.version == rng.network.version
                        and other.start <= rng.end
                        and rng.start <= other.end
                    ):
                        raise PolicyError(f"ipam: range {rng.describe()} overlaps range {other.describe()}")
            sets.append(ranges_of_set)
        routes = []
        for route in raw.get("routes") or []:
            if not isinstance(route, dict) or not isinstance(route.get("dst"), str):
                raise PolicyError("ipam: `routes`: each route needs a `dst` string")
            routes.append(Route(dst=route["dst"], gw=_optional_string(route, "gw", "routes: ")))
        raw_dns = raw.get("dns") or {}
        if not isinstance(raw_dns, dict):
            raise PolicyError("ipam: `dns` must be an object")
        dns = Dns(
            nameservers=_string_list(raw_dns, "nameservers", "dns: "),
            domain=_optional_string(raw_dns, "domain", "dns: "),
            search=_string_list(raw_dns, "search", "dns: "),
            options=_string_list(raw_dns, "options", "dns: "),
        )
        return cls(sets, routes, dns, hold)

    def pool_size(self):
        """How many addresses the ranges can give out: every range from its start to its
        end, less its gateway and its exclusions."""
        total = 0
        for rng in (rng for made in self._sets for rng in made):
            blocks = sorted(
                (max(int(low), int(rng.start)), min(int(high), int(rng.end)))
                for low, high in rng.exclude
            )
            excluded, counted_to = 0, None
            for low, high in blocks:
                if counted_to is not None:
                    low = max(low, counted_to + 1)
                if low <= high:
                    excluded += high - low + 1
                    counted_to = high
            size = int(rng.end) - int(rng.start) + 1
            gateway = 1 if rng.contains(rng.gateway) and rng.excluded_until(rng.gateway) is None else 0
            total += max(size - excluded - gateway, 0)
        return total

    def allocate(self, request, store):
        """One address from each range set for the request's attachment, as a CniResult."""
        owner = Owner.of(request)
        requested = self._requested(request)
        taken = self._allocations(store)
        result = CniResult(routes=list(self.routes), dns=dataclasses.replace(self.dns))
        for index, ranges in enumerate(self._sets):
            held = self._held_by(taken, ranges, lambda held: held.is_(owner.container_id, owner.ifname))
            if held is not None:
                address = held[0]
            else:
                address = self._allocate_from(index, ranges, requested[index], owner, request.now, taken, store)
            rng = next((rng for rng in ranges if rng.contains(address)), ranges[0])
            result.ips.append(IpConfig(address=f"{address}/{rng.prefix}", gateway=str(rng.gateway)))
        return result

    def release(self, request, store):
        """Releases the attachment's addresses: deleted, or, with a hold, kept for its pod
        and marked released."""
        owner = Owner.of(request)
        for address, (held, entry) in self._allocations(store).items():
            if held.is_(owner.container_id, owner.ifname):
                self._let_go(address, held, entry, request.now, store)

    def check(self, request, store):
        """Raises unless the attachment holds an address in every range set."""
        taken = self._allocations(store)
        pod = request.pod
        for ranges in self._sets:
            if self._held_by(taken, ranges, lambda held: held.is_(pod.container_id, pod.ifname)) is None:
                raise PolicyError(
                    f"container {pod.container_id} interface {pod.ifname} holds no address "
                    f"in range set {_describe_set(ranges)}"
                )

    def gc(self, request, store):
        """Releases every address whose attachment is not among the valid ones, and deletes
        holds that have expired."""
        valid = [(attachment.container_id, attachment.ifname) for attachment in request.valid_attachments]
        for address, (held, entry) in self._allocations(store).items():
            if held.released_at is not None:
                if self._expired(held, request.now):
                    _delete(store, entry)
            elif not any(held.is_(container_id, ifname) for container_id, ifname in valid):
                self._let_go(address, held, entry, request.now, store)

    def _allocations(self, store):
        """Every `ip/` entry, by address in order: address -> (Owner, Entry)."""
        taken = {}
        for entry in _store_call(store.list, IP_PREFIX):
            key = entry.key
            try:
                address = _parse_ip(key[len(IP_PREFIX):] if key.startswith(IP_PREFIX) else "")
            except PolicyError as err:
                raise PolicyError(f"address store entry {key}: {err}") from None
            try:
                owner = Owner.from_json(entry.value)
            except ValueError as err:
                raise PolicyError(f"address store entry {key} is not an allocation: {err}") from None
            taken[address] = (owner, entry)
        return dict(sorted(taken.items(), key=lambda item: _order(item[0])))

    def _held_by(self, taken, ranges, holder):
        for address, (owner, entry) in taken.items():
            if any(rng.contains(address) for rng in ranges) and holder(owner):
                return address, entry
        return None

    def _expired(self, owner, now):
        if owner.released_at is None:
            return False
        return self.hold is None or now >= owner.released_at + self.hold

    def _requested(self, request):
        """The requested address for each range set (`None`: none asked for)."""
        per_set = [None] * len(self._sets)
        for text in request.requested_ips:
            try:
                address = _parse_ip(text.split("/", 1)[0])
            except PolicyError as err:
                raise PolicyError(f"requested address: {err}") from None
            index = next(
                (i for i, ranges in enumerate(self._sets) if any(rng.contains(address) for rng in ranges)), None
            )
            if index is None:
                raise PolicyError(f"requested address {address} is in none of the configured ranges")
            if per_set[index] is not None:
                raise PolicyError(
                    f"requested addresses {per_set[index]} and {address} are both in range set "
                    f"{_describe_set(self._sets[index])}; one per set"
                )
            per_set[index] = address
        return per_set

    def _allocate_from(self, index, ranges, requested, owner, now, taken, store):
        def claim(address, expected):
            return _store_call(store.compare_and_swap, f"{IP_PREFIX}{address}", expected, owner.to_json())

        if requested is not None:
            address = requested
            if any(rng.gateway == address for rng in ranges):
                raise PolicyError(f"requested address {address} is the gateway of its range")
            expected = None
            if address in taken:
                held, entry = taken[address]
                if (owner.same_pod_interface(held) and held.released_at is not None) or self._expired(held, now):
                    expected = entry.revision
                else:
                    raise PolicyError(
                        f"requested address {address} is already allocated to container "
                        f"{held.container_id} interface {held.ifname}"
                    )
            if claim(address, expected):
                return address
            raise PolicyError(f"requested address {address} was allocated by another attachment meanwhile")
        if self.hold is not None:
            held = self._held_by(
                taken, ranges, lambda held: held.released_at is not None and owner.same_pod_interface(held)
            )
            if held is not None and claim(held[0], held[1].revision):
                return held[0]
        last = _store_call(store.get, f"{LAST_PREFIX}{index}")
        try:
            last_address = _parse_ip(last.value) if last is not None else None
        except PolicyError:
            last_address = None
        for address in _candidates(ranges, last_address):
            expected = None
            if address in taken:
                held, entry = taken[address]
                if not self._expired(held, now):
                    continue
                expected = entry.revision
            if any(not rng.allocatable(address) and rng.contains(address) for rng in ranges):
                continue
            if claim(address, expected):
                taken.pop(address, None)
                _remember_last(store, index, last, address)
                return address
        raise PolicyError(f"no free address left in range set {_describe_set(ranges)}")

    def _let_go(self, address, held, entry, now, store):
        """Deletes an allocation, or marks it released when its pod keeps it for a while."""
        if self.hold is not None and held.has_pod():
            held.released_at = now
            # Lost: the entry changed meanwhile, so it is not this attachment's to release.
            _store_call(store.compare_and_swap, f"{IP_PREFIX}{address}", entry.revision, held.to_json())
            return
        _delete(store, entry)


def _delete(store, entry):
    # `False`: changed meanwhile, so no longer this call's to delete.
    _store_call(store.delete, entry.key, entry.revision)


def _remember_last(store, index, last, address):
    """Records `address` as the last one allocated from set `index`, where the next search
    starts. Only a hint: when another allocator moved it meanwhile, theirs stands."""
    _store_call(
        store.compare_and_swap, f"{LAST_PREFIX}{index}", last.revision if last is not None else None, str(address)
    )


def _describe_set(ranges):
    return ", ".join(rng.describe() for rng in ranges)


def _candidates(ranges, last):
    """The addresses of a range set in `host-local`'s order: from the one after `last` (when
    it is in the set; else from the first range's start) through the end of each range and
    on to the next, wrapping around, until back at the first; gateways skipped."""
    position = next((i for i, rng in enumerate(ranges) if last is not None and rng.contains(last)), None)
    current = last if position is not None else None
    position = position or 0
    first = None
    while True:
        rng = ranges[position]
        if current is None:
            following = rng.start
        elif current >= rng.end:
            position = (position + 1) % len(ranges)
            following = ranges[position].start
        else:
            following = current + 1
        current = following
        if first is None:
            first = following
        elif first == following:
            return
        rng = ranges[position]
        # An excluded block is passed over in one step, not address by address (a /64 may
        # exclude a /65); passing over the first address means all were seen.
        until = rng.excluded_until(following)
        if until is not None:
            until = min(until, rng.end)
            if first.version == following.version and following < first <= until and rng.contains(first):
                return
            current = until
            continue
        if following != rng.gateway:
            yield following
