//! `plexus`: a CNI plugin when `CNI_COMMAND` is set, a command-line tool otherwise.

mod builtins;
mod cli;
mod config;
mod error;
mod flock;
mod logging;
mod network_status;
mod networks;
mod plugin;
mod pod;
mod policy_io;
mod recording;
mod state;

use std::process::ExitCode;

fn main() -> ExitCode {
    if std::env::var_os("CNI_COMMAND").is_some() {
        plugin::main()
    } else {
        cli::main()
    }
}
