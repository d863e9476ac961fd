//! Named points of ADD, DEL and IPAM where the crash-consistency suite kills `plexus`
//! the way a power cut or a runtime's `kill -9` would: with `PLEXUS_CRASH_AT=<point>` in
//! its environment, the process sends itself SIGKILL on reaching that point. Unset (as on
//! every real node), a point costs one comparison.

use std::sync::OnceLock;

use nix::sys::signal::{Signal, raise};

/// The variable naming the point to die at.
const CRASH_AT: &str = "PLEXUS_CRASH_AT";

/// Dies here if this is the point named in `PLEXUS_CRASH_AT`.
pub fn reached(point: &str) {
    static WANTED: OnceLock<Option<String>> = OnceLock::new();
    let wanted = WANTED.get_or_init(|| std::env::var(CRASH_AT).ok());
    if wanted.as_deref() == Some(point) {
        let _ = raise(Signal::SIGKILL);
    }
}

/// [`reached`] for the point `<stage>:<index>` of the attachment at `index`.
pub fn reached_at(stage: &str, index: usize) {
    if std::env::var_os(CRASH_AT).is_some() {
        reached(&format!("{stage}:{index}"));
    }
}
