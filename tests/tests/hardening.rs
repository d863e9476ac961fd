//! What field trials hit: a delegate that never answers, a network file that does not
//! parse, a stateDir that cannot be written, and a DEL whose record was lost. Real
//! delegates, real namespaces, real hung processes.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use plexus_plumbing::testing::poll_until;
use plexus_tests::{Bench, REFERENCE_PLUGINS, plexus_binary, pod_args};
use serde_json::{Value, json};

fn genie(networks: &str) -> String {
    pod_args("default", "web-0", &json!({ "cni": networks }))
}

/// A CNI path directory of test plugins, searched before the reference plugins.
struct TestPlugins {
    dir: tempfile::TempDir,
}

impl TestPlugins {
    fn new(bench: &mut Bench) -> Self {
        let plugins = TestPlugins {
            dir: tempfile::tempdir().expect("a plugin directory"),
        };
        bench.cni_path = format!("{}:{REFERENCE_PLUGINS}", plugins.dir.path().display());
        plugins
    }

    /// Writes the `/bin/sh` plugin `name`; `$PIDS` in `body` is a directory where it
    /// may leave pid files.
    fn write(&self, name: &str, body: &str) {
        let path = self.dir.path().join(name);
        let script = format!("#!/bin/sh\nPIDS='{}'\n{body}\n", self.dir.path().display());
        // Written beside and renamed: a plugin exec'd while being rewritten is "busy".
        let temp = self.dir.path().join(format!(".{name}.new"));
        fs::write(&temp, script).expect("write plugin");
        fs::set_permissions(&temp, fs::Permissions::from_mode(0o755)).expect("chmod plugin");
        fs::rename(&temp, &path).expect("install plugin");
    }

    /// A plugin that, for `command`s matching the shell pattern `hangs_on`, starts a
    /// helper and hangs with it (recording both pids), and otherwise is the reference
    /// `ptp` plugin.
    fn hanging_ptp(&self, name: &str, hangs_on: &str) {
        self.write(
            name,
            &format!(
                "case \"$CNI_COMMAND\" in\n{hangs_on})\n  sleep 600 &\n  echo $! > \"$PIDS/{name}.helper\"\n  \
                 echo $$ > \"$PIDS/{name}.plugin\"\n  sleep 600 ;;\nesac\nexec {REFERENCE_PLUGINS}/ptp"
            ),
        );
    }

    /// The pids a hanging plugin recorded, once it has recorded them.
    fn hung_pids(&self, name: &str) -> Vec<u32> {
        let files = ["plugin", "helper"].map(|kind| self.dir.path().join(format!("{name}.{kind}")));
        assert!(
            poll_until(Duration::from_secs(60), || files.iter().all(|f| f.exists())),
            "{name} never hung"
        );
        files
            .iter()
            .map(|file| {
                fs::read_to_string(file)
                    .expect("pid file")
                    .trim()
                    .parse()
                    .expect("a pid")
            })
            .collect()
    }
}

/// Whether `pid` is a running process (a zombie has finished running).
fn is_running(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit(')')
            .next()
            .is_some_and(|rest| !rest.trim_start().starts_with('Z'))
    })
}

fn assert_dead(pids: &[u32]) {
    for pid in pids {
        assert!(
            poll_until(Duration::from_secs(20), || !is_running(*pid)),
            "process {pid} outlived its delegate call"
        );
    }
}

/// `hangnet`: a ptp network (10.13.0.0/24) whose plugin hangs on the commands matching
/// `hangs_on`.
fn write_hanging_network(bench: &Bench, plugins: &TestPlugins, hangs_on: &str) {
    plugins.hanging_ptp("hangptp", hangs_on);
    bench.write_network(
        "30-hangnet.conf",
        &json!({"cniVersion": "1.0.0", "name": "hangnet", "type": "hangptp",
                "ipam": bench.host_local("10.13.0.0/24")}),
    );
}

#[test]
fn a_hung_delegate_fails_add_in_time_and_what_was_made_is_rolled_back() {
    let mut bench = Bench::new();
    let plugins = TestPlugins::new(&mut bench);
    bench.write_two_networks("1.0.0");
    write_hanging_network(&bench, &plugins, "ADD|DEL");
    let config = bench.config("1.0.0", json!({ "delegateTimeoutSeconds": 2 }));

    let started = Instant::now();
    let error = bench
        .invoke("ADD", "c1", "eth0", &genie("calico,hangnet"), &config)
        .err();
    // ADD's 2 s, then the rollback's DEL of the hung delegate, 2 s more; generous for a
    // loaded machine, nowhere near the plugin's 600 s.
    let took = started.elapsed();
    assert!(took < Duration::from_secs(40), "took {took:?}");
    assert_eq!(error["code"], 104, "{error}");
    let message = error["msg"].as_str().unwrap();
    assert!(message.contains("network hangnet"), "{error}");
    assert!(message.contains("timed out after 2 s"), "{error}");
    assert_dead(&plugins.hung_pids("hangptp"));
    bench.assert_clean();
}

#[test]
fn del_goes_on_past_a_hung_delegate_names_it_and_a_retry_finishes() {
    let mut bench = Bench::new();
    let plugins = TestPlugins::new(&mut bench);
    bench.write_two_networks("1.0.0");
    write_hanging_network(&bench, &plugins, "DEL");
    let config = bench.config("1.0.0", json!({ "delegateTimeoutSeconds": 2 }));
    let args = genie("hangnet,calico,flannel");
    bench.invoke("ADD", "c1", "eth0", &args, &config).ok();
    assert_eq!(bench.leases().len(), 3);

    let error = bench.invoke("DEL", "c1", "eth0", &args, &config).err();
    assert_eq!(error["code"], 105, "{error}");
    let message = error["msg"].as_str().unwrap();
    assert!(
        message.contains("network hangnet") && message.contains("timed out after 2 s"),
        "{error}"
    );
    assert_dead(&plugins.hung_pids("hangptp"));
    // The other networks were torn down all the same.
    assert_eq!(bench.pod.links(), ["lo", "eth0"]);
    assert_eq!(bench.leases(), ["10.13.0.2"]);

    // The runtime retries; this time the delegate answers.
    write_hanging_network(&bench, &plugins, "NEVER");
    bench.invoke("DEL", "c1", "eth0", &args, &config).ok();
    bench.assert_clean();
}

#[test]
fn a_killed_plexus_takes_its_hung_delegate_with_it() {
    let mut bench = Bench::new();
    let plugins = TestPlugins::new(&mut bench);
    bench.write_two_networks("1.0.0");
    write_hanging_network(&bench, &plugins, "ADD");
    let config = bench.config("1.0.0", json!({}));
    let args = genie("calico,hangnet");

    let mut plexus = Command::new("ip")
        .args(["netns", "exec", &bench.node.name])
        .arg(plexus_binary())
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("CNI_COMMAND", "ADD")
        .env("CNI_PATH", &bench.cni_path)
        .env("CNI_CONTAINERID", "c1")
        .env("CNI_NETNS", bench.pod.path())
        .env("CNI_IFNAME", "eth0")
        .env("CNI_ARGS", &args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start plexus");
    {
        use std::io::Write;
        let mut stdin = plexus.stdin.take().expect("stdin");
        stdin
            .write_all(config.to_string().as_bytes())
            .expect("write config");
    }
    let hung = plugins.hung_pids("hangptp");
    // What a runtime does when its deadline passes.
    plexus.kill().expect("kill plexus");
    plexus.wait().expect("reap plexus");
    // The plugin itself dies with plexus (its parent-death signal); its helper is
    // orphaned, as a delegate's IPAM would be, and must not keep the next DEL waiting.
    assert_dead(&hung[..1]);

    write_hanging_network(&bench, &plugins, "NEVER");
    bench.invoke("DEL", "c1", "eth0", &args, &config).ok();
    bench.assert_clean();
    for pid in &hung[1..] {
        // SAFETY-free cleanup of the orphaned helper: a plain kill of a test's own child.
        let _ = Command::new("kill").arg(pid.to_string()).status();
    }
}

#[test]
fn delegate_timeout_is_checked_like_the_other_keys() {
    let bench = Bench::new();
    bench.write_two_networks("1.0.0");
    for bad in [json!(0), json!(-1), json!("60"), json!(3601)] {
        let config = bench.config("1.0.0", json!({ "delegateTimeoutSeconds": bad }));
        let error = bench
            .invoke("ADD", "c1", "eth0", &genie("calico"), &config)
            .err();
        assert_eq!(error["code"], 7, "{bad}: {error}");
        assert!(
            error["msg"]
                .as_str()
                .unwrap()
                .contains("delegateTimeoutSeconds"),
            "{bad}: {error}"
        );
    }
    bench.assert_clean();
}

/// `30-greennet.conf`: a network file cut short in the middle of an edit.
fn write_broken_greennet(bench: &Bench) {
    fs::write(
        bench.networks_dir().join("30-greennet.conf"),
        r#"{"cniVersion": "1.0.0", "name": "greennet", "type": "bridge", "#,
    )
    .expect("write the broken file");
}

#[test]
fn a_pod_that_asks_for_a_broken_network_is_told_which_file_and_why() {
    let bench = Bench::new();
    bench.write_two_networks("1.0.0");
    write_broken_greennet(&bench);
    let config = bench.config("1.0.0", json!({}));

    let error = bench
        .invoke("ADD", "c1", "eth0", &genie("calico,greennet"), &config)
        .err();
    assert_eq!(error["code"], 7, "{error}");
    let message = error["msg"].as_str().unwrap();
    assert!(
        message.contains("30-greennet.conf"),
        "names the file: {error}"
    );
    assert!(message.contains("EOF while parsing"), "says why: {error}");
    bench.assert_clean();

    // Pods that do not ask for it are not hurt by it.
    fs::write(bench.log_file(), "").unwrap();
    let args = genie("calico,flannel");
    bench.invoke("ADD", "c2", "eth0", &args, &config).ok();
    let log = fs::read_to_string(bench.log_file()).unwrap();
    let warnings = log
        .lines()
        .filter(|line| line.contains("WARN") && line.contains("30-greennet.conf"))
        .count();
    assert_eq!(
        warnings, 1,
        "one warning per broken file per invocation:\n{log}"
    );
    bench.invoke("DEL", "c2", "eth0", &args, &config).ok();
    bench.assert_clean();
}

#[test]
fn status_is_not_ready_while_a_default_network_is_missing_or_broken() {
    let bench = Bench::new();
    bench.write_two_networks("1.0.0");
    write_broken_greennet(&bench);
    let status = |defaults: Value| {
        let config = bench.config("1.1.0", json!({ "defaultNetworks": defaults }));
        bench.invoke_with("STATUS", &config, &[])
    };
    let broken = status(json!(["calico", "greennet"])).err();
    assert_eq!(broken["code"], 50, "{broken}");
    assert!(
        broken["msg"].as_str().unwrap().contains("30-greennet.conf"),
        "{broken}"
    );
    let missing = status(json!(["calico", "bluenet"])).err();
    assert_eq!(missing["code"], 50, "{missing}");
    assert!(
        missing["msg"].as_str().unwrap().contains("bluenet"),
        "{missing}"
    );
    // A broken file no default network uses does not make the node unready.
    assert_eq!(status(json!(["calico", "flannel"])).ok(), Value::Null);
    assert_eq!(status(json!([])).ok(), Value::Null);
}

/// A read-only bind mount of a directory over itself, undone on drop.
struct ReadOnly {
    dir: PathBuf,
}

impl ReadOnly {
    fn mount(dir: &Path) -> Self {
        let mount = |args: &[&str]| {
            let status = Command::new("mount")
                .args(args)
                .arg(dir)
                .arg(dir)
                .status()
                .expect("run mount");
            assert!(status.success(), "mount {args:?} {}", dir.display());
        };
        mount(&["--bind"]);
        let read_only = ReadOnly {
            dir: dir.to_owned(),
        };
        let status = Command::new("mount")
            .args(["-o", "remount,bind,ro"])
            .arg(dir)
            .status()
            .expect("run mount");
        assert!(status.success(), "remount {} read-only", dir.display());
        read_only
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
    }
}

#[test]
fn with_a_read_only_state_dir_del_still_tears_down_and_check_works() {
    let bench = Bench::new();
    bench.write_two_networks("1.0.0");
    let config = bench.config("1.1.0", json!({}));
    let args = genie("calico,flannel");
    bench.invoke("ADD", "c1", "eth0", &args, &config).ok();
    assert_eq!(bench.leases().len(), 2);

    let read_only = ReadOnly::mount(&bench.state_dir());
    bench.invoke("CHECK", "c1", "eth0", &args, &config).ok();
    let refused = bench.invoke("ADD", "c2", "eth0", &args, &config).err();
    assert_eq!(refused["code"], 5, "{refused}");
    let not_ready = bench.invoke_with("STATUS", &config, &[]).err();
    assert_eq!(not_ready["code"], 50, "{not_ready}");
    assert!(
        not_ready["msg"].as_str().unwrap().contains("stateDir"),
        "{not_ready}"
    );

    let error = bench.invoke("DEL", "c1", "eth0", &args, &config).err();
    assert_eq!(error["code"], 5, "{error}");
    let record = bench.state_dir().join("attachments/c1/eth0.json");
    assert!(
        error["msg"]
            .as_str()
            .unwrap()
            .contains(&record.display().to_string()),
        "names the path it could not change: {error}"
    );
    // Everything was torn down: only the record is left.
    assert_eq!(bench.pod.links(), ["lo"]);
    assert!(bench.leases().is_empty(), "{:?}", bench.leases());

    drop(read_only);
    bench.invoke("DEL", "c1", "eth0", &args, &config).ok();
    bench.assert_clean();
}

#[test]
fn del_with_no_record_deletes_what_the_selection_chooses() {
    let bench = Bench::new();
    bench.write_two_networks("1.0.0");
    let config = bench.config("1.0.0", json!({}));
    let args = genie("calico,flannel");
    bench.invoke("ADD", "c1", "eth0", &args, &config).ok();
    assert_eq!(bench.leases().len(), 2);

    // The records are lost (a replaced disk, a changed stateDir).
    fs::remove_dir_all(bench.state_dir()).unwrap();
    bench.invoke("DEL", "c1", "eth0", &args, &config).ok();
    bench.assert_clean();
    let log = fs::read_to_string(bench.log_file()).unwrap();
    assert!(
        log.lines()
            .any(|line| line.contains("WARN") && line.contains("nothing recorded")),
        "DEL says what it did:\n{log}"
    );
}

/// `calico` and `flannel` by file name, whose configurations are named as Calico's and
/// flannel's installers name them, and `30-blue.conf` (`blue-conf`), which fails.
fn write_networks_named_by_their_installers(bench: &Bench) {
    let mut calico = bench.bridge("k8s-pod-network", "br-calico", "10.11.0.0/24", "1.0.0");
    calico["name"] = json!("k8s-pod-network");
    bench.write_network("10-calico.conf", &calico);
    bench.write_network(
        "20-flannel.conflist",
        &bench.ptp_list("cbr0", "10.12.0.0/24", "1.0.0"),
    );
    bench.write_network(
        "30-blue.conf",
        &json!({"cniVersion": "1.0.0", "name": "blue-conf", "type": "bridge", "bridge": "br-blue",
                "ipam": {"type": "host-local", "subnet": "not-a-subnet", "dataDir": bench.ipam_dir()}}),
    );
}

fn network_status_names(bench: &Bench, container: &str) -> Vec<String> {
    let output = plexus_tests::plexus_cli_ok([
        "status",
        container,
        "--state-dir",
        bench.state_dir().to_str().unwrap(),
    ]);
    let statuses: Value = serde_json::from_slice(&output).unwrap();
    statuses["network-status"]
        .as_array()
        .unwrap()
        .iter()
        .map(|status| status["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn network_status_and_errors_name_networks_the_way_the_pod_asked() {
    let bench = Bench::new();
    write_networks_named_by_their_installers(&bench);
    let config = bench.config("1.0.0", json!({ "defaultNetworks": ["calico"] }));

    let genie_pod = genie("calico,flannel");
    bench.invoke("ADD", "c1", "eth0", &genie_pod, &config).ok();
    assert_eq!(network_status_names(&bench, "c1"), ["calico", "flannel"]);
    bench.invoke("DEL", "c1", "eth0", &genie_pod, &config).ok();

    let multus_pod = pod_args(
        "shop",
        "web-0",
        &json!({ "k8s.v1.cni.cncf.io/networks": "flannel" }),
    );
    bench.invoke("ADD", "c2", "eth0", &multus_pod, &config).ok();
    assert_eq!(
        network_status_names(&bench, "c2"),
        ["calico", "shop/flannel"]
    );
    bench.invoke("DEL", "c2", "eth0", &multus_pod, &config).ok();

    let error = bench
        .invoke("ADD", "c3", "eth0", &genie("calico,blue"), &config)
        .err();
    assert!(
        error["msg"]
            .as_str()
            .unwrap()
            .contains("network blue (blue-conf)"),
        "names the network as the pod did, and its configuration's name: {error}"
    );
    bench.assert_clean();
}

#[test]
fn a_configuration_without_the_annotations_capability_says_why_pods_get_the_defaults() {
    let bench = Bench::new();
    bench.write_two_networks("1.0.0");
    // A CNI-Genie configuration as it was: no capabilities, so containerd and CRI-O pass
    // no annotations at all.
    let genie_config = json!({"cniVersion": "1.0.0", "name": "k8s-pod-network", "type": "genie",
        "default_plugin": "calico", "networksDir": bench.networks_dir(),
        "stateDir": bench.state_dir(), "logFile": bench.log_file()});
    let no_annotations = "IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-0";
    bench
        .invoke("ADD", "c1", "eth0", no_annotations, &genie_config)
        .ok();
    let log = fs::read_to_string(bench.log_file()).unwrap();
    let warning = log
        .lines()
        .find(|line| line.contains("WARN") && line.contains("no pod annotations"))
        .unwrap_or_else(|| panic!("no warning:\n{log}"));
    assert!(
        warning.contains("io.kubernetes.cri.pod-annotations"),
        "{warning}"
    );
    bench
        .invoke("DEL", "c1", "eth0", no_annotations, &genie_config)
        .ok();

    // Declared, and the runtime passes them: nothing to warn about.
    fs::write(bench.log_file(), "").unwrap();
    let config = bench.config(
        "1.0.0",
        json!({ "defaultNetworks": ["calico"],
                "capabilities": { "io.kubernetes.cri.pod-annotations": true },
                "runtimeConfig": { "io.kubernetes.cri.pod-annotations": { "cni": "flannel" } } }),
    );
    bench
        .invoke("ADD", "c2", "eth0", no_annotations, &config)
        .ok();
    let log = fs::read_to_string(bench.log_file()).unwrap();
    assert!(!log.contains("no pod annotations"), "{log}");
    bench
        .invoke("DEL", "c2", "eth0", no_annotations, &config)
        .ok();
    bench.assert_clean();

    // `plexus explain` says it too.
    let conflist = bench.dir.path().join("00-genie.conf");
    fs::write(&conflist, genie_config.to_string()).unwrap();
    let output = plexus_tests::plexus_cli([
        "explain".as_ref(),
        "--config".as_ref(),
        conflist.as_os_str(),
        "--annotation".as_ref(),
        "cni=flannel".as_ref(),
    ]);
    assert!(output.status.success(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("warning") && stderr.contains("io.kubernetes.cri.pod-annotations"),
        "{stderr}"
    );
}
