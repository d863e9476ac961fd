//! Fake plugins and a log-capturing subscriber for the exec and invoke tests.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Once};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Metadata, Subscriber};

/// The directory holding Debian's reference plugins.
pub const REAL_PLUGINS: &str = "/usr/lib/cni";

/// A temporary CNI path directory of shell-script plugins. Scripts record
/// what they were given under `out()`, whose path is baked into them.
pub struct FakePlugins {
    dir: tempfile::TempDir,
}

impl FakePlugins {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("bin")).unwrap();
        fs::create_dir(dir.path().join("out")).unwrap();
        FakePlugins { dir }
    }

    pub fn bin(&self) -> PathBuf {
        self.dir.path().join("bin")
    }

    pub fn out(&self) -> PathBuf {
        self.dir.path().join("out")
    }

    /// The CNI path: the fake plugins, then the real ones.
    pub fn path(&self) -> Vec<PathBuf> {
        vec![self.bin(), PathBuf::from(REAL_PLUGINS)]
    }

    /// Writes an executable `/bin/sh` script. `$OUT` in `body` is the
    /// output directory; every script first saves its stdin to
    /// `$OUT/<name>.<command>.json` and its `CNI_*` environment to
    /// `$OUT/<name>.<command>.env`, and appends its name to `$OUT/order`.
    pub fn plugin(&self, name: &str, body: &str) -> PathBuf {
        let script = format!(
            "#!/bin/sh\nOUT='{out}'\ncat > \"$OUT/{name}.$CNI_COMMAND.json\"\n\
             env | grep '^CNI_' | sort > \"$OUT/{name}.$CNI_COMMAND.env\"\n\
             echo {name} >> \"$OUT/order\"\n{body}\n",
            out = self.out().display(),
        );
        let path = self.bin().join(name);
        let mut f = fs::File::create(&path).unwrap();
        f.write_all(script.as_bytes()).unwrap();
        f.sync_all().unwrap();
        drop(f);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    /// What plugin `name` saved for `command` (`json` or `env`), if it ran.
    pub fn saved(&self, name: &str, command: &str, ext: &str) -> Option<String> {
        fs::read_to_string(self.out().join(format!("{name}.{command}.{ext}"))).ok()
    }

    /// The stdin plugin `name` got for `command`, as JSON.
    pub fn stdin(&self, name: &str, command: &str) -> serde_json::Value {
        serde_json::from_str(&self.saved(name, command, "json").unwrap()).unwrap()
    }

    /// The names of the plugins run, in order.
    pub fn order(&self) -> Vec<String> {
        fs::read_to_string(self.out().join("order"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

/// Events recorded by [`capture`]: target and rendered fields.
pub type Captured = Arc<Mutex<Vec<(String, String)>>>;

struct Capture(Captured);

struct Fields(String);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!("{}={:?} ", field.name(), value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push_str(&format!("{}={} ", field.name(), value));
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields(String::new());
        event.record(&mut fields);
        self.0
            .lock()
            .unwrap()
            .push((event.metadata().target().to_owned(), fields.0));
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

/// The process-wide subscriber while tests run: it records nothing, but keeps tracing
/// from caching "nobody listens" for a callsite first hit by a test thread that has no
/// subscriber, which would hide that callsite's events from a later [`capture`].
struct Undecided;

impl Subscriber for Undecided {
    fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
        Interest::sometimes()
    }
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        false
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, _: &Event<'_>) {}
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

/// Runs `f` with a subscriber that records every event.
pub fn capture<T>(f: impl FnOnce() -> T) -> (T, Vec<(String, String)>) {
    static UNDECIDED: Once = Once::new();
    UNDECIDED.call_once(|| {
        // Another global subscriber already keeps interest open just as well.
        let _ = tracing::subscriber::set_global_default(Undecided);
    });
    let events: Captured = Arc::default();
    let result = tracing::subscriber::with_default(Capture(events.clone()), f);
    let events = events.lock().unwrap().clone();
    (result, events)
}
