use std::io;
use std::time::Duration;

use crate::{PolicyKind, Toolchain};

/// Why a policy could not be loaded or did not produce an answer.
///
/// Every message names the policy (`builtin:NAME` or the `.wasm` path) and the cause, so
/// that it can become a CNI error as it is.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The policy runtime itself could not be set up (engine, linker, ticker thread).
    #[error("cannot set up the policy runtime: {reason}")]
    Setup { reason: String },

    /// The `.wasm` file could not be read.
    #[error("policy {policy}: cannot read it: {source}{}", read_hint(source))]
    Read {
        policy: String,
        #[source]
        source: io::Error,
    },

    /// A stored component's bytes do not hash to the sha256 it is stored under.
    #[error(
        "policy {policy}: stored component sha256:{expected} is damaged (reads as sha256:{actual})"
    )]
    Damaged {
        policy: String,
        expected: String,
        actual: String,
    },

    /// `builtin:NAME` names no policy compiled into the binary.
    #[error("unknown policy builtin:{name}; the built-in policies are: {}", known.join(", "))]
    UnknownBuiltin { name: String, known: Vec<String> },

    /// Not a component, not compilable, or not one of the policy worlds.
    #[error("policy {policy} is not a valid Plexus policy: {reason}")]
    Invalid { policy: String, reason: String },

    /// A valid policy of the other world, e.g. a merger configured as `select`.
    #[error(
        "policy {policy} is a {found} (plexus:policy/{found}), but it is used as a {expected}: \
         this is a {found} policy, {}; here a {expected} is needed (`plexus policy new --kind {}` \
         starts one)",
        home(*found),
        scaffold_kind(*expected)
    )]
    WrongWorld {
        policy: String,
        expected: PolicyKind,
        found: PolicyKind,
    },

    /// The policy's metadata says it needs a newer Plexus than this host (`needs` is its
    /// `min-host-version`, `host` this host's version).
    #[error(
        "policy {policy} needs Plexus {needs} or newer (its min-host-version); \
         this host is Plexus {host}"
    )]
    NeedsNewerHost {
        policy: String,
        needs: String,
        host: String,
    },

    /// The policy ran and returned an error; `message` is its own words.
    #[error("policy {policy} refused: {message}")]
    Rejected { policy: String, message: String },

    /// The call ran past [`Limits::timeout`](crate::Limits::timeout).
    #[error("policy {policy} did not finish within its time limit of {limit:?} (CPU time)")]
    Timeout { policy: String, limit: Duration },

    /// The policy wanted more linear memory than [`Limits::memory_bytes`](crate::Limits::memory_bytes).
    /// `toolchain` is the interpreter the policy carries, if it is known to need more
    /// memory than a Rust policy: the message then says how much.
    #[error(
        "policy {policy} ran out of memory: it wanted more than its memory limit of {} MiB{}",
        limit / (1 << 20),
        memory_hint(*toolchain)
    )]
    MemoryLimit {
        policy: String,
        limit: usize,
        toolchain: Option<Toolchain>,
    },

    /// The policy exhausted its wasm stack, typically by unbounded recursion.
    #[error("policy {policy} overflowed its stack (unbounded recursion?)")]
    StackOverflow { policy: String },

    /// The policy panicked; `message` comes from what it wrote to stderr.
    #[error("policy {policy} panicked: {message}")]
    Panic { policy: String, message: String },

    /// Any other trap or failure while the policy ran.
    #[error("policy {policy} failed: {reason}")]
    Trap { policy: String, reason: String },

    /// An IPAM policy's call failed because its address store did (unreachable,
    /// unreadable); what it wrote was undone.
    #[error("policy {policy}: {reason}")]
    StoreUnavailable { policy: String, reason: String },

    /// An IPAM call failed and some of what it wrote could not be undone: `left` says
    /// what, so an operator can clean the store.
    #[error("{error}; undoing its writes failed, so the address store keeps them: {}", left.join("; "))]
    UndoIncomplete {
        error: Box<PolicyError>,
        left: Vec<String>,
    },

    /// The compile cache could not be used where it was required (`precompile`).
    #[error("policy {policy}: compile cache: {reason}")]
    Cache { policy: String, reason: String },
}

/// What to do about a policy file that cannot be read.
fn read_hint(error: &io::Error) -> &'static str {
    match error.kind() {
        io::ErrorKind::NotFound => {
            "; no such file: build the policy first (`cargo build --release --target \
             wasm32-wasip2` writes it to target/wasm32-wasip2/release/) or correct the path"
        }
        io::ErrorKind::PermissionDenied => "; plexus must be able to read it",
        _ => "",
    }
}

/// Where a policy of `kind` is configured.
fn home(kind: PolicyKind) -> &'static str {
    match kind {
        PolicyKind::Selector => "for the `select` key",
        PolicyKind::Merger => "for the `merge` key",
        PolicyKind::Ipam => "for `ipam.policy` of a delegate using plexus-ipam",
    }
}

/// The `--kind` of `plexus policy new` that starts a policy of `kind`.
fn scaffold_kind(kind: PolicyKind) -> &'static str {
    match kind {
        PolicyKind::Selector => "select",
        PolicyKind::Merger => "merge",
        PolicyKind::Ipam => "ipam",
    }
}

/// What a policy of `toolchain` needs, after a memory-limit error.
fn memory_hint(toolchain: Option<Toolchain>) -> String {
    let Some(toolchain) = toolchain else {
        return String::new();
    };
    let language = match toolchain {
        Toolchain::Python => "Python",
        // QuickJS policies (what `plexus policy new --lang javascript` builds) are not
        // detected: they run in 2 MiB.
        Toolchain::JavaScript => "JavaScript (ComponentizeJS, StarlingMonkey)",
    };
    format!(
        "; {language} policies need policyMemoryMiB of at least {}",
        toolchain.min_memory_mib()
    )
}
