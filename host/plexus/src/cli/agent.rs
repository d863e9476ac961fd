//! `plexus agent`: the node agent (see `crate::agent`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use super::CliResult;
use crate::agent::{self, AgentOptions};
use crate::config::DEFAULT_STATE_DIR;

#[derive(Args)]
pub struct AgentArgs {
    /// The `stateDir` of the plexus configuration.
    #[arg(long, default_value = DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
    /// Where to serve OpenMetrics text (`GET /metrics`); loopback by default, so that
    /// only the node itself (and a scraper on it) can read it.
    #[arg(long, default_value = "127.0.0.1:9631")]
    metrics_addr: SocketAddr,
    /// Seconds between two rounds of reading the trace and the stateDir.
    #[arg(long, default_value_t = 10)]
    interval: u64,
    /// The agent's log (appended), also where restored DHCP servers log; by default
    /// stderr for the agent and nowhere for the servers.
    #[arg(long)]
    log_file: Option<PathBuf>,
}

pub fn run(args: &AgentArgs) -> CliResult {
    crate::logging::init(args.log_file.as_deref(), "info");
    let options = AgentOptions {
        state_dir: args.state_dir.clone(),
        metrics_addr: args.metrics_addr,
        interval: Duration::from_secs(args.interval.max(1)),
        log_file: args.log_file.clone(),
    };
    agent::run(&options)?;
    Ok(ExitCode::SUCCESS)
}
