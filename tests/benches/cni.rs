//! `cargo bench -p plexus-tests`: what Plexus costs, as ratios against a baseline measured
//! side by side in the same run (absolute times on a shared machine are not stable).
//!
//! 1. ADD+DEL of the same two delegates (bridge and ptp, host-local IPAM), called
//!    directly one after the other vs through `plexus`, sequential and `parallel: true`;
//!    and the same delegates called directly side by side, the floor for any parallel run.
//!    Then plexus's own time per ADD and per DEL (wall time minus its delegates), with
//!    the median of each of its phases, from its own spans (`plexus::phase`).
//! 2. In process: loading a cached policy and calling it, and the first use of a policy
//!    never seen before (compile included).
//! 3. VM pods: ADD and DEL of the same two networks in VM mode vs container mode, and
//!    the time from ADD start until a real VM booted on the taps has both NICs configured.
//! 4. IPAM: allocation latency (an IPAM ADD) of `plexus-ipam` with the file store and
//!    with a real etcd, against Debian's `host-local` on the same ranges.
//! 5. Footprint: the peak resident memory of one `plexus` ADD (the process itself, not
//!    its delegates), and the size of the binary as installed (stripped).
//!
//! Rounds are interleaved, each starting with the next contender, so that a slow patch
//! of the machine, or what one run leaves for the kernel to finish, hits every contender
//! alike; medians are reported.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use plexus_policy::types::{Network, Pod, SelectRequest};
use plexus_policy::{Limits, PolicyRuntime, PolicySource, Selector};
use plexus_tests::etcd::EtcdServer;
use plexus_tests::ipam::{IpamCall, IpamPlugins};
use plexus_tests::{Bench, REFERENCE_PLUGINS, plexus_binary, pod_args, vm};
use serde_json::{Value, json};

const ROUNDS: usize = 40;
const POLICY_ROUNDS: usize = 200;
const FIRST_USE_ROUNDS: usize = 10;

fn main() {
    // `cargo bench -p plexus-tests -- ipam vm` runs only the sections named.
    let named: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with("--"))
        .collect();
    let run = |section: &str| named.is_empty() || named.iter().any(|name| name == section);
    if run("delegates") {
        delegate_costs();
    }
    if run("policy") {
        policy_costs();
    }
    if run("vm") {
        vm_costs();
    }
    if run("ipam") {
        ipam_costs();
    }
    if run("footprint") {
        footprint();
    }
}

/// The two delegates most tests use, written into `bench`, and the pod's `CNI_ARGS`.
fn two_networks(bench: &Bench) -> (Value, Value, String) {
    let calico = bench.bridge("calico", "br-calico", "10.11.0.0/24", "1.0.0");
    let flannel = bench.ptp_list("flannel", "10.12.0.0/24", "1.0.0");
    bench.write_network("10-calico.conf", &calico);
    bench.write_network("20-flannel.conflist", &flannel);
    let args = pod_args("default", "web-0", &json!({"cni": "calico,flannel"}));
    (calico, flannel, args)
}

fn delegate_costs() {
    let bench = Bench::new();
    let (calico, flannel, args) = two_networks(&bench);
    let sequential = bench.config("1.1.0", json!({"logLevel": "warn"}));
    let parallel = bench.config("1.1.0", json!({"logLevel": "warn", "parallel": true}));
    let mut flannel_plugin = flannel["plugins"][0].clone();
    flannel_plugin["name"] = json!("flannel");
    flannel_plugin["cniVersion"] = json!("1.0.0");

    let direct = || {
        delegate(&bench, "bridge", "ADD", "eth0", &calico, &args);
        delegate(&bench, "ptp", "ADD", "eth1", &flannel_plugin, &args);
        delegate(&bench, "ptp", "DEL", "eth1", &flannel_plugin, &args);
        delegate(&bench, "bridge", "DEL", "eth0", &calico, &args);
    };
    // The best any meta-plugin could do side by side: the same delegates, concurrently.
    let direct_side_by_side = || {
        std::thread::scope(|scope| {
            scope.spawn(|| delegate(&bench, "bridge", "ADD", "eth0", &calico, &args));
            delegate(&bench, "ptp", "ADD", "eth1", &flannel_plugin, &args);
        });
        std::thread::scope(|scope| {
            scope.spawn(|| delegate(&bench, "ptp", "DEL", "eth1", &flannel_plugin, &args));
            delegate(&bench, "bridge", "DEL", "eth0", &calico, &args);
        });
    };
    let through_plexus = |config: &Value| {
        bench.invoke("ADD", "bench", "eth0", &args, config).ok();
        bench.invoke("DEL", "bench", "eth0", &args, config).ok();
    };

    // One untimed round of each warms the page cache and the compiled-policy cache.
    direct();
    direct_side_by_side();
    through_plexus(&sequential);
    through_plexus(&parallel);
    let mut times: [Vec<Duration>; 4] = Default::default();
    let contenders: [&dyn Fn(); 4] = [
        &direct,
        &direct_side_by_side,
        &|| through_plexus(&sequential),
        &|| through_plexus(&parallel),
    ];
    for round in 0..ROUNDS {
        // Each round starts with the next contender: what one leaves behind in the kernel
        // (deferred veth teardown) must not always slow the same one down.
        for offset in 0..contenders.len() {
            let index = (round + offset) % contenders.len();
            times[index].push(time(contenders[index]));
        }
    }
    let [
        direct_median,
        side_by_side_median,
        sequential_median,
        parallel_median,
    ] = times.map(|mut samples| median(&mut samples));

    println!("ADD+DEL of two delegates, median of {ROUNDS} interleaved rounds");
    println!("  direct (baseline)      {}", ms(direct_median));
    println!(
        "  plexus sequential      {}   ratio {:.2} (target <= 1.10)",
        ms(sequential_median),
        ratio(sequential_median, direct_median)
    );
    println!(
        "  plexus parallel        {}   ratio {:.2} (target <= 0.75)",
        ms(parallel_median),
        ratio(parallel_median, direct_median)
    );
    println!(
        "  direct side by side    {}   ratio {:.2} (the floor for any parallel meta-plugin)",
        ms(side_by_side_median),
        ratio(side_by_side_median, direct_median)
    );
    println!(
        "  plexus parallel / direct side by side: {:.2}",
        ratio(parallel_median, side_by_side_median)
    );
    phase_costs(&bench, &args, "container pods", json!({}));
}

const PHASE_ROUNDS: usize = 25;

/// Where plexus's own time goes: sequential ADDs and DELs with its phases logged
/// (`plexus::phase=debug`), each invocation's wall time minus the time inside its
/// delegates, and the median of each phase (phases nest: `vm` holds `vm-plan`, …).
/// `extra` is laid over the plugin configuration.
fn phase_costs(bench: &Bench, args: &str, pods: &str, extra: Value) {
    let mut config = bench.config("1.1.0", json!({"logLevel": "warn,plexus::phase=debug"}));
    if let (Some(config), Value::Object(extra)) = (config.as_object_mut(), extra) {
        config.extend(extra);
    }
    let (mut own_add, mut own_del) = (Vec::new(), Vec::new());
    let mut phases: Vec<(String, String, Duration)> = Vec::new();
    for _ in 0..PHASE_ROUNDS {
        for (command, own) in [("ADD", &mut own_add), ("DEL", &mut own_del)] {
            std::fs::write(bench.log_file(), "").expect("empty the log");
            let wall = time(|| {
                bench.invoke(command, "bench", "eth0", args, &config).ok();
            });
            let log = std::fs::read_to_string(bench.log_file()).expect("read the log");
            let logged = logged_phases(&log);
            let delegates: Duration = logged
                .iter()
                .filter(|(name, _)| name == "delegate")
                .map(|(_, took)| *took)
                .sum();
            own.push(wall.saturating_sub(delegates));
            phases.extend(
                logged
                    .into_iter()
                    .map(|(name, took)| (command.to_owned(), name, took)),
            );
        }
    }
    println!(
        "plexus's own time (wall minus its delegates), {pods}, median of {PHASE_ROUNDS} rounds"
    );
    for (command, own) in [("ADD", &mut own_add), ("DEL", &mut own_del)] {
        println!("  {command} {}", ms(median(own)));
        let mut names: Vec<&str> = phases
            .iter()
            .filter(|(of, ..)| of == command)
            .map(|(_, name, _)| name.as_str())
            .collect();
        names.sort();
        names.dedup();
        for name in names {
            let mut took: Vec<Duration> = phases
                .iter()
                .filter(|(of, phase, _)| of == command && phase == name)
                .map(|(.., took)| *took)
                .collect();
            println!("    {name:<10} {} (per call)", ms(median(&mut took)));
        }
    }
}

/// The phases in a plexus log: `phase{name="select"}: plexus::phase: close
/// time.busy=1.2ms time.idle=3µs`, as (name, busy + idle).
fn logged_phases(log: &str) -> Vec<(String, Duration)> {
    log.lines()
        .filter(|line| line.contains("plexus::phase: close"))
        .filter_map(|line| {
            // A nested phase's line names its parents first: the last name is its own.
            let (_, name) = line.rsplit_once("phase{name=\"")?;
            let name = name.split('"').next()?;
            let field = |key: &str| {
                let value = line.split(key).nth(1)?.split_whitespace().next()?;
                parse_duration(value)
            };
            Some((name.to_owned(), field("time.busy=")? + field("time.idle=")?))
        })
        .collect()
}

/// A duration as tracing prints it: `12ns`, `3.4µs`, `5.6ms`, `1.2s`.
fn parse_duration(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| c.is_alphabetic() || c == 'µ')?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let seconds = match unit {
        "ns" => number / 1e9,
        "µs" => number / 1e6,
        "ms" => number / 1e3,
        "s" => number,
        _ => return None,
    };
    Some(Duration::from_secs_f64(seconds))
}

const IPAM_ROUNDS: usize = 40;

fn ipam_costs() {
    let plugins = IpamPlugins::new();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let etcd = EtcdServer::start();
    let ipam = |extra: Value| {
        let mut ipam =
            json!({ "ranges": [[{ "subnet": "10.70.0.0/24" }]], "stateDir": dir.path() });
        if let (Some(base), Value::Object(extra)) = (ipam.as_object_mut(), extra) {
            base.extend(extra);
        }
        json!({ "cniVersion": "1.0.0", "name": "benchnet", "type": "bridge", "ipam": ipam })
    };
    let host_local =
        ipam(json!({ "type": "host-local", "dataDir": dir.path().join("host-local") }));
    let file = ipam(json!({ "type": "plexus-ipam", "policy": "builtin:range" }));
    let etcd_store = ipam(json!({
        "type": "plexus-ipam", "policy": "builtin:range",
        "store": { "type": "etcd", "endpoints": [etcd.endpoint()] },
    }));
    let contenders = [
        (plugins.host_local(), &host_local),
        (plugins.plexus_ipam(), &file),
        (plugins.plexus_ipam(), &etcd_store),
    ];
    let allocate = |(plugin, config): &(std::path::PathBuf, &Value), container_id: &str| {
        let call = |command| IpamCall {
            plugin,
            command,
            container_id,
            args: "",
            config,
        };
        let took = time(|| {
            call("ADD").run().ok();
        });
        call("DEL").run().ok();
        took
    };
    // One untimed round warms the page cache, the compiled policy and etcd.
    for contender in &contenders {
        allocate(contender, "warm-up");
    }
    let mut times: [Vec<Duration>; 3] = Default::default();
    for round in 0..IPAM_ROUNDS {
        for offset in 0..contenders.len() {
            let index = (round + offset) % contenders.len();
            times[index].push(allocate(&contenders[index], &format!("bench-{round}")));
        }
    }
    let [host_local, file, etcd] = times.map(|mut samples| median(&mut samples));
    println!("IPAM ADD (one allocation), median of {IPAM_ROUNDS} interleaved rounds");
    println!("  host-local (baseline)     {}", ms(host_local));
    println!(
        "  plexus-ipam, file store   {}   ratio {:.2}",
        ms(file),
        ratio(file, host_local)
    );
    println!(
        "  plexus-ipam, etcd         {}   ratio {:.2}",
        ms(etcd),
        ratio(etcd, host_local)
    );
}

const VM_ROUNDS: usize = 15;

fn vm_costs() {
    let bench = Bench::new();
    let (_, _, args) = two_networks(&bench);
    let args = args.as_str();
    let container = bench.config("1.1.0", json!({"logLevel": "warn"}));
    let vm = bench.config(
        "1.1.0",
        json!({"logLevel": "warn", "vm": {"mode": "always"}}),
    );
    let add = |config: &Value| {
        let started = Instant::now();
        let result = bench.invoke("ADD", "bench", "eth0", args, config).ok();
        (started.elapsed(), result)
    };
    let del = |config: &Value| {
        time(|| {
            bench.invoke("DEL", "bench", "eth0", args, config).ok();
        })
    };
    let (mut container_adds, mut vm_adds) = (Vec::new(), Vec::new());
    let (mut container_dels, mut vm_dels) = (Vec::new(), Vec::new());
    for _ in 0..VM_ROUNDS {
        container_adds.push(add(&container).0);
        container_dels.push(del(&container));
        vm_adds.push(add(&vm).0);
        vm_dels.push(del(&vm));
    }
    println!("VM pods, the same two networks, median of {VM_ROUNDS} interleaved rounds");
    for (command, container, vm) in [
        ("ADD", &mut container_adds, &mut vm_adds),
        ("DEL", &mut container_dels, &mut vm_dels),
    ] {
        let (container, vm) = (median(container), median(vm));
        println!("  {command} container mode (baseline) {}", ms(container));
        println!(
            "  {command} VM mode                   {}   ratio {:.2}",
            ms(vm),
            ratio(vm, container)
        );
    }

    let (took, result) = add(&vm);
    let taps: Vec<(String, String)> = result["interfaces"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|iface| {
            iface["name"]
                .as_str()
                .is_some_and(|name| name.starts_with("tap-"))
        })
        .map(|tap| {
            let field = |key: &str| tap[key].as_str().unwrap_or_default().to_owned();
            (field("name"), field("mac"))
        })
        .collect();
    let taps: Vec<(&str, &str)> = taps
        .iter()
        .map(|(tap, mac)| (tap.as_str(), mac.as_str()))
        .collect();
    let console = vm::boot(bench.pod.path(), &taps, Duration::from_secs(90));
    println!(
        "  ADD start to both VM NICs configured (console): {}  (ADD {}, boot {})",
        ms(took + console.ready_after),
        ms(took),
        ms(console.ready_after)
    );
    drop(console);
    del(&vm);
    phase_costs(&bench, args, "VM pods", json!({"vm": {"mode": "always"}}));
}

/// What a selection policy costs per ADD in each language a policy can be written in: the
/// built-in `annotations` (Rust) and its twins in Python and JavaScript, which answer alike.
fn policy_costs() {
    let repo = plexus_tests::python::repo();
    let python =
        plexus_tests::python::policy(&repo.join("guest-plugins/python/annotations"), "selector");
    let javascript = plexus_tests::javascript::component(
        "guest-plugins/javascript/annotations/component.js",
        "selector",
    );
    // First use compiles the whole component: seconds for Python's interpreter, so fewer rounds.
    for (language, wasm, first_use_rounds) in [
        (
            "Rust",
            PathBuf::from(env!("POLICY_BUILTIN_ANNOTATIONS")),
            FIRST_USE_ROUNDS,
        ),
        ("Python", python, 3),
        ("JavaScript", javascript, 3),
    ] {
        policy_cost(language, &wasm, first_use_rounds);
    }
}

fn policy_cost(language: &str, wasm: &Path, first_use_rounds: usize) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let size = std::fs::metadata(wasm).expect("the policy").len();
    let source = PolicySource::File(wasm.to_owned());
    let request = request();
    let cache = dir.path().join("bench-cache");

    // Cached: what every pod event after the first pays.
    let warm = PolicyRuntime::new(Some(cache.clone()), Limits::default()).expect("runtime");
    warm.precompile(&source).expect("precompile");
    // As on a node, where the artifact was written well before: once it has settled
    // (2 s), a load checks it whole one last time and then trusts it by its stamp.
    std::thread::sleep(Duration::from_millis(2_100));
    warm.load::<Selector>(&source).expect("load");
    let mut cached = Vec::new();
    for _ in 0..POLICY_ROUNDS {
        cached.push(time(|| {
            let runtime =
                PolicyRuntime::new(Some(cache.clone()), Limits::default()).expect("runtime");
            let policy = runtime.load::<Selector>(&source).expect("load");
            assert!(policy.from_cache());
            policy.select(&runtime, &request).expect("select");
        }));
    }
    // First use: a policy the node has never compiled.
    let mut first = Vec::new();
    for round in 0..first_use_rounds {
        let fresh = dir.path().join(format!("fresh-cache-{round}"));
        first.push(time(|| {
            let runtime =
                PolicyRuntime::new(Some(fresh.clone()), Limits::default()).expect("runtime");
            let policy = runtime.load::<Selector>(&source).expect("load");
            assert!(!policy.from_cache());
            policy.select(&runtime, &request).expect("select");
        }));
    }
    let target = if language == "Rust" { "1 ms" } else { "5 ms" };
    println!(
        "policy cost in process, {language} ({} KiB component)",
        size / 1024
    );
    println!(
        "  cached load + call     {}   (median of {POLICY_ROUNDS}; target <= {target})",
        ms(median(&mut cached))
    );
    println!(
        "  first use + call       {}   (median of {first_use_rounds}; `plexus policy compile` spares pods this)",
        ms(median(&mut first))
    );
}

fn request() -> SelectRequest {
    SelectRequest {
        pod: Pod {
            namespace: "default".into(),
            name: "web-0".into(),
            uid: "u1".into(),
            container_id: "bench".into(),
            ifname: "eth0".into(),
        },
        annotations: vec![("cni".into(), "calico,flannel".into())],
        cni_args: vec![],
        runtime_config: "{}".into(),
        networks: vec![
            network("calico", "bridge", "10-calico.conf"),
            network("flannel", "ptp", "20-flannel.conflist"),
        ],
        default_networks: vec![],
        policy_config: "{}".into(),
        vm: false,
    }
}

fn network(name: &str, plugin_type: &str, file: &str) -> Network {
    Network {
        name: name.into(),
        plugin_type: plugin_type.into(),
        cni_version: "1.0.0".into(),
        file: file.into(),
    }
}

/// Runs one reference plugin in the node namespace, as a runtime would without Plexus.
fn delegate(bench: &Bench, plugin: &str, command: &str, ifname: &str, config: &Value, args: &str) {
    let mut child = Command::new("ip")
        .args(["netns", "exec", &bench.node.name])
        .arg(format!("{REFERENCE_PLUGINS}/{plugin}"))
        .env_clear()
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", "bench")
        .env("CNI_NETNS", bench.pod.path())
        .env("CNI_IFNAME", ifname)
        .env("CNI_ARGS", args)
        .env("CNI_PATH", REFERENCE_PLUGINS)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run the delegate");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(config.to_string().as_bytes())
        .expect("write the config");
    let output = child.wait_with_output().expect("the delegate ran");
    assert!(
        output.status.success(),
        "{plugin} {command}: {}",
        String::from_utf8_lossy(&output.stdout)
    );
}

fn time(work: impl FnOnce()) -> Duration {
    let started = Instant::now();
    work();
    started.elapsed()
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ratio(value: Duration, baseline: Duration) -> f64 {
    value.as_secs_f64() / baseline.as_secs_f64()
}

fn ms(duration: Duration) -> String {
    format!("{:8.2} ms", duration.as_secs_f64() * 1000.0)
}

const FOOTPRINT_ROUNDS: usize = 15;

fn footprint() {
    let bench = Bench::new();
    let (_, _, args) = two_networks(&bench);
    let config = bench.config("1.1.0", json!({"logLevel": "warn"}));
    // One untimed round fills the compiled-policy cache, as on a node that runs pods.
    bench.invoke("ADD", "bench", "eth0", &args, &config).ok();
    bench.invoke("DEL", "bench", "eth0", &args, &config).ok();
    let netns = bench.pod.path().to_string_lossy().into_owned();
    let mut peaks: Vec<u64> = (0..FOOTPRINT_ROUNDS)
        .map(|_| {
            let vars = [
                ("CNI_CONTAINERID", "bench"),
                ("CNI_NETNS", netns.as_str()),
                ("CNI_IFNAME", "eth0"),
                ("CNI_ARGS", &args),
            ];
            let peak = peak_rss(bench.plugin_command("ADD", &vars), &config);
            bench.invoke("DEL", "bench", "eth0", &args, &config).ok();
            peak
        })
        .collect();
    peaks.sort_unstable();
    let mib = |kib: u64| kib as f64 / 1024.0;
    println!("Footprint, {FOOTPRINT_ROUNDS} ADDs of two networks");
    println!(
        "  peak RSS of one ADD: median {:.1} MiB, max {:.1} MiB (target <= 30 MiB)",
        mib(peaks[peaks.len() / 2]),
        mib(peaks[peaks.len() - 1])
    );
    let stripped = tempfile::NamedTempFile::new().expect("a temporary file");
    let status = Command::new("strip")
        .arg("-o")
        .arg(stripped.path())
        .arg(plexus_binary())
        .status()
        .expect("run strip (binutils)");
    assert!(status.success(), "strip failed");
    let size = std::fs::metadata(stripped.path())
        .expect("the stripped binary")
        .len();
    println!(
        "  installed (stripped) binary: {:.1} MB (target <= 30 MB)",
        size as f64 / 1e6
    );
}

/// Runs `command` (an `ip netns exec … plexus`, which execs plexus in place) with
/// `config` on stdin, and returns the peak resident set of that process in KiB, from
/// the kernel's accounting at its exit (its children, the delegates, are not counted).
// wait4: std's Child does not report resource usage; it reaps the child too, which
// clippy cannot see.
#[allow(unsafe_code, clippy::zombie_processes)]
fn peak_rss(mut command: Command, config: &Value) -> u64 {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run plexus");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(config.to_string().as_bytes())
        .expect("write config");
    let pid = libc::pid_t::try_from(child.id()).expect("a pid fits");
    let mut status = 0;
    // SAFETY: rusage is plain data the call fills in; status likewise.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(waited, pid, "wait4: {}", std::io::Error::last_os_error());
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "plexus ADD failed: {status}"
    );
    // Linux reports ru_maxrss in KiB.
    u64::try_from(usage.ru_maxrss).expect("a size")
}
