//! A selector that recurses without bound: the host's wasm stack limit must stop it.

wit_bindgen::generate!({ path: "../../../wit/v0.1.0", world: "selector" });

use std::hint::black_box;

struct Recurse;

/// Work after the call keeps this from becoming a loop (no tail call, no accumulator),
/// and plain integers keep it on the wasm stack, not the shadow stack in linear memory.
#[inline(never)]
#[expect(
    unconditional_recursion,
    reason = "recursing until the stack overflows is the point"
)]
fn descend(depth: u64) -> u64 {
    let below = descend(black_box(depth + 1));
    black_box(below).wrapping_mul(31).wrapping_add(depth)
}

impl Guest for Recurse {
    fn select(_request: SelectRequest) -> Result<Vec<Attachment>, String> {
        Err(format!("reached the bottom at {}", descend(0)))
    }
}

export!(Recurse);
