//! Write Plexus policies: WebAssembly components that choose a pod's networks
//! (the `selector` world) or merge the delegates' results (the `merger` world) of
//! the WIT package `plexus:policy@0.1.0`.
//!
//! A policy is a `cdylib` crate built with `cargo build --release --target wasm32-wasip2`.
//! It implements [`Selector`] or [`Merger`] on a type and exports it with
//! [`export_selector!`] or [`export_merger!`]:
//!
//! ```
//! use plexus_policy_sdk::types::{Attachment, SelectRequest};
//! use plexus_policy_sdk::{Selector, networks};
//!
//! struct FirstNetwork;
//!
//! impl Selector for FirstNetwork {
//!     fn select(request: SelectRequest) -> Result<Vec<Attachment>, String> {
//!         let wanted = request.default_networks.first().ok_or("no defaultNetworks")?;
//!         let network = networks::lookup(&request.networks, wanted)?;
//!         Ok(vec![Attachment {
//!             network_file: network.file.clone(),
//!             ifname: request.pod.ifname.clone(),
//!             ..Default::default()
//!         }])
//!     }
//! }
//!
//! plexus_policy_sdk::export_selector!(FirstNetwork);
//! ```
//!
//! The export macros only export on `wasm32`, so the same crate builds and tests natively:
//! `cargo test` calls `FirstNetwork::select(...)` like any Rust function. The helpers in
//! [`annotations`], [`networks`], [`ifnames`], [`results`] and [`config`] are plain Rust
//! for the same reason.
//!
//! A policy returns `Err(message)` for anything its input can get wrong; the host turns the
//! message into the CNI error. A panic aborts the call; its message (printed to stderr)
//! becomes the error too, but says less to the operator than a chosen message.

pub mod annotations;
pub mod config;
pub mod ifnames;
pub mod networks;
pub mod results;

/// Bindings of the `selector` world. They also define the shared `types` interface that
/// [`types`] re-exports; use those names, not these.
#[doc(hidden)]
#[allow(clippy::all)] // Generated code.
pub mod selector_world {
    wit_bindgen::generate!({
        world: "selector",
        path: "../../wit/v0.1.0",
        // Policy authors build records with `..Default::default()` and compare them in tests.
        additional_derives: [PartialEq, Eq, Default],
        pub_export_macro: true,
        export_macro_name: "export_selector_world",
    });
}

/// Bindings of the `merger` world, using the `types` generated for the selector world so
/// that both worlds share one set of Rust types.
#[doc(hidden)]
#[allow(clippy::all)] // Generated code.
pub mod merger_world {
    wit_bindgen::generate!({
        world: "merger",
        path: "../../wit/v0.1.0",
        with: { "plexus:policy/types@0.1.0": crate::selector_world::plexus::policy::types },
        pub_export_macro: true,
        export_macro_name: "export_merger_world",
    });
}

/// The records of the `plexus:policy/types@0.1.0` interface, shared by both worlds.
pub mod types {
    pub use crate::selector_world::plexus::policy::types::*;
}

/// A selection policy: chooses the networks a pod is attached to, and the interface each
/// attachment gets. Export the implementing type with [`export_selector!`].
///
/// `select` returns the attachments in order (the first is the pod's primary interface),
/// or a message that becomes the CNI error.
#[doc(inline)]
pub use selector_world::Guest as Selector;

/// A merge policy: turns the delegates' results into the pod's one CNI result. Export the
/// implementing type with [`export_merger!`].
///
/// `merge` returns the pod's result, or a message that becomes the CNI error.
#[doc(inline)]
pub use merger_world::Guest as Merger;

/// Exports a type implementing [`Selector`] as the component's `select` function.
///
/// Use it once, at the top level of a `cdylib` crate: `export_selector!(MyPolicy);`.
/// It exports only when compiling for `wasm32`, so native builds and `cargo test` of the
/// same crate work without any `cfg`.
#[macro_export]
macro_rules! export_selector {
    ($policy:ident) => {
        #[cfg(target_arch = "wasm32")]
        $crate::selector_world::export_selector_world!($policy with_types_in $crate::selector_world);
    };
}

/// Exports a type implementing [`Merger`] as the component's `merge` function.
///
/// Use it once, at the top level of a `cdylib` crate: `export_merger!(MyPolicy);`.
/// It exports only when compiling for `wasm32`, so native builds and `cargo test` of the
/// same crate work without any `cfg`.
#[macro_export]
macro_rules! export_merger {
    ($policy:ident) => {
        #[cfg(target_arch = "wasm32")]
        $crate::merger_world::export_merger_world!($policy with_types_in $crate::merger_world);
    };
}
