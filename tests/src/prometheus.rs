//! A real Prometheus (Debian's `prometheus`) and a real `plexus agent`, both run inside a
//! test's node network namespace so that they share its loopback and nothing listens in
//! the root namespace; the test talks to them from a thread that entered that namespace.
//! Both are killed when dropped, pass or fail.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

use crate::{Netns, plexus_binary};

/// How long Prometheus or the agent may take to answer on a loaded machine.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Between two polls of a condition.
const POLL: Duration = Duration::from_millis(100);

/// Runs `work` on a thread that has entered `netns`'s network namespace: its sockets are
/// that namespace's. Only that thread moves; the test stays where it is.
pub fn in_netns<T: Send>(netns: &Netns, work: impl FnOnce() -> T + Send) -> T {
    let path = netns.path();
    thread::scope(|scope| {
        scope
            .spawn(|| {
                let file =
                    File::open(&path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
                // SAFETY: setns on a descriptor we own; it changes only this thread.
                #[allow(unsafe_code)]
                let entered = unsafe {
                    libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET)
                };
                assert_eq!(
                    entered,
                    0,
                    "setns into {}: {}",
                    path.display(),
                    std::io::Error::last_os_error()
                );
                work()
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// A loopback port nobody in `netns` listens on right now.
pub fn free_port(netns: &Netns) -> u16 {
    in_netns(netns, || {
        TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free loopback port")
            .port()
    })
}

/// `GET path` from `127.0.0.1:port` in `netns`: the status code and the body, or the
/// error that kept it from answering.
pub fn http_get(netns: &Netns, port: u16, path: &str) -> std::io::Result<(u16, String)> {
    in_netns(netns, || {
        let mut stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
        )?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response)?;
        let response = String::from_utf8_lossy(&response).into_owned();
        let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or(0);
        let body = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            unchunk(body)
        } else {
            body.to_owned()
        };
        Ok((status, body))
    })
}

/// The body of a chunked HTTP/1.1 response.
fn unchunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// Percent-encodes `text` for a URL's query.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (byte as char).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

/// Polls `check` until it gives `Some`, failing the test with `what` and `last()`'s
/// account after `timeout`.
pub fn poll<T>(
    timeout: Duration,
    what: &str,
    mut check: impl FnMut() -> Option<T>,
    last: impl Fn() -> String,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(found) = check() {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {timeout:?}; {}",
            last()
        );
        thread::sleep(POLL);
    }
}

fn log_of(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_default()
}

/// `plexus agent` serving metrics on the node namespace's loopback.
pub struct Agent<'a> {
    netns: &'a Netns,
    pub port: u16,
    pub log: PathBuf,
    child: Child,
}

impl<'a> Agent<'a> {
    /// Starts the agent on `state_dir` and waits until it answers.
    pub fn start(netns: &'a Netns, state_dir: &Path, log: PathBuf) -> Self {
        Self::start_with(netns, state_dir, log, &[])
    }

    /// [`Agent::start`], with more arguments for `plexus agent`.
    pub fn start_with(netns: &'a Netns, state_dir: &Path, log: PathBuf, args: &[&str]) -> Self {
        let port = free_port(netns);
        let child = Command::new("ip")
            .args(["netns", "exec", &netns.name])
            .arg(plexus_binary())
            .arg("agent")
            .arg("--state-dir")
            .arg(state_dir)
            .arg("--metrics-addr")
            .arg(format!("127.0.0.1:{port}"))
            .args(["--interval", "1"])
            .arg("--log-file")
            .arg(&log)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start plexus agent");
        let mut agent = Agent {
            netns,
            port,
            log: log.clone(),
            child,
        };
        poll(
            START_TIMEOUT,
            "plexus agent answers",
            || {
                if let Ok(Some(status)) = agent.child.try_wait() {
                    panic!("plexus agent exited ({status}): {}", log_of(&agent.log));
                }
                agent.metrics().ok()
            },
            || log_of(&log),
        );
        agent
    }

    /// The agent's log so far.
    pub fn log(&self) -> String {
        log_of(&self.log)
    }

    /// The agent's current exposition.
    pub fn metrics(&self) -> std::io::Result<String> {
        let (status, body) = http_get(self.netns, self.port, "/metrics")?;
        if status == 200 {
            Ok(body)
        } else {
            Err(std::io::Error::other(format!("status {status}")))
        }
    }
}

impl Drop for Agent<'_> {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Prometheus server scraping one target every second.
pub struct Prometheus<'a> {
    netns: &'a Netns,
    pub port: u16,
    dir: TempDir,
    child: Child,
}

impl<'a> Prometheus<'a> {
    /// Starts Prometheus in `netns`, scraping `127.0.0.1:target_port` (job `agent`), and
    /// waits until it is ready. Fails the test, loudly, when it is not installed.
    pub fn start(netns: &'a Netns, target_port: u16) -> Self {
        let binary = Path::new("/usr/bin/prometheus");
        assert!(
            binary.is_file(),
            "Prometheus is missing: apt-get install --no-install-recommends prometheus"
        );
        let dir = tempfile::Builder::new()
            .prefix("plexus-prometheus-")
            .tempdir()
            .expect("a temporary directory");
        let config = dir.path().join("prometheus.yml");
        fs::write(
            &config,
            format!(
                "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
                 scrape_configs:\n  - job_name: agent\n    \
                 static_configs: [{{targets: ['127.0.0.1:{target_port}']}}]\n"
            ),
        )
        .expect("write prometheus.yml");
        let log = dir.path().join("prometheus.log");
        let port = free_port(netns);
        let child = Command::new("ip")
            .args(["netns", "exec", &netns.name])
            .arg(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log).expect("prometheus log"))
            .spawn()
            .expect("start prometheus");
        let mut prometheus = Prometheus {
            netns,
            port,
            dir,
            child,
        };
        poll(
            START_TIMEOUT,
            "Prometheus is ready",
            || {
                if let Ok(Some(status)) = prometheus.child.try_wait() {
                    panic!("prometheus exited ({status}): {}", log_of(&log));
                }
                match http_get(netns, port, "/-/ready") {
                    Ok((200, _)) => Some(()),
                    _ => None,
                }
            },
            || log_of(&log),
        );
        prometheus
    }

    fn log(&self) -> String {
        log_of(&self.dir.path().join("prometheus.log"))
    }

    /// `GET /api/v1/...` as JSON.
    fn api(&self, path: &str) -> Value {
        let (status, body) = http_get(self.netns, self.port, path)
            .unwrap_or_else(|e| panic!("prometheus {path}: {e}; its log: {}", self.log()));
        assert_eq!(status, 200, "prometheus {path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("prometheus {path}: {e}: {body}"))
    }

    /// The instant vector `expr` evaluates to now: each series' labels and value.
    pub fn query(&self, expr: &str) -> Vec<(Value, f64)> {
        let answer = self.api(&format!("/api/v1/query?query={}", encode(expr)));
        assert_eq!(answer["status"], "success", "{expr}: {answer}");
        answer["data"]["result"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|series| {
                let value = series["value"][1]
                    .as_str()
                    .and_then(|value| value.parse().ok())
                    .unwrap_or(f64::NAN);
                (series["metric"].clone(), value)
            })
            .collect()
    }

    /// Waits until `expr` has exactly one series, whose value is `expected`.
    pub fn wait_for(&self, expr: &str, expected: f64) {
        poll(
            START_TIMEOUT,
            &format!("{expr} == {expected}"),
            || match self.query(expr).as_slice() {
                [(_, value)] if *value == expected => Some(()),
                _ => None,
            },
            || format!("Prometheus has {:?}", self.query(expr)),
        );
    }

    /// The health and last scrape error of the one target.
    pub fn target(&self) -> (String, String) {
        let targets = self.api("/api/v1/targets");
        let target = &targets["data"]["activeTargets"][0];
        (
            target["health"].as_str().unwrap_or_default().to_owned(),
            target["lastError"].as_str().unwrap_or_default().to_owned(),
        )
    }
}

impl Drop for Prometheus<'_> {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
