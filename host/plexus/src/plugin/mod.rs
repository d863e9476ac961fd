//! `plexus` run as a CNI plugin: one invocation, read from the environment and stdin,
//! answered with one JSON document on stdout.

mod add;
mod check;
mod delegates;
mod gc;
mod shadow;
mod status;
mod teardown;

use std::process::ExitCode;
use std::time::Instant;

use plexus_cni::{Command, Invocation};
use plexus_policy::{PolicyRuntime, Selector};
use serde_json::Value;
use tracing::debug;

use crate::canary;
use crate::cni_io;
use crate::config::{Canary, ConfigError, PluginConfig};
use crate::error::PlexusError;
use crate::logging;
use crate::pod::PodIdentity;
use crate::selection::load_policy;
use crate::state::{DecidedBy, StateStore};
use crate::trace::{self, Notebook, Notes, TraceRecord};

/// What one invocation works with.
pub(crate) struct Context {
    pub invocation: Invocation,
    pub config: PluginConfig,
    pub store: StateStore,
    /// What this invocation's trace record will name: networks, policies.
    pub notes: Notebook,
}

impl Context {
    /// The policy runtime, made only by the commands that run policies: DEL never pays
    /// for an engine.
    fn policy_runtime(&self) -> Result<PolicyRuntime, PlexusError> {
        Ok(PolicyRuntime::new(
            Some(self.store.layout().cache_dir()),
            self.config.common.policy_limits,
        )?)
    }

    /// The configured selection policy (`select`), and which it is.
    fn selector(&self, runtime: &PolicyRuntime) -> Result<(Selector, DecidedBy), PlexusError> {
        load_policy(
            runtime,
            &self.config.common,
            Some(&self.store),
            "select",
            &self.config.select,
        )
    }

    /// `selectCanary`, when this pod is in its share (by pod UID): the same answer for
    /// every invocation of the pod.
    fn canary(&self) -> Option<&Canary> {
        let canary = self.config.select_canary.as_ref()?;
        let uid = PodIdentity::from_args(&self.invocation.args).uid;
        canary::is_canary(Some(&uid), canary.percent).then_some(canary)
    }

    /// How this invocation runs delegates: from its `CNI_PATH`, each call bounded by
    /// `delegateTimeoutSeconds`.
    fn delegates(&self) -> plexus_cni::Runner<'_> {
        plexus_cni::Runner::new(&self.invocation.path).with_timeout(self.config.delegate_timeout)
    }

    fn container_id(&self) -> &str {
        self.invocation.container_id.as_deref().unwrap_or_default()
    }

    fn ifname(&self) -> &str {
        self.invocation.ifname.as_deref().unwrap_or_default()
    }
}

/// Runs the invocation and prints its answer; the exit status tells success.
pub fn main() -> ExitCode {
    cni_io::serve(run)
}

fn run(invocation: Invocation, stdin: &[u8]) -> Result<Option<Value>, PlexusError> {
    if invocation.command == Command::Version {
        return Ok(Some(cni_io::version()));
    }
    let started = Instant::now();
    let config = PluginConfig::from_slice(stdin)?;
    logging::init(config.common.log_file.as_deref(), &config.common.log_level);
    debug!(command = %invocation.command, container = ?invocation.container_id, "invoked");
    let (command, layout) = (invocation.command, config.common.state_layout());
    let mut notes = Notes::default();
    let delegate_before = trace::delegate_elapsed();
    let outcome = dispatch(invocation, config, &mut notes);
    // Every invocation that got as far as knowing its stateDir leaves a record, failed
    // ones too; one whose configuration does not even parse has nowhere to leave it.
    let record = TraceRecord::new(
        command,
        &outcome,
        started.elapsed(),
        trace::delegate_elapsed().saturating_sub(delegate_before),
        notes,
    );
    trace::append_or_warn(&layout, &record);
    outcome
}

fn dispatch(
    invocation: Invocation,
    config: PluginConfig,
    notes: &mut Notes,
) -> Result<Option<Value>, PlexusError> {
    cni_io::check_command_version(invocation.command, config.cni_version)?;
    check_first_in_list(invocation.command, &config)?;
    let store = StateStore::open(&config.common.state_dir)?;
    let context = Context {
        invocation,
        config,
        store,
        notes: Notebook::default(),
    };
    let outcome = match context.invocation.command {
        Command::Add => add::add(&context).map(Some),
        Command::Del => teardown::del(&context).map(|()| None),
        Command::Check => check::check(&context).map(|()| None),
        Command::Gc => gc::gc(&context).map(|()| None),
        Command::Status => status::status(&context).map(|()| None),
        Command::Version => Ok(Some(cni_io::version())),
    };
    *notes = context.notes.into_notes();
    outcome
}

/// Tears down every attachment recorded for `container_id`, as DEL would, and forgets
/// them; the agent's GC of a pod whose sandbox is gone. Takes the container's lock, so
/// it never runs beside an invocation for the same container, and asks `confirm`, under
/// that lock and with the records as they are then, whether to go on: what was decided
/// before the lock (an ADD may have held it) is decided again. Returns how many records
/// were removed; every record is tried, and the first failure is returned.
pub fn collect_container(
    store: &StateStore,
    container_id: &str,
    delegates: plexus_cni::Runner<'_>,
    confirm: impl FnOnce(&[crate::state::Record]) -> bool,
) -> Result<usize, PlexusError> {
    let _lock = store.lock(container_id)?;
    let records = store.records_of(container_id)?;
    if records.is_empty() || !confirm(&records) {
        return Ok(0);
    }
    let mut freed = 0;
    let mut first_error = None;
    for record in &records {
        // The sandbox is gone; its recorded namespace may still be pinned, or not. One
        // delegate after another: the agent is in no hurry, and the node's runtime may be
        // busy with the pods that are alive.
        match teardown::undo_record(store, record, delegates, record.netns.as_deref(), false) {
            Ok(()) => freed += 1,
            Err(error) => {
                first_error.get_or_insert(error);
            }
        }
    }
    match first_error {
        Some(error) => Err(error),
        None => Ok(freed),
    }
}

/// Plexus makes the pod's interfaces itself, so it must come first in its list.
fn check_first_in_list(command: Command, config: &PluginConfig) -> Result<(), PlexusError> {
    if command == Command::Add && config.document.get("prevResult").is_some() {
        return Err(PlexusError::Config(ConfigError::Key {
            key: "prevResult",
            reason: "plexus must be the first plugin of its list: it makes the pod's \
                     interfaces itself"
                .into(),
        }));
    }
    Ok(())
}
