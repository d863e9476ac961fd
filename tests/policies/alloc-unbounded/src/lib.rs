//! A selector that allocates until it dies: the host's memory limit must stop it.

wit_bindgen::generate!({ path: "../../../wit/v0.1.0", world: "selector" });

struct AllocUnbounded;

impl Guest for AllocUnbounded {
    fn select(_request: SelectRequest) -> Result<Vec<Attachment>, String> {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            // Filled, not just reserved, so every megabyte is really grown into.
            hoard.push(std::hint::black_box(vec![0xa5; 1 << 20]));
        }
    }
}

export!(AllocUnbounded);
