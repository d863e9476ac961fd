//! A selector that blocks in a host call (a sleep), where epoch interruption cannot
//! reach it: the host's wall-clock deadline must still end the call.

wit_bindgen::generate!({ path: "../../../wit/v0.1.0", world: "selector" });

use std::time::Duration;

struct SleepForever;

impl Guest for SleepForever {
    fn select(_request: SelectRequest) -> Result<Vec<Attachment>, String> {
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
}

export!(SleepForever);
