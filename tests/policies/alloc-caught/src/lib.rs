//! A selector that asks for more memory than any limit and, refused, returns an ordinary
//! error, as a QuickJS policy does: the host must still report its memory limit.

wit_bindgen::generate!({ path: "../../../wit/v0.1.0", world: "selector" });

struct AllocCaught;

impl Guest for AllocCaught {
    fn select(_request: SelectRequest) -> Result<Vec<Attachment>, String> {
        let mut hoard: Vec<u8> = Vec::new();
        // 1 GiB: more than any memory limit a test gives, less than wasm32 can address.
        match hoard.try_reserve_exact(1 << 30) {
            Ok(()) => Ok(Vec::new()),
            Err(_) => Err("allocation failed".to_owned()),
        }
    }
}

export!(AllocCaught);
