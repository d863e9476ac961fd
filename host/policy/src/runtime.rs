use std::borrow::Cow;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tracing::{debug, warn};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, Store};

use crate::cache::Cache;
use crate::sandbox::{self, Sandbox};
use crate::types::bindings::merger::MergerPre;
use crate::types::bindings::selector::SelectorPre;
use crate::types::{Attachment, CniResult, MergeRequest, SelectRequest};
use crate::{Limits, PolicyError, PolicyKind, PolicySource};

/// How often the epoch advances: the granularity of the time limit.
const EPOCH_TICK: Duration = Duration::from_millis(10);
/// The wasm stack a call may use; deeper recursion traps as a stack overflow.
const MAX_WASM_STACK: usize = 512 * 1024;

/// The engine every policy of a runtime is compiled with and runs on. Its configuration
/// is part of the compile cache's key.
pub(crate) fn new_engine() -> wasmtime::Result<Engine> {
    let mut config = Config::new();
    config
        .epoch_interruption(true)
        .max_wasm_stack(MAX_WASM_STACK);
    Engine::new(&config)
}

/// Compiles, caches and runs policies under one set of [`Limits`].
///
/// Create one per process (it owns the engine and a thread that drives the time limit),
/// load the policies, and call them; each call gets a fresh sandbox.
pub struct PolicyRuntime {
    engine: Engine,
    linker: Linker<Sandbox>,
    limits: Limits,
    cache: Option<Cache>,
    _ticker: EpochTicker,
}

impl PolicyRuntime {
    /// A runtime whose compiled policies live in `cache_dir` (`None`: compile in memory
    /// on every load).
    ///
    /// The directory is created `0700` if missing. If it cannot be created, or is not
    /// owned by this process's user, or is writable by group or others, the runtime
    /// warns and compiles in memory instead: see [`cache_dir`](Self::cache_dir).
    pub fn new(cache_dir: Option<PathBuf>, limits: Limits) -> Result<Self, PolicyError> {
        let setup = |error: wasmtime::Error| PolicyError::Setup {
            reason: format!("{error:#}"),
        };
        let engine = new_engine().map_err(setup)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(setup)?;
        sandbox::add_deadline_clock(&mut linker).map_err(setup)?;
        let cache = cache_dir.and_then(|dir| Cache::open(dir, &engine));
        let ticker = EpochTicker::start(engine.clone())?;
        Ok(Self {
            engine,
            linker,
            limits,
            cache,
            _ticker: ticker,
        })
    }

    /// The limits every call runs under.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The compile cache in use, if any: `None` when none was given or it was refused.
    pub fn cache_dir(&self) -> Option<&Path> {
        self.cache.as_ref().map(Cache::dir)
    }

    /// Loads a policy: from the compile cache when it holds this exact `.wasm` (by
    /// sha256) compiled by this engine, else compiled now and stored in the cache.
    ///
    /// A file is read and hashed on every load, so a `.wasm` replaced on disk takes
    /// effect on the next load. A cache that cannot be written only costs a warning.
    pub fn load(&self, source: &PolicySource) -> Result<Policy, PolicyError> {
        let wasm = Wasm::read(source)?;
        let (component, from_cache) = self.component(&wasm, false)?;
        self.link(wasm, component, from_cache)
    }

    /// Compiles a policy into the compile cache (`plexus policy compile`) and returns
    /// the artifact's path; an artifact already there and sound is kept.
    ///
    /// Unlike [`load`](Self::load), a missing or unwritable cache is an error, and so is
    /// a component that is not a policy.
    pub fn precompile(&self, source: &PolicySource) -> Result<PathBuf, PolicyError> {
        let wasm = Wasm::read(source)?;
        let cache = self.cache.as_ref().ok_or_else(|| PolicyError::Cache {
            policy: wasm.name.clone(),
            reason: "no usable cache directory".to_owned(),
        })?;
        let path = cache.artifact_path(&wasm.sha256);
        let (component, from_cache) = self.component(&wasm, true)?;
        self.link(wasm, component, from_cache)?;
        Ok(path)
    }

    /// The compiled component and whether it came from the cache. With `must_cache`, a
    /// failure to store it is an error rather than a warning.
    fn component(&self, wasm: &Wasm, must_cache: bool) -> Result<(Component, bool), PolicyError> {
        if let Some(cache) = &self.cache
            && let Some(component) = cache.load(&self.engine, &wasm.name, &wasm.sha256)
        {
            debug!(policy = %wasm.name, "loaded compiled policy from the cache");
            return Ok((component, true));
        }
        let started = Instant::now();
        let component =
            Component::new(&self.engine, &wasm.bytes).map_err(|error| PolicyError::Invalid {
                policy: wasm.name.clone(),
                reason: format!("{error:#}"),
            })?;
        debug!(policy = %wasm.name, elapsed = ?started.elapsed(), "compiled policy");
        if let Some(cache) = &self.cache
            && let Err(reason) = cache.store(&wasm.sha256, &component)
        {
            if must_cache {
                return Err(PolicyError::Cache {
                    policy: wasm.name.clone(),
                    reason,
                });
            }
            warn!(policy = %wasm.name, %reason, "cannot cache the compiled policy");
        }
        Ok((component, false))
    }

    /// Checks that `component` is a policy this host can run, and prepares its
    /// instantiation once so that each call only instantiates.
    fn link(
        &self,
        wasm: Wasm,
        component: Component,
        from_cache: bool,
    ) -> Result<Policy, PolicyError> {
        let invalid = |reason: String| PolicyError::Invalid {
            policy: wasm.name.clone(),
            reason,
        };
        let component_type = component.component_type();
        let exports: Vec<&str> = component_type
            .exports(&self.engine)
            .map(|(name, _)| name)
            .collect();
        let kind = match (
            exports.contains(&PolicyKind::Selector.export()),
            exports.contains(&PolicyKind::Merger.export()),
        ) {
            (true, false) => PolicyKind::Selector,
            (false, true) => PolicyKind::Merger,
            (true, true) => {
                return Err(invalid(
                    "it exports both `select` and `merge`; a policy implements one world".into(),
                ));
            }
            (false, false) => {
                return Err(invalid(format!(
                    "it exports neither `select` (plexus:policy/selector) nor `merge` \
                     (plexus:policy/merger); its exports: [{}]",
                    exports.join(", ")
                )));
            }
        };
        let link_error = |error: wasmtime::Error| invalid(format!("{error:#}"));
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(link_error)?;
        let exports = match kind {
            PolicyKind::Selector => Exports::Selector(SelectorPre::new(pre).map_err(link_error)?),
            PolicyKind::Merger => Exports::Merger(MergerPre::new(pre).map_err(link_error)?),
        };
        Ok(Policy {
            name: wasm.name,
            sha256: wasm.sha256.into_owned(),
            from_cache,
            exports,
        })
    }

    /// Runs `call` in a fresh sandbox and turns whatever stopped it into a [`PolicyError`].
    fn call<R>(
        &self,
        policy: &str,
        engine: &Engine,
        call: impl FnOnce(&mut Store<Sandbox>) -> wasmtime::Result<R>,
    ) -> Result<R, PolicyError> {
        // Wasmtime panics when a store meets code of another engine.
        if !Engine::same(engine, &self.engine) {
            return Err(PolicyError::Invalid {
                policy: policy.to_owned(),
                reason: "it was loaded by another PolicyRuntime".to_owned(),
            });
        }
        let started = Instant::now();
        let mut store = Sandbox::store(
            &self.engine,
            &self.limits,
            started.checked_add(self.limits.timeout),
            epoch_ticks(self.limits.timeout),
        );
        let result = call(&mut store);
        let sandbox = store.data();
        let (stdout, stderr) = sandbox.output();
        if !stdout.is_empty() {
            debug!(policy, %stdout, "policy wrote to stdout");
        }
        if !stderr.is_empty() {
            debug!(policy, %stderr, "policy wrote to stderr");
        }
        debug!(policy, elapsed = ?started.elapsed(), ok = result.is_ok(), "policy call finished");
        result.map_err(|error| sandbox.failure(policy, &error, &self.limits))
    }
}

/// Epoch ticks for `timeout`, one more than it spans: the deadline is counted from
/// whatever point of the current tick the call starts at, so the call always gets at
/// least `timeout` and at most one tick more.
fn epoch_ticks(timeout: Duration) -> u64 {
    let ticks = timeout.as_nanos().div_ceil(EPOCH_TICK.as_nanos());
    u64::try_from(ticks).unwrap_or(u64::MAX - 1) + 1
}

/// A policy's bytes, identity and name, read from its source.
struct Wasm {
    name: String,
    bytes: Cow<'static, [u8]>,
    sha256: Cow<'static, str>,
}

impl Wasm {
    fn read(source: &PolicySource) -> Result<Self, PolicyError> {
        let name = source.to_string();
        Ok(match source {
            PolicySource::Builtin { wasm, sha256, .. } => Self {
                name,
                bytes: Cow::Borrowed(wasm),
                sha256: Cow::Borrowed(sha256),
            },
            PolicySource::File(path) => {
                let bytes = fs::read(path).map_err(|source| PolicyError::Read {
                    policy: name.clone(),
                    source,
                })?;
                let sha256 = hex::encode(Sha256::digest(&bytes));
                Self {
                    name,
                    bytes: Cow::Owned(bytes),
                    sha256: Cow::Owned(sha256),
                }
            }
        })
    }
}

/// A loaded policy, ready to be called any number of times.
pub struct Policy {
    name: String,
    sha256: String,
    from_cache: bool,
    exports: Exports,
}

enum Exports {
    Selector(SelectorPre<Sandbox>),
    Merger(MergerPre<Sandbox>),
}

impl Policy {
    /// How errors and logs name it: `builtin:NAME` or the `.wasm` path.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The sha256 (hex) of its `.wasm`.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// The world it implements.
    pub fn kind(&self) -> PolicyKind {
        match self.exports {
            Exports::Selector(_) => PolicyKind::Selector,
            Exports::Merger(_) => PolicyKind::Merger,
        }
    }

    /// Whether its compiled code came from the compile cache.
    pub fn from_cache(&self) -> bool {
        self.from_cache
    }

    /// Calls a selector policy: the pod's attachments, in order.
    ///
    /// `runtime` must be the one that loaded the policy.
    pub fn select(
        &self,
        runtime: &PolicyRuntime,
        request: &SelectRequest,
    ) -> Result<Vec<Attachment>, PolicyError> {
        let Exports::Selector(pre) = &self.exports else {
            return Err(self.wrong_world(PolicyKind::Selector));
        };
        let answer = runtime.call(&self.name, pre.engine(), |store| {
            pre.instantiate(&mut *store)?
                .call_select(&mut *store, request)
        })?;
        answer.map_err(|message| self.rejected(message))
    }

    /// Calls a merger policy: the pod's result from its delegates' results.
    ///
    /// `runtime` must be the one that loaded the policy.
    pub fn merge(
        &self,
        runtime: &PolicyRuntime,
        request: &MergeRequest,
    ) -> Result<CniResult, PolicyError> {
        let Exports::Merger(pre) = &self.exports else {
            return Err(self.wrong_world(PolicyKind::Merger));
        };
        let answer = runtime.call(&self.name, pre.engine(), |store| {
            pre.instantiate(&mut *store)?
                .call_merge(&mut *store, request)
        })?;
        answer.map_err(|message| self.rejected(message))
    }

    fn wrong_world(&self, expected: PolicyKind) -> PolicyError {
        PolicyError::WrongWorld {
            policy: self.name.clone(),
            expected,
            found: self.kind(),
        }
    }

    fn rejected(&self, message: String) -> PolicyError {
        PolicyError::Rejected {
            policy: self.name.clone(),
            message,
        }
    }
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policy")
            .field("name", &self.name)
            .field("sha256", &self.sha256)
            .field("kind", &self.kind())
            .field("from_cache", &self.from_cache)
            .finish()
    }
}

/// The one thread per runtime that advances the engine's epoch, against which each call's
/// deadline is set. A call never needs a timer of its own, and a late tick can only end
/// the call whose deadline it is.
struct EpochTicker {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    fn start(engine: Engine) -> Result<Self, PolicyError> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = thread::Builder::new()
            .name("plexus-policy-epoch".to_owned())
            .spawn(move || {
                // Waiting on the channel is the tick's sleep; it ends when the runtime
                // drops the sender.
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(EPOCH_TICK) {
                    engine.increment_epoch();
                }
            })
            .map_err(|error| PolicyError::Setup {
                reason: format!("cannot start the epoch thread: {error}"),
            })?;
        Ok(Self {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            warn!("the policy epoch thread panicked");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtimes_and_policies_can_be_shared_between_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<PolicyRuntime>();
        shareable::<Policy>();
    }

    #[test]
    fn deadline_spans_the_timeout_plus_one_tick() {
        assert_eq!(epoch_ticks(Duration::from_millis(500)), 51);
        assert_eq!(epoch_ticks(Duration::from_millis(501)), 52);
        assert_eq!(epoch_ticks(Duration::ZERO), 1);
        assert_eq!(epoch_ticks(Duration::MAX), u64::MAX);
    }

    #[test]
    fn a_component_that_is_no_policy_is_invalid() {
        let runtime = PolicyRuntime::new(None, Limits::default()).unwrap();
        let source = PolicySource::Builtin {
            name: "empty".into(),
            wasm: b"\0asm\x0d\x00\x01\x00",
            sha256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        };
        let error = runtime.load(&source).unwrap_err();
        assert!(matches!(error, PolicyError::Invalid { .. }), "{error}");
        assert!(error.to_string().contains("builtin:empty"), "{error}");
        assert!(error.to_string().contains("neither `select`"), "{error}");
    }

    #[test]
    fn bytes_that_are_no_component_are_invalid() {
        let runtime = PolicyRuntime::new(None, Limits::default()).unwrap();
        let source = PolicySource::Builtin {
            name: "junk".into(),
            wasm: b"not wasm at all",
            sha256: "00",
        };
        let error = runtime.load(&source).unwrap_err();
        assert!(matches!(error, PolicyError::Invalid { .. }), "{error}");
    }

    #[test]
    fn precompile_needs_a_cache() {
        let runtime = PolicyRuntime::new(None, Limits::default()).unwrap();
        let source = PolicySource::Builtin {
            name: "empty".into(),
            wasm: b"\0asm\x0d\x00\x01\x00",
            sha256: "00",
        };
        let error = runtime.precompile(&source).unwrap_err();
        assert!(matches!(error, PolicyError::Cache { .. }), "{error}");
    }
}
