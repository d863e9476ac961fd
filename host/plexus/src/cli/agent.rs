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
    /// The plexus configuration's `networksDir` (where install puts it: the runtime's
    /// conf dir): with it, the size of each `plexus-ipam` network's pool is reported.
    #[arg(long)]
    networks_dir: Option<PathBuf>,
    /// The container runtime's CRI socket (containerd: /run/containerd/containerd.sock):
    /// with it, the agent tears down the attachments of sandboxes the runtime no longer
    /// lists; without it, it collects nothing.
    #[arg(long)]
    cri_socket: Option<PathBuf>,
    /// Seconds a sandbox must have been gone (and its records old) before GC touches it.
    #[arg(long, default_value_t = 60)]
    grace: u64,
    /// Where delegate plugins are, for GC's DEL (the runtime's CNI bin directories).
    #[arg(long, default_value = "/opt/cni/bin", value_delimiter = ':')]
    cni_path: Vec<PathBuf>,
    /// Seconds one delegate's DEL may take during GC.
    #[arg(long, default_value_t = 60)]
    delegate_timeout: u64,
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
        networks_dir: args.networks_dir.clone(),
        gc: args.cri_socket.as_ref().map(|socket| agent::GcOptions {
            cri_socket: socket.clone(),
            grace: Duration::from_secs(args.grace),
            cni_path: args.cni_path.clone(),
            delegate_timeout: Duration::from_secs(args.delegate_timeout.max(1)),
        }),
    };
    agent::run(&options)?;
    Ok(ExitCode::SUCCESS)
}
