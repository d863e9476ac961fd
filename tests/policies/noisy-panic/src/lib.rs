//! A selector that floods stderr and then panics: the host must still report the panic
//! message, which comes last.

wit_bindgen::generate!({ path: "../../../wit/v0.1.0", world: "selector" });

struct NoisyPanic;

impl Guest for NoisyPanic {
    fn select(_request: SelectRequest) -> Result<Vec<Attachment>, String> {
        // Well past the host's 64 KiB tail, in few enough writes to stay far within
        // the time limit.
        let noise = "the host keeps only a bounded tail of this output ".repeat(20);
        for line in 0..200 {
            eprintln!("noise line {line}: {noise}");
        }
        panic!("noisy policy panicked after the flood");
    }
}

export!(NoisyPanic);
