//! Write Plexus policies: WebAssembly components that choose a pod's networks
//! (the `selector` world), merge the delegates' results (the `merger` world) or decide a
//! pod's addresses on a network (the `ipam` world) of the WIT package
//! `plexus:policy@0.3.0`.
//!
//! A policy is a `cdylib` crate built with `cargo build --release --target wasm32-wasip2`.
//! It implements [`Selector`], [`Merger`] or [`Ipam`] on a type and exports it with
//! [`export_selector!`], [`export_merger!`] or [`export_ipam!`]:
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
//! [`annotations`], [`networks`], [`ifnames`], [`results`], [`config`] and [`ipam`] are
//! plain Rust for the same reason; an IPAM policy takes its [`store::Store`] as an
//! argument, so a test hands it a [`store::MemoryStore`].
//!
//! A policy returns `Err(message)` for anything its input can get wrong; the host turns the
//! message into the CNI error. A panic aborts the call; its message (printed to stderr)
//! becomes the error too, but says less to the operator than a chosen message.
//!
//! # Metadata
//! The export macros also export the policy's `metadata`, which the host reads when it
//! loads the policy: its name and version are the policy crate's own (`CARGO_PKG_NAME`,
//! `CARGO_PKG_VERSION`), and the oldest Plexus that can run it is [`MIN_HOST_VERSION`]
//! unless the policy says otherwise. A policy that relies on something a later Plexus
//! host brought (a behaviour, not only the WIT) says so, and older hosts refuse to load
//! it with an error naming both versions instead of running it wrongly:
//!
//! ```
//! # use plexus_policy_sdk::types::{Attachment, SelectRequest};
//! # use plexus_policy_sdk::Selector;
//! use plexus_policy_sdk::Metadata;
//!
//! struct VmOnly;
//!
//! impl Selector for VmOnly {
//!     // ...
//! #   fn select(_: SelectRequest) -> Result<Vec<Attachment>, String> { Ok(Vec::new()) }
//! }
//!
//! plexus_policy_sdk::export_selector!(VmOnly, min_host_version = "0.2.0");
//!
//! // The macro implements [`Metadata`], so a native test can check what the host will read.
//! assert_eq!(VmOnly::metadata().min_host_version, "0.2.0");
//! assert_eq!(VmOnly::metadata().name, env!("CARGO_PKG_NAME"));
//! ```

pub mod annotations;
pub mod config;
pub mod ifnames;
pub mod ipam;
pub mod networks;
pub mod results;
pub mod store;

/// The oldest Plexus host that serves `plexus:policy@0.3.0`, the WIT this SDK builds
/// against: the `min-host-version` a policy declares unless it names a later one.
pub const MIN_HOST_VERSION: &str = "0.1.0";

/// Bindings of the `selector` world. They also define the shared `types` interface that
/// [`types`] re-exports; use those names, not these.
#[doc(hidden)]
#[allow(clippy::all)] // Generated code.
pub mod selector_world {
    wit_bindgen::generate!({
        world: "selector",
        path: "../../wit/v0.3.0",
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
        path: "../../wit/v0.3.0",
        with: { "plexus:policy/types@0.3.0": crate::selector_world::plexus::policy::types },
        pub_export_macro: true,
        export_macro_name: "export_merger_world",
    });
}

/// Bindings of the `ipam` world, sharing the selector world's `types`; its `store`
/// import is reached through [`store::HostStore`].
#[doc(hidden)]
#[allow(clippy::all)] // Generated code.
pub mod ipam_world {
    wit_bindgen::generate!({
        world: "ipam",
        path: "../../wit/v0.3.0",
        with: { "plexus:policy/types@0.3.0": crate::selector_world::plexus::policy::types },
        additional_derives: [PartialEq, Eq],
        pub_export_macro: true,
        export_macro_name: "export_ipam_world",
    });
}

/// The records of the `plexus:policy/types@0.3.0` interface, shared by every world.
pub mod types {
    pub use crate::selector_world::plexus::policy::types::*;
}

use types::{
    Attachment, CniResult, GcRequest, IpamRequest, MergeRequest, PolicyMetadata, SelectRequest,
};

/// A selection policy: chooses the networks a pod is attached to, and the interface each
/// attachment gets. Export the implementing type with [`export_selector!`].
pub trait Selector {
    /// The attachments in order (the first is the pod's primary interface), or a message
    /// that becomes the CNI error.
    fn select(request: SelectRequest) -> Result<Vec<Attachment>, String>;
}

/// A merge policy: turns the delegates' results into the pod's one CNI result. Export the
/// implementing type with [`export_merger!`].
pub trait Merger {
    /// The pod's result, or a message that becomes the CNI error.
    fn merge(request: MergeRequest) -> Result<CniResult, String>;
}

/// An IPAM policy: decides an attachment's addresses on one network, keeping its
/// allocations in the network's [`store::Store`]. Export the implementing type with
/// [`export_ipam!`]. [`ipam::Ranges`] does the work of a range allocator.
///
/// The host undoes every write of a call that returns `Err` (or traps), so a method
/// may fail at any point without leaving half an allocation behind.
pub trait Ipam {
    /// The attachment's addresses, routes and DNS (CNI ADD).
    fn allocate(request: IpamRequest, store: &dyn store::Store) -> Result<CniResult, String>;
    /// Releases the attachment's addresses (CNI DEL); releasing nothing is no error.
    fn release(request: IpamRequest, store: &dyn store::Store) -> Result<(), String>;
    /// Fails when the attachment no longer holds its addresses (CNI CHECK).
    fn check(request: IpamRequest, store: &dyn store::Store) -> Result<(), String>;
    /// Releases the allocations of attachments that no longer exist (CNI GC).
    fn gc(request: GcRequest, store: &dyn store::Store) -> Result<(), String>;
}

/// What a policy says about itself. Implemented by [`export_selector!`],
/// [`export_merger!`] and [`export_ipam!`], not by hand; call it in tests to see what the host will read.
pub trait Metadata {
    /// The policy's name and version, and the oldest Plexus host that can run it.
    fn metadata() -> PolicyMetadata;
}

/// Exports a [`Selector`] through the generated bindings, which want both of the world's
/// functions from one type. Used by [`export_selector!`] only.
#[doc(hidden)]
pub struct SelectorExport<P>(core::marker::PhantomData<P>);

impl<P: Selector + Metadata> selector_world::Guest for SelectorExport<P> {
    fn select(request: SelectRequest) -> Result<Vec<Attachment>, String> {
        P::select(request)
    }

    fn metadata() -> PolicyMetadata {
        P::metadata()
    }
}

/// Exports a [`Merger`] through the generated bindings, which want both of the world's
/// functions from one type. Used by [`export_merger!`] only.
#[doc(hidden)]
pub struct MergerExport<P>(core::marker::PhantomData<P>);

impl<P: Merger + Metadata> merger_world::Guest for MergerExport<P> {
    fn merge(request: MergeRequest) -> Result<CniResult, String> {
        P::merge(request)
    }

    fn metadata() -> PolicyMetadata {
        P::metadata()
    }
}

/// Exports an [`Ipam`] through the generated bindings, handing it the host's store.
/// Used by [`export_ipam!`] only.
#[doc(hidden)]
pub struct IpamExport<P>(core::marker::PhantomData<P>);

impl<P: Ipam + Metadata> ipam_world::Guest for IpamExport<P> {
    fn metadata() -> PolicyMetadata {
        P::metadata()
    }

    fn allocate(request: IpamRequest) -> Result<CniResult, String> {
        P::allocate(request, &store::HostStore)
    }

    fn release(request: IpamRequest) -> Result<(), String> {
        P::release(request, &store::HostStore)
    }

    fn check(request: IpamRequest) -> Result<(), String> {
        P::check(request, &store::HostStore)
    }

    fn gc(request: GcRequest) -> Result<(), String> {
        P::gc(request, &store::HostStore)
    }
}

/// Exports a type implementing [`Selector`] as the component's `select` function, and its
/// [`Metadata`] as `metadata`.
///
/// Use it once, at the top level of a `cdylib` crate: `export_selector!(MyPolicy);`, or
/// `export_selector!(MyPolicy, min_host_version = "0.2.0");` for a policy that needs a
/// later Plexus than [`MIN_HOST_VERSION`] (see [the crate documentation](crate#metadata)).
/// It exports only when compiling for `wasm32`, so native builds and `cargo test` of the
/// same crate work without any `cfg`.
#[macro_export]
macro_rules! export_selector {
    ($policy:ty $(, min_host_version = $min_host_version:expr)? $(,)?) => {
        $crate::__impl_metadata!($policy $(, $min_host_version)?);
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            // The generated export macro takes a type name, not a generic type.
            type Export = $crate::SelectorExport<$policy>;
            $crate::selector_world::export_selector_world!(Export with_types_in $crate::selector_world);
        };
    };
}

/// Exports a type implementing [`Merger`] as the component's `merge` function, and its
/// [`Metadata`] as `metadata`.
///
/// Use it once, at the top level of a `cdylib` crate: `export_merger!(MyPolicy);`, or
/// `export_merger!(MyPolicy, min_host_version = "0.2.0");` for a policy that needs a
/// later Plexus than [`MIN_HOST_VERSION`] (see [the crate documentation](crate#metadata)).
/// It exports only when compiling for `wasm32`, so native builds and `cargo test` of the
/// same crate work without any `cfg`.
#[macro_export]
macro_rules! export_merger {
    ($policy:ty $(, min_host_version = $min_host_version:expr)? $(,)?) => {
        $crate::__impl_metadata!($policy $(, $min_host_version)?);
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            // The generated export macro takes a type name, not a generic type.
            type Export = $crate::MergerExport<$policy>;
            $crate::merger_world::export_merger_world!(Export with_types_in $crate::merger_world);
        };
    };
}

/// Exports a type implementing [`Ipam`] as the component's `allocate`, `release`, `check`
/// and `gc` functions, and its [`Metadata`] as `metadata`. Used like
/// [`export_selector!`].
#[macro_export]
macro_rules! export_ipam {
    ($policy:ty $(, min_host_version = $min_host_version:expr)? $(,)?) => {
        $crate::__impl_metadata!($policy $(, $min_host_version)?);
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            // The generated export macro takes a type name, not a generic type.
            type Export = $crate::IpamExport<$policy>;
            $crate::ipam_world::export_ipam_world!(Export with_types_in $crate::ipam_world);
        };
    };
}

/// Implements [`Metadata`] for the export macros. It expands in the policy crate, so
/// `CARGO_PKG_NAME` and `CARGO_PKG_VERSION` are the policy's, not the SDK's.
#[doc(hidden)]
#[macro_export]
macro_rules! __impl_metadata {
    ($policy:ty) => {
        $crate::__impl_metadata!($policy, $crate::MIN_HOST_VERSION);
    };
    ($policy:ty, $min_host_version:expr) => {
        impl $crate::Metadata for $policy {
            fn metadata() -> $crate::types::PolicyMetadata {
                $crate::types::PolicyMetadata {
                    name: ::core::env!("CARGO_PKG_NAME").into(),
                    version: ::core::env!("CARGO_PKG_VERSION").into(),
                    min_host_version: ($min_host_version).into(),
                }
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Defaults;

    impl Merger for Defaults {
        fn merge(_: MergeRequest) -> Result<CniResult, String> {
            Ok(CniResult::default())
        }
    }

    crate::export_merger!(Defaults);

    struct NeedsLater;

    impl Selector for NeedsLater {
        fn select(_: SelectRequest) -> Result<Vec<Attachment>, String> {
            Ok(Vec::new())
        }
    }

    crate::export_selector!(NeedsLater, min_host_version = "0.2.0");

    #[test]
    fn metadata_defaults_to_the_crate_and_the_sdk() {
        assert_eq!(
            Defaults::metadata(),
            PolicyMetadata {
                name: "plexus-policy-sdk".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                min_host_version: MIN_HOST_VERSION.into(),
            }
        );
    }

    #[test]
    fn min_host_version_can_be_raised() {
        assert_eq!(NeedsLater::metadata().min_host_version, "0.2.0");
        assert_eq!(NeedsLater::metadata().name, "plexus-policy-sdk");
    }
}
