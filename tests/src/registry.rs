//! A real OCI registry for the tests: Debian's `docker-registry` (distribution 2.8) on
//! 127.0.0.1 with a port of its own choosing and a temporary storage directory, killed
//! when dropped (also when a test fails). Anonymous, plain HTTP: clients need
//! `--plain-http`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// How long the registry may take to listen and answer on a loaded machine.
const START_TIMEOUT: Duration = Duration::from_secs(60);
const BINARY: &str = "/usr/bin/docker-registry";

pub struct Registry {
    dir: TempDir,
    /// `127.0.0.1:PORT`, once the first start chose the port.
    address: Option<String>,
    child: Option<Child>,
}

impl Registry {
    /// Starts a registry on a free loopback port and waits until it answers `/v2/`.
    pub fn start() -> Self {
        assert!(
            Path::new(BINARY).is_file(),
            "{BINARY} is missing: apt-get install docker-registry (scripts/setup)"
        );
        let mut registry = Registry {
            dir: tempfile::tempdir().unwrap(),
            address: None,
            child: None,
        };
        registry.launch();
        registry
    }

    /// `127.0.0.1:PORT`: the registry part of a reference.
    pub fn address(&self) -> &str {
        self.address.as_deref().expect("the registry started")
    }

    /// `oci://127.0.0.1:PORT/REPO` + `suffix` (`:TAG` or `@DIGEST`).
    pub fn reference(&self, repository: &str, suffix: &str) -> String {
        format!("oci://{}/{repository}{suffix}", self.address())
    }

    /// Kills the registry: clients get "connection refused".
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port with the same storage.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// Where the registry stores the blob `sha256:<hex>`: a test rewrites it to tamper.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
        self.dir
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    fn launch(&mut self) {
        let listen = self.address.as_deref().unwrap_or("127.0.0.1:0");
        let config = self.dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog: {{level: info, accesslog: {{disabled: true}}}}\n\
                 storage: {{filesystem: {{rootdirectory: {}}}, delete: {{enabled: true}}}}\n\
                 http: {{addr: \"{listen}\", secret: plexus-test}}\n",
                self.dir.path().join("data").display()
            ),
        )
        .unwrap();
        let log = self.dir.path().join("registry.log");
        let child = Command::new(BINARY)
            .args(["serve".as_ref(), config.as_os_str()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {BINARY}: {e}"));
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            // With port 0 it logs the port it got: `listening on 127.0.0.1:43693`.
            if self.address.is_none() {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                self.address = text.split("listening on ").nth(1).and_then(|rest| {
                    rest.split(|c: char| c.is_whitespace() || c == '"')
                        .next()
                        .map(str::to_owned)
                });
            }
            if let Some(address) = &self.address
                && answers(address)
            {
                return;
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!(
                    "docker-registry exited ({status}): {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not answer within {START_TIMEOUT:?}: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Whether `GET /v2/` answers 200.
fn answers(address: &str) -> bool {
    let Ok(mut stream) = TcpStream::connect(address) else {
        return false;
    };
    let request = format!("GET /v2/ HTTP/1.0\r\nHost: {address}\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.starts_with("HTTP/1.1 200") || response.starts_with("HTTP/1.0 200")
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}
