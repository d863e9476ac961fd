//! A real containerd (Debian's 1.6, with its CRI plugin and runc) for the tests, run
//! inside a test's node network namespace with its own temporary root, state, socket
//! and CNI directories; spoken to over CRI with `plexus-cri`.
//!
//! It is entered with `nsenter --net` (only the network namespace changes): `ip netns
//! exec` would also mount a fresh `/sys`, hiding the cgroup mounts runc needs. CNI
//! plugins are its children, so the bridges and veths of pod networks are made in the
//! node namespace, never in the root one. The pause image is built here from
//! `containerd/pause.c` and imported, so nothing is pulled.
//!
//! Dropping it removes every sandbox (so their networks get their DEL), stops
//! containerd and its shims, and unmounts what it left under its directory (pod netns
//! and rootfs mounts live in the host's mount namespace).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use plexus_cri::{CriClient, PodConfig, PodMetadata};
use serde_json::Value;
use tempfile::TempDir;

use crate::{Netns, REFERENCE_PLUGINS};

/// How long containerd may take to answer after it starts, on a loaded machine.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long containerd may take to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// The name the pause image is imported under and the CRI plugin runs sandboxes with.
const PAUSE_IMAGE: &str = "localhost/plexus-pause:1";

/// A running containerd; see the module's documentation.
pub struct Containerd {
    // Declared first, so its runtime is gone before the directory is.
    client: CriClient,
    child: Option<Child>,
    dir: TempDir,
}

/// Fails the test, loudly, unless containerd, ctr, runc, nsenter and gcc are here.
pub fn require_containerd() {
    crate::require_root();
    for (tool, package) in [
        ("containerd", "containerd"),
        ("ctr", "containerd"),
        ("containerd-shim-runc-v2", "containerd"),
        ("runc", "runc"),
        ("nsenter", "util-linux"),
        ("gcc", "gcc"),
    ] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        assert!(
            found,
            "{tool} is missing: apt-get install {package} (or run scripts/setup)"
        );
    }
}

/// Fills `bin_dir` with symlinks to the reference CNI plugins, as a node's
/// `/opt/cni/bin` would hold them; containerd 1.6 takes one plugin directory only.
pub fn link_reference_plugins(bin_dir: &Path) {
    fs::create_dir_all(bin_dir).expect("CNI bin dir");
    for entry in fs::read_dir(REFERENCE_PLUGINS).expect("the reference plugins") {
        let entry = entry.expect("a reference plugin");
        std::os::unix::fs::symlink(entry.path(), bin_dir.join(entry.file_name()))
            .expect("link a reference plugin");
    }
}

impl Containerd {
    /// Starts containerd in `node`, with its CRI plugin reading CNI configurations from
    /// `conf_dir` and running plugins from `bin_dir`, imports the pause image and
    /// returns once CRI answers.
    pub fn start(node: &Netns, conf_dir: &Path, bin_dir: &Path) -> Self {
        require_containerd();
        let dir = tempfile::Builder::new()
            .prefix("plexus-containerd-")
            .tempdir()
            .expect("a temporary directory");
        let root = dir.path();
        let socket = root.join("containerd.sock");
        let config = root.join("config.toml");
        fs::write(&config, config_toml(root, conf_dir, bin_dir)).expect("containerd config");
        let log = fs::File::create(root.join("containerd.log")).expect("containerd log");
        let child = Command::new("nsenter")
            .arg(format!("--net={}", node.path().display()))
            .arg("containerd")
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start containerd");
        let client = CriClient::new(&socket)
            .expect("a CRI client")
            .with_timeout(Duration::from_secs(120));
        let mut containerd = Self {
            client,
            child: Some(child),
            dir,
        };
        containerd.wait_ready();
        containerd.import_pause_image();
        containerd
    }

    /// The CRI client of this containerd.
    pub fn cri(&self) -> &CriClient {
        &self.client
    }

    /// containerd's socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("containerd.sock")
    }

    /// A directory of this containerd's that outlives nothing it ran (for a test's
    /// own files, e.g. host-local's data).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// What containerd logged so far, for a failing test's message.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    fn wait_ready(&mut self) {
        let started = Instant::now();
        loop {
            match self.client.version() {
                Ok(_) => return,
                Err(error) => {
                    let exited = self
                        .child
                        .as_mut()
                        .and_then(|child| child.try_wait().ok().flatten());
                    assert!(
                        exited.is_none(),
                        "containerd exited ({exited:?}) before answering: {error}\n{}",
                        self.log()
                    );
                    assert!(
                        started.elapsed() < START_TIMEOUT,
                        "containerd did not answer within {START_TIMEOUT:?}: {error}\n{}",
                        self.log()
                    );
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn import_pause_image(&self) {
        let tar = self.dir.path().join("pause.tar");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("containerd/build-pause-image");
        run_ok(Command::new(&script).arg(&tar));
        run_ok(
            Command::new("ctr")
                .arg("--address")
                .arg(self.socket())
                .args([
                    "-n",
                    "k8s.io",
                    "images",
                    "import",
                    "--snapshotter",
                    "overlayfs",
                ])
                .arg(&tar),
        );
    }

    /// Runs a pod sandbox named `name` in `namespace` with `annotations` (uid
    /// `uid-<name>`), failing the test with containerd's log if it fails: its id.
    pub fn run_pod(&self, name: &str, namespace: &str, annotations: &[(&str, &str)]) -> String {
        self.try_run_pod(name, namespace, annotations)
            .unwrap_or_else(|error| panic!("RunPodSandbox {name}: {error}\n{}", self.log()))
    }

    /// Runs a pod sandbox, as [`Containerd::run_pod`], returning the failure.
    pub fn try_run_pod(
        &self,
        name: &str,
        namespace: &str,
        annotations: &[(&str, &str)],
    ) -> Result<String, plexus_cri::CriError> {
        let config = PodConfig {
            metadata: PodMetadata {
                name: name.to_owned(),
                uid: format!("uid-{name}"),
                namespace: namespace.to_owned(),
                attempt: 0,
            },
            annotations: annotations
                .iter()
                .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
                .collect::<BTreeMap<_, _>>(),
            ..PodConfig::default()
        };
        self.client.run_pod_sandbox(&config)
    }

    /// The pod's `eth0` address as CRI reports it.
    pub fn pod_ip(&self, id: &str) -> Option<String> {
        self.client
            .pod_sandbox_status(id, false)
            .unwrap_or_else(|error| panic!("PodSandboxStatus {id}: {error}"))
            .ip
    }

    /// The pod's network namespace, from containerd's verbose status (CRI itself
    /// reports only `eth0`'s addresses; the rest is seen from inside).
    pub fn pod_netns(&self, id: &str) -> PathBuf {
        let status = self
            .client
            .pod_sandbox_status(id, true)
            .unwrap_or_else(|error| panic!("PodSandboxStatus {id}: {error}"));
        let info: Value = serde_json::from_str(status.info.get("info").map_or("", String::as_str))
            .unwrap_or_else(|error| panic!("containerd's verbose info of {id}: {error}"));
        info["runtimeSpec"]["linux"]["namespaces"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|namespace| namespace["type"] == "network")
            .and_then(|namespace| namespace["path"].as_str())
            .map(PathBuf::from)
            .unwrap_or_else(|| panic!("no network namespace in {id}'s info: {info}"))
    }

    /// The pod's interfaces (but `lo`) and their addresses in CIDR form, IPv6
    /// link-local left out, seen from inside its network namespace.
    pub fn pod_interfaces(&self, id: &str) -> BTreeMap<String, Vec<String>> {
        let netns = self.pod_netns(id);
        let output = run_ok(
            Command::new("nsenter")
                .arg(format!("--net={}", netns.display()))
                .args(["ip", "-j", "addr"]),
        );
        let links: Value = serde_json::from_slice(&output.stdout).expect("ip -j addr");
        links
            .as_array()
            .into_iter()
            .flatten()
            .filter(|link| link["ifname"] != "lo")
            .map(|link| {
                let name = link["ifname"].as_str().unwrap_or_default().to_owned();
                let addresses = link["addr_info"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|addr| addr["scope"] != "link")
                    .map(|addr| {
                        format!(
                            "{}/{}",
                            addr["local"].as_str().unwrap_or_default(),
                            addr["prefixlen"]
                        )
                    })
                    .collect();
                (name, addresses)
            })
            .collect()
    }

    /// Stops and removes a sandbox (its network gets DEL), failing the test with
    /// containerd's log if either fails.
    pub fn stop_and_remove(&self, id: &str) {
        if let Err(error) = self.client.stop_pod_sandbox(id) {
            panic!("StopPodSandbox {id}: {error}\n{}", self.log());
        }
        if let Err(error) = self.client.remove_pod_sandbox(id) {
            panic!("RemovePodSandbox {id}: {error}\n{}", self.log());
        }
    }

    fn shutdown(&mut self) {
        // Sandboxes first, while containerd can still run their DEL.
        match self.client.list_pod_sandboxes() {
            Ok(sandboxes) => {
                for sandbox in sandboxes {
                    let _ = self.client.stop_pod_sandbox(&sandbox.id);
                    if let Err(error) = self.client.remove_pod_sandbox(&sandbox.id) {
                        eprintln!(
                            "containerd cleanup: RemovePodSandbox {}: {error}",
                            sandbox.id
                        );
                    }
                }
            }
            Err(error) => eprintln!("containerd cleanup: ListPodSandbox: {error}"),
        }
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let asked = Instant::now();
            while child.try_wait().ok().flatten().is_none() {
                if asked.elapsed() > STOP_TIMEOUT {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        // Shims outlive containerd by design; these are ours by their -address.
        let socket = self.socket().display().to_string();
        for pid in processes_with_args(&["-address", &socket]) {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        unmount_under(self.dir.path());
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The config of a containerd whose every path is under `root` (but the shims'
/// sockets, which containerd 1.6 hashes from its address into /run/containerd/s).
fn config_toml(root: &Path, conf_dir: &Path, bin_dir: &Path) -> String {
    let root = root.display();
    let conf_dir = conf_dir.display();
    let bin_dir = bin_dir.display();
    // restrict_oom_score_adj: runc may not lower oom_score_adj below containerd's
    // without CAP_SYS_RESOURCE, which root in a container may lack.
    // netns_mounts_under_state_dir: pod netns under our state, not /var/run/netns.
    // max_conf_num = 1: only the first configuration is the pod network, as in the
    // kubelet's default.
    format!(
        r#"version = 2
root = "{root}/root"
state = "{root}/state"
[grpc]
  address = "{root}/containerd.sock"
[ttrpc]
  address = "{root}/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "{root}/opt"
[plugins."io.containerd.grpc.v1.cri"]
  restrict_oom_score_adj = true
  sandbox_image = "{PAUSE_IMAGE}"
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        Root = "{root}/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{bin_dir}"
    conf_dir = "{conf_dir}"
    max_conf_num = 1
"#
    )
}

/// Pids of the processes whose command line holds `args` consecutively.
fn processes_with_args(args: &[&str]) -> Vec<u32> {
    let needle = args.join("\0");
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let pid = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = fs::read(entry.path().join("cmdline")).ok()?;
            String::from_utf8_lossy(&cmdline)
                .contains(&needle)
                .then_some(pid)
        })
        .collect()
}

/// Unmounts (lazily, deepest first) every mount under `dir`: containerd's overlay
/// rootfs, its shm and the pods' netns bind mounts, if anything outlived the teardown.
fn unmount_under(dir: &Path) {
    let Ok(mountinfo) = fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let prefix = dir.display().to_string();
    let mut mounts: Vec<String> = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(unescape_mount_path)
        .filter(|path| path == &prefix || path.starts_with(&format!("{prefix}/")))
        .collect();
    mounts.sort_by_key(|path| std::cmp::Reverse(path.len()));
    for mount in mounts {
        let _ = Command::new("umount").args(["-l", &mount]).status();
    }
}

/// mountinfo writes space, tab, newline and backslash as octal escapes.
fn unescape_mount_path(field: &str) -> String {
    field
        .replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

fn run_ok(command: &mut Command) -> std::process::Output {
    let output = command.output().expect("run command");
    assert!(
        output.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}
