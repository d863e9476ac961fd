//! Bindings of `plexus:policy@0.2.0` (`wit/v0.2.0`), the newest version: its records are
//! the crate's [`types`](crate::types), so its policies are called without conversion.

pub(crate) mod selector {
    wasmtime::component::bindgen!({
        path: "../../wit/v0.2.0",
        world: "selector",
        // `Default` for serde's `default` (JSON written by hand may leave out empty fields)
        // and for callers' `..Default::default()`; equality for their tests.
        additional_derives: [Default, PartialEq, Eq],
    });
}

pub(crate) mod merger {
    wasmtime::component::bindgen!({
        path: "../../wit/v0.2.0",
        world: "merger",
        // One set of Rust types for both worlds.
        with: { "plexus:policy/types": super::selector::plexus::policy::types },
    });
}

pub(crate) use merger::MergerPre;
pub(crate) use selector::SelectorPre;
