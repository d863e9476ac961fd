use std::path::PathBuf;

use serde_json::json;

use super::*;
use crate::error::{CniError, code};
use crate::result::{Interface, IpConfig, Route};
use crate::testutil::{FakePlugins, REAL_PLUGINS};

fn list(version: &str, extra: Value, plugins: Value) -> NetworkConfigList {
    let mut conf = json!({"cniVersion": version, "name": "dbnet", "plugins": plugins});
    if let (Some(conf), Some(extra)) = (conf.as_object_mut(), extra.as_object()) {
        conf.extend(extra.clone());
    }
    NetworkConfigList::from_slice(conf.to_string().as_bytes(), "test.conflist").unwrap()
}

fn rt() -> RuntimeConf {
    RuntimeConf {
        container_id: "c1".into(),
        netns: Some("/run/netns/blue".into()),
        ifname: "eth0".into(),
        args: vec![("K8S_POD_NAME".into(), "web".into())],
        capability_args: json!({
            "mac": "00:11:22:33:44:66",
            "portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}],
            "ips": ["10.1.0.9/16"]
        })
        .as_object()
        .unwrap()
        .clone(),
        cni_args: None,
    }
}

fn bridge_result() -> CniResult {
    CniResult {
        interfaces: vec![Interface {
            name: "eth0".into(),
            mac: Some("99:88:77:66:55:44".into()),
            sandbox: Some("/run/netns/blue".into()),
            mtu: Some(1500),
            ..Default::default()
        }],
        ips: vec![IpConfig {
            address: "10.1.0.5/16".into(),
            gateway: Some("10.1.0.1".into()),
            interface: Some(0),
        }],
        routes: vec![Route {
            dst: "0.0.0.0/0".into(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// A fake plugin printing `result` in `version`.
fn printing(fakes: &FakePlugins, name: &str, result: &CniResult, version: CniVersion) {
    fakes.plugin(name, &format!("echo '{}'", result.to_json(version)));
}

// ---- plugin_config ----

#[test]
fn config_follows_the_spec_example() {
    let l = list(
        "1.1.0",
        json!({}),
        json!([
            {"type": "bridge", "bridge": "cni0", "name": "ignored", "cniVersion": "0.1.0"},
            {"type": "tuning", "capabilities": {"mac": true}, "sysctl": {"net.core.somaxconn": "500"}},
            {"type": "portmap", "capabilities": {"portMappings": true, "mac": false}}
        ]),
    );
    let rt = rt();
    assert_eq!(
        plugin_config(&l, 0, &rt, None).unwrap(),
        json!({"cniVersion": "1.1.0", "name": "dbnet", "type": "bridge", "bridge": "cni0"})
    );
    let prev = bridge_result();
    assert_eq!(
        plugin_config(&l, 1, &rt, Some(&prev)).unwrap(),
        json!({
            "cniVersion": "1.1.0", "name": "dbnet", "type": "tuning",
            "capabilities": {"mac": true},
            "sysctl": {"net.core.somaxconn": "500"},
            "runtimeConfig": {"mac": "00:11:22:33:44:66"},
            "prevResult": prev.to_json(CniVersion::V1_1_0),
        })
    );
    let portmap = plugin_config(&l, 2, &rt, Some(&prev)).unwrap();
    assert_eq!(
        portmap["runtimeConfig"],
        json!({"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]})
    );
    assert_eq!(plugin_config(&l, 3, &rt, None), None);
}

#[test]
fn runtime_config_only_for_declared_and_given_capabilities() {
    let l = list(
        "1.0.0",
        json!({}),
        json!([
            {"type": "a", "capabilities": {"bandwidth": true}, "runtimeConfig": {"kept": 1}},
            {"type": "b", "capabilities": {"ips": true}, "runtimeConfig": {"replaced": 1}},
            {"type": "c", "capabilities": {"ips": "yes"}},
            {"type": "d", "capabilities": ["ips"]}
        ]),
    );
    let rt = rt();
    // Nothing to inject: what was written stays.
    assert_eq!(
        plugin_config(&l, 0, &rt, None).unwrap()["runtimeConfig"],
        json!({"kept": 1})
    );
    assert_eq!(
        plugin_config(&l, 1, &rt, None).unwrap()["runtimeConfig"],
        json!({"ips": ["10.1.0.9/16"]})
    );
    for i in [2, 3] {
        assert!(
            plugin_config(&l, i, &rt, None)
                .unwrap()
                .get("runtimeConfig")
                .is_none()
        );
    }
}

#[test]
fn prev_result_is_printed_in_the_list_version() {
    let prev = bridge_result();
    for version in CniVersion::ALL {
        let l = list(version.as_str(), json!({}), json!([{"type": "x"}]));
        let conf = plugin_config(&l, 0, &rt(), Some(&prev)).unwrap();
        assert_eq!(conf["prevResult"], prev.to_json(version));
        assert_eq!(conf["cniVersion"], version.as_str());
    }
}

#[test]
fn cni_args_merge_into_args_cni() {
    let l = list(
        "1.0.0",
        json!({}),
        json!([
            {"type": "a"},
            {"type": "b", "args": {"cni": {"keep": 1, "over": "old"}, "other": true}},
            {"type": "c", "args": "junk"},
            {"type": "d", "args": {"cni": 5}}
        ]),
    );
    let mut rt = rt();
    rt.cni_args = Some(
        json!({"over": "new", "labels": {"a": "b"}})
            .as_object()
            .unwrap()
            .clone(),
    );
    let args = |i| plugin_config(&l, i, &rt, None).unwrap()["args"].clone();
    assert_eq!(
        args(0),
        json!({"cni": {"over": "new", "labels": {"a": "b"}}})
    );
    assert_eq!(
        args(1),
        json!({"cni": {"keep": 1, "over": "new", "labels": {"a": "b"}}, "other": true})
    );
    assert_eq!(
        args(2),
        json!({"cni": {"over": "new", "labels": {"a": "b"}}})
    );
    assert_eq!(
        args(3),
        json!({"cni": {"over": "new", "labels": {"a": "b"}}})
    );

    rt.cni_args = None;
    assert_eq!(
        plugin_config(&l, 1, &rt, None).unwrap()["args"],
        json!({"cni": {"keep": 1, "over": "old"}, "other": true})
    );
}

#[test]
fn runtime_conf_serde_round_trips() {
    let mut rt = rt();
    rt.cni_args = Some(Map::new());
    let v = serde_json::to_value(&rt).unwrap();
    assert_eq!(v["containerId"], "c1");
    assert_eq!(v["args"], json!([["K8S_POD_NAME", "web"]]));
    assert_eq!(serde_json::from_value::<RuntimeConf>(v).unwrap(), rt);
}

// ---- ADD ----

#[test]
fn add_chains_prev_results() {
    let fakes = FakePlugins::new();
    let first = bridge_result();
    let mut second = first.clone();
    second.interfaces[0].mac = Some("00:11:22:33:44:66".into());
    // The first answers in an older version than the list's: it must still
    // reach the second in the list's version.
    printing(&fakes, "first", &first, CniVersion::V1_0_0);
    printing(&fakes, "second", &second, CniVersion::V1_1_0);
    let l = list(
        "1.1.0",
        json!({}),
        json!([{"type": "first"}, {"type": "second", "capabilities": {"mac": true}}]),
    );
    let result = add_list(&l, &rt(), Runner::new(&fakes.path())).unwrap();
    assert_eq!(result, second);

    assert!(fakes.stdin("first", "ADD").get("prevResult").is_none());
    let mut first_as_10 = first.clone();
    first_as_10.interfaces[0].mtu = None; // 1.0.0 has no interface mtu
    let conf = fakes.stdin("second", "ADD");
    assert_eq!(conf["prevResult"], first_as_10.to_json(CniVersion::V1_1_0));
    assert_eq!(conf["runtimeConfig"], json!({"mac": "00:11:22:33:44:66"}));
    assert_eq!(fakes.order(), ["first", "second"]);

    let env = fakes.saved("second", "ADD", "env").unwrap();
    assert_eq!(
        env,
        format!(
            "CNI_ARGS=K8S_POD_NAME=web\nCNI_COMMAND=ADD\nCNI_CONTAINERID=c1\nCNI_IFNAME=eth0\n\
             CNI_NETNS=/run/netns/blue\nCNI_PATH={}:{REAL_PLUGINS}\n",
            fakes.bin().display()
        )
    );
}

#[test]
fn add_stops_at_the_first_failure() {
    let fakes = FakePlugins::new();
    fakes.plugin("busy", r#"echo '{"code": 11, "msg": "try later"}'; exit 1"#);
    printing(&fakes, "after", &bridge_result(), CniVersion::V1_0_0);
    let l = list(
        "1.0.0",
        json!({}),
        json!([{"type": "busy"}, {"type": "after"}]),
    );
    let err = add_list(&l, &rt(), Runner::new(&fakes.path())).unwrap_err();
    assert_eq!(err.plugin, "busy");
    assert_eq!(err.code(), Some(code::TRY_AGAIN_LATER));
    assert_eq!(fakes.order(), ["busy"]);
}

#[test]
fn add_fills_a_missing_result_version() {
    let fakes = FakePlugins::new();
    fakes.plugin(
        "old",
        r#"echo '{"ips": [{"version": "4", "address": "10.0.0.2/24"}]}'"#,
    );
    let l = list("0.4.0", json!({}), json!([{"type": "old"}]));
    let result = add_list(&l, &rt(), Runner::new(&fakes.path())).unwrap();
    assert_eq!(result.ips[0].address, "10.0.0.2/24");
}

#[test]
fn add_rejects_bad_output() {
    let fakes = FakePlugins::new();
    fakes.plugin("text", "echo done");
    fakes.plugin(
        "badip",
        r#"echo '{"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.2"}]}'"#,
    );
    fakes.plugin(
        "v02",
        r#"echo '{"cniVersion": "0.2.0", "ip4": {"ip": "10.0.0.2/24"}}'"#,
    );
    let cases = [
        (
            "text",
            "plugin \"text\": bad output: ADD output is not JSON: ",
        ),
        (
            "badip",
            "plugin \"badip\": bad output: invalid CNI result: ips[0].address: \"10.0.0.2\" is not in CIDR",
        ),
        (
            "v02",
            "plugin \"v02\": bad output: invalid CNI result: cniVersion: unsupported CNI version \"0.2.0\"",
        ),
    ];
    for (ty, expected) in cases {
        let l = list("1.0.0", json!({}), json!([{"type": ty}]));
        let err = add_list(&l, &rt(), Runner::new(&fakes.path())).unwrap_err();
        assert!(err.to_string().starts_with(expected), "{err}");
        assert_eq!(CniError::from(&err).code, code::DECODE);
    }
}

#[test]
fn add_reports_missing_plugins() {
    let fakes = FakePlugins::new();
    let l = list("1.0.0", json!({}), json!([{"type": "nonexistent"}]));
    let err = add_list(&l, &rt(), Runner::new(&fakes.path())).unwrap_err();
    assert!(
        matches!(err.kind, DelegateErrorKind::NotFound { .. }),
        "{err}"
    );
}

// ---- DEL / CHECK ----

#[test]
fn del_runs_in_reverse_with_prev_result_from_0_4_0() {
    for (version, has_prev) in [("0.3.1", false), ("0.4.0", true), ("1.1.0", true)] {
        let fakes = FakePlugins::new();
        fakes.plugin("a", "exit 0");
        fakes.plugin("b", "exit 0");
        let l = list(version, json!({}), json!([{"type": "a"}, {"type": "b"}]));
        let mut rt = rt();
        rt.netns = None;
        let prev = bridge_result();
        del_list(&l, &rt, Runner::new(&fakes.path()), Some(&prev)).unwrap();
        assert_eq!(fakes.order(), ["b", "a"], "{version}");
        let conf = fakes.stdin("a", "DEL");
        assert_eq!(conf.get("prevResult").is_some(), has_prev, "{version}");
        if has_prev {
            assert_eq!(conf["prevResult"]["cniVersion"], version);
        }
        let env = fakes.saved("a", "DEL", "env").unwrap();
        assert!(env.contains("CNI_COMMAND=DEL\n"));
        assert!(!env.contains("CNI_NETNS"), "{env}");
    }
}

#[test]
fn del_runs_every_plugin_past_a_failure_and_reports_it() {
    let fakes = FakePlugins::new();
    fakes.plugin("a", "exit 0");
    fakes.plugin("b", r#"echo '{"code": 7, "msg": "bad"}'; exit 1"#);
    let l = list("1.0.0", json!({}), json!([{"type": "a"}, {"type": "b"}]));
    let err = del_list(&l, &rt(), Runner::new(&fakes.path()), None).unwrap_err();
    assert_eq!(err.plugin, "b");
    assert_eq!(fakes.order(), ["b", "a"]);
}

#[test]
fn check_runs_in_order_with_prev_result() {
    let fakes = FakePlugins::new();
    fakes.plugin("a", "exit 0");
    fakes.plugin("b", "exit 0");
    let l = list("1.0.0", json!({}), json!([{"type": "a"}, {"type": "b"}]));
    let prev = bridge_result();
    check_list(&l, &rt(), Runner::new(&fakes.path()), &prev).unwrap();
    assert_eq!(fakes.order(), ["a", "b"]);
    assert_eq!(
        fakes.stdin("b", "CHECK")["prevResult"],
        prev.to_json(CniVersion::V1_0_0)
    );
}

#[test]
fn check_is_skipped_before_0_4_0_and_when_disabled() {
    let fakes = FakePlugins::new();
    fakes.plugin("a", "exit 1");
    for l in [
        list("0.3.1", json!({}), json!([{"type": "a"}])),
        list(
            "1.0.0",
            json!({"disableCheck": true}),
            json!([{"type": "a"}]),
        ),
    ] {
        check_list(&l, &rt(), Runner::new(&fakes.path()), &bridge_result()).unwrap();
    }
    assert!(fakes.order().is_empty());
}

// ---- GC / STATUS ----

#[test]
fn gc_sends_valid_attachments_and_collects_all_errors() {
    let fakes = FakePlugins::new();
    fakes.plugin("a", r#"echo '{"code": 5, "msg": "io"}'; exit 1"#);
    fakes.plugin("b", "exit 1");
    fakes.plugin("c", "exit 0");
    let l = list(
        "1.1.0",
        json!({}),
        json!([{"type": "a"}, {"type": "b"}, {"type": "c"}]),
    );
    let valid = [
        ("c1".to_owned(), "eth0".to_owned()),
        ("c2".to_owned(), "net1".to_owned()),
    ];
    let errors = gc_list(&l, Runner::new(&fakes.path()), &valid).unwrap_err();
    let plugins: Vec<&str> = errors.iter().map(|e| e.plugin.as_str()).collect();
    assert_eq!(plugins, ["a", "b"]);
    assert_eq!(errors[0].code(), Some(code::IO_FAILURE));
    assert_eq!(fakes.order(), ["a", "b", "c"]);

    let expected =
        json!([{"containerID": "c1", "ifname": "eth0"}, {"containerID": "c2", "ifname": "net1"}]);
    let conf = fakes.stdin("c", "GC");
    assert_eq!(
        conf,
        json!({
            "cniVersion": "1.1.0", "name": "dbnet", "type": "c",
            "cni.dev/valid-attachments": expected,
            "cni.dev/attachments": expected,
        })
    );
    assert_eq!(
        crate::config::parse_valid_attachments(&conf).unwrap(),
        valid.to_vec()
    );
    assert_eq!(
        fakes.saved("c", "GC", "env").unwrap(),
        format!(
            "CNI_COMMAND=GC\nCNI_PATH={}:{REAL_PLUGINS}\n",
            fakes.bin().display()
        )
    );
}

#[test]
fn gc_is_skipped_before_1_1_0_and_when_disabled() {
    let fakes = FakePlugins::new();
    fakes.plugin("a", "exit 1");
    for l in [
        list("1.0.0", json!({}), json!([{"type": "a"}])),
        list("1.1.0", json!({"disableGC": true}), json!([{"type": "a"}])),
    ] {
        gc_list(&l, Runner::new(&fakes.path()), &[]).unwrap();
    }
    assert!(fakes.order().is_empty());
}

#[test]
fn status_stops_at_the_first_unavailable_plugin() {
    let fakes = FakePlugins::new();
    fakes.plugin("a", "exit 0");
    fakes.plugin("b", r#"echo '{"code": 50, "msg": "daemon down"}'; exit 1"#);
    fakes.plugin("c", "exit 0");
    let l = list(
        "1.1.0",
        json!({}),
        json!([{"type": "a"}, {"type": "b"}, {"type": "c"}]),
    );
    let err = status_list(&l, Runner::new(&fakes.path())).unwrap_err();
    assert_eq!(err.code(), Some(code::NOT_AVAILABLE));
    assert_eq!(err.to_string(), "plugin \"b\": daemon down (code 50)");
    assert_eq!(fakes.order(), ["a", "b"]);
    assert_eq!(
        fakes.stdin("a", "STATUS"),
        json!({"cniVersion": "1.1.0", "name": "dbnet", "type": "a"})
    );

    let old = list("1.0.0", json!({}), json!([{"type": "b"}]));
    status_list(&old, Runner::new(&fakes.path())).unwrap();
    assert_eq!(fakes.order(), ["a", "b"]);
}

// ---- VERSION ----

#[test]
fn versions_of_real_plugins() {
    let path = [PathBuf::from(REAL_PLUGINS)];
    for plugin in ["bridge", "host-local", "macvlan", "portmap"] {
        let versions = plugin_versions(plugin, Runner::new(&path)).unwrap();
        for v in ["0.3.1", "0.4.0", "1.0.0"] {
            assert!(versions.iter().any(|s| s == v), "{plugin}: {versions:?}");
        }
    }
}

#[test]
fn version_request_and_bad_answers() {
    let fakes = FakePlugins::new();
    fakes.plugin(
        "v",
        r#"echo '{"cniVersion": "1.1.0", "supportedVersions": ["1.0.0", "1.1.0"]}'"#,
    );
    fakes.plugin("noversions", r#"echo '{"cniVersion": "1.1.0"}'"#);
    fakes.plugin("garbage", "echo nope");
    assert_eq!(
        plugin_versions("v", Runner::new(&fakes.path())).unwrap(),
        ["1.0.0", "1.1.0"]
    );
    assert_eq!(fakes.stdin("v", "VERSION"), json!({"cniVersion": "1.1.0"}));
    assert_eq!(
        fakes.saved("v", "VERSION", "env").unwrap(),
        format!(
            "CNI_COMMAND=VERSION\nCNI_PATH={}:{REAL_PLUGINS}\n",
            fakes.bin().display()
        )
    );
    let err = plugin_versions("noversions", Runner::new(&fakes.path())).unwrap_err();
    assert_eq!(
        err.to_string(),
        "plugin \"noversions\": bad output: VERSION output has no supportedVersions list of strings"
    );
    let err = plugin_versions("garbage", Runner::new(&fakes.path())).unwrap_err();
    assert!(
        err.to_string().contains("VERSION output is not JSON"),
        "{err}"
    );
    let err = plugin_versions("absent", Runner::new(&fakes.path())).unwrap_err();
    assert!(matches!(err.kind, DelegateErrorKind::NotFound { .. }));
}

// ---- the real host-local plugin: ADD, CHECK, DEL without a netns ----

fn host_local_list(version: &str, data_dir: &std::path::Path) -> NetworkConfigList {
    list(
        version,
        json!({}),
        json!([{
            "type": "host-local",
            "ipam": {
                "type": "host-local",
                "dataDir": data_dir,
                "ranges": [[{"subnet": "10.9.0.0/29", "rangeStart": "10.9.0.2",
                             "rangeEnd": "10.9.0.2", "gateway": "10.9.0.1"}]],
                "routes": [{"dst": "0.0.0.0/0"}]
            }
        }]),
    )
}

#[test]
fn real_host_local_add_check_del() {
    for version in ["0.3.1", "0.4.0", "1.0.0"] {
        let data = tempfile::tempdir().unwrap();
        let l = host_local_list(version, data.path());
        let path = [PathBuf::from(REAL_PLUGINS)];
        let reserved = data.path().join("dbnet").join("10.9.0.2");

        // Like kubelet: IgnoreUnknown lets plugins accept the K8S_* args.
        let mut rt = rt();
        rt.args.insert(0, ("IgnoreUnknown".into(), "1".into()));
        let result = add_list(&l, &rt, Runner::new(&path)).unwrap();
        assert_eq!(
            result.ips,
            vec![IpConfig {
                address: "10.9.0.2/29".into(),
                gateway: Some("10.9.0.1".into()),
                interface: None,
            }],
            "{version}"
        );
        assert_eq!(result.routes[0].dst, "0.0.0.0/0");
        assert!(reserved.exists());

        check_list(&l, &rt, Runner::new(&path), &result).unwrap();

        // The only address is taken: the plugin's own error comes back.
        let mut other = rt.clone();
        other.container_id = "c2".into();
        let err = add_list(&l, &other, Runner::new(&path)).unwrap_err();
        assert_eq!(err.plugin, "host-local");
        assert_eq!(err.code(), Some(999));
        assert!(
            err.to_string()
                .contains("no IP addresses available in range set"),
            "{err}"
        );

        del_list(&l, &rt, Runner::new(&path), Some(&result)).unwrap();
        assert!(!reserved.exists(), "{version}: DEL released the address");
    }
}
