//! `plexus` without `CNI_COMMAND`: tools for operators and policy authors.

mod activate;
mod agent;
mod archive;
pub mod cases;
mod demo;
mod dhcp;
mod explain;
mod install;
mod policies;
mod policy;
mod pull;
mod push;
mod scaffold;
mod sync;
mod vm;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::DEFAULT_STATE_DIR;
use crate::state::StateStore;

#[derive(Parser)]
#[command(
    name = "plexus",
    version,
    about = "A CNI meta-plugin whose network choice is a WebAssembly policy"
)]
struct Cli {
    #[command(subcommand)]
    command: CliCommand,
}

#[derive(Subcommand)]
enum CliCommand {
    /// Run, test and precompile policies offline.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// The node agent: restores lost VM DHCP servers, serves metrics from the invocation
    /// trace; runs until killed.
    Agent(agent::AgentArgs),
    /// The policies this node uses and where each stands: reference, kind, active digest,
    /// verifying key, last-good, state (active, degraded, not pulled, unverified).
    Policies {
        /// The `stateDir` whose policy store to read.
        #[arg(long, default_value = DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
        /// List exactly the policies this plexus configuration names (its stateDir and
        /// policyVerifyKey apply).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Print them as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the recorded network-status of a container's attachments and the policies
    /// that decided them.
    Status {
        container_id: String,
        /// The `stateDir` of the plexus configuration.
        #[arg(long, default_value = DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
    },
    /// VM pods, for their VM runtime.
    #[command(subcommand)]
    Vm(VmCommand),
    /// The DHCP server of a VM NIC (started by the plugin for VM pods).
    #[command(subcommand)]
    Dhcp(DhcpCommand),
    /// What selection would give a described pod, touching nothing.
    Explain(explain::ExplainArgs),
    /// Make Plexus the runtime's pod network: the binary and `plexus-ipam` into the
    /// plugin directory, `00-plexus.conflist` (the previous first network as the
    /// default network) into the configuration directory.
    Install(install::InstallArgs),
    /// Remove what `plexus install` wrote (and only that): the runtime's previous
    /// network is its pod network again.
    Uninstall(install::UninstallArgs),
    /// The main job on this machine: two networks into one pod, and into a VM pod's VM,
    /// then gone again (runs `plexus-demo`, which a checkout builds beside plexus).
    #[command(disable_help_flag = true)]
    Demo {
        /// Passed on to `plexus-demo` (`--help` lists them).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
}

#[derive(Subcommand)]
enum VmCommand {
    /// Print a VM pod's NICs as its VM runtime reads them (`stateDir/vm/CONTAINER.json`).
    Describe {
        container_id: String,
        /// The `stateDir` of the plexus configuration.
        #[arg(long, default_value = DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum DhcpCommand {
    /// Serve the lease in a state file until SIGTERM, or until the NIC or its pod is gone.
    Serve {
        #[arg(long)]
        state: PathBuf,
        /// Serve in this process, unsupervised (what the supervisor runs).
        #[arg(long, hide = true)]
        worker: bool,
    },
    /// Start the DHCP server of every VM NIC recorded under the state directory that is
    /// still there and not served (after a node lost its processes); idempotent.
    Restore {
        /// The `stateDir` of the plexus configuration.
        #[arg(long, default_value = DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
        /// Where the servers it starts log (appended); by default nowhere.
        #[arg(long)]
        log_file: Option<PathBuf>,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // A DHCP server's log is its record of what it served; the tools speak only of trouble.
    // The agent sets up its own log (it may go to a file).
    if let CliCommand::Agent(args) = &cli.command {
        return finish(agent::run(args));
    }
    let level = if matches!(cli.command, CliCommand::Dhcp(_)) {
        "info"
    } else {
        "warn"
    };
    crate::logging::init(None, level);
    let outcome = match cli.command {
        CliCommand::Agent(args) => agent::run(&args),
        CliCommand::Policy(command) => policy::run(command),
        CliCommand::Status {
            container_id,
            state_dir,
        } => status(&container_id, &state_dir),
        CliCommand::Policies {
            state_dir,
            config,
            json,
        } => policies::run(&state_dir, config.as_deref(), json),
        CliCommand::Vm(VmCommand::Describe {
            container_id,
            state_dir,
        }) => vm::describe(&container_id, &state_dir),
        CliCommand::Dhcp(DhcpCommand::Serve { state, worker }) => dhcp::serve(&state, worker),
        CliCommand::Dhcp(DhcpCommand::Restore {
            state_dir,
            log_file,
        }) => dhcp::restore(&state_dir, log_file.as_deref()),
        CliCommand::Explain(args) => explain::run(&args),
        CliCommand::Install(args) => install::run_install(&args),
        CliCommand::Uninstall(args) => install::run_uninstall(&args),
        CliCommand::Demo { args } => demo::run(&args),
    };
    finish(outcome)
}

fn finish(outcome: CliResult) -> ExitCode {
    match outcome {
        Ok(code) => code,
        Err(message) => {
            eprintln!("plexus: {message}");
            ExitCode::FAILURE
        }
    }
}

/// A command's outcome; a failure is told to a person, on stderr.
type CliResult = Result<ExitCode, CliError>;

/// Why a command failed: a library's typed error, or a message of the command's own.
type CliError = Box<dyn std::error::Error + Send + Sync>;

fn status(container_id: &str, state_dir: &std::path::Path) -> CliResult {
    plexus_cni::validate_container_id(container_id)
        .map_err(|reason| format!("container id {container_id:?}: {reason}"))?;
    let store = StateStore::open(state_dir)?;
    let records = store.records_of(container_id)?;
    if records.is_empty() {
        return Err(format!(
            "no attachment recorded for container {container_id} in {}",
            state_dir.display()
        )
        .into());
    }
    let statuses: Vec<_> = records
        .iter()
        .flat_map(|record| record.network_status.iter())
        .collect();
    // One record per interface the runtime asked for, all made by the same policies
    // bar a configuration change in between: the first one's say which.
    let json = serde_json::to_string_pretty(&serde_json::json!({
        "network-status": statuses,
        "decided-by": records[0].decided_by,
    }))?;
    println!("{json}");
    Ok(ExitCode::SUCCESS)
}
