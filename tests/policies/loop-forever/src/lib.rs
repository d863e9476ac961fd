//! A selector that never returns: only the host's deadline can stop it.

wit_bindgen::generate!({ path: "../../../wit/v0.1.0", world: "selector" });

struct LoopForever;

impl Guest for LoopForever {
    fn select(_request: SelectRequest) -> Result<Vec<Attachment>, String> {
        let mut spins = 0u64;
        loop {
            // Keeps the loop observable so the optimiser cannot fold it away.
            spins = std::hint::black_box(spins.wrapping_add(1));
        }
    }
}

export!(LoopForever);
