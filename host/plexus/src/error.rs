//! Every way an invocation can fail, and the one place they become CNI error codes.

use std::fmt;
use std::io;

use plexus_cni::{CniError, DelegateError, code};
use plexus_ipam_store::StoreError;
use plexus_policy::PolicyError;

use crate::config::ConfigError;
use crate::networks::NetworksError;
use crate::pod::PodError;
use crate::state::StateError;
use crate::vm::VmError;

/// Plexus's own error codes (the CNI spec leaves 100 and up to plugins).
pub mod plexus_code {
    /// A policy could not be loaded: missing file, not a component, wrong world, unknown built-in.
    pub const POLICY_LOAD: u32 = 100;
    /// A policy trapped: it ran out of time, memory or stack, or panicked.
    pub const POLICY_FAULT: u32 = 101;
    /// A policy returned an error of its own, e.g. a pod asks for a network that does not exist.
    pub const POLICY_REJECTED: u32 = 102;
    /// A policy's answer cannot be used: a selection with invalid or duplicate interface
    /// names, an unknown network or too many attachments; a malformed merged result.
    pub const INVALID_ANSWER: u32 = 103;
    /// A delegate plugin failed; what was already attached has been rolled back.
    pub const DELEGATE_FAILED: u32 = 104;
    /// Undoing attachments failed for some delegates; the record is kept so DEL can retry.
    pub const TEARDOWN_INCOMPLETE: u32 = 105;
    /// ADD for an interface that is already attached (DEL it first).
    pub const ALREADY_ATTACHED: u32 = 106;
    /// Handing a VM pod's interfaces to its VM failed (bridge, tap, DHCP); what was
    /// attached has been rolled back.
    pub const VM_PLUMBING: u32 = 107;
}

#[derive(Debug, thiserror::Error)]
pub enum PlexusError {
    #[error(transparent)]
    Env(#[from] plexus_cni::EnvError),
    #[error("cannot read the network configuration from stdin: {0}")]
    Stdin(#[source] io::Error),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Networks(#[from] NetworksError),
    #[error(transparent)]
    Pod(#[from] PodError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("configuration key `{key}`: {source}")]
    PolicySpec {
        key: &'static str,
        #[source]
        source: PolicyError,
    },
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// An `oci://` policy this node's store does not hold: ADD never fetches one.
    #[error(
        "policy {policy} ({key}) is not in this node's policy store ({store}); pull it: \
         plexus policy pull {policy} --state-dir {state_dir}"
    )]
    PolicyNotPulled {
        policy: String,
        key: &'static str,
        store: String,
        state_dir: String,
    },
    /// `policyVerifyKey` is set and the stored version was not verified with that key.
    #[error(
        "policy {policy} ({key}) is not verified with policyVerifyKey {key_path} ({key_id}): \
         {why}; pull it again with --verify-key {key_path}"
    )]
    PolicyUnverified {
        policy: String,
        key: &'static str,
        key_path: String,
        key_id: String,
        why: String,
    },
    /// A stored component whose bytes no longer hash to its digest.
    #[error(
        "policy {policy} ({key}): stored component sha256:{expected} is damaged \
         (reads as sha256:{actual}); pull it again"
    )]
    StoredPolicyDamaged {
        policy: String,
        key: &'static str,
        expected: String,
        actual: String,
    },
    #[error("policy {policy} gave an answer that cannot be used: {reason}")]
    InvalidAnswer { policy: String, reason: String },
    #[error("{}", delegate_message(network, source, rollback))]
    Delegate {
        network: String,
        /// Boxed: a delegate's error carries its output and is far larger than the rest.
        source: Box<DelegateError>,
        /// Failures while rolling back the attachments already made.
        rollback: Vec<TeardownFailure>,
    },
    #[error("{}", teardown_message(.0))]
    Teardown(Vec<TeardownFailure>),
    #[error("container {container_id} already has interface {ifname} attached; DEL it first")]
    AlreadyAttached {
        container_id: String,
        ifname: String,
    },
    #[error("container {container_id} has no attachment on interface {ifname}")]
    UnknownAttachment {
        container_id: String,
        ifname: String,
    },
    #[error("{0}")]
    NotAvailable(String),
    #[error(transparent)]
    Vm(#[from] VmError),
    #[error("CNI {version} has no {command}")]
    NotInVersion {
        command: plexus_cni::Command,
        version: plexus_cni::CniVersion,
    },
    #[error("{error}; rolling back also failed: {}", join(rollback))]
    RollbackFailed {
        error: Box<PlexusError>,
        rollback: Vec<TeardownFailure>,
    },
    #[error("plexus failed unexpectedly: {0}")]
    Internal(String),
    /// A lock file could not be taken.
    #[error("cannot lock {}: {source}", path.display())]
    Lock {
        path: std::path::PathBuf,
        #[source]
        source: io::Error,
    },
    /// An address store could not be opened or used (`plexus-ipam`).
    #[error(transparent)]
    Store(#[from] plexus_ipam_store::StoreError),
    /// A `plexus-ipam` failure, with the network it was for.
    #[error("network {network}: {source}")]
    Ipam {
        network: String,
        source: Box<PlexusError>,
    },
}

/// One delegate that could not be undone.
#[derive(Debug)]
pub struct TeardownFailure {
    pub network: String,
    /// The attachment's interface in the pod; empty for a network-wide GC.
    pub ifname: String,
    /// A delegate's DEL or GC, or the VM plumbing in front of it.
    pub error: Box<dyn std::error::Error + Send + Sync>,
}

impl fmt::Display for TeardownFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.ifname.is_empty() {
            write!(f, "network {}: {}", self.network, self.error)
        } else {
            write!(
                f,
                "network {} ({}): {}",
                self.network, self.ifname, self.error
            )
        }
    }
}

fn delegate_message(network: &str, error: &DelegateError, rollback: &[TeardownFailure]) -> String {
    let mut message = format!("network {network}: {error}");
    if !rollback.is_empty() {
        message.push_str("; rolling back also failed: ");
        message.push_str(&join(rollback));
    }
    message
}

fn teardown_message(failures: &[TeardownFailure]) -> String {
    format!(
        "{} delegate(s) could not be removed: {}",
        failures.len(),
        join(failures)
    )
}

fn join(failures: &[TeardownFailure]) -> String {
    failures
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl PlexusError {
    /// This error, with the failures of the rollback it caused, if any.
    pub fn with_rollback(self, rollback: Vec<TeardownFailure>) -> Self {
        if rollback.is_empty() {
            self
        } else {
            PlexusError::RollbackFailed {
                error: Box::new(self),
                rollback,
            }
        }
    }

    /// The error as the CNI spec wants it on stdout.
    pub fn to_cni(&self) -> CniError {
        let code = match self {
            PlexusError::RollbackFailed { error, .. } => error.to_cni().code,
            PlexusError::Ipam { source, .. } => source.to_cni().code,
            PlexusError::Store(StoreError::Unreachable { .. }) => code::TRY_AGAIN_LATER,
            PlexusError::Store(StoreError::InvalidNetwork { .. } | StoreError::Config { .. }) => {
                code::INVALID_CONFIG
            }
            PlexusError::Store(_) | PlexusError::Lock { .. } => code::IO_FAILURE,
            PlexusError::NotInVersion { .. } => code::INCOMPATIBLE_VERSION,
            PlexusError::Internal(_) => code::INTERNAL,
            PlexusError::Env(_) => code::INVALID_ENVIRONMENT,
            PlexusError::Stdin(_) => code::IO_FAILURE,
            PlexusError::Config(ConfigError::Decode(_)) => code::DECODE,
            PlexusError::Config(ConfigError::Version(_)) => code::INCOMPATIBLE_VERSION,
            PlexusError::Config(_) => code::INVALID_CONFIG,
            PlexusError::PolicySpec { source, .. } => policy_code(source),
            PlexusError::Networks(NetworksError::ReadDir { .. } | NetworksError::Broken { .. }) => {
                code::INVALID_CONFIG
            }
            PlexusError::Pod(_) => code::DECODE,
            PlexusError::State(_) => code::IO_FAILURE,
            PlexusError::Policy(error) => policy_code(error),
            PlexusError::PolicyNotPulled { .. }
            | PlexusError::PolicyUnverified { .. }
            | PlexusError::StoredPolicyDamaged { .. } => plexus_code::POLICY_LOAD,
            PlexusError::InvalidAnswer { .. } => plexus_code::INVALID_ANSWER,
            PlexusError::Delegate { .. } => plexus_code::DELEGATE_FAILED,
            PlexusError::Teardown(_) => plexus_code::TEARDOWN_INCOMPLETE,
            PlexusError::AlreadyAttached { .. } => plexus_code::ALREADY_ATTACHED,
            PlexusError::UnknownAttachment { .. } => code::UNKNOWN_CONTAINER,
            PlexusError::NotAvailable(_) => code::NOT_AVAILABLE,
            PlexusError::Vm(VmError::State(_)) => code::IO_FAILURE,
            PlexusError::Vm(
                VmError::Plumbing(_)
                | VmError::Dhcp(_)
                | VmError::DhcpProcess(_)
                | VmError::NoAddress { .. }
                | VmError::Broken { .. },
            ) => plexus_code::VM_PLUMBING,
        };
        let error = CniError::new(code, self.to_string());
        match self {
            PlexusError::Delegate { source, .. } => match source.code() {
                Some(delegate_code) => {
                    error.with_details(format!("the delegate returned code {delegate_code}"))
                }
                None => error,
            },
            _ => error,
        }
    }
}

fn policy_code(error: &PolicyError) -> u32 {
    match error {
        // The store is down or unreadable, not the policy wrong: the runtime should retry.
        PolicyError::StoreUnavailable { .. } => code::TRY_AGAIN_LATER,
        PolicyError::UndoIncomplete { error, .. } => policy_code(error),
        PolicyError::Rejected { .. } => plexus_code::POLICY_REJECTED,
        PolicyError::Timeout { .. }
        | PolicyError::MemoryLimit { .. }
        | PolicyError::StackOverflow { .. }
        | PolicyError::Panic { .. }
        | PolicyError::Trap { .. } => plexus_code::POLICY_FAULT,
        PolicyError::Setup { .. }
        | PolicyError::Read { .. }
        | PolicyError::UnknownBuiltin { .. }
        | PolicyError::Invalid { .. }
        | PolicyError::WrongWorld { .. }
        | PolicyError::NeedsNewerHost { .. }
        | PolicyError::Damaged { .. }
        | PolicyError::Cache { .. } => plexus_code::POLICY_LOAD,
    }
}

/// Why an invocation failed, coarser than its message and finer than its CNI code: the
/// `cause` label of the agent's failure counts. Several codes share a cause and one code
/// spans several (a policy fault is a timeout, a memory limit or a trap).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Cause {
    PolicyTimeout,
    PolicyMemory,
    /// A policy trapped otherwise: stack, panic, a trap.
    PolicyFault,
    PolicyRejected,
    PolicyLoad,
    InvalidAnswer,
    DelegateFailure,
    DelegateTimeout,
    StoreUnreachable,
    /// The configuration, the environment or stdin the runtime gave.
    Config,
    /// The stateDir or a lock could not be used.
    State,
    Teardown,
    Vm,
    AlreadyAttached,
    UnknownAttachment,
    NotAvailable,
    Internal,
}

impl Cause {
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::PolicyTimeout => "policy-timeout",
            Cause::PolicyMemory => "policy-memory",
            Cause::PolicyFault => "policy-fault",
            Cause::PolicyRejected => "policy-rejected",
            Cause::PolicyLoad => "policy-load",
            Cause::InvalidAnswer => "invalid-answer",
            Cause::DelegateFailure => "delegate-failure",
            Cause::DelegateTimeout => "delegate-timeout",
            Cause::StoreUnreachable => "store-unreachable",
            Cause::Config => "config",
            Cause::State => "state",
            Cause::Teardown => "teardown",
            Cause::Vm => "vm",
            Cause::AlreadyAttached => "already-attached",
            Cause::UnknownAttachment => "unknown-attachment",
            Cause::NotAvailable => "not-available",
            Cause::Internal => "internal",
        }
    }
}

impl PlexusError {
    /// The cause category of this error; exhaustive, like [`PlexusError::to_cni`], so a
    /// new variant does not compile until it has one.
    pub fn cause(&self) -> Cause {
        match self {
            PlexusError::RollbackFailed { error, .. } => error.cause(),
            PlexusError::Ipam { source, .. } => source.cause(),
            PlexusError::Store(StoreError::Unreachable { .. }) => Cause::StoreUnreachable,
            PlexusError::Store(StoreError::InvalidNetwork { .. } | StoreError::Config { .. }) => {
                Cause::Config
            }
            PlexusError::Store(_) | PlexusError::Lock { .. } | PlexusError::State(_) => {
                Cause::State
            }
            PlexusError::NotInVersion { .. }
            | PlexusError::Env(_)
            | PlexusError::Stdin(_)
            | PlexusError::Config(_)
            | PlexusError::Networks(_)
            | PlexusError::Pod(_) => Cause::Config,
            PlexusError::Internal(_) => Cause::Internal,
            PlexusError::PolicySpec { source, .. } | PlexusError::Policy(source) => {
                policy_cause(source)
            }
            PlexusError::PolicyNotPulled { .. }
            | PlexusError::PolicyUnverified { .. }
            | PlexusError::StoredPolicyDamaged { .. } => Cause::PolicyLoad,
            PlexusError::InvalidAnswer { .. } => Cause::InvalidAnswer,
            PlexusError::Delegate { source, .. } => match source.kind {
                plexus_cni::DelegateErrorKind::TimedOut { .. } => Cause::DelegateTimeout,
                _ => Cause::DelegateFailure,
            },
            PlexusError::Teardown(_) => Cause::Teardown,
            PlexusError::AlreadyAttached { .. } => Cause::AlreadyAttached,
            PlexusError::UnknownAttachment { .. } => Cause::UnknownAttachment,
            PlexusError::NotAvailable(_) => Cause::NotAvailable,
            PlexusError::Vm(VmError::State(_)) => Cause::State,
            PlexusError::Vm(_) => Cause::Vm,
        }
    }
}

fn policy_cause(error: &PolicyError) -> Cause {
    match error {
        PolicyError::StoreUnavailable { .. } => Cause::StoreUnreachable,
        PolicyError::UndoIncomplete { error, .. } => policy_cause(error),
        PolicyError::Rejected { .. } => Cause::PolicyRejected,
        PolicyError::Timeout { .. } => Cause::PolicyTimeout,
        PolicyError::MemoryLimit { .. } => Cause::PolicyMemory,
        PolicyError::StackOverflow { .. }
        | PolicyError::Panic { .. }
        | PolicyError::Trap { .. } => Cause::PolicyFault,
        PolicyError::Setup { .. }
        | PolicyError::Read { .. }
        | PolicyError::UnknownBuiltin { .. }
        | PolicyError::Invalid { .. }
        | PolicyError::WrongWorld { .. }
        | PolicyError::NeedsNewerHost { .. }
        | PolicyError::Damaged { .. }
        | PolicyError::Cache { .. } => Cause::PolicyLoad,
    }
}
