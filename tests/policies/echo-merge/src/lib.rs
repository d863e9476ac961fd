//! A merger that returns the first delegate's result unchanged.

mod bindings {
    #![allow(
        clippy::too_many_arguments,
        reason = "wit-bindgen's generated lowering glue"
    )]

    wit_bindgen::generate!({ path: "../../../wit/v0.1.0", world: "merger" });
}

use bindings::{CniResult, Guest, MergeRequest};

struct EchoMerge;

impl Guest for EchoMerge {
    fn merge(request: MergeRequest) -> Result<CniResult, String> {
        request
            .results
            .into_iter()
            .next()
            .map(|delegate| delegate.result)
            .ok_or_else(|| "no delegate results to merge".to_owned())
    }
}

bindings::export!(EchoMerge with_types_in bindings);
