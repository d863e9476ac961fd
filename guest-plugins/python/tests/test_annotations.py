import pytest

from plexus_policy import PolicyError
from plexus_policy.annotations import GENIE, MULTUS, NetworkRequest, get, parse_genie, parse_multus


def test_get_finds_the_annotation_and_treats_blank_as_absent():
    pod_annotations = [("cni", "  "), (MULTUS, "macvlan")]
    assert get(pod_annotations, GENIE) is None
    assert get(pod_annotations, MULTUS) == "macvlan"
    assert get(pod_annotations, "other") is None


def test_genie_list_keeps_order_tolerates_whitespace_and_takes_ifnames():
    assert parse_genie("calico,flannel") == [NetworkRequest("calico"), NetworkRequest("flannel")]
    assert parse_genie(" calico @ eth7 ,\tflannel ") == [
        NetworkRequest("calico", interface="eth7"),
        NetworkRequest("flannel"),
    ]


@pytest.mark.parametrize("value", ["calico,,flannel", "calico,", ",calico"])
def test_genie_empty_entries_are_errors(value):
    with pytest.raises(PolicyError, match="annotation cni: entry #.* is empty"):
        parse_genie(value)


@pytest.mark.parametrize("value", ["calico@", "@eth1", "calico@eth1@eth2"])
def test_genie_rejects_malformed_ifname(value):
    with pytest.raises(PolicyError, match="name@interface"):
        parse_genie(value)


def test_messages_quote_as_the_rust_sdk_does():
    with pytest.raises(PolicyError) as err:
        parse_genie('a,\t"b"@')
    assert str(err.value) == 'annotation cni: entry "\\"b\\"@" is not of the form name@interface'


def test_multus_short_form_with_namespace_and_interface():
    assert parse_multus("kube-system/macvlan@data0, sriov ,ns2/ipvlan") == [
        NetworkRequest("macvlan", namespace="kube-system", interface="data0"),
        NetworkRequest("sriov"),
        NetworkRequest("ipvlan", namespace="ns2"),
    ]


@pytest.mark.parametrize("value", ["a,,b", "/macvlan", "ns/", "a/b/c", "macvlan@"])
def test_multus_short_form_errors_name_the_annotation(value):
    with pytest.raises(PolicyError, match="^annotation k8s.v1.cni.cncf.io/networks:"):
        parse_multus(value)


def test_multus_json_form_carries_every_field():
    value = """[
        {"name": "macvlan", "namespace": "kube-system", "interface": "data0",
         "ips": ["10.1.1.5/24", "fd00::5/64"], "mac": "02:42:ac:11:00:02",
         "default-route": ["10.1.1.1"], "cni-args": {"vlan": 7, "a": [1]},
         "infiniband-guid": "ignored"},
        {"name": "sriov"}
    ]"""
    assert parse_multus(value) == [
        NetworkRequest(
            name="macvlan",
            namespace="kube-system",
            interface="data0",
            ips=["10.1.1.5/24", "fd00::5/64"],
            mac="02:42:ac:11:00:02",
            default_route=["10.1.1.1"],
            cni_args='{"a":[1],"vlan":7}',
        ),
        NetworkRequest("sriov"),
    ]


@pytest.mark.parametrize(
    "value,expected",
    [
        ('{"name": "a"}', "not a JSON list"),
        ('[{"interface": "x"}]', "missing field `name`"),
        ("[]", "names no network"),
        ('[{"name": " "}]', "`name` is empty"),
        ('[{"name": "a", "ips": ["10.1.1.5"]}]', "CIDR"),
        ('[{"name": "a", "ips": ["10.1.1.5/33"]}]', "CIDR"),
        ('[{"name": "a", "mac": "02:42:ac:11:00"}]', "not a MAC"),
        ('[{"name": "a", "default-route": ["gw"]}]', "not an IP"),
        ('[{"name": "a", "cni-args": "x=1"}]', "must be a JSON object"),
        ('[{"name": "a"}', "not a JSON list"),
        ('[{"name": 5}]', "not a JSON list"),
        ('[{"name": "a", "ips": null}]', "not a JSON list"),
    ],
)
def test_multus_json_errors_say_what_is_wrong(value, expected):
    with pytest.raises(PolicyError) as err:
        parse_multus(value)
    assert str(err.value).startswith("annotation k8s.v1.cni.cncf.io/networks:")
    assert expected in str(err.value)


@pytest.mark.parametrize("cidr", ["10.0.0.1/+8", "fd00::1/+64", "10.0.0.1/-0", "10.0.0.1/ 8", "10.0.0.1/"])
def test_multus_json_ips_prefix_is_digits_only(cidr):
    with pytest.raises(PolicyError, match="CIDR"):
        parse_multus(f'[{{"name": "a", "ips": ["{cidr}"]}}]')


def test_multus_json_leading_zero_prefix_and_full_v6_are_fine():
    assert parse_multus('[{"name": "a", "ips": ["10.0.0.1/08", "fd00::1/128"]}]')[0].ips == ["10.0.0.1/08", "fd00::1/128"]


def test_multus_json_error_names_the_network():
    with pytest.raises(PolicyError, match='network #2 \\("macvlan"\\)'):
        parse_multus('[{"name": "ok"}, {"name": "macvlan", "mac": "zz"}]')
