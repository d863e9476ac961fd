//! Bindings of `plexus:policy@0.2.0` (`wit/v0.2.0`), frozen. 0.3.0 only added the `ipam`
//! world and the records it uses, so the records 0.2.0 has are the newest ones, field for
//! field: its policies are called with the crate's [`types`](crate::types) directly.

pub(crate) mod selector {
    wasmtime::component::bindgen!({
        path: "../../wit/v0.2.0",
        world: "selector",
        with: { "plexus:policy/types": crate::wit::v0_3_0::selector::plexus::policy::types },
    });
}

pub(crate) mod merger {
    wasmtime::component::bindgen!({
        path: "../../wit/v0.2.0",
        world: "merger",
        with: { "plexus:policy/types": crate::wit::v0_3_0::selector::plexus::policy::types },
    });
}

pub(crate) use merger::MergerPre;
pub(crate) use selector::SelectorPre;
