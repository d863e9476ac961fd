//! What one policy call runs in: a fresh store with a WASI context that grants nothing,
//! limits on memory, tables and instances, and a wall-clock deadline that a sleeping
//! guest's timers respect.

use std::time::{Duration, Instant};

use wasmtime::component::{HasData, Linker, ResourceTable};
use wasmtime::{Engine, ResourceLimiter, Store, Trap, UpdateDeadline};
use wasmtime_wasi::clocks::{WasiClocksCtxView, WasiClocksView};
use wasmtime_wasi::p2::DynPollable;
use wasmtime_wasi::p2::bindings::clocks::monotonic_clock;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::output::OutputTail;
use crate::store_access::{StoreAccess, wit as store};
use crate::wit::v0_4_0::ipam::plexus::policy::store as store_v0_4_0;
use crate::{Limits, PolicyError, Toolchain};

/// Bytes of a guest's stdout and stderr kept (the tail) for logs and panic messages.
const CAPTURED_OUTPUT: usize = 64 * 1024;
/// Table elements (a pointer each on the host) across all tables of one call.
const TABLE_ELEMENTS: usize = 1 << 20;
/// Core instances, tables and memories of one call: far more than any policy component
/// built by wit-bindgen needs, far fewer than could exhaust the host.
const INSTANCES: usize = 64;
const TABLES: usize = 64;
const MEMORIES: usize = 16;

/// The store data of one policy call.
///
/// `pub` only because the prepared policies a world names are generic over it; the
/// module is private.
pub struct Sandbox {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: Limiter,
    stdout: OutputTail,
    stderr: OutputTail,
    /// When the call's wall-clock time is up (`None`: beyond what `Instant` can hold);
    /// see [`DeadlineClock`].
    deadline: Option<Instant>,
    /// The network's address store, for a call of the `ipam` world.
    ipam: Option<StoreAccess>,
}

impl Sandbox {
    /// A store for one call, which may use `limits.timeout` of CPU time and sleep until
    /// `deadline`,
    /// and may reach the address store `ipam`.
    pub(crate) fn store(
        engine: &Engine,
        limits: &Limits,
        deadline: Option<Instant>,
        ipam: Option<StoreAccess>,
    ) -> Store<Self> {
        let stdout = OutputTail::new(CAPTURED_OUTPUT);
        let stderr = OutputTail::new(CAPTURED_OUTPUT);
        // The builder's defaults already grant no preopens, env, args or stdin; sockets
        // are switched off outright rather than left to the (deny-all) address check.
        let wasi = WasiCtxBuilder::new()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let sandbox = Self {
            wasi,
            table: ResourceTable::new(),
            limiter: Limiter::new(limits.memory_bytes),
            stdout,
            stderr,
            deadline,
            ipam,
        };
        let mut store = Store::new(engine, sandbox);
        store.limiter(|sandbox| &mut sandbox.limiter);
        // At every epoch tick, the call goes on while its thread has used less than its CPU
        // time. Counting CPU rather than wall-clock time means that a node busy starting a
        // hundred pods at once, where a policy waits for a core, does not fail them.
        let timeout = limits.timeout;
        let started = thread_cpu_time();
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if thread_cpu_time().saturating_sub(started) >= timeout {
                Err(Trap::Interrupt.into())
            } else {
                Ok(UpdateDeadline::Continue(1))
            }
        });
        store
    }

    /// What the guest wrote to stdout and stderr (tails), for the logs.
    pub(crate) fn output(&self) -> (String, String) {
        (self.stdout.text(), self.stderr.text())
    }

    /// The address store access of the call, with what the call wrote.
    pub(crate) fn take_ipam(&mut self) -> Option<StoreAccess> {
        self.ipam.take()
    }

    fn ipam(&mut self) -> Result<&mut StoreAccess, store::StoreError> {
        self.ipam.as_mut().ok_or_else(|| {
            store::StoreError::Unavailable("this call was given no address store".to_owned())
        })
    }

    /// Turns the error that ended a call into the reason a user can act on; `toolchain`,
    /// the interpreter the policy carries if known, says what memory it needs.
    pub(crate) fn failure(
        &self,
        policy: &str,
        toolchain: Option<Toolchain>,
        error: &wasmtime::Error,
        limits: &Limits,
    ) -> PolicyError {
        let policy = policy.to_owned();
        let trap = error.downcast_ref::<Trap>();
        if trap == Some(&Trap::Interrupt) {
            return PolicyError::Timeout {
                policy,
                limit: limits.timeout,
            };
        }
        // Checked before the trap kind: a guest told "no more memory" typically aborts
        // (an `unreachable` trap), which is only the symptom.
        if let Some(error) = self.memory_limit(&policy, toolchain, limits) {
            return error;
        }
        if trap == Some(&Trap::StackOverflow) {
            return PolicyError::StackOverflow { policy };
        }
        let stderr = self.stderr.text();
        if let Some(message) = panic_message(&stderr) {
            return PolicyError::Panic { policy, message };
        }
        let stderr = stderr.trim();
        let reason = if stderr.is_empty() {
            format!("{error:#}")
        } else {
            format!("{error:#}; its stderr ends with: {stderr}")
        };
        PolicyError::Trap { policy, reason }
    }
}

impl Sandbox {
    /// [`PolicyError::MemoryLimit`] if the host refused the guest memory during the call.
    /// Whatever the guest did next is only its reaction: an abort, or an error it
    /// caught and returned as its answer (QuickJS throws `InternalError: out of memory`,
    /// which the SDK returns as the policy's error).
    pub(crate) fn memory_limit(
        &self,
        policy: &str,
        toolchain: Option<Toolchain>,
        limits: &Limits,
    ) -> Option<PolicyError> {
        self.limiter
            .memory_refused
            .then(|| PolicyError::MemoryLimit {
                policy: policy.to_owned(),
                limit: limits.memory_bytes,
                toolchain,
            })
    }
}

impl WasiView for Sandbox {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// An IPAM policy's `store` import, forwarded to the call's [`StoreAccess`].
impl store::Host for Sandbox {
    fn get(&mut self, key: String) -> Result<Option<store::Entry>, store::StoreError> {
        self.ipam()?.get(key)
    }

    fn list(&mut self, prefix: String) -> Result<Vec<store::Entry>, store::StoreError> {
        self.ipam()?.list(prefix)
    }

    fn compare_and_swap(
        &mut self,
        key: String,
        expected: Option<u64>,
        value: String,
    ) -> Result<bool, store::StoreError> {
        self.ipam()?.compare_and_swap(key, expected, value)
    }

    fn delete(&mut self, key: String, expected: u64) -> Result<bool, store::StoreError> {
        self.ipam()?.delete(key, expected)
    }
}

/// 0.4.0's `store` import: 0.3.0's interface under its own name, so each call goes where
/// 0.3.0's goes, its records converted.
impl store_v0_4_0::Host for Sandbox {
    fn get(
        &mut self,
        key: String,
    ) -> Result<Option<store_v0_4_0::Entry>, store_v0_4_0::StoreError> {
        store::Host::get(self, key)
            .map(|entry| entry.map(entry_v0_4_0))
            .map_err(store_error_v0_4_0)
    }

    fn list(
        &mut self,
        prefix: String,
    ) -> Result<Vec<store_v0_4_0::Entry>, store_v0_4_0::StoreError> {
        store::Host::list(self, prefix)
            .map(|entries| entries.into_iter().map(entry_v0_4_0).collect())
            .map_err(store_error_v0_4_0)
    }

    fn compare_and_swap(
        &mut self,
        key: String,
        expected: Option<u64>,
        value: String,
    ) -> Result<bool, store_v0_4_0::StoreError> {
        store::Host::compare_and_swap(self, key, expected, value).map_err(store_error_v0_4_0)
    }

    fn delete(&mut self, key: String, expected: u64) -> Result<bool, store_v0_4_0::StoreError> {
        store::Host::delete(self, key, expected).map_err(store_error_v0_4_0)
    }
}

fn entry_v0_4_0(entry: store::Entry) -> store_v0_4_0::Entry {
    let store::Entry {
        key,
        value,
        revision,
    } = entry;
    store_v0_4_0::Entry {
        key,
        value,
        revision,
    }
}

fn store_error_v0_4_0(error: store::StoreError) -> store_v0_4_0::StoreError {
    match error {
        store::StoreError::Unavailable(message) => store_v0_4_0::StoreError::Unavailable(message),
        store::StoreError::Invalid(message) => store_v0_4_0::StoreError::Invalid(message),
    }
}

/// Adds the `store` interface of the `ipam` world, of every version that has it, to `linker`.
pub(crate) fn add_store(linker: &mut Linker<Sandbox>) -> wasmtime::Result<()> {
    store::add_to_linker::<Sandbox, wasmtime::component::HasSelf<Sandbox>>(linker, |sandbox| {
        sandbox
    })?;
    store_v0_4_0::add_to_linker::<Sandbox, wasmtime::component::HasSelf<Sandbox>>(
        linker,
        |sandbox| sandbox,
    )
}

/// The message of a Rust panic, from the guest's stderr:
/// `thread '<unnamed>' panicked at src/lib.rs:9:9:\nMESSAGE\nnote: run with ...`.
fn panic_message(stderr: &str) -> Option<String> {
    let (_, report) = stderr.rsplit_once("panicked at ")?;
    let (location, rest) = report.split_once('\n').unwrap_or((report, ""));
    let message = rest.split("\nnote: ").next().unwrap_or_default().trim();
    let location = location.trim_end_matches(':');
    Some(if message.is_empty() {
        format!("(no message) at {location}")
    } else {
        format!("{message} (at {location})")
    })
}

/// Caps the linear memory of the whole store (not of each memory) at the configured
/// limit, and remembers whether it refused, so that the guest's reaction (usually an
/// abort) is reported as what it is.
struct Limiter {
    memory_limit: usize,
    memory_used: usize,
    memory_refused: bool,
    table_elements_used: usize,
}

impl Limiter {
    fn new(memory_limit: usize) -> Self {
        Self {
            memory_limit,
            memory_used: 0,
            memory_refused: false,
            table_elements_used: 0,
        }
    }
}

/// What a request to grow a memory or a table met.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Growth {
    Granted,
    /// Beyond the memory's or table's own declared maximum: the guest's business.
    BeyondMaximum,
    /// Beyond the store's limit: the host refused.
    BeyondLimit,
}

/// Decides whether one part of a store's total `used` may grow from `current` to
/// `desired` within `limit` and its own `maximum`, and counts the growth if it may.
fn grow(
    used: &mut usize,
    current: usize,
    desired: usize,
    maximum: Option<usize>,
    limit: usize,
) -> Growth {
    if maximum.is_some_and(|maximum| desired > maximum) {
        return Growth::BeyondMaximum;
    }
    let total = used
        .checked_sub(current)
        .and_then(|others| others.checked_add(desired))
        .filter(|&total| total <= limit);
    match total {
        Some(total) => {
            *used = total;
            Growth::Granted
        }
        None => Growth::BeyondLimit,
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let growth = grow(
            &mut self.memory_used,
            current,
            desired,
            maximum,
            self.memory_limit,
        );
        self.memory_refused |= growth == Growth::BeyondLimit;
        Ok(growth == Growth::Granted)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Tables are bounded too; only a refused memory is what a guest's abort is
        // reported as (`memory_refused`).
        let table = &mut self.table_elements_used;
        Ok(grow(table, current, desired, maximum, TABLE_ELEMENTS) == Growth::Granted)
    }

    fn instances(&self) -> usize {
        INSTANCES
    }

    fn tables(&self) -> usize {
        TABLES
    }

    fn memories(&self) -> usize {
        MEMORIES
    }
}

/// The CPU time the calling thread has used: policy calls run on the thread that made
/// their store.
fn thread_cpu_time() -> Duration {
    // The calling thread's own CPU clock always exists (Linux 2.6.12 and later): the call
    // cannot fail.
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map_or(Duration::ZERO, Duration::from)
}

/// Replaces `wasi:clocks/monotonic-clock` in `linker` with [`DeadlineClock`].
pub(crate) fn add_deadline_clock(linker: &mut Linker<Sandbox>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let added = monotonic_clock::add_to_linker::<Sandbox, DeadlineClock>(linker, |sandbox| {
        DeadlineClockView {
            deadline: sandbox.deadline,
            clocks: sandbox.clocks(),
        }
    });
    linker.allow_shadowing(false);
    added
}

/// `wasi:clocks/monotonic-clock` whose timers never outlive the call.
///
/// Epoch interruption stops a guest only while it runs wasm code, and counts CPU time.
/// A guest blocked in a host call (`poll` on a timer: a `sleep`) would hold the CNI
/// invocation for as long as it asked. So a timer fires at the call's wall-clock deadline
/// at the latest, and a guest asking to wait past it is stopped.
struct DeadlineClock;

impl HasData for DeadlineClock {
    type Data<'a> = DeadlineClockView<'a>;
}

struct DeadlineClockView<'a> {
    deadline: Option<Instant>,
    clocks: WasiClocksCtxView<'a>,
}

impl DeadlineClockView<'_> {
    fn capped(&self, duration: Duration) -> u64 {
        let capped = match self.deadline {
            Some(deadline) => duration.min(deadline.saturating_duration_since(Instant::now())),
            None => duration,
        };
        // Never saturates: `duration` came from the guest as a `u64` of nanoseconds.
        u64::try_from(capped.as_nanos()).unwrap_or(u64::MAX)
    }
}

impl monotonic_clock::Host for DeadlineClockView<'_> {
    fn now(&mut self) -> wasmtime::Result<monotonic_clock::Instant> {
        monotonic_clock::Host::now(&mut self.clocks)
    }

    fn resolution(&mut self) -> wasmtime::Result<monotonic_clock::Duration> {
        monotonic_clock::Host::resolution(&mut self.clocks)
    }

    fn subscribe_instant(
        &mut self,
        when: monotonic_clock::Instant,
    ) -> wasmtime::Result<wasmtime::component::Resource<DynPollable>> {
        let now = monotonic_clock::Host::now(&mut self.clocks)?;
        self.subscribe_duration(when.saturating_sub(now))
    }

    fn subscribe_duration(
        &mut self,
        duration: monotonic_clock::Duration,
    ) -> wasmtime::Result<wasmtime::component::Resource<DynPollable>> {
        let capped = self.capped(Duration::from_nanos(duration));
        // Time is up and the guest still wants to wait: the call ends here. Sleeping is
        // the guest's choice, so wall-clock time bounds it, unlike computing.
        if capped == 0 && duration > 0 {
            return Err(Trap::Interrupt.into());
        }
        monotonic_clock::Host::subscribe_duration(&mut self.clocks, capped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_message_and_location_come_from_rust_stderr() {
        let stderr = "some log line\n\
            thread '<unnamed>' panicked at src/lib.rs:9:9:\n\
            policy panicked on purpose\n\
            note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n";
        assert_eq!(
            panic_message(stderr).as_deref(),
            Some("policy panicked on purpose (at src/lib.rs:9:9)")
        );
    }

    #[test]
    fn multi_line_panic_messages_are_kept_whole() {
        let stderr = "thread 'x' panicked at src/a.rs:1:1:\nline one\nline two\n";
        assert_eq!(
            panic_message(stderr).as_deref(),
            Some("line one\nline two (at src/a.rs:1:1)")
        );
    }

    #[test]
    fn no_panic_without_the_marker() {
        assert_eq!(panic_message("memory allocation of 8 bytes failed\n"), None);
    }

    #[test]
    fn limiter_caps_the_sum_of_all_memories() {
        let mut limiter = Limiter::new(4 << 16);
        assert!(limiter.memory_growing(0, 2 << 16, None).unwrap());
        assert!(limiter.memory_growing(0, 1 << 16, None).unwrap());
        assert!(!limiter.memory_refused);
        assert!(!limiter.memory_growing(2 << 16, 4 << 16, None).unwrap());
        assert!(limiter.memory_refused);
        assert!(limiter.memory_growing(1 << 16, 2 << 16, None).unwrap());
    }

    #[test]
    fn a_memory_maximum_is_not_our_limit() {
        let mut limiter = Limiter::new(4 << 16);
        assert!(!limiter.memory_growing(0, 2 << 16, Some(1 << 16)).unwrap());
        assert!(!limiter.memory_refused);
    }
}
