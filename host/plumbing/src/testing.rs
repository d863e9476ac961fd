//! Helpers for tests that need real namespaces (feature `test-support`; never in a
//! release build). They run as root, fail loudly otherwise, and remove what they made
//! when dropped, also when the test fails.

use std::{
    path::PathBuf,
    process::{Command, Output},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

/// Panics unless the process is root: these tests must not pass by skipping.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test makes network namespaces and must run as root"
    );
}

/// Runs a command, panicking with its output if it fails.
pub fn run(program: &str, args: &[&str]) -> Output {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// `ip -n NETNS ARGS...`, returning stdout.
pub fn ip(netns: &TestNetns, args: &[&str]) -> String {
    let mut full = vec!["-n", netns.name.as_str()];
    full.extend_from_slice(args);
    String::from_utf8_lossy(&run("ip", &full).stdout).into_owned()
}

/// Polls `condition` until it holds (true) or `timeout` passes (false).
pub fn poll_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls `condition` until it holds, panicking with `what` after `timeout`.
pub fn wait_for(what: &str, timeout: Duration, condition: impl FnMut() -> bool) {
    assert!(
        poll_until(timeout, condition),
        "timed out waiting for {what}"
    );
}

/// A named network namespace (`ip netns add`), deleted on drop with everything in it.
#[derive(Debug)]
pub struct TestNetns {
    /// The name under /var/run/netns.
    pub name: String,
}

impl TestNetns {
    /// Creates `pt<pid>-<n>-<role>` (short: it shows up in interface listings) with its
    /// loopback up.
    pub fn new(role: &str) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("pt{}-{n}-{role}", std::process::id());
        run("ip", &["netns", "add", &name]);
        let netns = Self { name };
        ip(&netns, &["link", "set", "lo", "up"]);
        netns
    }

    /// The namespace's file.
    pub fn path(&self) -> PathBuf {
        PathBuf::from("/var/run/netns").join(&self.name)
    }

    /// Deletes it now (as a runtime would behind the plugin's back); drop is then a no-op.
    pub fn delete(&mut self) {
        if !self.name.is_empty() {
            run("ip", &["netns", "del", &self.name]);
            self.name.clear();
        }
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        if !self.name.is_empty() {
            // No panic in drop: a failed cleanup must not hide the test's own failure.
            let _ = Command::new("ip")
                .args(["netns", "del", &self.name])
                .status();
        }
    }
}
