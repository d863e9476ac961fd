import pytest

from plexus_policy import PolicyError
from plexus_policy.ipam import Ranges, config_key
from plexus_policy.store import MemoryStore
from plexus_policy.types import AttachmentId, GcRequest, IpamRequest, Pod

SMALL = '{"ranges": [[{"subnet": "10.1.0.0/29"}]]}'


def request(container_id, now=0):
    pod = Pod(container_id=container_id, ifname="eth0", namespace="default", name=f"pod-{container_id}")
    return IpamRequest(pod=pod, network="net", now=now)


def addresses(result):
    return [ip.address for ip in result.ips]


def test_memory_store_compare_and_swap():
    store = MemoryStore()
    assert store.compare_and_swap("ip/10.1.0.2", None, "pod-a")
    assert not store.compare_and_swap("ip/10.1.0.2", None, "pod-b")
    entry = store.get("ip/10.1.0.2")
    assert not store.delete("ip/10.1.0.2", entry.revision + 1)
    assert store.delete("ip/10.1.0.2", entry.revision)
    assert store.contents() == {}


def test_config_key():
    config = '{"type": "plexus-ipam", "gracePeriodSeconds": 60}'
    assert config_key(config, "gracePeriodSeconds") == 60
    assert config_key(config, "other") is None
    with pytest.raises(PolicyError, match="^ipam: not a JSON object"):
        config_key("[1]", "x")


def test_the_pool_is_what_can_be_allocated():
    assert Ranges.parse(SMALL).pool_size() == 5
    ranges = Ranges.parse(
        """{"ranges": [
            [{"subnet": "10.2.0.0/24", "rangeStart": "10.2.0.10", "rangeEnd": "10.2.0.19",
              "gateway": "10.2.0.1", "exclude": ["10.2.0.12/31", "10.2.0.13/32"]}],
            [{"subnet": "fd00::/120"}]]}"""
    )
    assert ranges.pool_size() == 8 + 254


def test_next_free_wraps_around_and_skips_the_gateway():
    ranges, store = Ranges.parse(SMALL), MemoryStore()
    got = [ranges.allocate(request(id), store).ips[0].address for id in "abcde"]
    assert got == ["10.1.0.2/29", "10.1.0.3/29", "10.1.0.4/29", "10.1.0.5/29", "10.1.0.6/29"]
    with pytest.raises(PolicyError, match="no free address left in range set 10.1.0.1-10.1.0.6"):
        ranges.allocate(request("f"), store)
    ranges.release(request("b"), store)
    assert addresses(ranges.allocate(request("g"), store)) == ["10.1.0.3/29"]


def test_allocation_resumes_after_the_last_one():
    ranges, store = Ranges.parse(SMALL), MemoryStore()
    ranges.allocate(request("a"), store)
    ranges.allocate(request("b"), store)
    ranges.release(request("a"), store)
    assert addresses(ranges.allocate(request("c"), store)) == ["10.1.0.4/29"]


def test_add_is_idempotent_and_check_and_release_follow_the_attachment():
    ranges, store = Ranges.parse(SMALL), MemoryStore()
    first = ranges.allocate(request("a"), store)
    assert ranges.allocate(request("a"), store) == first
    ranges.check(request("a"), store)
    ranges.release(request("a"), store)
    ranges.release(request("a"), store)
    with pytest.raises(PolicyError, match="holds no address"):
        ranges.check(request("a"), store)
    assert list(store.contents()) == ["last/0"]


def test_the_store_layout_is_the_rust_sdks():
    ranges, store = Ranges.parse(SMALL), MemoryStore()
    ranges.allocate(request("a"), store)
    assert store.contents() == {
        "ip/10.1.0.2": '{"container-id":"a","ifname":"eth0","namespace":"default","pod":"pod-a"}',
        "last/0": "10.1.0.2",
    }


def test_requested_addresses_and_their_errors():
    ranges, store = Ranges.parse(SMALL), MemoryStore()
    wants = request("a")
    wants.requested_ips = ["10.1.0.5/29"]
    assert addresses(ranges.allocate(wants, store)) == ["10.1.0.5/29"]
    again = request("b")
    for requested, error in [
        ("10.1.0.5", "10.1.0.5 is already allocated to container a"),
        ("10.9.0.5", "in none of the configured ranges"),
        ("10.1.0.1", "gateway"),
        ("x", 'requested address: "x" is not an IP address'),
    ]:
        again.requested_ips = [requested]
        with pytest.raises(PolicyError, match=error):
            ranges.allocate(again, store)


def test_dual_stack_takes_one_address_per_set_with_routes_and_dns():
    config = """{
        "ranges": [[{"subnet": "10.1.0.0/24", "rangeStart": "10.1.0.10", "gateway": "10.1.0.254"}],
                   [{"subnet": "fd00::/64"}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dns": {"nameservers": ["10.1.0.53"]}
    }"""
    result = Ranges.parse(config).allocate(request("a"), MemoryStore())
    assert addresses(result) == ["10.1.0.10/24", "fd00::2/64"]
    assert [ip.gateway for ip in result.ips] == ["10.1.0.254", "fd00::1"]
    assert result.routes[0].dst == "0.0.0.0/0"
    assert result.dns.nameservers == ["10.1.0.53"]


def test_exclusions_and_several_ranges_in_a_set():
    ranges = Ranges.parse('{"ranges": [[{"subnet": "10.1.0.0/29", "exclude": ["10.1.0.2/31"]}, {"subnet": "10.2.0.0/30"}]]}')
    store = MemoryStore()
    got = [ranges.allocate(request(id), store).ips[0].address for id in "abcd"]
    assert got == ["10.1.0.4/29", "10.1.0.5/29", "10.1.0.6/29", "10.2.0.2/30"]


@pytest.mark.parametrize(
    "config,expected",
    [
        ("{}", "`ranges` is missing"),
        ('{"ranges": [[{"subnet": "10.1.0.5/24"}]]}', "host bits set; its network is 10.1.0.0/24"),
        ('{"ranges": [[{"subnet": "10.1.0.0/31"}]]}', "too small"),
        ('{"ranges": [[{"subnet": "10.1.0.0/24", "rangeStart": "10.2.0.1"}]]}', "`rangeStart` 10.2.0.1 is not in subnet"),
        ('{"ranges": [[{"subnet": "10.1.0.0/24"}], [{"subnet": "10.1.0.0/25"}]]}', "overlaps"),
        ('{"ranges": [[{"subnet": "10.1.0.0/24"}, {"subnet": "fd00::/64"}]]}', "mixes IPv4 and IPv6"),
        ('{"ranges": [[{"rangeStart": "10.1.0.1"}]]}', "ranges\\[0\\]\\[0\\]: `subnet` is missing"),
        ('{"ranges": [[{"subnet": "10.0.0.0/+8"}]]}', "invalid prefix length"),
        ('{"subnet": "10.1.0.0/24", "ranges": [[{"subnet": "10.2.0.0/24"}]]}', "not both"),
    ],
)
def test_bad_configurations_name_the_key(config, expected):
    with pytest.raises(PolicyError, match=expected):
        Ranges.parse(config)


def test_a_huge_exclusion_is_passed_over_at_once():
    half = '{"ranges": [[{"subnet": "fd00::/64", "exclude": ["fd00::/65"]}]]}'
    assert addresses(Ranges.parse(half).allocate(request("a"), MemoryStore())) == ["fd00::8000:0:0:0/64"]
    everything = '{"ranges": [[{"subnet": "2001:db8::/64", "exclude": ["2001:db8::/64"]}]]}'
    with pytest.raises(PolicyError, match="no free address"):
        Ranges.parse(everything).allocate(request("a"), MemoryStore())


def test_legacy_single_range_keys_work():
    ranges = Ranges.parse('{"type": "plexus-ipam", "subnet": "10.3.0.0/24", "rangeStart": "10.3.0.100"}')
    assert addresses(ranges.allocate(request("a"), MemoryStore())) == ["10.3.0.100/24"]


def test_a_hold_gives_the_pod_its_address_back_until_it_expires():
    ranges, store = Ranges.parse(SMALL, hold=60), MemoryStore()
    first = request("a", now=1000)
    assert addresses(ranges.allocate(first, store)) == ["10.1.0.2/29"]
    ranges.release(first, store)
    assert addresses(ranges.allocate(request("x", now=1001), store)) == ["10.1.0.3/29"]
    recreated = request("b", now=1030)
    recreated.pod.name = first.pod.name
    assert addresses(ranges.allocate(recreated, store)) == ["10.1.0.2/29"]
    ranges.release(recreated, store)
    ranges.gc(GcRequest(now=1030 + 60), store)
    assert "ip/10.1.0.2" not in store.contents()


def test_gc_releases_what_no_valid_attachment_holds():
    ranges, store = Ranges.parse(SMALL), MemoryStore()
    ranges.allocate(request("a"), store)
    ranges.allocate(request("b"), store)
    ranges.gc(GcRequest(valid_attachments=[AttachmentId(container_id="b", ifname="eth0")]), store)
    ranges.check(request("b"), store)
    with pytest.raises(PolicyError):
        ranges.check(request("a"), store)
