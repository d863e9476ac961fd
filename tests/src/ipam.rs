//! IPAM plugins run as a delegate runs them: `plexus-ipam` (the `plexus` binary under a
//! link of that name, as the package installs it) and Debian's `host-local`, each given
//! the network configuration on stdin and the CNI variables in its environment.
//!
//! An IPAM plugin does not enter the pod's namespace, so these need neither root nor
//! namespaces: `CNI_NETNS` is only passed along.

use std::io::Write;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use crate::{Answer, REFERENCE_PLUGINS, answer, plexus_binary};

/// A directory holding the `plexus-ipam` link, for `CNI_PATH`.
pub struct IpamPlugins {
    dir: tempfile::TempDir,
}

impl IpamPlugins {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("plexus-ipam-bin-")
            .tempdir()
            .expect("a temporary directory");
        symlink(plexus_binary(), dir.path().join("plexus-ipam")).expect("link plexus-ipam");
        Self { dir }
    }

    /// The `plexus-ipam` link.
    pub fn plexus_ipam(&self) -> PathBuf {
        self.dir.path().join("plexus-ipam")
    }

    /// Debian's `host-local`.
    pub fn host_local(&self) -> PathBuf {
        Path::new(REFERENCE_PLUGINS).join("host-local")
    }

    /// `CNI_PATH` with `plexus-ipam` first and the reference plugins after it.
    pub fn cni_path(&self) -> String {
        format!("{}:{REFERENCE_PLUGINS}", self.dir.path().display())
    }
}

impl Default for IpamPlugins {
    fn default() -> Self {
        Self::new()
    }
}

/// One IPAM invocation: `command` for `container_id`'s `eth0` with `CNI_ARGS` `args`.
pub struct IpamCall<'a> {
    pub plugin: &'a Path,
    pub command: &'a str,
    pub container_id: &'a str,
    pub args: &'a str,
    pub config: &'a Value,
}

impl IpamCall<'_> {
    /// Starts the plugin with the configuration written to its stdin.
    pub fn spawn(&self) -> Child {
        self.spawn_command(Command::new(self.plugin))
    }

    /// Runs the plugin under `strace` and returns its answer and every call it (any of
    /// its threads) made to make data durable, as strace prints it: the call, the file
    /// it synced (`-y`) and what it returned.
    pub fn run_tracing_syncs(&self) -> (Answer, Vec<String>) {
        let log = tempfile::NamedTempFile::new().expect("a temporary file");
        let mut strace = Command::new("strace");
        strace
            .args(["-f", "-y", "-qq", "-e", "signal=none", "-e"])
            .arg("trace=fsync,fdatasync,sync_file_range,syncfs,sync,msync")
            .arg("-o")
            .arg(log.path())
            .arg(self.plugin);
        let answer = wait(self.spawn_command(strace));
        let trace = std::fs::read_to_string(log.path()).expect("strace's log");
        // With several threads strace splits a call into `<unfinished ...>` and
        // `<... resumed>`: the resumed half is the same call.
        let syncs = trace
            .lines()
            .filter(|line| !line.contains(" resumed>"))
            .map(str::to_owned)
            .collect();
        (answer, syncs)
    }

    fn spawn_command(&self, mut command: Command) -> Child {
        let mut child = command
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("CNI_COMMAND", self.command)
            .env("CNI_CONTAINERID", self.container_id)
            .env("CNI_NETNS", "/run/netns/ipam-test")
            .env("CNI_IFNAME", "eth0")
            .env("CNI_ARGS", self.args)
            .env("CNI_PATH", REFERENCE_PLUGINS)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(self.config.to_string().as_bytes())
            .expect("write config");
        child
    }

    /// Runs the plugin to completion.
    pub fn run(&self) -> Answer {
        wait(self.spawn())
    }
}

/// Waits for a plugin started with [`IpamCall::spawn`] and reads its answer.
pub fn wait(child: Child) -> Answer {
    answer(child.wait_with_output().expect("the plugin ran"))
}
