//! A selector built against `plexus:policy@0.2.0` whose metadata says it needs Plexus
//! 99.0.0: every host today must refuse to load it, so `select` must never run.

wit_bindgen::generate!({ path: "../../../wit/v0.2.0", world: "selector" });

struct NeedsNewerHost;

impl Guest for NeedsNewerHost {
    fn select(_: SelectRequest) -> Result<Vec<Attachment>, String> {
        Err("a host older than my min-host-version called me".to_owned())
    }

    fn metadata() -> PolicyMetadata {
        PolicyMetadata {
            name: env!("CARGO_PKG_NAME").to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            min_host_version: "99.0.0".to_owned(),
        }
    }
}

export!(NeedsNewerHost);
