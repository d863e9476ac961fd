//! The phases of one invocation as tracing spans under the target `plexus::phase`: with
//! `logLevel: "warn,plexus::phase=debug"` each phase's duration is logged when it ends
//! (`phase{name="select"}: plexus::phase: close time.busy=…`), which is how the bench
//! breaks plexus's own time down. At any other level a phase costs a filter check.

/// Runs `work` as the phase `name`.
pub fn run<T>(name: &'static str, work: impl FnOnce() -> T) -> T {
    let _phase = enter(name);
    work()
}

/// Starts the phase `name`, which lasts until the returned guard is dropped.
pub fn enter(name: &'static str) -> tracing::span::EnteredSpan {
    tracing::debug_span!(target: "plexus::phase", "phase", name).entered()
}
