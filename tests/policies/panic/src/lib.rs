//! A selector that panics with a known message, for the host to report.

wit_bindgen::generate!({ path: "../../../wit/v0.1.0", world: "selector" });

struct Panic;

impl Guest for Panic {
    fn select(_request: SelectRequest) -> Result<Vec<Attachment>, String> {
        panic!("policy panicked on purpose");
    }
}

export!(Panic);
