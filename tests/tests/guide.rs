//! docs/writing-a-policy.md, executed: every `sh` block of the guide, in order, in an
//! empty directory, with the freshly built `plexus` on `PATH` — as a newcomer would type
//! them. If the guide and the product drift apart, this fails.

use std::path::Path;
use std::process::Command;

use plexus_tests::plexus_binary;

#[test]
fn the_first_policy_guide_runs_verbatim() {
    let guide_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/writing-a-policy.md");
    let guide = std::fs::read_to_string(&guide_path).unwrap();
    let script = sh_blocks(&guide);
    assert!(
        script.contains("plexus policy new"),
        "the guide starts from the scaffold"
    );

    let workdir = tempfile::tempdir().unwrap();
    let bin_dir = plexus_binary().parent().unwrap().to_owned();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let output = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(workdir.path())
        .env("PATH", path)
        // The guide's project is its own; the test's cargo settings are not the reader's.
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the guide failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        stdout.matches("2 passed, 0 failed").count(),
        3,
        "the scaffold's own cases pass as a component, in Rust, Python and JavaScript: {stdout}"
    );
    assert!(
        stdout.contains("3 passed, 0 failed"),
        "the guide's cases pass: {stdout}"
    );
    assert!(
        stdout.contains("2 passed in") && stdout.contains("# pass 2"),
        "the Python and JavaScript scaffolds' cases pass natively (pytest, node --test): {stdout}"
    );
    let explained = stdout
        .lines()
        .skip_while(|line| !line.starts_with("pod analytics/etl-0"))
        .collect::<Vec<_>>();
    assert!(
        explained
            .iter()
            .any(|line| line.contains("eth1") && line.contains("storage")),
        "{stdout}"
    );
}

/// docs/rolling-out-a-policy.md, executed against a real registry on loopback: push,
/// pull, the configuration, sync, save and load, as an operator would type them.
#[test]
fn the_rollout_guide_runs_verbatim() {
    let guide_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/rolling-out-a-policy.md");
    let script = sh_blocks(&std::fs::read_to_string(&guide_path).unwrap());
    let registry = plexus_tests::registry::Registry::start();
    let workdir = tempfile::tempdir().unwrap();
    let bin_dir = plexus_binary().parent().unwrap().to_owned();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let output = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(workdir.path())
        .env("PATH", path)
        .env("REGISTRY", registry.address())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the guide failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let reference = registry.reference("policies/select", ":v1");
    let lines: Vec<&str> = stdout.lines().collect();
    let digest = lines[0];
    assert!(
        digest.starts_with("sha256:"),
        "push prints the digest first: {stdout}"
    );
    for expected in [
        format!("activated {reference} {digest}"),
        format!("unchanged {reference} {digest}"),
        format!("saved {reference} {digest}"),
    ] {
        assert!(stdout.contains(&expected), "{expected:?} in {stdout}");
    }
    assert_eq!(
        stdout
            .matches(&format!("activated {reference} {digest}"))
            .count(),
        2,
        "pulled, then loaded on the air-gapped node: {stdout}"
    );
}

/// The contents of every fenced block marked `sh`, in order.
fn sh_blocks(markdown: &str) -> String {
    let mut script = String::new();
    let mut inside = false;
    for line in markdown.lines() {
        if inside {
            if line.trim_start().starts_with("```") {
                inside = false;
            } else {
                script.push_str(line);
                script.push('\n');
            }
        } else if line.trim() == "```sh" {
            inside = true;
        }
    }
    script
}
