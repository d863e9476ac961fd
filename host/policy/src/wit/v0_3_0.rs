//! Bindings of `plexus:policy@0.3.0` (`wit/v0.3.0`), the newest version: its records are
//! the crate's [`types`](crate::types), so its policies are called without conversion.

pub(crate) mod selector {
    wasmtime::component::bindgen!({
        path: "../../wit/v0.3.0",
        world: "selector",
        // `Default` for serde's `default` (JSON written by hand may leave out empty fields)
        // and for callers' `..Default::default()`; equality for their tests.
        additional_derives: [Default, PartialEq, Eq],
    });
}

pub(crate) mod merger {
    wasmtime::component::bindgen!({
        path: "../../wit/v0.3.0",
        world: "merger",
        // One set of Rust types for every world.
        with: { "plexus:policy/types": super::selector::plexus::policy::types },
    });
}

pub(crate) mod ipam {
    wasmtime::component::bindgen!({
        path: "../../wit/v0.3.0",
        world: "ipam",
        with: { "plexus:policy/types": super::selector::plexus::policy::types },
        additional_derives: [PartialEq, Eq],
    });
}

pub(crate) use ipam::IpamPre;
pub(crate) use merger::MergerPre;
pub(crate) use selector::SelectorPre;
