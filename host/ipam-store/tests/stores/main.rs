//! Integration tests of the address stores, against real files, real processes and
//! a real etcd (Debian's `etcd-server`, started by the tests themselves).
//!
//! One test binary: the concurrency tests re-execute it as worker processes (see
//! [`worker`]), and linking one binary is cheaper than several.

mod etcd_store;
mod file_store;
mod memory_store;
mod semantics;
mod workers;

/// Entry point of worker processes; a no-op in a normal test run.
#[test]
fn worker() {
    workers::run_if_requested();
}
