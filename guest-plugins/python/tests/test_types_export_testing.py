import json

import pytest

from plexus_policy import PolicyError, export, testing
from plexus_policy.types import Attachment, CniResult, SelectRequest, from_json, to_json


def test_records_have_defaults_and_read_and_print_the_cli_json():
    request = from_json(SelectRequest, {"pod": {"ifname": "eth0"}, "annotations": [["a", "b"]], "vm": True})
    assert request.pod.ifname == "eth0" and request.annotations == [("a", "b")] and request.vm
    assert request.networks == [] and request.policy_config == ""
    assert to_json(Attachment(network_file="10-a.conf")) == {
        "network-file": "10-a.conf",
        "ifname": "",
        "ips": [],
        "mac": None,
        "cni-args": None,
        "default-route": [],
    }
    assert to_json(CniResult())["dns"] == {"nameservers": [], "domain": None, "search": [], "options": []}


def test_from_json_refuses_what_the_host_refuses():
    with pytest.raises(ValueError, match="unknown field `container_id`"):
        from_json(SelectRequest, {"pod": {"container_id": "abc"}})
    with pytest.raises(ValueError, match="expected a bool"):
        from_json(SelectRequest, {"vm": 1})


def failing(request):
    if request.vm:
        raise PolicyError("no VMs here")
    print("looking at", request.pod.name)
    return request.pod.missing


def test_export_turns_every_failure_into_the_calls_error():
    world = export.selector(failing, name="failing", version="1.2.3")()
    assert world.metadata().name == "failing" and world.metadata().min_host_version == "0.1.0"
    with pytest.raises(export.Err) as err:
        world.select_networks(SelectRequest(vm=True))
    assert err.value.value == "no VMs here"
    with pytest.raises(export.Err) as err:
        world.select_networks(SelectRequest())
    assert err.value.value == "AttributeError: 'Pod' object has no attribute 'missing'"


def test_export_needs_a_name_and_version():
    with pytest.raises(ValueError, match="name and version"):
        export.merger(lambda request: CniResult(), name="", version="0.1.0")


def test_cases_are_read_as_strictly_as_the_cli_reads_them(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"cases": [{"input": {}, "output": [], "expect": 1}]}))
    with pytest.raises(ValueError, match="unknown key 'expect'"):
        testing.load_cases(tmp_path)
    (tmp_path / "a.json").write_text(json.dumps({"input": {}, "output": [], "error": "x"}))
    with pytest.raises(ValueError, match="exactly one of `output` and `error`"):
        testing.load_cases(tmp_path)


def test_exact_and_subset_matching():
    assert testing.is_same({"a": [1, {"b": None}]}, {"a": [1, {}]})
    assert not testing.is_same({"a": 1}, {"a": 1, "b": 2})
    assert testing.is_subset({"a": 1}, {"a": 1, "b": 2})
    assert not testing.is_subset([{"a": 1}], [{"a": 1}, {"a": 2}])
    assert not testing.is_same(True, 1)
