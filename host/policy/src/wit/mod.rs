//! The versions of the WIT package `plexus:policy` this host serves, and calls into a
//! policy through the bindings of the version it was built against.
//!
//! A released version is frozen (`wit/v<VERSION>/`): a policy built against it keeps
//! loading and running after newer versions appear. Each version has its module of
//! bindings; the newest one's records are the crate's [`types`](crate::types), and older
//! modules convert requests down and answers up.

mod v0_1_0;
mod v0_2_0;
pub(crate) mod v0_3_0;
pub(crate) mod v0_4_0;

use wasmtime::component::InstancePre;
use wasmtime::{Engine, Store};

use crate::sandbox::Sandbox;
use crate::types::{
    Attachment, CniResult, GcRequest, IpamRequest, MergeRequest, PolicyMetadata, SelectRequest,
};

/// The package every policy interface belongs to.
const PACKAGE: &str = "plexus:policy";

/// A version of `plexus:policy` this host serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WitVersion {
    V0_1_0,
    V0_2_0,
    V0_3_0,
    V0_4_0,
}

/// The versions of `plexus:policy` this host serves, oldest first.
pub const WIT_VERSIONS: [&str; 4] = [
    WitVersion::V0_1_0.as_str(),
    WitVersion::V0_2_0.as_str(),
    WitVersion::V0_3_0.as_str(),
    WitVersion::V0_4_0.as_str(),
];

impl WitVersion {
    const ALL: [Self; 4] = [Self::V0_1_0, Self::V0_2_0, Self::V0_3_0, Self::V0_4_0];

    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Self::V0_1_0 => "0.1.0",
            Self::V0_2_0 => "0.2.0",
            Self::V0_3_0 => "0.3.0",
            Self::V0_4_0 => "0.4.0",
        }
    }

    /// The version a component was built against, from the names of its imports and
    /// exports: the bindings a guest is generated from import the `types` interface of
    /// their version (`plexus:policy/types@0.2.0`), whatever the world.
    pub(crate) fn of_component<'a>(
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, String> {
        let mut versions: Vec<&str> = Vec::new();
        for name in names {
            let Some(interface) = name
                .strip_prefix(PACKAGE)
                .and_then(|rest| rest.strip_prefix('/'))
            else {
                continue;
            };
            let version = interface.split_once('@').map_or("", |(_, version)| version);
            if !versions.contains(&version) {
                versions.push(version);
            }
        }
        let served = || {
            WIT_VERSIONS
                .map(|version| format!("{PACKAGE}@{version}"))
                .join(", ")
        };
        match versions.as_slice() {
            [] => Err(format!(
                "it uses no {PACKAGE} interface, so what it was built against is unknown; \
                 this host serves {}",
                served()
            )),
            [""] => Err(format!(
                "it names {PACKAGE} interfaces without a version; this host serves {}",
                served()
            )),
            [version] => Self::ALL
                .into_iter()
                .find(|known| known.as_str() == *version)
                .ok_or_else(|| {
                    format!(
                        "it is built against {PACKAGE}@{version}, which this host does not \
                         serve; it serves {}",
                        served()
                    )
                }),
            several => Err(format!(
                "it names several versions of {PACKAGE} ({}); a policy is built against one",
                several.join(", ")
            )),
        }
    }
}

/// Defines the prepared instantiation of a world that every version serves: an enum
/// with one variant per version's bindings, and what does not depend on the call.
macro_rules! versioned_pre {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        ///
        /// `pub` only to name it as a world's associated type; the module is private.
        pub enum $name {
            V0_1_0(v0_1_0::$name<Sandbox>),
            V0_2_0(v0_2_0::$name<Sandbox>),
            V0_3_0(v0_3_0::$name<Sandbox>),
            V0_4_0(v0_4_0::$name<Sandbox>),
        }

        impl $name {
            /// Checks that the component exports the world's functions with this
            /// version's types.
            pub(crate) fn new(pre: InstancePre<Sandbox>, version: WitVersion) -> wasmtime::Result<Self> {
                Ok(match version {
                    WitVersion::V0_1_0 => Self::V0_1_0(v0_1_0::$name::new(pre)?),
                    WitVersion::V0_2_0 => Self::V0_2_0(v0_2_0::$name::new(pre)?),
                    WitVersion::V0_3_0 => Self::V0_3_0(v0_3_0::$name::new(pre)?),
                    WitVersion::V0_4_0 => Self::V0_4_0(v0_4_0::$name::new(pre)?),
                })
            }

            pub(crate) fn version(&self) -> WitVersion {
                match self {
                    Self::V0_1_0(_) => WitVersion::V0_1_0,
                    Self::V0_2_0(_) => WitVersion::V0_2_0,
                    Self::V0_3_0(_) => WitVersion::V0_3_0,
                    Self::V0_4_0(_) => WitVersion::V0_4_0,
                }
            }

            pub(crate) fn engine(&self) -> &Engine {
                match self {
                    Self::V0_1_0(pre) => pre.engine(),
                    Self::V0_2_0(pre) => pre.engine(),
                    Self::V0_3_0(pre) => pre.engine(),
                    Self::V0_4_0(pre) => pre.engine(),
                }
            }

            /// The call of `metadata`, for the versions that export it.
            pub(crate) fn metadata(
                &self,
            ) -> Option<impl FnOnce(&mut Store<Sandbox>) -> wasmtime::Result<PolicyMetadata> + '_> {
                enum Call<'a> {
                    V0_2_0(&'a v0_2_0::$name<Sandbox>),
                    V0_3_0(&'a v0_3_0::$name<Sandbox>),
                    V0_4_0(&'a v0_4_0::$name<Sandbox>),
                }
                let call = match self {
                    Self::V0_1_0(_) => return None,
                    Self::V0_2_0(pre) => Call::V0_2_0(pre),
                    Self::V0_3_0(pre) => Call::V0_3_0(pre),
                    Self::V0_4_0(pre) => Call::V0_4_0(pre),
                };
                Some(move |store: &mut Store<Sandbox>| match call {
                    Call::V0_2_0(pre) => pre.instantiate(&mut *store)?.call_metadata(&mut *store),
                    Call::V0_3_0(pre) => pre.instantiate(&mut *store)?.call_metadata(&mut *store),
                    Call::V0_4_0(pre) => pre.instantiate(&mut *store)?.call_metadata(&mut *store),
                })
            }
        }
    };
}

versioned_pre!(
    /// A selector prepared for instantiation, through the bindings of its version.
    SelectorPre
);

versioned_pre!(
    /// A merger prepared for instantiation, through the bindings of its version.
    MergerPre
);

impl SelectorPre {
    /// Instantiates the policy in `store` and calls `select`.
    pub(crate) fn select(
        &self,
        store: &mut Store<Sandbox>,
        request: &SelectRequest,
    ) -> wasmtime::Result<Result<Vec<Attachment>, String>> {
        match self {
            Self::V0_1_0(pre) => v0_1_0::select(pre, store, request),
            Self::V0_2_0(pre) => pre
                .instantiate(&mut *store)?
                .call_select(&mut *store, request),
            Self::V0_3_0(pre) => pre
                .instantiate(&mut *store)?
                .call_select(&mut *store, request),
            Self::V0_4_0(pre) => pre
                .instantiate(&mut *store)?
                .call_select_networks(&mut *store, request),
        }
    }
}

impl MergerPre {
    /// Instantiates the policy in `store` and calls `merge`.
    pub(crate) fn merge(
        &self,
        store: &mut Store<Sandbox>,
        request: &MergeRequest,
    ) -> wasmtime::Result<Result<CniResult, String>> {
        match self {
            Self::V0_1_0(pre) => v0_1_0::merge(pre, store, request),
            Self::V0_2_0(pre) => pre
                .instantiate(&mut *store)?
                .call_merge(&mut *store, request),
            Self::V0_3_0(pre) => pre
                .instantiate(&mut *store)?
                .call_merge(&mut *store, request),
            Self::V0_4_0(pre) => pre
                .instantiate(&mut *store)?
                .call_merge(&mut *store, request),
        }
    }
}

/// An IPAM policy prepared for instantiation, through the bindings of its version. The
/// `ipam` world exists from 0.3.0 on.
///
/// `pub` only to name it as a world's associated type; the module is private.
pub enum IpamPre {
    V0_3_0(v0_3_0::IpamPre<Sandbox>),
    V0_4_0(v0_4_0::IpamPre<Sandbox>),
}

/// One call of the `ipam` world.
#[derive(Debug, Clone, Copy)]
pub(crate) enum IpamCall<'a> {
    Allocate(&'a IpamRequest),
    Release(&'a IpamRequest),
    Check(&'a IpamRequest),
    Gc(&'a GcRequest),
}

/// What an `ipam` call answers: the allocation for `allocate`, nothing for the others.
pub(crate) type IpamAnswer = Result<Option<CniResult>, String>;

/// Makes `call` on an instance of either version's bindings: their functions have the same
/// names and, through `with`, the same types.
macro_rules! ipam_call {
    ($instance:expr, $store:expr, $call:expr) => {{
        let instance = $instance;
        let store = $store;
        match $call {
            IpamCall::Allocate(request) => instance.call_allocate(store, request)?.map(Some),
            IpamCall::Release(request) => instance.call_release(store, request)?.map(|()| None),
            IpamCall::Check(request) => instance.call_check(store, request)?.map(|()| None),
            IpamCall::Gc(request) => instance.call_gc(store, request)?.map(|()| None),
        }
    }};
}

impl IpamPre {
    /// Checks that the component exports the world's functions; `None` for a version
    /// without the world.
    pub(crate) fn new(
        pre: InstancePre<Sandbox>,
        version: WitVersion,
    ) -> Option<wasmtime::Result<Self>> {
        match version {
            WitVersion::V0_1_0 | WitVersion::V0_2_0 => None,
            WitVersion::V0_3_0 => Some(v0_3_0::IpamPre::new(pre).map(Self::V0_3_0)),
            WitVersion::V0_4_0 => Some(v0_4_0::IpamPre::new(pre).map(Self::V0_4_0)),
        }
    }

    pub(crate) fn version(&self) -> WitVersion {
        match self {
            Self::V0_3_0(_) => WitVersion::V0_3_0,
            Self::V0_4_0(_) => WitVersion::V0_4_0,
        }
    }

    pub(crate) fn engine(&self) -> &Engine {
        match self {
            Self::V0_3_0(pre) => pre.engine(),
            Self::V0_4_0(pre) => pre.engine(),
        }
    }

    pub(crate) fn metadata(
        &self,
    ) -> impl FnOnce(&mut Store<Sandbox>) -> wasmtime::Result<PolicyMetadata> + '_ {
        |store: &mut Store<Sandbox>| match self {
            Self::V0_3_0(pre) => pre.instantiate(&mut *store)?.call_metadata(&mut *store),
            Self::V0_4_0(pre) => pre.instantiate(&mut *store)?.call_metadata(&mut *store),
        }
    }

    /// Instantiates the policy in `store` and makes `call`.
    pub(crate) fn call(
        &self,
        store: &mut Store<Sandbox>,
        call: IpamCall<'_>,
    ) -> wasmtime::Result<IpamAnswer> {
        Ok(match self {
            Self::V0_3_0(pre) => ipam_call!(pre.instantiate(&mut *store)?, &mut *store, call),
            Self::V0_4_0(pre) => ipam_call!(pre.instantiate(&mut *store)?, &mut *store, call),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WASI: &str = "wasi:cli/environment@0.2.6";

    #[test]
    fn the_version_comes_from_the_types_import() {
        for (types, version) in [
            ("plexus:policy/types@0.1.0", WitVersion::V0_1_0),
            ("plexus:policy/types@0.2.0", WitVersion::V0_2_0),
            ("plexus:policy/types@0.3.0", WitVersion::V0_3_0),
            ("plexus:policy/types@0.4.0", WitVersion::V0_4_0),
        ] {
            assert_eq!(
                WitVersion::of_component([WASI, types, "select"]),
                Ok(version)
            );
        }
    }

    #[test]
    fn an_unknown_or_missing_version_is_explained() {
        let newer = WitVersion::of_component(["plexus:policy/types@0.5.0"]).unwrap_err();
        assert!(newer.contains("plexus:policy@0.5.0"), "{newer}");
        assert!(
            newer.contains(
                "serves plexus:policy@0.1.0, plexus:policy@0.2.0, plexus:policy@0.3.0, \
                 plexus:policy@0.4.0"
            ),
            "{newer}"
        );

        let none = WitVersion::of_component([WASI, "select"]).unwrap_err();
        assert!(none.contains("uses no plexus:policy interface"), "{none}");

        let bare = WitVersion::of_component(["plexus:policy/types"]).unwrap_err();
        assert!(bare.contains("without a version"), "{bare}");

        let mixed =
            WitVersion::of_component(["plexus:policy/types@0.1.0", "plexus:policy/types@0.2.0"])
                .unwrap_err();
        assert!(mixed.contains("0.1.0, 0.2.0"), "{mixed}");
    }

    #[test]
    fn other_packages_do_not_count() {
        assert_eq!(
            WitVersion::of_component(["plexus:policy-extra/x@9.0.0", "plexus:policy/types@0.1.0"]),
            Ok(WitVersion::V0_1_0)
        );
    }
}
