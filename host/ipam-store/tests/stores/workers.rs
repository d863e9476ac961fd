//! Worker processes: the test binary re-executed with `worker --exact`, told by
//! environment variables what to do. Separate processes are what real allocators
//! are (one `plexus-ipam` per CNI call), with their own locks and connections.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Lines, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

use plexus_ipam_store::{EtcdConfig, EtcdStore, FileStore, Store};

const ROLE: &str = "PLEXUS_IPAM_STORE_TEST_WORKER";
const STORE: &str = "PLEXUS_IPAM_STORE_TEST_STORE";
const NETWORK: &str = "PLEXUS_IPAM_STORE_TEST_NETWORK";
const COUNT: &str = "PLEXUS_IPAM_STORE_TEST_COUNT";
const POOL: &str = "PLEXUS_IPAM_STORE_TEST_POOL";
const OWNER: &str = "PLEXUS_IPAM_STORE_TEST_OWNER";

/// Where a worker's store is: a file-store root, or an etcd endpoint.
#[derive(Clone, Debug)]
pub enum StoreSpec {
    File(std::path::PathBuf),
    Etcd(String),
}

impl StoreSpec {
    fn encode(&self) -> String {
        match self {
            Self::File(root) => format!("file:{}", root.display()),
            Self::Etcd(endpoint) => format!("etcd:{endpoint}"),
        }
    }

    fn decode(text: &str) -> Self {
        match text.split_once(':') {
            Some(("file", root)) => Self::File(root.into()),
            Some(("etcd", endpoint)) => Self::Etcd(endpoint.to_owned()),
            _ => panic!("bad store spec {text:?}"),
        }
    }

    pub fn open(&self, network: &str) -> Box<dyn Store> {
        match self {
            Self::File(root) => Box::new(FileStore::open(root, network).unwrap()),
            Self::Etcd(endpoint) => {
                let mut config = EtcdConfig::new(vec![endpoint.clone()]);
                config.timeout = Duration::from_secs(10);
                Box::new(EtcdStore::connect(&config, network).unwrap())
            }
        }
    }
}

/// The pool's `i`-th address, as a key: `ip/10.0.<i / 256>.<i % 256>`.
pub fn address(i: u32) -> String {
    format!("ip/10.0.{}.{}", i / 256, i % 256)
}

/// Allocates one address of a pool of `pool` the way an IPAM policy does: list the
/// taken ones, try to create the free ones in order, list again when all are lost.
pub fn allocate(store: &dyn Store, pool: u32, owner: &str) -> String {
    loop {
        let taken: HashSet<String> = store
            .list("ip/")
            .unwrap()
            .into_iter()
            .map(|entry| entry.key)
            .collect();
        let free: Vec<String> = (0..pool)
            .map(address)
            .filter(|a| !taken.contains(a))
            .collect();
        assert!(!free.is_empty(), "pool of {pool} exhausted");
        for candidate in free {
            if store
                .compare_and_swap(&candidate, None, owner.as_bytes())
                .unwrap()
            {
                return candidate;
            }
        }
    }
}

/// The value the churn worker writes as its `n`-th counter: big enough that a
/// torn write would be visible, and fully determined by `n`.
pub fn counter_value(n: u64) -> Vec<u8> {
    let mut value = format!("n={n}\n").into_bytes();
    while value.len() < 48 * 1024 {
        value.extend_from_slice(format!("{n};").as_bytes());
    }
    value
}

/// Reads back `n` from a counter value, checking every byte of it.
pub fn parse_counter(value: &[u8]) -> u64 {
    let text = std::str::from_utf8(value).expect("counter is UTF-8");
    let n = text
        .strip_prefix("n=")
        .and_then(|rest| rest.split_once('\n'))
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or_else(|| panic!("counter header is torn: {:?}", &text[..text.len().min(40)]));
    assert_eq!(value, counter_value(n), "counter {n} is torn");
    n
}

/// A running worker process.
pub struct Worker {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Worker {
    /// Starts a worker playing `role` on `store`; `vars` are its parameters.
    pub fn spawn(role: &str, store: &StoreSpec, network: &str, vars: &[(&str, String)]) -> Self {
        let mut command = Command::new(std::env::current_exe().unwrap());
        command
            .args(["worker", "--exact", "--nocapture", "--test-threads=1"])
            .env(ROLE, role)
            .env(STORE, store.encode())
            .env(NETWORK, network)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        for (name, value) in vars {
            command.env(name, value);
        }
        let mut child = command.spawn().unwrap();
        let stdin = child.stdin.take();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Self {
            child,
            stdin,
            lines,
        }
    }

    /// The next line the worker reported (`None` at its end), skipping the test
    /// harness's own output (which may start the same line: `test worker ... `).
    pub fn next_report(&mut self) -> Option<String> {
        self.lines
            .by_ref()
            .map(|line| line.unwrap())
            .find_map(|line| {
                line.split_once("REPORT ")
                    .map(|(_, report)| report.to_owned())
            })
    }

    /// Waits until the worker has opened its store.
    pub fn wait_ready(&mut self) {
        assert_eq!(self.next_report().as_deref(), Some("ready"));
    }

    /// Lets the worker start (all workers of a test start at once).
    pub fn go(&mut self) {
        let mut stdin = self.stdin.take().unwrap();
        stdin.write_all(b"go\n").unwrap();
    }

    /// All remaining reports, then the worker's successful exit.
    pub fn finish(mut self) -> Vec<String> {
        let reports: Vec<String> = std::iter::from_fn(|| self.next_report()).collect();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "worker failed: {status}");
        reports
    }

    /// Kills the worker with SIGKILL, then returns what it had reported.
    pub fn kill(mut self) -> Vec<String> {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        std::iter::from_fn(|| self.next_report()).collect()
    }
}

/// Starts `count` workers allocating `each` addresses from a pool of `pool` in
/// `network`, all at once; returns every worker's allocations (owner `w<i>`).
pub fn allocate_in_processes(
    store: &StoreSpec,
    network: &str,
    count: usize,
    each: usize,
    pool: u32,
) -> Vec<Vec<String>> {
    let mut workers: Vec<Worker> = (0..count)
        .map(|i| {
            let vars = [
                (COUNT, each.to_string()),
                (POOL, pool.to_string()),
                (OWNER, format!("w{i}")),
            ];
            Worker::spawn("allocate", store, network, &vars)
        })
        .collect();
    workers.iter_mut().for_each(Worker::wait_ready);
    workers.iter_mut().for_each(Worker::go);
    workers.into_iter().map(Worker::finish).collect()
}

/// Has `count` threads of this process, started at once, each allocate one address from
/// `store` as owner `w<i>`; returns what each one got.
pub fn allocate_in_threads(store: &dyn Store, count: usize) -> Vec<Vec<String>> {
    let barrier = std::sync::Barrier::new(count);
    std::thread::scope(|scope| {
        let threads: Vec<_> = (0..count)
            .map(|i| {
                let barrier = &barrier;
                scope.spawn(move || {
                    barrier.wait();
                    vec![allocate(store, 254, &format!("w{i}"))]
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    })
}

/// Checks that allocations are distinct, complete and recorded with their owners.
pub fn check_allocations(store: &dyn Store, per_owner: &[Vec<String>], expected: usize) {
    let mut seen = HashSet::new();
    for (i, addresses) in per_owner.iter().enumerate() {
        for address in addresses {
            assert!(seen.insert(address.clone()), "{address} handed out twice");
            let (owner, _) = store.get(address).unwrap().expect("allocation lost");
            assert_eq!(owner, format!("w{i}").as_bytes(), "{address}");
        }
    }
    assert_eq!(seen.len(), expected);
    assert_eq!(store.list("ip/").unwrap().len(), expected);
}

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("worker needs {name}"))
}

/// Runs the worker this process was started as, if any.
pub fn run_if_requested() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let store = StoreSpec::decode(&var(STORE)).open(&var(NETWORK));
    let store = store.as_ref();
    println!("REPORT ready");
    match role.as_str() {
        "allocate" => {
            let mut go = String::new();
            std::io::stdin().read_line(&mut go).unwrap();
            let pool = var(POOL).parse().unwrap();
            let owner = var(OWNER);
            for _ in 0..var(COUNT).parse::<usize>().unwrap() {
                println!("REPORT {}", allocate(store, pool, &owner));
            }
        }
        "churn" => churn(store),
        _ => panic!("unknown worker role {role:?}"),
    }
}

/// Writes forever (until killed): bumps the counter, and creates or deletes one of
/// 50 addresses each round, reporting each counter value once it is written.
fn churn(store: &dyn Store) {
    loop {
        let (n, revision) = match store.get("counter").unwrap() {
            Some((value, revision)) => (parse_counter(&value), Some(revision)),
            None => (0, None),
        };
        let next = n + 1;
        assert!(
            store
                .compare_and_swap("counter", revision, &counter_value(next))
                .unwrap()
        );
        println!("REPORT {next}");
        let address = address(u32::try_from(next % 50).unwrap());
        match store.get(&address).unwrap() {
            Some((_, revision)) => assert!(store.delete(&address, revision).unwrap()),
            None => assert!(
                store
                    .compare_and_swap(&address, None, format!("owner {next}").as_bytes())
                    .unwrap()
            ),
        }
    }
}

/// Whether `dir` holds a write in progress left by a killed writer.
pub fn has_leftover_temp(dir: &Path) -> bool {
    dir.join(".tmp").exists()
}
