//! `plexus demo`: runs the demo, `plexus-demo`, which a checkout builds beside the binary
//! (`scripts/demo`). The plugin installed on nodes does not carry it: booting a VM is not
//! a node's business.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::Command;

use super::CliResult;

/// The demo program, looked for beside this binary.
const DEMO_PROGRAM: &str = "plexus-demo";

/// Replaces this process with the demo, telling it to run this binary as the plugin.
pub fn run(args: &[OsString]) -> CliResult {
    let plexus = std::env::current_exe()?;
    let demo = plexus.with_file_name(DEMO_PROGRAM);
    if !demo.is_file() {
        return Err(format!(
            "{DEMO_PROGRAM} is not beside {}: the demo comes with a Plexus checkout, \
             run it with `bash scripts/demo`",
            plexus.display()
        )
        .into());
    }
    let error = Command::new(&demo)
        .arg("--plexus")
        .arg(&plexus)
        .args(args)
        .exec();
    Err(format!("cannot run {}: {error}", demo.display()).into())
}
