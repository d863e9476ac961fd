//! A selector that refuses every pod with a known message.

wit_bindgen::generate!({ path: "../../../wit/v0.1.0", world: "selector" });

struct Reject;

impl Guest for Reject {
    fn select(_request: SelectRequest) -> Result<Vec<Attachment>, String> {
        Err("no network for this pod".to_owned())
    }
}

export!(Reject);
