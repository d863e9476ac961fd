//! `plexus dhcp serve` and `plexus dhcp restore`: the DHCP servers of VM NICs, run and
//! brought back by hand (see `dhcp_process`, which owns them).

use std::path::Path;
use std::process::ExitCode;

use super::CliResult;
use crate::dhcp_process::{self, Restored};
use crate::state::StateLayout;

/// Serves the lease in `state` until SIGTERM, or until the NIC or its pod is gone.
pub fn serve(state: &Path, worker: bool) -> CliResult {
    dhcp_process::serve(state, worker)?;
    Ok(ExitCode::SUCCESS)
}

/// Starts the servers a node lost, one line per state file, then a count of each outcome.
pub fn restore(state_dir: &Path, log_file: Option<&Path>) -> CliResult {
    let layout = StateLayout::new(state_dir);
    let (mut started, mut running, mut skipped, mut failed) = (0, 0, 0, 0);
    dhcp_process::restore(&layout, log_file, |state, config, outcome| {
        let file = state
            .file_name()
            .map(|name| name.to_string_lossy())
            .unwrap_or_default();
        let nic = match config {
            Some(config) => format!(
                "{file} ({} in {})",
                config.interface,
                config.netns.display()
            ),
            None => file.into_owned(),
        };
        match outcome {
            Restored::Started(pid) => {
                println!("{nic}: started (pid {pid})");
                started += 1;
            }
            Restored::AlreadyServed(pid) => {
                println!("{nic}: already served (pid {pid})");
                running += 1;
            }
            Restored::NetnsGone => {
                println!("{nic}: skipped: the namespace is gone");
                skipped += 1;
            }
            Restored::InterfaceGone => {
                println!("{nic}: skipped: the interface is gone");
                skipped += 1;
            }
            Restored::Failed(error) => {
                println!("{nic}: failed: {error}");
                failed += 1;
            }
        }
    })?;
    println!("{started} started, {running} already served, {skipped} skipped, {failed} failed");
    if failed > 0 {
        return Err(format!(
            "{failed} DHCP server(s) could not be restored from {}",
            layout.dhcp_dir().display()
        )
        .into());
    }
    Ok(ExitCode::SUCCESS)
}
