//! The test bench: a "node" and a "pod" network namespace per test, delegate networks
//! from Debian's reference plugins, and the real `plexus` binary run as a runtime would.
//!
//! Nothing is made in the root namespace: every delegate runs inside the node namespace,
//! and everything a test made is removed when its [`Bench`] is dropped, pass or fail.

pub mod builtin_cases;
pub mod containerd;
pub mod etcd;
pub mod ipam;
pub mod javascript;
pub mod prometheus;
pub mod python;
pub mod registry;
pub mod vm;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};

/// Where Debian's `containernetworking-plugins` installs the reference plugins.
pub const REFERENCE_PLUGINS: &str = "/usr/lib/cni";

/// Fails the test, loudly, unless it runs as root: the bench makes namespaces.
pub fn require_root() {
    let uid = fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("Uid:"))
                .and_then(|line| line.split_whitespace().nth(2).map(str::to_owned))
        })
        .unwrap_or_default();
    assert_eq!(
        uid, "0",
        "this test makes network namespaces and needs root (effective uid {uid})"
    );
    assert!(
        Path::new(REFERENCE_PLUGINS).join("bridge").is_file(),
        "the reference CNI plugins are missing: apt-get install containernetworking-plugins"
    );
}

/// The CPU time this thread has used, from the kernel's scheduler statistics: what a
/// policy's time limit counts, so what a test of that limit measures.
pub fn thread_cpu_time() -> std::time::Duration {
    let stat = fs::read_to_string("/proc/thread-self/schedstat").unwrap();
    let nanos = stat.split_whitespace().next().unwrap().parse().unwrap();
    std::time::Duration::from_nanos(nanos)
}

/// The `plexus` binary built beside this test (`cargo build` builds it first).
pub fn plexus_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test knows its own path");
    // target/<profile>/deps/<test> -> target/<profile>/plexus
    let binary = exe
        .parent()
        .and_then(Path::parent)
        .map(|profile| profile.join("plexus"))
        .expect("the test runs from a cargo target directory");
    assert!(
        binary.is_file(),
        "{} is missing: run `cargo build` for the same profile before the tests",
        binary.display()
    );
    binary
}

/// Runs the `plexus` command line with `args`: its output, whatever its exit status.
pub fn plexus_cli<S: AsRef<std::ffi::OsStr>>(args: impl IntoIterator<Item = S>) -> Output {
    Command::new(plexus_binary())
        .args(args)
        .output()
        .expect("run the plexus command line")
}

/// Runs the `plexus` command line and fails the test, with its stderr, unless it succeeds:
/// its stdout.
pub fn plexus_cli_ok<S: AsRef<std::ffi::OsStr>>(args: impl IntoIterator<Item = S>) -> Vec<u8> {
    let output = plexus_cli(args);
    assert!(
        output.status.success(),
        "plexus failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// Makes a policy project with `plexus policy new NAME --lang LANG --kind KIND` in
/// `parent`, failing the test unless it succeeds: the project's directory.
pub fn new_policy_project(parent: &Path, name: &str, lang: &str, kind: &str) -> PathBuf {
    plexus_cli_ok(
        [
            "policy", "new", name, "--lang", lang, "--kind", kind, "--dir",
        ]
        .map(std::ffi::OsStr::new)
        .into_iter()
        .chain([parent.as_os_str()]),
    );
    parent.join(name)
}

/// A network namespace, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(role: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "plexus-test-{}-{}-{role}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        run_ok(Command::new("ip").args(["netns", "add", &name]));
        let netns = Netns { name };
        netns.ip(&["link", "set", "lo", "up"]);
        netns
    }

    pub fn path(&self) -> PathBuf {
        Path::new("/var/run/netns").join(&self.name)
    }

    /// `ip -n <ns> ARGS`, which must succeed; its stdout.
    pub fn ip(&self, args: &[&str]) -> String {
        let output = run_ok(Command::new("ip").arg("-n").arg(&self.name).args(args));
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Names of the links in this namespace.
    pub fn links(&self) -> Vec<String> {
        let links: Value = serde_json::from_str(&self.ip(&["-j", "link"])).expect("ip -j link");
        links
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|link| link["ifname"].as_str().map(str::to_owned))
            .collect()
    }

    /// The link's addresses in CIDR form (`10.1.0.2/24`), IPv6 link-local left out.
    pub fn addresses(&self, ifname: &str) -> Vec<String> {
        let found: Value = serde_json::from_str(&self.ip(&["-j", "addr", "show", "dev", ifname]))
            .expect("ip -j addr");
        found
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|link| link["addr_info"].as_array().cloned().unwrap_or_default())
            .filter(|addr| addr["scope"] != "link")
            .map(|addr| {
                format!(
                    "{}/{}",
                    addr["local"].as_str().unwrap_or(""),
                    addr["prefixlen"]
                )
            })
            .collect()
    }

    /// The link's MAC address.
    pub fn mac(&self, ifname: &str) -> String {
        let found: Value = serde_json::from_str(&self.ip(&["-j", "link", "show", "dev", ifname]))
            .expect("ip -j link");
        found[0]["address"].as_str().unwrap_or_default().to_owned()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .status();
    }
}

/// What one plexus invocation answered.
#[derive(Debug)]
pub struct Answer {
    pub success: bool,
    /// stdout parsed as JSON (`Null` when empty).
    pub json: Value,
    pub stdout: String,
    pub stderr: String,
}

impl Answer {
    /// The result of a successful invocation; panics with the error otherwise.
    pub fn ok(self) -> Value {
        assert!(
            self.success,
            "plexus failed: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self.json
    }

    /// The CNI error of a failed invocation; panics if it succeeded.
    pub fn err(self) -> Value {
        assert!(
            !self.success,
            "plexus succeeded unexpectedly: {}",
            self.stdout
        );
        assert!(
            self.json.get("code").is_some() && self.json.get("msg").is_some(),
            "a failure must print a CNI error on stdout, got {:?}",
            self.stdout
        );
        self.json
    }
}

/// One test's world: a node and a pod namespace and a directory for configs and state.
pub struct Bench {
    pub node: Netns,
    pub pod: Netns,
    pub dir: tempfile::TempDir,
    pub cni_path: String,
}

impl Bench {
    pub fn new() -> Self {
        require_root();
        let bench = Bench {
            node: Netns::new("node"),
            pod: Netns::new("pod"),
            dir: tempfile::Builder::new()
                .prefix("plexus-test-")
                .tempdir()
                .expect("a temporary directory"),
            cni_path: REFERENCE_PLUGINS.to_owned(),
        };
        fs::create_dir_all(bench.networks_dir()).expect("networks dir");
        bench
    }

    pub fn networks_dir(&self) -> PathBuf {
        self.dir.path().join("net.d")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// host-local's data directory for every network of this bench.
    pub fn ipam_dir(&self) -> PathBuf {
        self.dir.path().join("ipam")
    }

    pub fn log_file(&self) -> PathBuf {
        self.dir.path().join("plexus.log")
    }

    pub fn write_network(&self, file: &str, config: &Value) {
        fs::write(self.networks_dir().join(file), config.to_string()).expect("write network");
    }

    /// A bridge network (`isGateway`) with host-local addresses from `subnet`.
    pub fn bridge(&self, name: &str, bridge: &str, subnet: &str, version: &str) -> Value {
        json!({
            "cniVersion": version, "name": name, "type": "bridge",
            "bridge": bridge, "isGateway": true,
            "ipam": self.host_local(subnet),
        })
    }

    /// A bridge network (`isGateway`) whose addresses `plexus-ipam` (`builtin:range`, the
    /// file store in this bench's state directory) allocates from `subnet`; `CNI_PATH`
    /// must hold the `plexus-ipam` link (see [`ipam::IpamPlugins`]).
    pub fn plexus_ipam_bridge(&self, name: &str, bridge: &str, subnet: &str) -> Value {
        json!({
            "cniVersion": "1.0.0", "name": name, "type": "bridge", "bridge": bridge,
            "isGateway": true,
            "ipam": { "type": "plexus-ipam", "policy": "builtin:range", "stateDir": self.state_dir(),
                      "ranges": [[{ "subnet": subnet }]] },
        })
    }

    /// A point-to-point network with host-local addresses from `subnet`, as a conflist.
    pub fn ptp_list(&self, name: &str, subnet: &str, version: &str) -> Value {
        json!({
            "cniVersion": version, "name": name,
            "plugins": [{ "type": "ptp", "ipam": self.host_local(subnet) }],
        })
    }

    pub fn host_local(&self, subnet: &str) -> Value {
        json!({ "type": "host-local", "subnet": subnet, "dataDir": self.ipam_dir() })
    }

    /// The plexus plugin configuration, with `extra` keys laid over the bench's defaults.
    pub fn config(&self, version: &str, extra: Value) -> Value {
        let mut config = json!({
            "cniVersion": version, "name": "pods", "type": "plexus",
            "networksDir": self.networks_dir(),
            "stateDir": self.state_dir(),
            "logFile": self.log_file(),
            "logLevel": "debug",
        });
        if let (Some(base), Value::Object(extra)) = (config.as_object_mut(), extra) {
            base.extend(extra);
        }
        config
    }

    /// Runs `plexus` inside the node namespace as a runtime would.
    pub fn invoke(
        &self,
        command: &str,
        container_id: &str,
        ifname: &str,
        args: &str,
        config: &Value,
    ) -> Answer {
        self.invoke_with(
            command,
            config,
            &[
                ("CNI_CONTAINERID", container_id),
                ("CNI_NETNS", &self.pod.path().to_string_lossy()),
                ("CNI_IFNAME", ifname),
                ("CNI_ARGS", args),
            ],
        )
    }

    /// Runs `plexus` with `CNI_COMMAND`, `CNI_PATH` and exactly the given other variables.
    pub fn invoke_with(&self, command: &str, config: &Value, vars: &[(&str, &str)]) -> Answer {
        run_plugin(self.plugin_command(command, vars), config)
    }

    /// The command [`Bench::invoke_with`] runs, for a test to change how it is started.
    pub fn plugin_command(&self, command: &str, vars: &[(&str, &str)]) -> Command {
        let mut child = Command::new("ip");
        child
            .args(["netns", "exec", &self.node.name])
            .arg(plexus_binary())
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("CNI_COMMAND", command)
            .env("CNI_PATH", &self.cni_path)
            .envs(vars.iter().copied());
        child
    }

    /// host-local's leases: one file per address, named after it.
    pub fn leases(&self) -> Vec<String> {
        let mut leases: Vec<String> = fs::read_dir(self.ipam_dir())
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .flat_map(|network| fs::read_dir(network.path()).into_iter().flatten())
            .filter_map(Result::ok)
            .filter_map(|lease| lease.file_name().into_string().ok())
            .filter(|name| name.parse::<std::net::IpAddr>().is_ok())
            .collect();
        leases.sort();
        leases
    }

    /// The two delegate networks most tests use: `calico`, a bridge (`10-calico.conf`,
    /// 10.11.0.0/24), and `flannel`, a ptp conflist (`20-flannel.conflist`, 10.12.0.0/24),
    /// both at CNI `version`.
    pub fn write_two_networks(&self, version: &str) {
        self.write_network(
            "10-calico.conf",
            &self.bridge("calico", "br-calico", "10.11.0.0/24", version),
        );
        self.write_network(
            "20-flannel.conflist",
            &self.ptp_list("flannel", "10.12.0.0/24", version),
        );
    }

    /// Asserts that nothing a pod had is left: no interface in the pod, no address
    /// leased, no state record.
    pub fn assert_clean(&self) {
        assert_eq!(self.pod.links(), ["lo"], "the pod keeps no interface");
        assert!(
            self.leases().is_empty(),
            "addresses still leased: {:?}",
            self.leases()
        );
        assert!(
            self.records().is_empty(),
            "state left: {:?}",
            self.records()
        );
    }

    /// Asserts that nothing a VM pod had is left: no DHCP server of this bench running,
    /// no DHCP state or VM description under the state directory.
    pub fn assert_no_vm_leftovers(&self) {
        let servers = self.dhcp_processes();
        assert!(
            servers.is_empty(),
            "DHCP servers still running: {servers:?}"
        );
        for dir in ["dhcp", "vm"] {
            let left: Vec<PathBuf> = fs::read_dir(self.state_dir().join(dir))
                .into_iter()
                .flatten()
                .filter_map(Result::ok)
                .map(|entry| entry.path())
                .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
                .collect();
            assert!(left.is_empty(), "{dir} state left: {left:?}");
        }
    }

    /// The `plexus dhcp serve` processes (supervisors and workers) whose state files are
    /// in this bench's state directory.
    pub fn dhcp_processes(&self) -> Vec<u32> {
        let state = self.state_dir().display().to_string();
        fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .filter_map(|entry| {
                let pid = entry.file_name().to_str()?.parse().ok()?;
                let cmdline = fs::read(entry.path().join("cmdline")).ok()?;
                let cmdline = String::from_utf8_lossy(&cmdline);
                (cmdline.contains("dhcp\0serve") && cmdline.contains(&state)).then_some(pid)
            })
            .collect()
    }

    /// Files under the state directory's attachment records.
    pub fn records(&self) -> Vec<PathBuf> {
        let mut found = Vec::new();
        let attachments = self.state_dir().join("attachments");
        for container in fs::read_dir(attachments)
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
        {
            found.push(container.path());
        }
        found
    }
}

impl Default for Bench {
    fn default() -> Self {
        Self::new()
    }
}

/// Runs a plugin `command` with `config` on its stdin, its stdout and stderr piped.
pub fn run_plugin(mut command: Command, config: &Value) -> Answer {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run plexus");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(config.to_string().as_bytes())
        .expect("write config");
    let output = child.wait_with_output().expect("plexus ran");
    answer(output)
}

/// What a plugin printed and how it exited.
pub(crate) fn answer(output: Output) -> Answer {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let json = if stdout.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&stdout)
            .unwrap_or_else(|err| panic!("plexus printed non-JSON {stdout:?}: {err}"))
    };
    Answer {
        success: output.status.success(),
        json,
        stdout,
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn run_ok(command: &mut Command) -> Output {
    let output = command.output().expect("run command");
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// `CNI_ARGS` for a pod, with its annotations in `K8S_ANNOT`.
pub fn pod_args(namespace: &str, name: &str, annotations: &Value) -> String {
    format!(
        "IgnoreUnknown=1;K8S_POD_NAMESPACE={namespace};K8S_POD_NAME={name};K8S_POD_UID=uid-{name};K8S_ANNOT={annotations}"
    )
}

/// The addresses of a CNI result's `ips`, in order.
pub fn result_addresses(result: &Value) -> Vec<String> {
    result["ips"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|ip| ip["address"].as_str().map(str::to_owned))
        .collect()
}
