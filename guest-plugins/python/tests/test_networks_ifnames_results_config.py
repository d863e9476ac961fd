import pytest

from plexus_policy import PolicyError, config
from plexus_policy.ifnames import IfnameAllocator, check_attachments, validate
from plexus_policy.networks import attach_in_order, genie_file_name, lookup
from plexus_policy.results import append, merge_dns
from plexus_policy.types import Attachment, CniResult, Dns, Interface, IpConfig, Network, Pod, Route, SelectRequest


def network(name, plugin_type, file):
    return Network(name=name, plugin_type=plugin_type, cni_version="1.0.0", file=file)


NODE_NETWORKS = [
    network("k8s-pod-network", "calico", "10-calico.conf"),
    network("cbr0", "flannel", "10-flannel.conflist"),
    network("storage", "macvlan", "30-storage.json"),
    network("storage-b", "macvlan", "31-backup.json"),
]


def test_genie_file_names():
    assert [genie_file_name(f) for f in ["10-calico.conf", "10-flannel.conflist", "20-my-net.json", "calico.conf", "00-noext"]] == [
        "calico",
        "flannel",
        "my-net",
        "calico",
        "noext",
    ]


def test_lookup_by_name_then_file_then_plugin_type():
    assert lookup(NODE_NETWORKS, "storage").file == "30-storage.json"
    assert lookup(NODE_NETWORKS, "calico").file == "10-calico.conf"
    assert lookup(NODE_NETWORKS, "backup").file == "31-backup.json"
    assert lookup([network("pods", "bridge", "10-pods.conf"), NODE_NETWORKS[0]], "bridge").file == "10-pods.conf"
    both = [network("other", "bridge", "10-calico.conf"), network("calico", "bridge", "20-real.conf")]
    assert lookup(both, "calico").file == "20-real.conf"


def test_ambiguity_names_the_candidates():
    with pytest.raises(PolicyError, match="ambiguous: configurations 30-storage.json, 31-backup.json all match it by plugin type"):
        lookup(NODE_NETWORKS, "macvlan")


def test_missing_network_lists_what_is_available():
    with pytest.raises(PolicyError) as err:
        lookup(NODE_NETWORKS, "weave")
    assert '"weave" not found' in str(err.value)
    assert "storage-b (31-backup.json, type macvlan)" in str(err.value)
    with pytest.raises(PolicyError, match="no network configurations"):
        lookup([], "weave")


@pytest.mark.parametrize(
    "pod_ifname,expected",
    [("eth0", ["eth0", "eth1", "eth2"]), ("eth1", ["eth1", "eth2", "eth3"]), ("eth2", ["eth2", "eth1", "eth3"]), ("net0", ["net0", "eth1", "eth2"])],
)
def test_attach_in_order_names_by_position_and_never_twice(pod_ifname, expected):
    request = SelectRequest(pod=Pod(ifname=pod_ifname), networks=NODE_NETWORKS)
    chosen = attach_in_order(request, ["calico", "flannel", "storage"])
    assert [attachment.ifname for attachment in chosen] == expected


@pytest.mark.parametrize(
    "name,reason",
    [("", "empty"), ("sixteen-bytes-xx", "longer than 15"), (".", "`.` and `..`"), ("eth/0", "`/` or `:`"), ("eth 0", "whitespace"), ("net\0", "NUL"), ("ééééééééx", "longer than 15")],
)
def test_rejects_bad_interface_names_saying_why(name, reason):
    with pytest.raises(PolicyError, match=reason):
        validate(name)


def test_allocator_claims_and_hands_out_free_names():
    allocator = IfnameAllocator()
    allocator.claim("eth0", "calico")
    allocator.claim("eth1", "flannel")
    assert allocator.next("eth", "weave") == "eth2"
    with pytest.raises(PolicyError, match='interface name "eth2" is used twice: by weave and by macvlan'):
        allocator.claim("eth2", "macvlan")
    with pytest.raises(PolicyError, match="^flannel: invalid interface name"):
        allocator.next("much-too-long-prefix", "flannel")


def test_check_attachments_finds_duplicates():
    check_attachments([Attachment(network_file="10-a.conf", ifname="eth0"), Attachment(network_file="20-b.conf", ifname="eth1")])
    with pytest.raises(PolicyError, match="by 10-a.conf and by 20-b.conf"):
        check_attachments([Attachment(network_file="10-a.conf", ifname="eth0"), Attachment(network_file="20-b.conf", ifname="eth0")])


def test_append_shifts_interface_indexes():
    merged = CniResult(interfaces=[Interface(name="cali0"), Interface(name="eth0")], ips=[IpConfig(address="10.1.0.5/24", interface=1)], routes=[Route(dst="0.0.0.0/0")])
    other = CniResult(
        interfaces=[Interface(name="veth1"), Interface(name="eth1")],
        ips=[IpConfig(address="10.2.0.5/24", interface=1), IpConfig(address="10.3.0.5/24"), IpConfig(address="fd00::5/64", interface=0)],
        routes=[Route(dst="10.2.0.0/16")],
    )
    append(merged, other)
    assert [i.name for i in merged.interfaces] == ["cali0", "eth0", "veth1", "eth1"]
    assert [(ip.address, ip.interface) for ip in merged.ips] == [("10.1.0.5/24", 1), ("10.2.0.5/24", 3), ("10.3.0.5/24", None), ("fd00::5/64", 2)]
    assert [r.dst for r in merged.routes] == ["0.0.0.0/0", "10.2.0.0/16"]


def test_append_rejects_a_dangling_interface_index_and_changes_nothing():
    merged = CniResult(interfaces=[Interface(name="eth0")])
    with pytest.raises(PolicyError, match="10.2.0.5/24 refers to interface #1, but its result has 1 interface"):
        append(merged, CniResult(interfaces=[Interface(name="eth1")], ips=[IpConfig(address="10.2.0.5/24", interface=1)]))
    assert merged == CniResult(interfaces=[Interface(name="eth0")])


def test_dns_merge_drops_duplicates_and_keeps_first_domain():
    dns = Dns(nameservers=["10.96.0.10"], search=["default.svc.cluster.local"], options=["ndots:5"])
    merge_dns(dns, Dns(nameservers=["10.96.0.10", "8.8.8.8"], domain="cluster.local", search=["svc.cluster.local", "default.svc.cluster.local"], options=["ndots:5", "edns0"]))
    merge_dns(dns, Dns(domain="example.com"))
    assert dns == Dns(nameservers=["10.96.0.10", "8.8.8.8"], domain="cluster.local", search=["default.svc.cluster.local", "svc.cluster.local"], options=["ndots:5", "edns0"])


def test_config_parse():
    assert config.parse("") == {} and config.parse(" {} ") == {}
    assert config.parse('{"limit": 3, "other": true}') == {"limit": 3, "other": True}
    for text in ["{", "[]", "7"]:
        with pytest.raises(PolicyError, match="^policyConfig: "):
            config.parse(text)
    with pytest.raises(PolicyError, match="^policyConfig: `vm`: expected a list of strings"):
        config.string_list({"vm": "calico"}, "vm")
