use std::borrow::Cow;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime};

use semver::Version;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tracing::{debug, warn};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, Store};

use crate::cache::{Cache, Cached};
use crate::policy::{AnyPolicy, Common, PolicyHandle};
use crate::prune;
use crate::sandbox::{self, Sandbox};
use crate::stamp::FileStamp;
use crate::store_access::StoreAccess;
use crate::types::PolicyMetadata;
use crate::wit::{IpamPre, MergerPre, SelectorPre, WitVersion};
use crate::{HOST_VERSION, Limits, PolicyError, PolicyKind, PolicySource, Toolchain};

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
    /// [`HOST_VERSION`], parsed once for the policies' `min-host-version`.
    host_version: Version,
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
        let host_version = Version::parse(HOST_VERSION).map_err(|error| PolicyError::Setup {
            reason: format!("this host's version {HOST_VERSION:?} is not semver: {error}"),
        })?;
        let engine = new_engine().map_err(setup)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(setup)?;
        sandbox::add_deadline_clock(&mut linker).map_err(setup)?;
        sandbox::add_store(&mut linker).map_err(setup)?;
        let cache = cache_dir.and_then(|dir| Cache::open(dir, &engine));
        let ticker = EpochTicker::start(engine.clone())?;
        Ok(Self {
            engine,
            linker,
            limits,
            cache,
            host_version,
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
    /// A `.wasm` replaced or rewritten on disk takes effect on the next load: a file is
    /// read and hashed unless the cache knows its sha256 from a load since which the file
    /// has not changed (its device, inode, size, modification and change time are the
    /// same). A cache that cannot be written only costs a warning.
    ///
    /// A policy of a version that has `metadata` (0.2.0 on) is refused if it needs a newer
    /// Plexus than [`HOST_VERSION`]. Its `metadata` is called once when it is compiled;
    /// the cache keeps the answer with the artifact, so a cached load never instantiates
    /// the policy.
    ///
    /// `P` says which world the policy must implement ([`Selector`](crate::Selector),
    /// [`Merger`](crate::Merger), [`Ipam`](crate::Ipam)): a policy of another is refused
    /// with [`PolicyError::WrongWorld`]. [`AnyPolicy`] takes whichever it is.
    pub fn load<P: PolicyHandle>(&self, source: &PolicySource) -> Result<P, PolicyError> {
        // What every CNI invocation pays for a policy compiled before: no read of the
        // `.wasm` when its sha256 is known, the artifact mapped, not read.
        if let Some(cache) = &self.cache {
            let name = source.to_string();
            let sha256 = match source {
                PolicySource::Builtin { sha256, .. } => Some(Cow::Borrowed(*sha256)),
                PolicySource::File(path) => cache.source_digest(path).map(Cow::Owned),
                PolicySource::Stored { sha256, .. } => Some(Cow::Borrowed(sha256.as_str())),
            };
            if let Some(sha256) = sha256
                && let Some(cached) = cache.load(&self.engine, &name, &sha256)
            {
                debug!(policy = %name, "loaded compiled policy from the cache");
                let compiled = Compiled::from(cached);
                return P::from_any(self.policy(name, sha256.into_owned(), &compiled)?);
            }
        }
        let wasm = self.read(source)?;
        let compiled = self.component(&wasm, Caching::Store)?;
        P::from_any(self.policy(wasm.name, wasm.sha256.into_owned(), &compiled)?)
    }

    /// Compiles a policy into the compile cache (`plexus policy compile`) and returns
    /// the artifact's path; an artifact already there and sound is kept.
    ///
    /// Unlike [`load`](Self::load), a missing or unwritable cache is an error; and, as
    /// for `load`, so are a component that is not a policy and a policy that needs a
    /// newer Plexus.
    pub fn precompile(&self, source: &PolicySource) -> Result<PathBuf, PolicyError> {
        let wasm = self.read(source)?;
        let cache = self.cache.as_ref().ok_or_else(|| PolicyError::Cache {
            policy: wasm.name.clone(),
            reason: "no usable cache directory".to_owned(),
        })?;
        let path = cache.artifact_path(&wasm.sha256);
        let compiled = self.component(&wasm, Caching::MustStore)?;
        self.policy(wasm.name, wasm.sha256.into_owned(), &compiled)?;
        Ok(path)
    }

    /// Describes a policy (`plexus policy inspect`): its world and version, what it
    /// imports and exports, its size, sha256 and metadata, and its compiled artifact if
    /// the cache holds a sound one.
    ///
    /// The cache is only read (but for the stamp of an artifact it checks whole): a
    /// policy not in it is compiled in memory. A policy that this host would refuse for
    /// needing a newer Plexus is still described, with the reason in
    /// [`PolicyInfo::refused`]; any other invalid policy is an error, as for
    /// [`load`](Self::load).
    pub fn inspect(&self, source: &PolicySource) -> Result<PolicyInfo, PolicyError> {
        // Read, not `self.read`, which would write what it learnt into the cache.
        let wasm = Wasm::read(source)?;
        let compiled = self.component(&wasm, Caching::ReadOnly)?;
        let (linked, metadata) = self.prepare(&wasm.name, &wasm.sha256, &compiled)?;
        let (kind, version) = linked.identity();
        let component_type = compiled.component.component_type();
        let imports = component_type.imports(&self.engine);
        let exports = component_type.exports(&self.engine);
        Ok(PolicyInfo {
            world: format!("plexus:policy/{kind}@{}", version.as_str()),
            wit_version: version.as_str(),
            kind,
            imports: imports.map(|(name, _)| name.to_owned()).collect(),
            exports: exports.map(|(name, _)| name.to_owned()).collect(),
            size: wasm.bytes.len(),
            sha256: wasm.sha256.to_string(),
            refused: metadata.as_ref().and_then(|metadata| {
                check_metadata(&wasm.name, metadata, &self.host_version)
                    .err()
                    .map(|error| error.to_string())
            }),
            metadata,
            cached: match &self.cache {
                Some(cache) if compiled.is_cached() => Some(cache.artifact_path(&wasm.sha256)),
                _ => None,
            },
            policy: wasm.name,
        })
    }

    /// Reads a policy's `.wasm`, and lets the cache remember the file's sha256.
    fn read(&self, source: &PolicySource) -> Result<Wasm, PolicyError> {
        let wasm = Wasm::read(source)?;
        if let (Some(cache), PolicySource::File(path), Some((stamp, taken_at))) =
            (&self.cache, source, wasm.stamp)
        {
            cache.remember_source(path, stamp, taken_at, &wasm.sha256);
        }
        Ok(wasm)
    }

    /// The compiled component, from the cache or compiled now; `caching` says what to do
    /// with the cache once it is [`prepare`](Self::prepare)d.
    fn component(&self, wasm: &Wasm, caching: Caching) -> Result<Compiled, PolicyError> {
        if let Some(cache) = &self.cache
            && let Some(cached) = cache.load(&self.engine, &wasm.name, &wasm.sha256)
        {
            debug!(policy = %wasm.name, "loaded compiled policy from the cache");
            return Ok(Compiled::from(cached));
        }
        let started = Instant::now();
        let component = self.compile(wasm).map_err(|error| PolicyError::Invalid {
            policy: wasm.name.clone(),
            reason: format!("{error:#}{}", not_a_component_hint(&wasm.bytes)),
        })?;
        let toolchain = Toolchain::detect(&wasm.bytes);
        debug!(policy = %wasm.name, elapsed = ?started.elapsed(), ?toolchain, "compiled policy");
        Ok(Compiled {
            component,
            toolchain,
            origin: Origin::Compiled { caching },
        })
    }

    /// Compiles a policy without the exports its core modules never reach (see
    /// [`prune`]); should the pruned component not compile, the policy as it is.
    fn compile(&self, wasm: &Wasm) -> wasmtime::Result<Component> {
        let original = || Component::new(&self.engine, &wasm.bytes);
        let Some(pruned) = prune::unused_exports_pruned(&wasm.bytes) else {
            return original();
        };
        Component::new(&self.engine, &pruned).or_else(|error| {
            let component = original()?;
            // The analysis missed a use: a bug, but the policy still runs as written.
            warn!(policy = %wasm.name, error = format!("{error:#}"), "pruning broke the policy; compiled it as it is");
            Ok(component)
        })
    }

    /// A policy this host runs: [`prepare`](Self::prepare)d, with its metadata checked.
    fn policy(
        &self,
        name: String,
        sha256: String,
        compiled: &Compiled,
    ) -> Result<AnyPolicy, PolicyError> {
        let (exports, metadata) = self.prepare(&name, &sha256, compiled)?;
        if let Some(metadata) = &metadata {
            check_metadata(&name, metadata, &self.host_version)?;
        }
        let common = Common {
            name,
            sha256,
            from_cache: compiled.is_cached(),
            toolchain: compiled.toolchain,
            version: exports.identity().1,
            metadata,
        };
        Ok(AnyPolicy::new(common, exports))
    }

    /// [`link`](Self::link)s a compiled policy and learns its metadata: as the cache
    /// recorded it, or by calling `metadata` once, after which a policy compiled now is
    /// stored in the cache with the answer (as its [`Caching`] says).
    fn prepare(
        &self,
        policy: &str,
        sha256: &str,
        compiled: &Compiled,
    ) -> Result<(Exports, Option<PolicyMetadata>), PolicyError> {
        let exports = self.link(policy, &compiled.component)?;
        let metadata = match &compiled.origin {
            Origin::Cache { metadata } => metadata.clone(),
            Origin::Compiled { caching } => {
                let metadata = self.read_metadata(policy, compiled.toolchain, &exports)?;
                self.store(policy, sha256, compiled, metadata.as_ref(), *caching)?;
                metadata
            }
        };
        Ok((exports, metadata))
    }

    /// Calls a policy's `metadata`, for the versions that export it.
    fn read_metadata(
        &self,
        policy: &str,
        toolchain: Option<Toolchain>,
        exports: &Exports,
    ) -> Result<Option<PolicyMetadata>, PolicyError> {
        match exports {
            Exports::Selector(pre) => pre
                .metadata()
                .map(|call| self.call(policy, toolchain, pre.engine(), call))
                .transpose(),
            Exports::Merger(pre) => pre
                .metadata()
                .map(|call| self.call(policy, toolchain, pre.engine(), call))
                .transpose(),
            Exports::Ipam(pre) => self
                .call(policy, toolchain, pre.engine(), pre.metadata())
                .map(Some),
        }
    }

    /// Stores a policy compiled now, with its metadata, in the cache if `caching` says
    /// to; failing to is an error only for [`Caching::MustStore`].
    fn store(
        &self,
        policy: &str,
        sha256: &str,
        compiled: &Compiled,
        metadata: Option<&PolicyMetadata>,
        caching: Caching,
    ) -> Result<(), PolicyError> {
        let Some(cache) = &self.cache else {
            return Ok(());
        };
        if caching == Caching::ReadOnly {
            return Ok(());
        }
        let stored = cache.store(sha256, &compiled.component, compiled.toolchain, metadata);
        match stored {
            Ok(_) => Ok(()),
            Err(reason) if caching == Caching::MustStore => Err(PolicyError::Cache {
                policy: policy.to_owned(),
                reason,
            }),
            Err(reason) => {
                warn!(policy, %reason, "cannot cache the compiled policy");
                Ok(())
            }
        }
    }

    /// Checks that `component` is a policy of a world and version this host serves, and
    /// prepares its instantiation once so that each call only instantiates.
    fn link(&self, policy: &str, component: &Component) -> Result<Exports, PolicyError> {
        let invalid = |reason: String| PolicyError::Invalid {
            policy: policy.to_owned(),
            reason,
        };
        let component_type = component.component_type();
        let exports: Vec<&str> = component_type
            .exports(&self.engine)
            .map(|(name, _)| name)
            .collect();
        let kinds: Vec<PolicyKind> = PolicyKind::ALL
            .into_iter()
            .filter(|kind| exports.iter().any(|name| kind.is_told_by(name)))
            .collect();
        let kind = match kinds.as_slice() {
            [kind] => *kind,
            [] => {
                return Err(invalid(format!(
                    "it exports none of `select` or `select-networks` (plexus:policy/selector), `merge` \
                     (plexus:policy/merger) and `allocate` (plexus:policy/ipam); its exports: \
                     [{}]; a policy is a component of one of these worlds (`plexus policy new` \
                     starts one with the SDK)",
                    exports.join(", ")
                )));
            }
            several => {
                let names: Vec<String> = several
                    .iter()
                    .map(|kind| format!("`{}`", kind.export()))
                    .collect();
                return Err(invalid(format!(
                    "it exports {}; a policy implements one world",
                    names.join(" and ")
                )));
            }
        };
        let imports = component_type.imports(&self.engine).map(|(name, _)| name);
        let version =
            WitVersion::of_component(imports.chain(exports.iter().copied())).map_err(invalid)?;
        let link_error = |error: wasmtime::Error| invalid(format!("{error:#}"));
        let pre = self.linker.instantiate_pre(component).map_err(link_error)?;
        Ok(match kind {
            PolicyKind::Selector => {
                Exports::Selector(SelectorPre::new(pre, version).map_err(link_error)?)
            }
            PolicyKind::Merger => {
                Exports::Merger(MergerPre::new(pre, version).map_err(link_error)?)
            }
            PolicyKind::Ipam => Exports::Ipam(
                IpamPre::new(pre, version)
                    .ok_or_else(|| {
                        invalid(format!(
                            "it is built against plexus:policy@{}, which has no ipam world; \
                             the ipam world exists from plexus:policy@0.3.0 on",
                            version.as_str()
                        ))
                    })?
                    .map_err(link_error)?,
            ),
        })
    }

    /// Runs `call` in a fresh sandbox and turns whatever stopped it into a [`PolicyError`].
    /// `toolchain` is the interpreter the policy carries, if known, for what a memory
    /// limit error says.
    pub(crate) fn call<R>(
        &self,
        policy: &str,
        toolchain: Option<Toolchain>,
        engine: &Engine,
        call: impl FnOnce(&mut Store<Sandbox>) -> wasmtime::Result<R>,
    ) -> Result<R, PolicyError> {
        self.call_with_store(policy, toolchain, engine, None, call)
            .0
    }

    /// [`call`](Self::call), in a sandbox that reaches the address store `ipam`; also
    /// returns that access, with what the call wrote.
    pub(crate) fn call_with_store<R>(
        &self,
        policy: &str,
        toolchain: Option<Toolchain>,
        engine: &Engine,
        ipam: Option<StoreAccess>,
        call: impl FnOnce(&mut Store<Sandbox>) -> wasmtime::Result<R>,
    ) -> (Result<R, PolicyError>, Option<StoreAccess>) {
        // Wasmtime panics when a store meets code of another engine.
        if !Engine::same(engine, &self.engine) {
            let error = PolicyError::Invalid {
                policy: policy.to_owned(),
                reason: "it was loaded by another PolicyRuntime".to_owned(),
            };
            return (Err(error), ipam);
        }
        let started = Instant::now();
        let mut store = Sandbox::store(
            &self.engine,
            &self.limits,
            started.checked_add(self.limits.timeout),
            ipam,
        );
        let result = call(&mut store);
        let sandbox = store.data_mut();
        let (stdout, stderr) = sandbox.output();
        if !stdout.is_empty() {
            debug!(policy, %stdout, "policy wrote to stdout");
        }
        if !stderr.is_empty() {
            debug!(policy, %stderr, "policy wrote to stderr");
        }
        debug!(policy, elapsed = ?started.elapsed(), ok = result.is_ok(), "policy call finished");
        let result = match result {
            // A guest refused memory may catch it and return normally, with an answer or
            // an error of its own: the refusal is still why it failed.
            Ok(answer) => match sandbox.memory_limit(policy, toolchain, &self.limits) {
                Some(error) => Err(error),
                None => Ok(answer),
            },
            Err(error) => Err(sandbox.failure(policy, toolchain, &error, &self.limits)),
        };
        (result, sandbox.take_ipam())
    }
}

/// What to do about bytes that did not compile as a component, when their header says
/// why: a core module (what `wasm32-wasip1` and `wasm32-unknown-unknown` build), or no
/// WebAssembly at all. Empty when the header is a component's.
fn not_a_component_hint(bytes: &[u8]) -> &'static str {
    const MAGIC: &[u8] = b"\0asm";
    // After the magic: the version (2 bytes) and the layer (2 bytes), 1 for a component.
    const CORE_MODULE: &[u8] = &[1, 0, 0, 0];
    match bytes.strip_prefix(MAGIC) {
        Some(rest) if rest.starts_with(CORE_MODULE) => {
            "; it is a core WebAssembly module, not a component: build it with \
             `--target wasm32-wasip2` (`cargo build --release --target wasm32-wasip2`), \
             which makes a component"
        }
        Some(_) => "",
        None => {
            "; it is not WebAssembly at all (a `.wasm` starts with `\\0asm`): give the \
             component `cargo build --release --target wasm32-wasip2` writes to \
             target/wasm32-wasip2/release/"
        }
    }
}

/// What loading a component may do with the compile cache, once it is compiled and its
/// metadata read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caching {
    /// Store a fresh compilation; failing to is only a warning (`load`).
    Store,
    /// Store a fresh compilation or fail (`precompile`).
    MustStore,
    /// Never write (`inspect`, which reports the cache as it finds it).
    ReadOnly,
}

/// Checks what a policy says about itself: its versions are semver, and `host` is at least
/// the one it needs.
fn check_metadata(
    policy: &str,
    metadata: &PolicyMetadata,
    host: &Version,
) -> Result<(), PolicyError> {
    let parse = |field: &str, value: &str| {
        Version::parse(value).map_err(|error| PolicyError::Invalid {
            policy: policy.to_owned(),
            reason: format!(
                "its metadata field `{field}` is not a semver version ({value:?}): {error}"
            ),
        })
    };
    parse("version", &metadata.version)?;
    let needs = parse("min-host-version", &metadata.min_host_version)?;
    // Precedence, not `Ord`: build metadata (`+...`) says nothing about what a host can run.
    if needs.cmp_precedence(host).is_gt() {
        return Err(PolicyError::NeedsNewerHost {
            policy: policy.to_owned(),
            needs: metadata.min_host_version.clone(),
            host: host.to_string(),
        });
    }
    Ok(())
}

/// A policy's bytes, identity and name, read from its source.
struct Wasm {
    name: String,
    bytes: Cow<'static, [u8]>,
    sha256: Cow<'static, str>,
    /// A file's stamp before it was read, and when it was taken.
    stamp: Option<(FileStamp, SystemTime)>,
}

impl Wasm {
    fn read(source: &PolicySource) -> Result<Self, PolicyError> {
        let name = source.to_string();
        Ok(match source {
            PolicySource::Builtin { wasm, sha256, .. } => Self {
                name,
                bytes: Cow::Borrowed(wasm),
                sha256: Cow::Borrowed(sha256),
                stamp: None,
            },
            PolicySource::File(path) => {
                let read = || -> io::Result<_> {
                    // Before the stamp: see `FileStamp::settled`.
                    let taken_at = SystemTime::now();
                    let mut file = File::open(path)?;
                    let metadata = file.metadata()?;
                    let mut bytes =
                        Vec::with_capacity(usize::try_from(metadata.len()).unwrap_or(0));
                    file.read_to_end(&mut bytes)?;
                    Ok((bytes, (FileStamp::of(&metadata), taken_at)))
                };
                let (bytes, stamp) = read().map_err(|source| PolicyError::Read {
                    policy: name.clone(),
                    source,
                })?;
                let sha256 = hex::encode(Sha256::digest(&bytes));
                Self {
                    name,
                    bytes: Cow::Owned(bytes),
                    sha256: Cow::Owned(sha256),
                    stamp: Some(stamp),
                }
            }
            PolicySource::Stored { path, sha256, .. } => {
                let bytes = fs::read(path).map_err(|source| PolicyError::Read {
                    policy: name.clone(),
                    source,
                })?;
                let actual = hex::encode(Sha256::digest(&bytes));
                if actual != *sha256 {
                    return Err(PolicyError::Damaged {
                        policy: name,
                        expected: sha256.clone(),
                        actual,
                    });
                }
                Self {
                    name,
                    bytes: Cow::Owned(bytes),
                    sha256: Cow::Owned(actual),
                    stamp: None,
                }
            }
        })
    }
}

/// A compiled policy, whence it came, and what made it.
struct Compiled {
    component: Component,
    toolchain: Option<Toolchain>,
    origin: Origin,
}

impl Compiled {
    fn is_cached(&self) -> bool {
        matches!(self.origin, Origin::Cache { .. })
    }
}

impl From<Cached> for Compiled {
    fn from(cached: Cached) -> Self {
        Self {
            component: cached.component,
            toolchain: cached.toolchain,
            origin: Origin::Cache {
                metadata: cached.metadata,
            },
        }
    }
}

/// Where a compiled policy came from.
enum Origin {
    /// The compile cache, which kept what its `metadata` returned (`None`: a version
    /// without `metadata`).
    Cache { metadata: Option<PolicyMetadata> },
    /// Compiled now: its `metadata` is yet to be called, and `caching` says whether to
    /// store it then.
    Compiled { caching: Caching },
}

/// What [`PolicyRuntime::inspect`] tells about a policy. Serializes with kebab-case keys.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct PolicyInfo {
    /// How errors and logs name it: `builtin:NAME` or the `.wasm` path.
    pub policy: String,
    /// The world and version it implements, e.g. `plexus:policy/selector@0.2.0`.
    pub world: String,
    /// The version of `plexus:policy` it was built against, e.g. `0.2.0`.
    pub wit_version: &'static str,
    pub kind: PolicyKind,
    /// Its imports and exports, named as the component declares them.
    pub imports: Vec<String>,
    pub exports: Vec<String>,
    /// The size of its `.wasm`, in bytes.
    pub size: usize,
    /// The sha256 (hex) of its `.wasm`.
    pub sha256: String,
    /// What it says about itself; `None` for versions before 0.2.0.
    pub metadata: Option<PolicyMetadata>,
    /// Why this host refuses to load it (it needs a newer Plexus), if it does.
    pub refused: Option<String>,
    /// Its compiled artifact, when the compile cache holds a sound one.
    pub cached: Option<PathBuf>,
}

/// What linking found a component to export: one world's functions, prepared.
pub(crate) enum Exports {
    Selector(SelectorPre),
    Merger(MergerPre),
    Ipam(IpamPre),
}

impl Exports {
    pub(crate) fn identity(&self) -> (PolicyKind, WitVersion) {
        match self {
            Self::Selector(pre) => (PolicyKind::Selector, pre.version()),
            Self::Merger(pre) => (PolicyKind::Merger, pre.version()),
            Self::Ipam(pre) => (PolicyKind::Ipam, pre.version()),
        }
    }
}

/// The one thread per runtime that advances the engine's epoch, against which each call's
/// deadline is set. A call never needs a timer of its own, and a late tick can only end
/// the call whose deadline it is.
///
/// The epoch only says when to look: at each tick the call checks the CPU time its
/// thread has used (see `Sandbox::store`).
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

    fn metadata(version: &str, min_host_version: &str) -> PolicyMetadata {
        PolicyMetadata {
            name: "p".into(),
            version: version.into(),
            min_host_version: min_host_version.into(),
        }
    }

    #[test]
    fn a_policy_runs_on_its_min_host_version_and_later() {
        let host = Version::new(0, 2, 0);
        for needs in ["0.1.0", "0.2.0", "0.2.0+build.7", "0.2.0-rc.1"] {
            check_metadata("p", &metadata("1.0.0", needs), &host).unwrap();
        }
    }

    #[test]
    fn a_policy_needing_a_newer_host_names_both_versions() {
        let error = check_metadata(
            "p.wasm",
            &metadata("1.0.0", "0.2.1"),
            &Version::new(0, 2, 0),
        )
        .unwrap_err();
        assert!(
            matches!(&error, PolicyError::NeedsNewerHost { needs, host, .. }
                if needs == "0.2.1" && host == "0.2.0"),
            "{error}"
        );
        assert_eq!(
            error.to_string(),
            "policy p.wasm needs Plexus 0.2.1 or newer (its min-host-version); \
             this host is Plexus 0.2.0"
        );
    }

    #[test]
    fn an_unparsable_version_names_its_field() {
        let host = Version::new(0, 1, 0);
        for (metadata, field) in [
            (metadata("one", "0.1.0"), "`version`"),
            (metadata("1.0.0", ">=0.1"), "`min-host-version`"),
        ] {
            let error = check_metadata("p.wasm", &metadata, &host).unwrap_err();
            assert!(matches!(error, PolicyError::Invalid { .. }), "{error}");
            assert!(error.to_string().contains(field), "{error}");
        }
    }

    #[test]
    fn the_host_version_is_semver() {
        Version::parse(HOST_VERSION).unwrap();
    }

    /// An empty component: valid WebAssembly, no policy.
    const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\x00\x01\x00";

    fn builtin(name: &str, wasm: &'static [u8]) -> PolicySource {
        PolicySource::Builtin {
            name: name.into(),
            wasm,
            sha256: "00",
        }
    }

    fn runtime() -> PolicyRuntime {
        PolicyRuntime::new(None, Limits::default()).unwrap()
    }

    #[test]
    fn a_component_that_is_no_policy_is_invalid() {
        let error = runtime()
            .load::<AnyPolicy>(&builtin("empty", EMPTY_COMPONENT))
            .unwrap_err();
        assert!(matches!(error, PolicyError::Invalid { .. }), "{error}");
        assert!(error.to_string().contains("builtin:empty"), "{error}");
        assert!(error.to_string().contains("none of `select`"), "{error}");
    }

    #[test]
    fn bytes_that_are_no_component_are_invalid() {
        let error = runtime()
            .load::<AnyPolicy>(&builtin("junk", b"not wasm at all"))
            .unwrap_err();
        assert!(matches!(error, PolicyError::Invalid { .. }), "{error}");
    }

    #[test]
    fn stored_bytes_must_hash_to_their_sha256_and_are_named_by_their_reference() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        fs::write(&path, EMPTY_COMPONENT).unwrap();
        let stored = |sha256: String| PolicySource::Stored {
            name: "/etc/plexus/select.wasm".into(),
            path: path.clone(),
            sha256,
        };
        let damaged = runtime()
            .load::<AnyPolicy>(&stored("ab".repeat(32)))
            .unwrap_err();
        let actual = hex::encode(Sha256::digest(EMPTY_COMPONENT));
        assert_eq!(
            damaged.to_string(),
            format!(
                "policy /etc/plexus/select.wasm: stored component sha256:{} is damaged \
                 (reads as sha256:{actual})",
                "ab".repeat(32)
            )
        );
        // The right bytes go on to be loaded: this one is a component but no policy.
        let error = runtime().load::<AnyPolicy>(&stored(actual)).unwrap_err();
        assert!(error.to_string().contains("none of `select`"), "{error}");
        assert!(
            error.to_string().contains("/etc/plexus/select.wasm"),
            "{error}"
        );
    }

    #[test]
    fn precompile_needs_a_cache() {
        let error = runtime()
            .precompile(&builtin("empty", EMPTY_COMPONENT))
            .unwrap_err();
        assert!(matches!(error, PolicyError::Cache { .. }), "{error}");
    }
}
