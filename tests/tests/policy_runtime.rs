//! The policy runtime against real components (`policies/`, built by `build.rs`): the
//! sandbox's limits, error reporting, the compile cache, and the WIT versions served
//! (the fixtures are 0.1.0 policies except `needs-newer-host` and `vm-aware`, which are
//! 0.2.0, and `pick-first-v0-4` and `claim-one-address`, which are 0.4.0; the built-ins are
//! 0.3.0).

use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use plexus_ipam_store::MemoryStore;
use plexus_policy::types::{
    Attachment, CniResult, DelegateResult, Dns, Interface, IpConfig, IpamRequest, MergeRequest,
    Network, Pod, Route, SelectRequest,
};
use plexus_policy::{
    AnyPolicy, HOST_VERSION, Ipam, Limits, Merger, PolicyError, PolicyKind, PolicyRuntime,
    PolicySource, Selector,
};
use plexus_tests::thread_cpu_time;

/// How much CPU time any hostile policy may take, well above the 500 ms limit.
const BOUND: Duration = Duration::from_secs(1);
/// How long any hostile policy may hold a call however busy the machine is.
const WALL_BOUND: Duration = Duration::from_secs(10);

fn source(path: &str) -> PolicySource {
    PolicySource::File(PathBuf::from(path))
}

fn runtime() -> PolicyRuntime {
    PolicyRuntime::new(None, Limits::default()).unwrap()
}

fn cached_runtime(dir: &Path) -> PolicyRuntime {
    let runtime = PolicyRuntime::new(Some(dir.to_owned()), Limits::default()).unwrap();
    assert_eq!(runtime.cache_dir(), Some(dir));
    runtime
}

fn network(file: &str) -> Network {
    Network {
        name: file.trim_end_matches(".conf").to_owned(),
        plugin_type: "bridge".to_owned(),
        cni_version: "1.1.0".to_owned(),
        file: file.to_owned(),
    }
}

/// Networks deliberately not in file-name order.
fn request() -> SelectRequest {
    SelectRequest {
        pod: Pod {
            namespace: "default".to_owned(),
            name: "web".to_owned(),
            container_id: "c0ffee".to_owned(),
            ifname: "eth0".to_owned(),
            ..Pod::default()
        },
        networks: vec![
            network("20-b.conf"),
            network("10-a.conf"),
            network("30-c.conf"),
        ],
        ..SelectRequest::default()
    }
}

/// The network file `policy` picks for `request()`.
fn choice(runtime: &PolicyRuntime, policy: &Selector) -> String {
    let attachments = policy.select(runtime, &request()).unwrap();
    assert_eq!(attachments.len(), 1, "{attachments:?}");
    assert_eq!(attachments[0].ifname, "eth0");
    attachments[0].network_file.clone()
}

/// Calls a hostile selector on `runtime`, checks it was stopped within [`BOUND`] of CPU
/// time (what the limit counts: on a loaded machine wall-clock time is longer, and only
/// bounded by [`WALL_BOUND`]) with an error that names it, then checks the runtime still
/// runs a good policy.
fn hostile(runtime: &PolicyRuntime, path: &str) -> PolicyError {
    let policy = runtime.load::<Selector>(&source(path)).unwrap();
    let (started, cpu_started) = (Instant::now(), thread_cpu_time());
    let error = policy.select(runtime, &request()).unwrap_err();
    let (elapsed, cpu) = (started.elapsed(), thread_cpu_time() - cpu_started);
    assert!(
        cpu < BOUND && elapsed < WALL_BOUND,
        "{path} held the call for {cpu:?} of CPU, {elapsed:?} in all: {error}"
    );
    assert!(
        error.to_string().contains(path),
        "the error does not name the policy: {error}"
    );

    let good = runtime
        .load::<Selector>(&source(env!("POLICY_PICK_FIRST")))
        .unwrap();
    assert_eq!(choice(runtime, &good), "10-a.conf");
    error
}

#[test]
fn an_endless_loop_times_out() {
    let runtime = runtime();
    let started = Instant::now();
    let error = hostile(&runtime, env!("POLICY_LOOP_FOREVER"));
    assert!(
        matches!(error, PolicyError::Timeout { limit, .. } if limit == Duration::from_millis(500)),
        "{error}"
    );
    assert!(error.to_string().contains("time limit of 500ms"), "{error}");
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "stopped before its limit"
    );
}

#[test]
fn a_sleep_in_a_host_call_times_out() {
    let error = hostile(&runtime(), env!("POLICY_SLEEP_FOREVER"));
    assert!(matches!(error, PolicyError::Timeout { .. }), "{error}");
}

#[test]
fn a_shorter_timeout_is_honoured() {
    let limits = Limits {
        timeout: Duration::from_millis(50),
        ..Limits::default()
    };
    let runtime = PolicyRuntime::new(None, limits).unwrap();
    let policy = runtime
        .load::<Selector>(&source(env!("POLICY_LOOP_FOREVER")))
        .unwrap();
    let cpu_started = thread_cpu_time();
    let error = policy.select(&runtime, &request()).unwrap_err();
    let cpu = thread_cpu_time() - cpu_started;
    assert!(matches!(error, PolicyError::Timeout { .. }), "{error}");
    assert!(
        cpu >= Duration::from_millis(50) && cpu < Duration::from_millis(400),
        "{cpu:?} of CPU time"
    );
}

#[test]
fn unbounded_allocation_hits_the_memory_limit() {
    let error = hostile(&runtime(), env!("POLICY_ALLOC_UNBOUNDED"));
    assert!(
        matches!(error, PolicyError::MemoryLimit { limit, .. } if limit == 64 << 20),
        "{error}"
    );
    assert!(error.to_string().contains("out of memory"), "{error}");
}

#[test]
fn a_policy_that_catches_the_refused_memory_still_hits_the_memory_limit() {
    let error = hostile(&runtime(), env!("POLICY_ALLOC_CAUGHT"));
    assert!(
        matches!(error, PolicyError::MemoryLimit { limit, .. } if limit == 64 << 20),
        "{error}"
    );
    assert!(
        error.to_string().contains("memory limit of 64 MiB"),
        "{error}"
    );
}

#[test]
fn a_javascript_policy_out_of_memory_is_told_what_it_needs() {
    // ALLOC_UNBOUNDED marked as ComponentizeJS marks what it makes: a `producers`
    // section saying `language: JavaScript`.
    let mut producers = vec![1, 8];
    producers.extend_from_slice(b"language");
    producers.extend_from_slice(&[1, 10]);
    producers.extend_from_slice(b"JavaScript");
    producers.push(0);
    let mut section = vec![9];
    section.extend_from_slice(b"producers");
    section.extend(producers);
    let mut wasm = fs::read(env!("POLICY_ALLOC_UNBOUNDED")).unwrap();
    wasm.extend(custom_section_header(section.len()));
    wasm.extend(section);
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("greedy.wasm");
    fs::write(&path, wasm).unwrap();

    // Compiled now, then from the cache: the toolchain is kept with the artifact.
    let cache = tmp.path().join("cache");
    for from_cache in [false, true] {
        let runtime = cached_runtime(&cache);
        let policy = runtime
            .load::<Selector>(&PolicySource::File(path.clone()))
            .unwrap();
        assert_eq!(policy.from_cache(), from_cache);
        let error = policy.select(&runtime, &request()).unwrap_err();
        assert!(
            error.to_string().ends_with(
                "memory limit of 64 MiB; JavaScript (ComponentizeJS, StarlingMonkey) policies \
                 need policyMemoryMiB of at least 32"
            ),
            "{error}"
        );
    }
    // A Rust policy is told nothing more.
    let error = hostile(&runtime(), env!("POLICY_ALLOC_UNBOUNDED"));
    assert!(error.to_string().ends_with("of 64 MiB"), "{error}");
}

#[test]
fn unbounded_recursion_overflows_the_stack() {
    let error = hostile(&runtime(), env!("POLICY_RECURSE"));
    assert!(
        matches!(error, PolicyError::StackOverflow { .. }),
        "{error}"
    );
    assert!(
        error.to_string().contains("overflowed its stack"),
        "{error}"
    );
}

#[test]
fn a_panic_is_reported_with_its_message() {
    let error = hostile(&runtime(), env!("POLICY_PANIC"));
    let PolicyError::Panic { message, .. } = &error else {
        panic!("not a panic: {error}");
    };
    assert!(
        message.starts_with("policy panicked on purpose (at "),
        "{message}"
    );
    assert!(
        error
            .to_string()
            .contains("panicked: policy panicked on purpose"),
        "{error}"
    );
}

#[test]
fn a_panic_after_a_flood_of_stderr_keeps_its_message() {
    let error = hostile(&runtime(), env!("POLICY_NOISY_PANIC"));
    let PolicyError::Panic { message, .. } = &error else {
        panic!("not a panic: {error}");
    };
    assert!(
        message.starts_with("noisy policy panicked after the flood"),
        "{message}"
    );
}

#[test]
fn a_refusal_is_reported_verbatim() {
    let runtime = runtime();
    let error = hostile(&runtime, env!("POLICY_REJECT"));
    let PolicyError::Rejected { message, .. } = &error else {
        panic!("not a refusal: {error}");
    };
    assert_eq!(message, "no network for this pod");
}

#[test]
fn the_sandbox_grants_nothing() {
    let error = hostile(&runtime(), env!("POLICY_SANDBOX_PROBE"));
    let PolicyError::Rejected { message, .. } = &error else {
        panic!("the probe did not report: {error}");
    };
    assert_eq!(
        message,
        "env=0 args=0 root=denied passwd=denied stdin=0 tcp=denied udp=denied dns=denied"
    );
}

#[test]
fn selectors_choose_by_file_name() {
    let runtime = runtime();
    let first = runtime
        .load::<Selector>(&source(env!("POLICY_PICK_FIRST")))
        .unwrap();
    let second = runtime
        .load::<Selector>(&source(env!("POLICY_PICK_SECOND")))
        .unwrap();
    assert_eq!(first.kind(), PolicyKind::Selector);
    assert_eq!(first.name(), env!("POLICY_PICK_FIRST"));
    assert_eq!(first.sha256().len(), 64);
    assert_eq!(choice(&runtime, &first), "10-a.conf");
    assert_eq!(choice(&runtime, &second), "20-b.conf");
}

#[test]
fn a_merger_merges() {
    let runtime = runtime();
    let merger = runtime
        .load::<Merger>(&source(env!("POLICY_ECHO_MERGE")))
        .unwrap();
    assert_eq!(merger.kind(), PolicyKind::Merger);
    let result = |address: &str| CniResult {
        ips: vec![IpConfig {
            address: address.to_owned(),
            ..IpConfig::default()
        }],
        ..CniResult::default()
    };
    let request = MergeRequest {
        results: vec![
            DelegateResult {
                result: result("10.1.0.5/24"),
                ..DelegateResult::default()
            },
            DelegateResult {
                result: result("10.2.0.5/24"),
                ..DelegateResult::default()
            },
        ],
        ..MergeRequest::default()
    };
    let merged = merger.merge(&runtime, &request).unwrap();
    assert_eq!(merged.ips[0].address, "10.1.0.5/24");

    let error = merger
        .merge(&runtime, &MergeRequest::default())
        .unwrap_err();
    assert!(matches!(error, PolicyError::Rejected { .. }), "{error}");
}

#[test]
fn a_policy_of_the_other_world_is_refused_when_loaded() {
    let runtime = runtime();
    let error = runtime
        .load::<Selector>(&source(env!("POLICY_ECHO_MERGE")))
        .unwrap_err();
    assert!(
        matches!(
            error,
            PolicyError::WrongWorld {
                expected: PolicyKind::Selector,
                found: PolicyKind::Merger,
                ..
            }
        ),
        "{error}"
    );
    assert!(
        error.to_string().contains(env!("POLICY_ECHO_MERGE")),
        "{error}"
    );
    assert!(error.to_string().contains("is a merger"), "{error}");

    let error = runtime
        .load::<Merger>(&source(env!("POLICY_PICK_FIRST")))
        .unwrap_err();
    assert!(
        matches!(
            error,
            PolicyError::WrongWorld {
                expected: PolicyKind::Merger,
                found: PolicyKind::Selector,
                ..
            }
        ),
        "{error}"
    );

    // Either world loads as a policy of any world.
    for (path, kind) in [
        (env!("POLICY_ECHO_MERGE"), PolicyKind::Merger),
        (env!("POLICY_PICK_FIRST"), PolicyKind::Selector),
    ] {
        let policy = runtime.load::<AnyPolicy>(&source(path)).unwrap();
        assert_eq!((policy.kind(), policy.name()), (kind, path));
    }
}

#[test]
fn a_missing_file_is_a_read_error_naming_it() {
    let error = runtime()
        .load::<Selector>(&source("/nonexistent/select.wasm"))
        .unwrap_err();
    assert!(matches!(error, PolicyError::Read { .. }), "{error}");
    assert!(
        error.to_string().contains("/nonexistent/select.wasm"),
        "{error}"
    );
}

#[test]
fn a_policy_of_another_runtime_is_refused() {
    let policy = runtime()
        .load::<Selector>(&source(env!("POLICY_PICK_FIRST")))
        .unwrap();
    let error = policy.select(&runtime(), &request()).unwrap_err();
    assert!(matches!(error, PolicyError::Invalid { .. }), "{error}");
}

#[test]
fn the_second_load_comes_from_the_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cache");
    let runtime = cached_runtime(&dir);
    let policy = source(env!("POLICY_PICK_FIRST"));
    assert!(!runtime.load::<Selector>(&policy).unwrap().from_cache());
    let cached = runtime.load::<Selector>(&policy).unwrap();
    assert!(cached.from_cache());
    assert_eq!(choice(&runtime, &cached), "10-a.conf");

    // As the next CNI invocation would: a new process, the same directory.
    let next = cached_runtime(&dir);
    assert!(next.load::<Selector>(&policy).unwrap().from_cache());
    let mode = fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode & !0o700, 0, "cache directory mode {mode:o}");
}

#[test]
fn precompile_fills_the_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let runtime = cached_runtime(tmp.path());
    let policy = source(env!("POLICY_ECHO_MERGE"));
    let artifact = runtime.precompile(&policy).unwrap();
    assert!(
        artifact.starts_with(tmp.path()) && artifact.is_file(),
        "{}",
        artifact.display()
    );
    assert_eq!(runtime.precompile(&policy).unwrap(), artifact);
    assert!(runtime.load::<Merger>(&policy).unwrap().from_cache());
}

/// Damages the artifact of `PICK_FIRST` with `damage`, then checks that the next load
/// recompiles, works, and repairs the cache.
fn survives_damage(damage: impl FnOnce(&Path)) {
    survives_damage_after(|_| {}, damage);
}

/// [`survives_damage`], with `before` done to the sound artifact first.
fn survives_damage_after(before: impl FnOnce(&Path), damage: impl FnOnce(&Path)) {
    let tmp = tempfile::tempdir().unwrap();
    let runtime = cached_runtime(tmp.path());
    let policy = source(env!("POLICY_PICK_FIRST"));
    let artifact = runtime.precompile(&policy).unwrap();
    before(&artifact);
    damage(&artifact);

    let recompiled = runtime.load::<Selector>(&policy).unwrap();
    assert!(!recompiled.from_cache());
    assert_eq!(choice(&runtime, &recompiled), "10-a.conf");
    let repaired = runtime.load::<Selector>(&policy).unwrap();
    assert!(repaired.from_cache());
    assert_eq!(choice(&runtime, &repaired), "10-a.conf");
}

#[test]
fn a_corrupt_artifact_is_recompiled() {
    survives_damage(|artifact| {
        let mut bytes = fs::read(artifact).unwrap();
        let middle = bytes.len() / 2;
        for byte in &mut bytes[middle..middle + 64] {
            *byte ^= 0x5a;
        }
        fs::write(artifact, bytes).unwrap();
    });
}

#[test]
fn a_truncated_artifact_is_recompiled() {
    survives_damage(|artifact| {
        let bytes = fs::read(artifact).unwrap();
        fs::write(artifact, &bytes[..bytes.len() / 3]).unwrap();
    });
}

#[test]
fn an_empty_artifact_is_recompiled() {
    survives_damage(|artifact| fs::write(artifact, b"").unwrap());
}

/// Flips bytes in the middle of `artifact`, in place: its size stays the same.
fn flip_in_place(artifact: &Path) {
    let mut file = fs::OpenOptions::new().write(true).open(artifact).unwrap();
    let middle = fs::metadata(artifact).unwrap().len() / 2;
    file.seek(SeekFrom::Start(middle)).unwrap();
    file.write_all(&[0x5a; 64]).unwrap();
}

#[test]
fn an_artifact_trusted_by_its_stamp_and_then_damaged_in_place_is_recompiled() {
    survives_damage_after(
        |artifact| {
            // Settled and loaded twice: checked whole once, then by its stamp.
            wait_until_settled(&[artifact]);
            for _ in 0..2 {
                let runtime = cached_runtime(artifact.parent().unwrap());
                let policy = source(env!("POLICY_PICK_FIRST"));
                let loaded = runtime.load::<Selector>(&policy).unwrap();
                assert!(loaded.from_cache());
            }
        },
        flip_in_place,
    );
}

/// How long after its last change the cache trusts a file's stamp (`stamp::SETTLE`),
/// and a little more.
const SETTLE: Duration = Duration::from_millis(2_100);

/// Waits until every file of `paths` last changed [`SETTLE`] ago: until then the
/// cache hashes it on every load rather than trusting its stamp.
fn wait_until_settled(paths: &[&Path]) {
    let newest = paths
        .iter()
        .map(|path| {
            let metadata = fs::metadata(path).unwrap();
            UNIX_EPOCH
                + Duration::new(
                    u64::try_from(metadata.ctime()).unwrap(),
                    u32::try_from(metadata.ctime_nsec()).unwrap(),
                )
        })
        .max()
        .unwrap();
    if let Ok(left) = (newest + SETTLE).duration_since(SystemTime::now()) {
        std::thread::sleep(left);
    }
}

/// `wasm` with a custom section appended that makes it `len` bytes long: two policies
/// of the same size, for a rewrite that keeps the size.
fn padded(wasm: &[u8], len: usize) -> Vec<u8> {
    // After the section id and its size (five LEB128 bytes, whatever the value).
    let content = len - wasm.len() - 6;
    let mut padded = wasm.to_vec();
    padded.extend(custom_section_header(content));
    padded.extend_from_slice(b"\x03pad");
    padded.resize(len, 0);
    padded
}

/// The id and size of a custom section whose name and payload take `content` bytes:
/// the size in five LEB128 bytes, so that the header's length does not depend on it.
fn custom_section_header(content: usize) -> Vec<u8> {
    let content = u32::try_from(content).unwrap();
    let mut header = vec![0];
    for shift in [0, 7, 14, 21] {
        header.push(0x80 | u8::try_from((content >> shift) & 0x7f).unwrap());
    }
    header.push(u8::try_from(content >> 28).unwrap());
    header
}

#[test]
fn a_policy_file_changed_after_it_settled_is_read_again() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let (first, second) = (
        fs::read(env!("POLICY_PICK_FIRST")).unwrap(),
        fs::read(env!("POLICY_PICK_SECOND")).unwrap(),
    );
    let len = first.len().max(second.len()) + 64;
    let (first, second) = (padded(&first, len), padded(&second, len));
    let path = |name: &str| tmp.path().join(name);
    let (replaced, rewritten, backdated, touched) = (
        path("replaced.wasm"),
        path("rewritten.wasm"),
        path("backdated.wasm"),
        path("touched.wasm"),
    );
    let all = [&replaced, &rewritten, &backdated, &touched];
    for file in all {
        fs::write(file, &first).unwrap();
    }
    // Loaded once settled, so that the cache knows each by its stamp; then each load is
    // by a new runtime, as by the next CNI invocation.
    wait_until_settled(&all.map(PathBuf::as_path));
    for file in all {
        let policy = PolicySource::File(file.clone());
        for _ in 0..2 {
            let runtime = cached_runtime(&cache);
            let loaded = runtime.load::<Selector>(&policy).unwrap();
            assert_eq!(choice(&runtime, &loaded), "10-a.conf");
        }
    }

    let rewrite_in_place = |file: &Path| {
        let mut open = fs::OpenOptions::new().write(true).open(file).unwrap();
        open.write_all(&second).unwrap();
        open
    };
    // A new file renamed over the old one.
    let new = path("new.wasm");
    fs::write(&new, &second).unwrap();
    fs::rename(&new, &replaced).unwrap();
    // The same inode, the same size, other bytes.
    rewrite_in_place(&rewritten);
    // As `cp --preserve` or an unpacked archive do: the old modification time put back.
    let modified = fs::metadata(&backdated).unwrap().modified().unwrap();
    rewrite_in_place(&backdated).set_modified(modified).unwrap();
    // The same bytes, a new modification time.
    fs::File::options()
        .write(true)
        .open(&touched)
        .unwrap()
        .set_modified(SystemTime::now())
        .unwrap();

    for (file, expected) in [
        (&replaced, "20-b.conf"),
        (&rewritten, "20-b.conf"),
        (&backdated, "20-b.conf"),
        (&touched, "10-a.conf"),
    ] {
        let runtime = cached_runtime(&cache);
        let loaded = runtime
            .load::<Selector>(&PolicySource::File(file.clone()))
            .unwrap();
        assert_eq!(choice(&runtime, &loaded), expected, "{}", file.display());
    }
    let runtime = cached_runtime(&cache);
    let touched = runtime
        .load::<Selector>(&PolicySource::File(touched))
        .unwrap();
    assert!(touched.from_cache(), "touching the file recompiled it");
}

#[test]
fn another_policys_artifact_is_not_used() {
    let tmp = tempfile::tempdir().unwrap();
    let runtime = cached_runtime(tmp.path());
    let first = source(env!("POLICY_PICK_FIRST"));
    let first_artifact = runtime.precompile(&first).unwrap();
    let second_artifact = runtime
        .precompile(&source(env!("POLICY_PICK_SECOND")))
        .unwrap();
    // A sound artifact made by this very engine, but of another `.wasm`.
    fs::copy(&second_artifact, &first_artifact).unwrap();

    let policy = runtime.load::<Selector>(&first).unwrap();
    assert!(!policy.from_cache());
    assert_eq!(choice(&runtime, &policy), "10-a.conf");
}

#[test]
fn a_replaced_wasm_is_used_by_the_next_load() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let wasm = tmp.path().join("select.wasm");
    let policy = PolicySource::File(wasm.clone());
    for runtime in [runtime(), cached_runtime(&cache)] {
        fs::copy(env!("POLICY_PICK_FIRST"), &wasm).unwrap();
        let before = runtime.load::<Selector>(&policy).unwrap();
        assert_eq!(choice(&runtime, &before), "10-a.conf");

        fs::copy(env!("POLICY_PICK_SECOND"), &wasm).unwrap();
        let after = runtime.load::<Selector>(&policy).unwrap();
        assert_ne!(after.sha256(), before.sha256());
        assert_eq!(choice(&runtime, &after), "20-b.conf");
        // The policy loaded before keeps its own code.
        assert_eq!(choice(&runtime, &before), "10-a.conf");
    }
}

#[test]
fn a_cache_directory_others_can_write_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("open");
    fs::create_dir(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();

    let runtime = PolicyRuntime::new(Some(dir.clone()), Limits::default()).unwrap();
    assert_eq!(runtime.cache_dir(), None);
    let policy = source(env!("POLICY_PICK_FIRST"));
    for _ in 0..2 {
        let loaded = runtime.load::<Selector>(&policy).unwrap();
        assert!(!loaded.from_cache());
        assert_eq!(choice(&runtime, &loaded), "10-a.conf");
    }
    assert_eq!(
        fs::read_dir(&dir).unwrap().count(),
        0,
        "wrote into a refused directory"
    );
    let error = runtime.precompile(&policy).unwrap_err();
    assert!(matches!(error, PolicyError::Cache { .. }), "{error}");
}

#[test]
fn a_0_1_0_selector_is_still_served() {
    let runtime = runtime();
    let policy = runtime
        .load::<Selector>(&source(env!("POLICY_PICK_FIRST")))
        .unwrap();
    assert_eq!(policy.wit_version(), "0.1.0");
    assert!(policy.metadata().is_none());
    // `vm` is dropped on the way down: the policy answers as it always did.
    let vm_pod = SelectRequest {
        vm: true,
        ..request()
    };
    for request in [request(), vm_pod] {
        let attachments = policy.select(&runtime, &request).unwrap();
        assert_eq!(attachments[0].network_file, "10-a.conf");
        assert_eq!(attachments[0].ifname, "eth0");
    }
}

#[test]
fn a_0_1_0_merger_is_still_served_whole() {
    let runtime = runtime();
    let merger = runtime
        .load::<Merger>(&source(env!("POLICY_ECHO_MERGE")))
        .unwrap();
    assert_eq!(merger.wit_version(), "0.1.0");
    assert!(merger.metadata().is_none());
    // Every field of the result crosses down to the policy and back up.
    let result = CniResult {
        interfaces: vec![Interface {
            name: "eth0".to_owned(),
            mac: Some("02:00:00:00:00:01".to_owned()),
            mtu: Some(1450),
            sandbox: Some("/var/run/netns/pod".to_owned()),
            socket_path: Some("/run/vhost.sock".to_owned()),
            pci_id: Some("0000:00:01.0".to_owned()),
        }],
        ips: vec![IpConfig {
            address: "10.1.0.5/24".to_owned(),
            gateway: Some("10.1.0.1".to_owned()),
            interface: Some(0),
        }],
        routes: vec![Route {
            dst: "0.0.0.0/0".to_owned(),
            gw: Some("10.1.0.1".to_owned()),
            mtu: Some(1400),
            advmss: Some(1360),
            priority: Some(5),
            table: Some(100),
            scope: Some(0),
        }],
        dns: Dns {
            nameservers: vec!["10.1.0.2".to_owned()],
            domain: Some("cluster.local".to_owned()),
            search: vec!["svc.cluster.local".to_owned()],
            options: vec!["ndots:5".to_owned()],
        },
    };
    let request = MergeRequest {
        results: vec![DelegateResult {
            attachment: Attachment {
                network_file: "10-a.conf".to_owned(),
                ifname: "eth0".to_owned(),
                ..Attachment::default()
            },
            network: network("10-a.conf"),
            result: result.clone(),
        }],
        ..MergeRequest::default()
    };
    assert_eq!(merger.merge(&runtime, &request).unwrap(), result);
}

#[test]
fn a_0_2_0_policy_reports_its_metadata() {
    let runtime = runtime();
    let selector = runtime
        .load::<Selector>(&source(env!("POLICY_BUILTIN_ANNOTATIONS")))
        .unwrap();
    let merger = runtime
        .load::<Merger>(&source(env!("POLICY_BUILTIN_MERGE_ALL")))
        .unwrap();
    assert_eq!(selector.kind(), PolicyKind::Selector);
    assert_eq!(merger.kind(), PolicyKind::Merger);
    for (wit_version, metadata, name) in [
        (selector.wit_version(), selector.metadata(), "annotations"),
        (merger.wit_version(), merger.metadata(), "merge-all"),
    ] {
        assert_eq!(wit_version, "0.3.0");
        let metadata = metadata.expect("0.3.0 policies have metadata");
        assert_eq!(metadata.name, name);
        // The built-ins' own version (their workspace's) and the SDK's default.
        assert_eq!(metadata.version, "0.1.0");
        assert_eq!(metadata.min_host_version, "0.1.0");
    }
}

#[test]
fn a_0_4_0_selector_exports_select_networks_and_selects() {
    let runtime = runtime();
    let selector = runtime
        .load::<Selector>(&source(env!("POLICY_PICK_FIRST_V0_4")))
        .unwrap();
    assert_eq!(selector.kind(), PolicyKind::Selector);
    assert_eq!(selector.wit_version(), "0.4.0");
    assert_eq!(choice(&runtime, &selector), "10-a.conf");
    let inspection = runtime
        .inspect(&source(env!("POLICY_PICK_FIRST_V0_4")))
        .unwrap();
    assert!(
        inspection
            .exports
            .iter()
            .any(|name| name == "select-networks"),
        "{:?}",
        inspection.exports
    );
}

#[test]
fn a_0_4_0_ipam_policy_reaches_its_store() {
    let runtime = runtime();
    let policy = runtime
        .load::<Ipam>(&source(env!("POLICY_CLAIM_ONE_ADDRESS")))
        .unwrap();
    assert_eq!(policy.wit_version(), "0.4.0");
    let store: Arc<dyn plexus_ipam_store::Store> = Arc::new(MemoryStore::new("net", []).unwrap());
    let request = |container_id: &str| IpamRequest {
        pod: Pod {
            container_id: container_id.to_owned(),
            ..Pod::default()
        },
        network: "net".to_owned(),
        ..IpamRequest::default()
    };

    let first = policy
        .allocate(&runtime, store.clone(), &request("first"))
        .unwrap();
    assert_eq!(first.ips[0].address, "10.40.0.2/24");
    let (holder, _) = store
        .get("10.40.0.2")
        .unwrap()
        .expect("the claim is stored");
    assert_eq!(holder, b"first");

    let refused = policy
        .allocate(&runtime, store.clone(), &request("second"))
        .unwrap_err();
    assert!(
        refused.to_string().contains("10.40.0.2 is held by first"),
        "{refused}"
    );

    policy
        .release(&runtime, store.clone(), &request("first"))
        .unwrap();
    assert!(store.get("10.40.0.2").unwrap().is_none());
    policy
        .allocate(&runtime, store, &request("second"))
        .unwrap();
}

#[test]
fn a_policy_needing_a_newer_host_is_refused_naming_both_versions() {
    let tmp = tempfile::tempdir().unwrap();
    let path = env!("POLICY_NEEDS_NEWER_HOST");
    // Refused whether compiled now or loaded from the cache.
    let runtime = cached_runtime(tmp.path());
    for _ in 0..2 {
        let error = runtime.load::<AnyPolicy>(&source(path)).unwrap_err();
        assert!(
            matches!(&error, PolicyError::NeedsNewerHost { needs, host, .. }
                if needs == "99.0.0" && host == HOST_VERSION),
            "{error}"
        );
        let message = error.to_string();
        for part in [path, "99.0.0", HOST_VERSION] {
            assert!(message.contains(part), "{part} missing: {message}");
        }
    }
    let error = runtime.precompile(&source(path)).unwrap_err();
    assert!(
        matches!(error, PolicyError::NeedsNewerHost { .. }),
        "{error}"
    );
}

#[test]
fn vm_reaches_a_0_2_0_selector() {
    let runtime = runtime();
    let policy = runtime
        .load::<Selector>(&source(env!("POLICY_VM_AWARE")))
        .unwrap();
    assert_eq!(policy.wit_version(), "0.2.0");
    assert_eq!(choice(&runtime, &policy), "10-a.conf");
    let vm_pod = SelectRequest {
        vm: true,
        ..request()
    };
    let attachments = policy.select(&runtime, &vm_pod).unwrap();
    assert_eq!(attachments[0].network_file, "20-b.conf");
}

#[test]
fn inspect_describes_a_policy_and_its_cache_state() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cache");
    let runtime = cached_runtime(&dir);
    let path = env!("POLICY_VM_AWARE");

    let info = runtime.inspect(&source(path)).unwrap();
    assert_eq!(info.policy, path);
    assert_eq!(info.world, "plexus:policy/selector@0.2.0");
    assert_eq!(info.wit_version, "0.2.0");
    assert_eq!(info.kind, PolicyKind::Selector);
    assert!(
        info.imports
            .iter()
            .any(|name| name == "plexus:policy/types@0.2.0"),
        "{:?}",
        info.imports
    );
    let mut exports = info.exports.clone();
    exports.sort();
    assert_eq!(exports, ["metadata", "select"]);
    assert_eq!(info.size as u64, fs::metadata(path).unwrap().len());
    let metadata = info.metadata.as_ref().unwrap();
    assert_eq!(
        (metadata.name.as_str(), metadata.min_host_version.as_str()),
        ("vm-aware", "0.1.0")
    );
    assert_eq!(info.refused, None);
    // Inspecting only reads the cache.
    assert_eq!(info.cached, None);
    assert_eq!(
        fs::read_dir(&dir).unwrap().count(),
        0,
        "inspect wrote the cache"
    );

    let artifact = runtime.precompile(&source(path)).unwrap();
    let info = runtime.inspect(&source(path)).unwrap();
    assert_eq!(info.cached, Some(artifact));
    let loaded = runtime.load::<Selector>(&source(path)).unwrap();
    assert_eq!(info.sha256, loaded.sha256());

    let json = serde_json::to_value(&info).unwrap();
    assert_eq!(json["wit-version"], "0.2.0");
    assert_eq!(json["kind"], "selector");
    assert_eq!(json["metadata"]["min-host-version"], "0.1.0");
}

#[test]
fn inspect_describes_old_and_refused_policies() {
    let runtime = runtime();
    let old = runtime.inspect(&source(env!("POLICY_ECHO_MERGE"))).unwrap();
    assert_eq!(old.world, "plexus:policy/merger@0.1.0");
    assert_eq!(old.exports, ["merge"]);
    assert_eq!(old.metadata, None);
    assert_eq!((old.refused, old.cached), (None, None));

    // What `load` refuses, inspect still describes, saying why.
    let refused = runtime
        .inspect(&source(env!("POLICY_NEEDS_NEWER_HOST")))
        .unwrap();
    assert_eq!(refused.metadata.unwrap().min_host_version, "99.0.0");
    let reason = refused.refused.unwrap();
    assert!(reason.contains("needs Plexus 99.0.0"), "{reason}");
}
