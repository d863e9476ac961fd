//! Bindings of `plexus:policy@0.4.0` (`wit/v0.4.0`), the newest version. It is 0.3.0 with
//! the selector's export renamed from `select` to `select-networks`, which a toolchain that
//! links libc into the component (componentize-py) can export: its records are 0.3.0's,
//! field for field, so its policies are called with the crate's [`types`](crate::types).

pub(crate) mod selector {
    wasmtime::component::bindgen!({
        path: "../../wit/v0.4.0",
        world: "selector",
        with: { "plexus:policy/types": crate::wit::v0_3_0::selector::plexus::policy::types },
    });
}

pub(crate) mod merger {
    wasmtime::component::bindgen!({
        path: "../../wit/v0.4.0",
        world: "merger",
        with: { "plexus:policy/types": crate::wit::v0_3_0::selector::plexus::policy::types },
    });
}

pub(crate) mod ipam {
    wasmtime::component::bindgen!({
        path: "../../wit/v0.4.0",
        world: "ipam",
        // The `store` import is generated anew: a host serves it under its own name
        // (`plexus:policy/store@0.4.0`), converting to and from 0.3.0's records.
        with: { "plexus:policy/types": crate::wit::v0_3_0::selector::plexus::policy::types },
    });
}

pub(crate) use ipam::IpamPre;
pub(crate) use merger::MergerPre;
pub(crate) use selector::SelectorPre;
