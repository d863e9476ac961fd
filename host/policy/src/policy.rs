//! Loaded policies, one handle type per world: a [`Selector`] can only `select`, a
//! [`Merger`] only `merge`, an [`Ipam`] only `allocate`, `release`, `check` and `gc`. A
//! policy of another world is refused when it is loaded, never when it is called.

use std::fmt;
use std::sync::Arc;

use crate::runtime::{Exports, PolicyRuntime};
use crate::store_access::StoreAccess;
use crate::types::{
    Attachment, CniResult, GcRequest, IpamRequest, MergeRequest, PolicyMetadata, SelectRequest,
};
use crate::wit::{IpamCall, IpamPre, MergerPre, SelectorPre, WitVersion};
use crate::{PolicyError, PolicyKind, Toolchain};

/// The worlds a [`Policy`] can implement, as types: `Policy<world::Selector>` is a
/// [`Selector`].
pub mod world {
    use crate::PolicyKind;

    /// A world of `plexus:policy`. Sealed: the worlds are the host's to define.
    pub trait World: super::sealed::Sealed + 'static {
        const KIND: PolicyKind;
    }

    /// `plexus:policy/selector`.
    #[derive(Debug)]
    pub enum Selector {}

    /// `plexus:policy/merger`.
    #[derive(Debug)]
    pub enum Merger {}

    /// `plexus:policy/ipam`.
    #[derive(Debug)]
    pub enum Ipam {}

    impl World for Selector {
        const KIND: PolicyKind = PolicyKind::Selector;
    }

    impl World for Merger {
        const KIND: PolicyKind = PolicyKind::Merger;
    }

    impl World for Ipam {
        const KIND: PolicyKind = PolicyKind::Ipam;
    }
}

use world::World;

mod sealed {
    use super::{AnyPolicy, Policy, world};

    /// How a world's policies are prepared, and picked out of a policy of any world.
    pub trait Sealed: Sized {
        type Pre: Send + Sync;

        /// `policy` as a policy of this world, if it is one.
        fn take(policy: AnyPolicy) -> Option<Policy<Self>>
        where
            Self: world::World;
    }

    /// A world: its prepared policies are `$pre`, its policies `AnyPolicy::$world`.
    macro_rules! sealed_world {
        ($world:ident, $pre:ty) => {
            impl Sealed for world::$world {
                type Pre = $pre;

                fn take(policy: AnyPolicy) -> Option<Policy<Self>> {
                    match policy {
                        AnyPolicy::$world(policy) => Some(policy),
                        _ => None,
                    }
                }
            }
        };
    }

    sealed_world!(Selector, crate::wit::SelectorPre);
    sealed_world!(Merger, crate::wit::MergerPre);
    sealed_world!(Ipam, crate::wit::IpamPre);

    /// What [`PolicyRuntime::load`](crate::PolicyRuntime::load) can hand out.
    pub trait SealedHandle: Sized {
        fn from_any(policy: AnyPolicy) -> Result<Self, crate::PolicyError>;
    }
}

/// A loaded selection policy: `select`.
pub type Selector = Policy<world::Selector>;
/// A loaded merge policy: `merge`.
pub type Merger = Policy<world::Merger>;
/// A loaded IPAM policy: `allocate`, `release`, `check`, `gc`.
pub type Ipam = Policy<world::Ipam>;

/// What [`PolicyRuntime::load`] hands out: a policy of one world ([`Selector`],
/// [`Merger`], [`Ipam`]), which refuses a policy of another, or an [`AnyPolicy`].
pub trait PolicyHandle: sealed::SealedHandle {}

impl<W: World> PolicyHandle for Policy<W> {}
impl PolicyHandle for AnyPolicy {}

impl<W: World> sealed::SealedHandle for Policy<W> {
    fn from_any(policy: AnyPolicy) -> Result<Self, PolicyError> {
        let (name, found) = (policy.name().to_owned(), policy.kind());
        W::take(policy).ok_or(PolicyError::WrongWorld {
            policy: name,
            expected: W::KIND,
            found,
        })
    }
}

impl sealed::SealedHandle for AnyPolicy {
    fn from_any(policy: AnyPolicy) -> Result<Self, PolicyError> {
        Ok(policy)
    }
}

/// What a loaded policy is, whatever its world.
pub(crate) struct Common {
    pub(crate) name: String,
    pub(crate) sha256: String,
    pub(crate) from_cache: bool,
    /// The interpreter it carries, if it is known to need more memory than Rust.
    pub(crate) toolchain: Option<Toolchain>,
    pub(crate) version: WitVersion,
    pub(crate) metadata: Option<PolicyMetadata>,
}

/// A loaded policy of world `W`, ready to be called any number of times.
pub struct Policy<W: World> {
    common: Common,
    pre: W::Pre,
}

/// A loaded policy of whichever world it implements, for callers that take any
/// (`plexus policy run`).
#[derive(Debug)]
pub enum AnyPolicy {
    Selector(Selector),
    Merger(Merger),
    Ipam(Ipam),
}

impl AnyPolicy {
    pub(crate) fn new(common: Common, exports: Exports) -> Self {
        match exports {
            Exports::Selector(pre) => Self::Selector(Policy { common, pre }),
            Exports::Merger(pre) => Self::Merger(Policy { common, pre }),
            Exports::Ipam(pre) => Self::Ipam(Policy { common, pre }),
        }
    }

    /// How errors and logs name it: `builtin:NAME` or the `.wasm` path.
    pub fn name(&self) -> &str {
        &self.common().name
    }

    /// The world it implements.
    pub fn kind(&self) -> PolicyKind {
        match self {
            Self::Selector(_) => world::Selector::KIND,
            Self::Merger(_) => world::Merger::KIND,
            Self::Ipam(_) => world::Ipam::KIND,
        }
    }

    fn common(&self) -> &Common {
        match self {
            Self::Selector(policy) => &policy.common,
            Self::Merger(policy) => &policy.common,
            Self::Ipam(policy) => &policy.common,
        }
    }
}

impl<W: World> Policy<W> {
    /// How errors and logs name it: `builtin:NAME` or the `.wasm` path.
    pub fn name(&self) -> &str {
        &self.common.name
    }

    /// The sha256 (hex) of its `.wasm`.
    pub fn sha256(&self) -> &str {
        &self.common.sha256
    }

    /// The world it implements.
    pub fn kind(&self) -> PolicyKind {
        W::KIND
    }

    /// The version of `plexus:policy` it was built against, e.g. `0.3.0`.
    pub fn wit_version(&self) -> &str {
        self.common.version.as_str()
    }

    /// What it says about itself, read when it was loaded; `None` for a policy built
    /// against 0.1.0, which has no `metadata`.
    pub fn metadata(&self) -> Option<&PolicyMetadata> {
        self.common.metadata.as_ref()
    }

    /// Whether its compiled code came from the compile cache.
    pub fn from_cache(&self) -> bool {
        self.common.from_cache
    }

    fn rejected(&self, message: String) -> PolicyError {
        PolicyError::Rejected {
            policy: self.common.name.clone(),
            message,
        }
    }
}

impl Selector {
    /// Calls the selector: the pod's attachments, in order.
    ///
    /// `runtime` must be the one that loaded the policy.
    pub fn select(
        &self,
        runtime: &PolicyRuntime,
        request: &SelectRequest,
    ) -> Result<Vec<Attachment>, PolicyError> {
        let pre: &SelectorPre = &self.pre;
        let answer = runtime.call(self.name(), self.common.toolchain, pre.engine(), |store| {
            pre.select(store, request)
        })?;
        answer.map_err(|message| self.rejected(message))
    }
}

impl Merger {
    /// Calls the merger: the pod's result from its delegates' results.
    ///
    /// `runtime` must be the one that loaded the policy.
    pub fn merge(
        &self,
        runtime: &PolicyRuntime,
        request: &MergeRequest,
    ) -> Result<CniResult, PolicyError> {
        let pre: &MergerPre = &self.pre;
        let answer = runtime.call(self.name(), self.common.toolchain, pre.engine(), |store| {
            pre.merge(store, request)
        })?;
        answer.map_err(|message| self.rejected(message))
    }
}

impl Ipam {
    /// Calls `allocate`: the attachment's addresses, routes and DNS, allocated from
    /// `store` (the network's).
    ///
    /// All or nothing: when the call fails, whatever it wrote to `store` is undone;
    /// when it succeeds, what it wrote is durable ([`Store::sync`](plexus_ipam_store::Store::sync)).
    /// `runtime` must be the one that loaded the policy.
    pub fn allocate(
        &self,
        runtime: &PolicyRuntime,
        store: Arc<dyn plexus_ipam_store::Store>,
        request: &IpamRequest,
    ) -> Result<CniResult, PolicyError> {
        let allocation = self.call(runtime, store, IpamCall::Allocate(request))?;
        allocation.ok_or_else(|| PolicyError::Trap {
            policy: self.common.name.clone(),
            reason: "`allocate` answered without an allocation".to_owned(),
        })
    }

    /// Calls `release`, all or nothing like [`allocate`](Self::allocate).
    pub fn release(
        &self,
        runtime: &PolicyRuntime,
        store: Arc<dyn plexus_ipam_store::Store>,
        request: &IpamRequest,
    ) -> Result<(), PolicyError> {
        self.call(runtime, store, IpamCall::Release(request))
            .map(drop)
    }

    /// Calls `check`: an error when the attachment no longer holds what it was
    /// allocated.
    pub fn check(
        &self,
        runtime: &PolicyRuntime,
        store: Arc<dyn plexus_ipam_store::Store>,
        request: &IpamRequest,
    ) -> Result<(), PolicyError> {
        self.call(runtime, store, IpamCall::Check(request))
            .map(drop)
    }

    /// Calls `gc`, all or nothing like [`allocate`](Self::allocate).
    pub fn gc(
        &self,
        runtime: &PolicyRuntime,
        store: Arc<dyn plexus_ipam_store::Store>,
        request: &GcRequest,
    ) -> Result<(), PolicyError> {
        self.call(runtime, store, IpamCall::Gc(request)).map(drop)
    }

    fn call(
        &self,
        runtime: &PolicyRuntime,
        store: Arc<dyn plexus_ipam_store::Store>,
        call: IpamCall<'_>,
    ) -> Result<Option<CniResult>, PolicyError> {
        let pre: &IpamPre = &self.pre;
        let (result, access) = runtime.call_with_store(
            self.name(),
            self.common.toolchain,
            pre.engine(),
            Some(StoreAccess::new(store.clone())),
            |store| pre.call(store, call),
        );
        // The call's writes are durable before it answers, with one sync for all of them
        // where the store defers it (see `Store::sync`).
        let error = match result {
            Ok(Ok(answer)) => match store.sync() {
                Ok(()) => return Ok(answer),
                Err(error) => PolicyError::StoreUnavailable {
                    policy: self.common.name.clone(),
                    reason: error.to_string(),
                },
            },
            Ok(Err(message)) => self.rejected(message),
            Err(error) => error,
        };
        let Some(access) = access else {
            return Err(error);
        };
        // The store's own failure explains the policy's, whatever the policy made of it.
        let error = match access.unavailable() {
            Some(reason) => PolicyError::StoreUnavailable {
                policy: self.common.name.clone(),
                reason: reason.to_owned(),
            },
            None => error,
        };
        let mut left = access.undo();
        // Undone durably, or reported as left.
        if let Err(error) = store.sync() {
            left.push(error.to_string());
        }
        if left.is_empty() {
            Err(error)
        } else {
            Err(PolicyError::UndoIncomplete {
                error: Box::new(error),
                left,
            })
        }
    }
}

impl<W: World> fmt::Debug for Policy<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policy")
            .field("name", &self.common.name)
            .field("sha256", &self.common.sha256)
            .field("kind", &W::KIND)
            .field("wit_version", &self.wit_version())
            .field("metadata", &self.common.metadata)
            .field("from_cache", &self.common.from_cache)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtimes_and_policies_can_be_shared_between_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<PolicyRuntime>();
        shareable::<Selector>();
        shareable::<Merger>();
        shareable::<Ipam>();
        shareable::<AnyPolicy>();
    }
}
