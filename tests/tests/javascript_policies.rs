//! Policies written in JavaScript (`guest-plugins/javascript`, `tests/policies/javascript`),
//! built with the toolchain `scripts/setup` installs and run by the real host: the hostile
//! corpus fails each call within its limits, naming the cause; the examples pass the Rust
//! examples' own case files; the builtin-equivalent answers as `builtin:annotations` does on
//! the fuzz corpus; and `plexus policy new --lang javascript` projects pass their cases.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use plexus_policy::types::{Network, Pod, SelectRequest};
use plexus_policy::{Limits, PolicyError, PolicyRuntime, PolicySource, Selector};
use plexus_tests::builtin_cases::{cases_from_builtin, fuzz_select_requests};
use plexus_tests::javascript::component;
use plexus_tests::{new_policy_project, plexus_cli, thread_cpu_time};

/// How much CPU time any hostile policy may take, well above the 500 ms limit.
const BOUND: Duration = Duration::from_secs(1);
/// How long any hostile policy may hold a call however busy the machine is.
const WALL_BOUND: Duration = Duration::from_secs(10);

fn request() -> SelectRequest {
    SelectRequest {
        pod: Pod {
            namespace: "default".to_owned(),
            name: "web".to_owned(),
            container_id: "c0ffee".to_owned(),
            ifname: "eth0".to_owned(),
            ..Pod::default()
        },
        networks: vec![Network {
            name: "calico".to_owned(),
            plugin_type: "bridge".to_owned(),
            cni_version: "1.1.0".to_owned(),
            file: "10-calico.conf".to_owned(),
        }],
        default_networks: vec!["calico".to_owned()],
        ..SelectRequest::default()
    }
}

/// Calls the hostile selector `name` (`tests/policies/javascript/<name>`) with the default
/// limits; checks it was stopped within [`BOUND`] of CPU time (what the limit counts; on a
/// loaded machine wall-clock time is longer, and only bounded by [`WALL_BOUND`])
/// with an error naming the policy, and that the runtime still runs a good JavaScript
/// policy afterwards.
fn hostile(name: &str) -> PolicyError {
    let runtime = PolicyRuntime::new(None, Limits::default()).unwrap();
    let wasm = component(
        &format!("tests/policies/javascript/{name}/component.js"),
        "selector",
    );
    let policy = runtime
        .load::<Selector>(&PolicySource::File(wasm.clone()))
        .unwrap();
    let (started, cpu_started) = (Instant::now(), thread_cpu_time());
    let error = policy.select(&runtime, &request()).unwrap_err();
    let (elapsed, cpu) = (started.elapsed(), thread_cpu_time() - cpu_started);
    assert!(
        cpu < BOUND && elapsed < WALL_BOUND,
        "{name} held the call for {cpu:?} of CPU, {elapsed:?} in all: {error}"
    );
    assert!(
        error.to_string().contains(&wasm.display().to_string()),
        "the error does not name the policy: {error}"
    );

    let good = component(
        "guest-plugins/javascript/examples/by-namespace/component.js",
        "selector",
    );
    let good = runtime.load::<Selector>(&PolicySource::File(good)).unwrap();
    let chosen = good.select(&runtime, &request()).unwrap();
    assert_eq!(chosen[0].network_file, "10-calico.conf");
    error
}

/// The message of a policy's refusal (its `throw`), failing the test on any other error.
fn refusal(error: PolicyError) -> String {
    match error {
        PolicyError::Rejected { message, .. } => message,
        other => panic!("not a refusal: {other}"),
    }
}

#[test]
fn an_endless_loop_times_out() {
    let error = hostile("loop-forever");
    assert!(matches!(error, PolicyError::Timeout { .. }), "{error}");
    assert!(error.to_string().contains("time limit of 500ms"), "{error}");
}

/// QuickJS refuses the allocation the host's limiter refused and throws its own "out of
/// memory" error, which the SDK returns as the policy's error: the host reports its limit.
#[test]
fn unbounded_allocation_runs_out_of_memory() {
    let error = hostile("alloc-unbounded");
    assert!(matches!(error, PolicyError::MemoryLimit { .. }), "{error}");
    assert!(error.to_string().contains("its memory limit of"), "{error}");
}

#[test]
fn unbounded_recursion_overflows_the_stack() {
    let error = hostile("recurse");
    assert!(
        matches!(error, PolicyError::StackOverflow { .. }),
        "{error}"
    );
}

#[test]
fn an_exception_is_reported_with_its_cause() {
    assert_eq!(
        refusal(hostile("exception")),
        "TypeError: cannot read property 'file' of undefined"
    );
}

#[test]
fn files_env_and_network_are_refused_by_name() {
    for (name, what) in [
        (
            "reach-files",
            "cannot load modules, files or sockets (require)",
        ),
        (
            "reach-env",
            "cannot read environment variables (process.env)",
        ),
        ("reach-network", "cannot reach the network (fetch)"),
    ] {
        let message = refusal(hostile(name));
        assert!(message.contains(what), "{name}: {message}");
        assert!(
            message.contains("the sandbox gives it none"),
            "{name}: {message}"
        );
    }
}

/// `plexus policy test WASM CASES` succeeds with every case passed: its output.
fn passes(wasm: &Path, cases: &Path) -> String {
    let output = plexus_cli([
        Path::new("policy").as_os_str(),
        "test".as_ref(),
        wasm.as_os_str(),
        cases.as_os_str(),
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success() && stdout.contains(" passed, 0 failed"),
        "{}: {stdout}{}",
        wasm.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[test]
fn the_examples_pass_the_rust_examples_cases() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for (example, world) in [
        ("by-namespace", "selector"),
        ("vm-networks", "selector"),
        ("primary-routes", "merger"),
    ] {
        let wasm = component(
            &format!("guest-plugins/javascript/examples/{example}/component.js"),
            world,
        );
        passes(
            &wasm,
            &repo
                .join("guest-plugins/examples")
                .join(example)
                .join("cases"),
        );
    }
}

/// The memory the examples need: they run with `policyMemoryMiB` 2, what a Rust policy
/// needs too, and 1 MiB is refused naming the limit.
#[test]
fn the_examples_run_in_two_mib() {
    for (example, mib, runs) in [
        ("by-namespace", 2, true),
        ("vm-networks", 2, true),
        ("by-namespace", 1, false),
    ] {
        let wasm = component(
            &format!("guest-plugins/javascript/examples/{example}/component.js"),
            "selector",
        );
        let limits = Limits {
            memory_bytes: mib << 20,
            ..Limits::default()
        };
        let runtime = PolicyRuntime::new(None, limits).unwrap();
        let outcome = runtime
            .load::<Selector>(&PolicySource::File(wasm))
            .and_then(|policy| policy.select(&runtime, &request()));
        match outcome {
            Ok(chosen) => assert!(runs, "{example} ran in {mib} MiB: {chosen:?}"),
            Err(error) => {
                assert!(!runs, "{example} in {mib} MiB: {error}");
                assert!(matches!(error, PolicyError::MemoryLimit { .. }), "{error}");
            }
        }
    }
}

#[test]
fn the_annotations_equivalent_answers_as_the_builtin_on_the_fuzz_corpus() {
    let requests = fuzz_select_requests();
    assert!(requests.len() >= 16, "{} requests", requests.len());
    let dir = tempfile::tempdir().unwrap();
    let cases = cases_from_builtin("annotations", &requests, dir.path());
    let wasm = component(
        "guest-plugins/javascript/annotations/component.js",
        "selector",
    );
    let stdout = passes(&wasm, &cases);
    assert!(
        stdout.contains(&format!("{} passed, 0 failed", requests.len())),
        "{stdout}"
    );
}

#[test]
fn new_javascript_policies_build_and_pass_their_cases() {
    let dir = tempfile::tempdir().unwrap();
    for kind in ["select", "merge", "ipam"] {
        let name = format!("js-{kind}");
        let project = new_policy_project(dir.path(), &name, "javascript", kind);
        let npm = |script: &str| {
            let output = Command::new("npm")
                .args(["run", "--silent", script])
                .current_dir(&project)
                .output()
                .expect("run npm (scripts/setup installs node and npm)");
            assert!(
                output.status.success(),
                "{name}: npm run {script}:\n{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        };
        npm("test");
        npm("build");
        let wasm = project.join(format!("{name}.wasm"));
        passes(&wasm, &project.join("cases"));
    }
}
