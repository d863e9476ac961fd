//! `plexus dhcp serve`: the DHCP server of one VM NIC, started detached by ADD and
//! stopped by DEL. Everything it serves is in its state file, so restarting the same
//! command is a full recovery.

use std::path::Path;
use std::process::ExitCode;

use plexus_dhcp::{ServerConfig, Stop, serve};
use signal_hook::consts::{SIGINT, SIGTERM};

use super::CliResult;

pub fn serve_state(state: &Path) -> CliResult {
    let config = ServerConfig::load(state).map_err(|err| err.to_string())?;
    let stop = Stop::new().map_err(|err| format!("cannot set up stopping: {err}"))?;
    for signal in [SIGTERM, SIGINT] {
        let wake = stop
            .signal_fd()
            .try_clone_to_owned()
            .map_err(|err| format!("cannot set up stopping: {err}"))?;
        signal_hook::low_level::pipe::register(signal, wake)
            .map_err(|err| format!("cannot handle signal {signal}: {err}"))?;
    }
    let stopped = serve(&config, &stop).map_err(|err| err.to_string())?;
    tracing::info!(state = %state.display(), ?stopped, "DHCP server stopped");
    Ok(ExitCode::SUCCESS)
}
