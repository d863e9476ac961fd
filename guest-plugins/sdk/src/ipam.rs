//! Range allocation for IPAM policies, compatible with the reference `host-local`
//! plugin: the same configuration keys, and the same addresses in the same order.
//!
//! Configuration (the network's `ipam` object; keys it does not know are ignored):
//! - `ranges`: a list of range sets, each a list of ranges `{subnet, rangeStart,
//!   rangeEnd, gateway, exclude}`. One address is allocated from each range set (one
//!   set per IP family makes a dual-stack attachment). The legacy form, one range's
//!   keys directly in the `ipam` object, is one set of one range.
//!   `rangeStart` defaults to the subnet's first address after the network address,
//!   `rangeEnd` to its last (IPv4: before the broadcast address), `gateway` to the first
//!   address; the gateway is never allocated. `exclude` (a list of CIDRs, not in
//!   `host-local`) is never allocated either.
//! - `routes`: `[{dst, gw}]`, returned as they are; `dns`: `{nameservers, domain,
//!   search, options}`, returned as it is.
//!
//! Allocation, per range set: an address the request asks for (runtimeConfig `ips`,
//! `args.cni.ips`, `CNI_ARGS` `IP`) if it is in the set and free; else, with a hold
//! (`builtin:sticky`), the address the same pod had on the same interface; else the next
//! free address after the one last allocated from the set, wrapping around, as
//! `host-local` does. An attachment that already holds an address in a set gets it
//! again (ADD is idempotent).
//!
//! Store layout: `ip/<address>` holds the [`Owner`] as JSON, `last/<set>` the address
//! last allocated from set `<set>` (its index in `ranges`).

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::store::{self, Entry, Store};
use crate::types::{AttachmentId, CniResult, Dns, GcRequest, IpConfig, IpamRequest, Route};

const IP_PREFIX: &str = "ip/";
const LAST_PREFIX: &str = "last/";

/// The value of `key` in the network's `ipam` object (`config`, the request's JSON), if
/// it is there: how a policy reads keys of its own.
///
/// ```
/// use plexus_policy_sdk::ipam::config_key;
/// let config = r#"{"type": "plexus-ipam", "gracePeriodSeconds": 60}"#;
/// assert_eq!(config_key::<u64>(config, "gracePeriodSeconds").unwrap(), Some(60));
/// assert_eq!(config_key::<u64>(config, "other").unwrap(), None);
/// assert!(config_key::<u64>(r#"{"gracePeriodSeconds": "soon"}"#, "gracePeriodSeconds").is_err());
/// ```
pub fn config_key<T: DeserializeOwned>(config: &str, key: &str) -> Result<Option<T>, String> {
    let text = if config.trim().is_empty() {
        "{}"
    } else {
        config
    };
    let object: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(text).map_err(|e| format!("ipam: not a JSON object: {e}"))?;
    object
        .get(key)
        .map(|value| T::deserialize(value).map_err(|e| format!("ipam: `{key}`: {e}")))
        .transpose()
}

/// A parsed `ipam` configuration, ready to allocate from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ranges {
    sets: Vec<Vec<Range>>,
    routes: Vec<Route>,
    dns: Dns,
    /// How long a released address stays with its pod, in seconds; `None`: not at all.
    hold: Option<u64>,
}

/// Who holds an address: what `ip/<address>` keys hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Owner {
    pub container_id: String,
    pub ifname: String,
    /// The pod's namespace and name, empty when the runtime did not pass them.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pod: String,
    /// When the attachment released it (seconds since the Unix epoch), for an address
    /// held for its pod; `None` while in use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub released_at: Option<u64>,
}

impl Owner {
    fn of(request: &IpamRequest) -> Self {
        Self {
            container_id: request.pod.container_id.clone(),
            ifname: request.pod.ifname.clone(),
            namespace: request.pod.namespace.clone(),
            pod: request.pod.name.clone(),
            released_at: None,
        }
    }

    fn is(&self, container_id: &str, ifname: &str) -> bool {
        self.released_at.is_none() && self.container_id == container_id && self.ifname == ifname
    }

    /// Whether the runtime named the pod, which a hold needs.
    fn has_pod(&self) -> bool {
        !self.namespace.is_empty() && !self.pod.is_empty()
    }

    /// Whether `other` is the same pod's same interface (a pod known by name only).
    fn same_pod_interface(&self, other: &Owner) -> bool {
        self.has_pod()
            && self.namespace == other.namespace
            && self.pod == other.pod
            && self.ifname == other.ifname
    }

    fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// An address, as a number wide enough for either family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Addr {
    v6: bool,
    bits: u128,
}

impl Addr {
    fn from_ip(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self {
                v6: false,
                bits: u128::from(u32::from(v4)),
            },
            IpAddr::V6(v6) => Self {
                v6: true,
                bits: u128::from(v6),
            },
        }
    }

    fn parse(text: &str) -> Result<Self, String> {
        text.parse::<IpAddr>()
            .map(Self::from_ip)
            .map_err(|_| format!("{text:?} is not an IP address"))
    }

    fn width(self) -> u32 {
        if self.v6 { 128 } else { 32 }
    }

    fn ip(self) -> IpAddr {
        if self.v6 {
            IpAddr::V6(self.bits.into())
        } else {
            // Only ever built from a `u32` or within a /0..=/32 subnet of one.
            IpAddr::V4(u32::try_from(self.bits).unwrap_or(u32::MAX).into())
        }
    }

    fn offset(self, delta: u128) -> Self {
        Self {
            bits: self.bits.wrapping_add(delta),
            ..self
        }
    }

    fn pred(self) -> Self {
        Self {
            bits: self.bits.wrapping_sub(1),
            ..self
        }
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.ip().fmt(f)
    }
}

/// `ADDRESS/PREFIX`.
fn parse_cidr(text: &str) -> Result<(Addr, u32), String> {
    let (address, prefix) = text
        .split_once('/')
        .ok_or_else(|| format!("{text:?} is not in CIDR notation (address/prefix)"))?;
    let address = Addr::parse(address)?;
    let prefix: u32 = Some(prefix)
        .filter(|prefix| !prefix.is_empty() && prefix.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|prefix| prefix.parse().ok())
        .filter(|prefix| *prefix <= address.width())
        .ok_or_else(|| format!("{text:?} has an invalid prefix length"))?;
    Ok((address, prefix))
}

/// Every bit of an address of `width` bits.
fn all_ones(width: u32) -> u128 {
    if width >= 128 {
        u128::MAX
    } else {
        (1u128 << width) - 1
    }
}

/// The host part of a prefix: the bits below it.
fn host_mask(width: u32, prefix: u32) -> u128 {
    all_ones(width.saturating_sub(prefix))
}

/// The network part of a prefix.
fn mask(width: u32, prefix: u32) -> u128 {
    all_ones(width) & !host_mask(width, prefix)
}

/// One range of a range set, canonical: every default filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Range {
    network: Addr,
    prefix: u32,
    start: Addr,
    end: Addr,
    gateway: Addr,
    exclude: Vec<(Addr, Addr)>,
}

impl Range {
    fn contains(&self, address: Addr) -> bool {
        address.v6 == self.network.v6 && self.start <= address && address <= self.end
    }

    /// The last address of the excluded block `address` is in, if it is in one.
    fn excluded_until(&self, address: Addr) -> Option<Addr> {
        self.exclude
            .iter()
            .filter(|(low, high)| *low <= address && address <= *high)
            .map(|(_, high)| *high)
            .max()
    }

    fn allocatable(&self, address: Addr) -> bool {
        self.contains(address)
            && address != self.gateway
            && !self
                .exclude
                .iter()
                .any(|(low, high)| *low <= address && address <= *high)
    }

    fn describe(&self) -> String {
        format!("{}-{}", self.start, self.end)
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawConfig {
    #[serde(default)]
    ranges: Vec<Vec<RawRange>>,
    #[serde(flatten)]
    legacy: RawRange,
    #[serde(default)]
    routes: Vec<RawRoute>,
    #[serde(default)]
    dns: RawDns,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawRange {
    #[serde(default)]
    subnet: Option<String>,
    #[serde(default)]
    range_start: Option<String>,
    #[serde(default)]
    range_end: Option<String>,
    #[serde(default)]
    gateway: Option<String>,
    #[serde(default)]
    exclude: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct RawRoute {
    dst: String,
    #[serde(default)]
    gw: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
struct RawDns {
    #[serde(default)]
    nameservers: Vec<String>,
    #[serde(default)]
    domain: Option<String>,
    #[serde(default)]
    search: Vec<String>,
    #[serde(default)]
    options: Vec<String>,
}

impl RawRange {
    fn canonical(self, place: &str) -> Result<Range, String> {
        let subnet = self
            .subnet
            .ok_or_else(|| format!("{place}: `subnet` is missing"))?;
        let (network, prefix) =
            parse_cidr(&subnet).map_err(|e| format!("{place}: `subnet`: {e}"))?;
        let width = network.width();
        if network.bits & !mask(width, prefix) != 0 {
            return Err(format!(
                "{place}: `subnet` {subnet} has host bits set; its network is {}/{prefix}",
                Addr {
                    bits: network.bits & mask(width, prefix),
                    ..network
                }
            ));
        }
        if prefix + 2 > width {
            return Err(format!(
                "{place}: `subnet` {subnet} is too small to allocate from"
            ));
        }
        let last = Addr {
            bits: network.bits | host_mask(width, prefix),
            ..network
        };
        let mut range = Range {
            network,
            prefix,
            start: network.offset(1),
            end: if network.v6 { last } else { last.pred() },
            gateway: network.offset(1),
            exclude: Vec::new(),
        };
        let in_subnet = |address: Addr| {
            address.v6 == network.v6 && address.bits & mask(width, prefix) == network.bits
        };
        let address = |key: &str, value: &str| -> Result<Addr, String> {
            let address = Addr::parse(value).map_err(|e| format!("{place}: `{key}`: {e}"))?;
            if !in_subnet(address) {
                return Err(format!(
                    "{place}: `{key}` {value} is not in subnet {subnet}"
                ));
            }
            Ok(address)
        };
        if let Some(start) = &self.range_start {
            range.start = address("rangeStart", start)?;
        }
        if let Some(end) = &self.range_end {
            range.end = address("rangeEnd", end)?;
        }
        if let Some(gateway) = &self.gateway {
            range.gateway = address("gateway", gateway)?;
        }
        if range.start > range.end {
            return Err(format!(
                "{place}: `rangeStart` {} is after `rangeEnd` {}",
                range.start, range.end
            ));
        }
        for excluded in &self.exclude {
            let (address, prefix) =
                parse_cidr(excluded).map_err(|e| format!("{place}: `exclude`: {e}"))?;
            if address.v6 != network.v6 {
                return Err(format!(
                    "{place}: `exclude` {excluded} is not of the subnet's IP family"
                ));
            }
            let low = Addr {
                bits: address.bits & mask(width, prefix),
                ..address
            };
            range.exclude.push((
                low,
                Addr {
                    bits: low.bits | host_mask(width, prefix),
                    ..low
                },
            ));
        }
        Ok(range)
    }
}

impl Ranges {
    /// Parses the network's `ipam` object. `hold` is how long, in seconds, a released
    /// address stays reserved for the pod that had it (`None`: released at once).
    pub fn parse(config: &str, hold: Option<u64>) -> Result<Self, String> {
        let raw: RawConfig = serde_json::from_str(if config.trim().is_empty() {
            "{}"
        } else {
            config
        })
        .map_err(|e| format!("ipam: {e}"))?;
        let legacy = raw.legacy.subnet.is_some();
        if legacy && !raw.ranges.is_empty() {
            return Err("ipam: give either `ranges` or `subnet`, not both".to_owned());
        }
        let raw_sets = if legacy {
            vec![vec![raw.legacy]]
        } else {
            raw.ranges
        };
        if raw_sets.is_empty() {
            return Err(
                "ipam: `ranges` is missing or empty: no addresses to allocate from".to_owned(),
            );
        }
        let mut sets: Vec<Vec<Range>> = Vec::new();
        for (i, raw_set) in raw_sets.into_iter().enumerate() {
            if raw_set.is_empty() {
                return Err(format!("ipam: ranges[{i}] is empty"));
            }
            let mut set = Vec::new();
            for (j, raw_range) in raw_set.into_iter().enumerate() {
                let range = raw_range.canonical(&format!("ipam: ranges[{i}][{j}]"))?;
                if let Some(first) = set.first() {
                    let first: &Range = first;
                    if first.network.v6 != range.network.v6 {
                        return Err(format!("ipam: ranges[{i}] mixes IPv4 and IPv6 ranges"));
                    }
                }
                set.push(range);
            }
            for (j, range) in set.iter().enumerate() {
                let overlapping = sets.iter().flatten().chain(&set[..j]).find(|other| {
                    other.network.v6 == range.network.v6
                        && other.start <= range.end
                        && range.start <= other.end
                });
                if let Some(other) = overlapping {
                    return Err(format!(
                        "ipam: range {} overlaps range {}",
                        range.describe(),
                        other.describe()
                    ));
                }
            }
            sets.push(set);
        }
        let routes = raw
            .routes
            .into_iter()
            .map(|route| Route {
                dst: route.dst,
                gw: route.gw,
                ..Route::default()
            })
            .collect();
        let dns = Dns {
            nameservers: raw.dns.nameservers,
            domain: raw.dns.domain,
            search: raw.dns.search,
            options: raw.dns.options,
        };
        Ok(Self {
            sets,
            routes,
            dns,
            hold,
        })
    }

    /// How many addresses the ranges hold that can be given out: every range from its
    /// start to its end, less its gateway and its exclusions.
    pub fn pool_size(&self) -> u128 {
        self.sets
            .iter()
            .flatten()
            .map(|range| {
                // The exclusions inside the range, merged, so that overlaps count once.
                let mut blocks: Vec<(u128, u128)> = range
                    .exclude
                    .iter()
                    .map(|(low, high)| {
                        (
                            low.bits.max(range.start.bits),
                            high.bits.min(range.end.bits),
                        )
                    })
                    .filter(|(low, high)| low <= high)
                    .collect();
                blocks.sort_unstable();
                let mut excluded = 0u128;
                let mut counted_to: Option<u128> = None;
                for (low, high) in blocks {
                    let low = counted_to.map_or(low, |end| low.max(end.saturating_add(1)));
                    if low <= high {
                        excluded += high - low + 1;
                        counted_to = Some(high);
                    }
                }
                let size = (range.end.bits - range.start.bits).saturating_add(1);
                let gateway = u128::from(
                    range.contains(range.gateway) && range.excluded_until(range.gateway).is_none(),
                );
                size.saturating_sub(excluded).saturating_sub(gateway)
            })
            .fold(0u128, u128::saturating_add)
    }

    /// Allocates one address from each range set for the request's attachment (see the
    /// [module documentation](self) for the order).
    pub fn allocate(&self, request: &IpamRequest, store: &dyn Store) -> Result<CniResult, String> {
        let owner = Owner::of(request);
        let requested = self.requested(request)?;
        let mut taken = self.allocations(store)?;
        let mut result = CniResult {
            routes: self.routes.clone(),
            dns: self.dns.clone(),
            ..CniResult::default()
        };
        for (index, set) in self.sets.iter().enumerate() {
            let address = match self.held_by(&taken, set, |held| {
                held.is(&owner.container_id, &owner.ifname)
            }) {
                Some((address, _)) => address,
                None => self.allocate_from(
                    index,
                    set,
                    requested[index],
                    &owner,
                    request.now,
                    &mut taken,
                    store,
                )?,
            };
            let range = set
                .iter()
                .find(|range| range.contains(address))
                .unwrap_or(&set[0]);
            result.ips.push(IpConfig {
                address: format!("{address}/{}", range.prefix),
                gateway: Some(range.gateway.to_string()),
                interface: None,
            });
        }
        Ok(result)
    }

    /// Releases the attachment's addresses: deleted, or, with a hold, kept for its pod
    /// and marked released.
    pub fn release(&self, request: &IpamRequest, store: &dyn Store) -> Result<(), String> {
        let owner = Owner::of(request);
        for (address, (held, entry)) in self.allocations(store)? {
            if held.is(&owner.container_id, &owner.ifname) {
                self.let_go(address, held, &entry, request.now, store)?;
            }
        }
        Ok(())
    }

    /// Fails unless the attachment holds an address in every range set.
    pub fn check(&self, request: &IpamRequest, store: &dyn Store) -> Result<(), String> {
        let taken = self.allocations(store)?;
        for set in &self.sets {
            if self
                .held_by(&taken, set, |held| {
                    held.is(&request.pod.container_id, &request.pod.ifname)
                })
                .is_none()
            {
                return Err(format!(
                    "container {} interface {} holds no address in range set {}",
                    request.pod.container_id,
                    request.pod.ifname,
                    describe_set(set)
                ));
            }
        }
        Ok(())
    }

    /// Releases (as [`release`](Self::release) does) every address whose attachment is
    /// not among the valid ones, and deletes holds that have expired.
    pub fn gc(&self, request: &GcRequest, store: &dyn Store) -> Result<(), String> {
        let valid = |owner: &Owner| {
            request.valid_attachments.iter().any(
                |AttachmentId {
                     container_id,
                     ifname,
                 }| owner.is(container_id, ifname),
            )
        };
        for (address, (held, entry)) in self.allocations(store)? {
            if held.released_at.is_some() {
                if self.expired(&held, request.now) {
                    delete(store, &entry)?;
                }
            } else if !valid(&held) {
                self.let_go(address, held, &entry, request.now, store)?;
            }
        }
        Ok(())
    }

    /// Every `ip/` entry, by address.
    fn allocations(&self, store: &dyn Store) -> Result<BTreeMap<Addr, (Owner, Entry)>, String> {
        let mut taken = BTreeMap::new();
        for entry in store.list(IP_PREFIX).map_err(|e| store::describe(&e))? {
            let address = entry.key.strip_prefix(IP_PREFIX).unwrap_or_default();
            let address = Addr::parse(address)
                .map_err(|e| format!("address store entry {}: {e}", entry.key))?;
            let owner: Owner = serde_json::from_str(&entry.value).map_err(|e| {
                format!(
                    "address store entry {} is not an allocation: {e}",
                    entry.key
                )
            })?;
            taken.insert(address, (owner, entry));
        }
        Ok(taken)
    }

    fn held_by(
        &self,
        taken: &BTreeMap<Addr, (Owner, Entry)>,
        set: &[Range],
        holder: impl Fn(&Owner) -> bool,
    ) -> Option<(Addr, Entry)> {
        taken
            .iter()
            .find(|(address, (owner, _))| {
                set.iter().any(|range| range.contains(**address)) && holder(owner)
            })
            .map(|(address, (_, entry))| (*address, entry.clone()))
    }

    fn expired(&self, owner: &Owner, now: u64) -> bool {
        match (owner.released_at, self.hold) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(released), Some(hold)) => now >= released.saturating_add(hold),
        }
    }

    /// The requested address for each range set (`None`: none asked for).
    fn requested(&self, request: &IpamRequest) -> Result<Vec<Option<Addr>>, String> {
        let mut per_set = vec![None; self.sets.len()];
        for text in &request.requested_ips {
            let bare = text
                .split_once('/')
                .map_or(text.as_str(), |(address, _)| address);
            let address = Addr::parse(bare).map_err(|e| format!("requested address: {e}"))?;
            let index = self
                .sets
                .iter()
                .position(|set| set.iter().any(|range| range.contains(address)))
                .ok_or_else(|| {
                    format!("requested address {address} is in none of the configured ranges")
                })?;
            if let Some(other) = per_set[index].replace(address) {
                return Err(format!(
                    "requested addresses {other} and {address} are both in range set {}; one per set",
                    describe_set(&self.sets[index])
                ));
            }
        }
        Ok(per_set)
    }

    #[allow(clippy::too_many_arguments)]
    fn allocate_from(
        &self,
        index: usize,
        set: &[Range],
        requested: Option<Addr>,
        owner: &Owner,
        now: u64,
        taken: &mut BTreeMap<Addr, (Owner, Entry)>,
        store: &dyn Store,
    ) -> Result<Addr, String> {
        let claim = |address: Addr, expected: Option<u64>| -> Result<bool, String> {
            store
                .compare_and_swap(&format!("{IP_PREFIX}{address}"), expected, &owner.to_json())
                .map_err(|e| store::describe(&e))
        };
        if let Some(address) = requested {
            if set.iter().any(|range| range.gateway == address) {
                return Err(format!(
                    "requested address {address} is the gateway of its range"
                ));
            }
            let expected = match taken.get(&address) {
                None => None,
                Some((held, entry))
                    if owner.same_pod_interface(held) && held.released_at.is_some() =>
                {
                    Some(entry.revision)
                }
                Some((held, entry)) if self.expired(held, now) => Some(entry.revision),
                Some((held, _)) => {
                    return Err(format!(
                        "requested address {address} is already allocated to container {} interface {}",
                        held.container_id, held.ifname
                    ));
                }
            };
            return if claim(address, expected)? {
                Ok(address)
            } else {
                Err(format!(
                    "requested address {address} was allocated by another attachment meanwhile"
                ))
            };
        }
        if self.hold.is_some()
            && let Some((address, entry)) = self.held_by(taken, set, |held| {
                held.released_at.is_some() && owner.same_pod_interface(held)
            })
            && claim(address, Some(entry.revision))?
        {
            return Ok(address);
        }
        let last = store
            .get(&format!("{LAST_PREFIX}{index}"))
            .map_err(|e| store::describe(&e))?;
        let last_address = last
            .as_ref()
            .and_then(|entry| Addr::parse(&entry.value).ok());
        for address in Candidates::new(set, last_address) {
            let expected = match taken.get(&address) {
                None => None,
                Some((held, entry)) if self.expired(held, now) => Some(entry.revision),
                Some(_) => continue,
            };
            if set
                .iter()
                .any(|range| !range.allocatable(address) && range.contains(address))
            {
                continue;
            }
            if claim(address, expected)? {
                taken.remove(&address);
                remember_last(store, index, last.as_ref(), address)?;
                return Ok(address);
            }
        }
        Err(format!(
            "no free address left in range set {}",
            describe_set(set)
        ))
    }

    /// Deletes an allocation, or marks it released when its pod keeps it for a while.
    fn let_go(
        &self,
        address: Addr,
        mut held: Owner,
        entry: &Entry,
        now: u64,
        store: &dyn Store,
    ) -> Result<(), String> {
        if self.hold.is_some() && held.has_pod() {
            held.released_at = Some(now);
            let key = format!("{IP_PREFIX}{address}");
            // Lost: the entry changed meanwhile, so it is not this attachment's to release.
            store
                .compare_and_swap(&key, Some(entry.revision), &held.to_json())
                .map_err(|e| store::describe(&e))?;
            return Ok(());
        }
        delete(store, entry)
    }
}

fn delete(store: &dyn Store, entry: &Entry) -> Result<(), String> {
    // `false`: changed meanwhile, so no longer this call's to delete.
    store
        .delete(&entry.key, entry.revision)
        .map_err(|e| store::describe(&e))?;
    Ok(())
}

/// Records `address` as the last one allocated from set `index`, where the next search
/// starts. Only a hint: when another allocator moved it meanwhile, theirs stands.
fn remember_last(
    store: &dyn Store,
    index: usize,
    last: Option<&Entry>,
    address: Addr,
) -> Result<(), String> {
    store
        .compare_and_swap(
            &format!("{LAST_PREFIX}{index}"),
            last.map(|entry| entry.revision),
            &address.to_string(),
        )
        .map_err(|e| store::describe(&e))?;
    Ok(())
}

fn describe_set(set: &[Range]) -> String {
    set.iter()
        .map(Range::describe)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The addresses of a range set in `host-local`'s order: from the one after `last` (when
/// it is in the set; else from the first range's start) through the end of each range
/// and on to the next, wrapping around, until back at the first; gateways skipped.
struct Candidates<'a> {
    set: &'a [Range],
    range: usize,
    current: Option<Addr>,
    first: Option<Addr>,
    /// Whether the first address was visited, so meeting it again means a full turn.
    started: bool,
    done: bool,
}

impl<'a> Candidates<'a> {
    fn new(set: &'a [Range], last: Option<Addr>) -> Self {
        let resume = last.and_then(|last| {
            set.iter()
                .position(|range| range.contains(last))
                .map(|range| (range, last))
        });
        match resume {
            Some((range, last)) => Self {
                set,
                range,
                current: Some(last),
                first: None,
                started: false,
                done: false,
            },
            None => Self {
                set,
                range: 0,
                current: None,
                first: None,
                started: false,
                done: false,
            },
        }
    }
}

impl Iterator for Candidates<'_> {
    type Item = Addr;

    fn next(&mut self) -> Option<Addr> {
        loop {
            if self.done {
                return None;
            }
            let range = &self.set[self.range];
            let next = match self.current {
                None => range.start,
                Some(current) if current >= range.end => {
                    self.range = (self.range + 1) % self.set.len();
                    self.set[self.range].start
                }
                Some(current) => current.offset(1),
            };
            self.current = Some(next);
            let first = *self.first.get_or_insert(next);
            if first == next && self.started {
                self.done = true;
                return None;
            }
            self.started = true;
            let range = &self.set[self.range];
            // An excluded block is passed over in one step, not address by address (a
            // /64 may exclude a /65); passing over the first address means all were seen.
            if let Some(until) = range.excluded_until(next) {
                let until = until.min(range.end);
                if next < first && first <= until && range.contains(first) {
                    self.done = true;
                    return None;
                }
                self.current = Some(until);
                continue;
            }
            if next != range.gateway {
                return Some(next);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;
    use crate::types::Pod;

    fn request(container_id: &str) -> IpamRequest {
        IpamRequest {
            pod: Pod {
                container_id: container_id.into(),
                ifname: "eth0".into(),
                namespace: "default".into(),
                name: format!("pod-{container_id}"),
                ..Pod::default()
            },
            network: "net".into(),
            ..IpamRequest::default()
        }
    }

    fn addresses(result: &CniResult) -> Vec<&str> {
        result.ips.iter().map(|ip| ip.address.as_str()).collect()
    }

    const SMALL: &str = r#"{"ranges": [[{"subnet": "10.1.0.0/29"}]]}"#;

    /// The pool is what allocation can hand out: host-local's default range less the
    /// gateway; a range with exclusions (overlapping ones count once) and an explicit
    /// gateway outside it; every range of every set.
    #[test]
    fn the_pool_is_what_can_be_allocated() {
        assert_eq!(Ranges::parse(SMALL, None).unwrap().pool_size(), 5);
        let ranges = Ranges::parse(
            r#"{"ranges": [
                [{"subnet": "10.2.0.0/24", "rangeStart": "10.2.0.10", "rangeEnd": "10.2.0.19",
                  "gateway": "10.2.0.1", "exclude": ["10.2.0.12/31", "10.2.0.13/32"]}],
                [{"subnet": "fd00::/120"}]]}"#,
            None,
        )
        .unwrap();
        // 10 addresses less 2 excluded; then fd00::1-fd00::ff less its gateway fd00::1.
        assert_eq!(ranges.pool_size(), 8 + 254);
    }

    #[test]
    fn defaults_follow_host_local() {
        let ranges = Ranges::parse(SMALL, None).unwrap();
        let range = &ranges.sets[0][0];
        assert_eq!(range.start.to_string(), "10.1.0.1");
        assert_eq!(range.end.to_string(), "10.1.0.6");
        assert_eq!(range.gateway.to_string(), "10.1.0.1");
        let v6 = Ranges::parse(r#"{"ranges": [[{"subnet": "fd00::/120"}]]}"#, None).unwrap();
        assert_eq!(v6.sets[0][0].end.to_string(), "fd00::ff");
    }

    #[test]
    fn next_free_wraps_around_and_skips_the_gateway() {
        let ranges = Ranges::parse(SMALL, None).unwrap();
        let store = MemoryStore::default();
        let mut got = Vec::new();
        for id in ["a", "b", "c", "d", "e"] {
            got.push(
                ranges.allocate(&request(id), &store).unwrap().ips[0]
                    .address
                    .clone(),
            );
        }
        assert_eq!(
            got,
            [
                "10.1.0.2/29",
                "10.1.0.3/29",
                "10.1.0.4/29",
                "10.1.0.5/29",
                "10.1.0.6/29"
            ]
        );
        let error = ranges.allocate(&request("f"), &store).unwrap_err();
        assert!(
            error.contains("no free address left in range set 10.1.0.1-10.1.0.6"),
            "{error}"
        );
        ranges.release(&request("b"), &store).unwrap();
        assert_eq!(
            addresses(&ranges.allocate(&request("g"), &store).unwrap()),
            ["10.1.0.3/29"]
        );
    }

    #[test]
    fn allocation_resumes_after_the_last_one_not_at_the_first_free() {
        let ranges = Ranges::parse(SMALL, None).unwrap();
        let store = MemoryStore::default();
        ranges.allocate(&request("a"), &store).unwrap();
        ranges.allocate(&request("b"), &store).unwrap();
        ranges.release(&request("a"), &store).unwrap();
        assert_eq!(
            addresses(&ranges.allocate(&request("c"), &store).unwrap()),
            ["10.1.0.4/29"]
        );
    }

    #[test]
    fn add_is_idempotent_and_check_and_release_follow_the_attachment() {
        let ranges = Ranges::parse(SMALL, None).unwrap();
        let store = MemoryStore::default();
        let first = ranges.allocate(&request("a"), &store).unwrap();
        assert_eq!(ranges.allocate(&request("a"), &store).unwrap(), first);
        ranges.check(&request("a"), &store).unwrap();
        ranges.release(&request("a"), &store).unwrap();
        ranges.release(&request("a"), &store).unwrap();
        assert!(
            ranges
                .check(&request("a"), &store)
                .unwrap_err()
                .contains("holds no address")
        );
        assert!(
            store
                .contents()
                .iter()
                .all(|(key, _)| key.starts_with(LAST_PREFIX))
        );
    }

    #[test]
    fn requested_addresses_and_their_errors() {
        let ranges = Ranges::parse(SMALL, None).unwrap();
        let store = MemoryStore::default();
        let mut wants = request("a");
        wants.requested_ips = vec!["10.1.0.5/29".into()];
        assert_eq!(
            addresses(&ranges.allocate(&wants, &store).unwrap()),
            ["10.1.0.5/29"]
        );
        let mut again = request("b");
        again.requested_ips = vec!["10.1.0.5".into()];
        let error = ranges.allocate(&again, &store).unwrap_err();
        assert!(
            error.contains("10.1.0.5 is already allocated to container a"),
            "{error}"
        );
        again.requested_ips = vec!["10.9.0.5".into()];
        assert!(
            ranges
                .allocate(&again, &store)
                .unwrap_err()
                .contains("in none of the configured ranges")
        );
        again.requested_ips = vec!["10.1.0.1".into()];
        assert!(
            ranges
                .allocate(&again, &store)
                .unwrap_err()
                .contains("gateway")
        );
    }

    #[test]
    fn dual_stack_takes_one_address_per_set_with_routes_and_dns() {
        let config = r#"{
            "ranges": [[{"subnet": "10.1.0.0/24", "rangeStart": "10.1.0.10", "gateway": "10.1.0.254"}],
                       [{"subnet": "fd00::/64"}]],
            "routes": [{"dst": "0.0.0.0/0"}],
            "dns": {"nameservers": ["10.1.0.53"]}
        }"#;
        let ranges = Ranges::parse(config, None).unwrap();
        let result = ranges
            .allocate(&request("a"), &MemoryStore::default())
            .unwrap();
        assert_eq!(addresses(&result), ["10.1.0.10/24", "fd00::2/64"]);
        assert_eq!(result.ips[0].gateway.as_deref(), Some("10.1.0.254"));
        assert_eq!(result.ips[1].gateway.as_deref(), Some("fd00::1"));
        assert_eq!(result.routes[0].dst, "0.0.0.0/0");
        assert_eq!(result.dns.nameservers, ["10.1.0.53"]);
    }

    #[test]
    fn exclusions_and_several_ranges_in_a_set() {
        let config = r#"{"ranges": [[
            {"subnet": "10.1.0.0/29", "exclude": ["10.1.0.2/31"]},
            {"subnet": "10.2.0.0/30"}
        ]]}"#;
        let ranges = Ranges::parse(config, None).unwrap();
        let store = MemoryStore::default();
        let got: Vec<String> = ["a", "b", "c", "d"]
            .iter()
            .map(|id| {
                ranges.allocate(&request(id), &store).unwrap().ips[0]
                    .address
                    .clone()
            })
            .collect();
        assert_eq!(
            got,
            ["10.1.0.4/29", "10.1.0.5/29", "10.1.0.6/29", "10.2.0.2/30"]
        );
    }

    #[test]
    fn bad_configurations_name_the_key() {
        for (config, expected) in [
            (r#"{}"#, "`ranges` is missing"),
            (
                r#"{"ranges": [[{"subnet": "10.1.0.5/24"}]]}"#,
                "host bits set; its network is 10.1.0.0/24",
            ),
            (r#"{"ranges": [[{"subnet": "10.1.0.0/31"}]]}"#, "too small"),
            (
                r#"{"ranges": [[{"subnet": "10.1.0.0/24", "rangeStart": "10.2.0.1"}]]}"#,
                "`rangeStart` 10.2.0.1 is not in subnet",
            ),
            (
                r#"{"ranges": [[{"subnet": "10.1.0.0/24"}], [{"subnet": "10.1.0.0/25"}]]}"#,
                "overlaps",
            ),
            (
                r#"{"ranges": [[{"subnet": "10.1.0.0/24"}, {"subnet": "fd00::/64"}]]}"#,
                "mixes IPv4 and IPv6",
            ),
            (
                r#"{"ranges": [[{"rangeStart": "10.1.0.1"}]]}"#,
                "ranges[0][0]: `subnet` is missing",
            ),
        ] {
            let error = Ranges::parse(config, None).unwrap_err();
            assert!(error.contains(expected), "{config}: {error}");
        }
    }

    #[test]
    fn a_huge_exclusion_is_passed_over_at_once() {
        let half = r#"{"ranges": [[{"subnet": "fd00::/64", "exclude": ["fd00::/65"]}]]}"#;
        let store = MemoryStore::default();
        let result = Ranges::parse(half, None)
            .unwrap()
            .allocate(&request("a"), &store)
            .unwrap();
        assert_eq!(addresses(&result), ["fd00::8000:0:0:0/64"]);
        let all = r#"{"ranges": [[{"subnet": "2001:db8::/64", "exclude": ["2001:db8::/64"]}]]}"#;
        let error = Ranges::parse(all, None)
            .unwrap()
            .allocate(&request("a"), &store)
            .unwrap_err();
        assert!(error.contains("no free address"), "{error}");
        let signed =
            Ranges::parse(r#"{"ranges": [[{"subnet": "10.0.0.0/+8"}]]}"#, None).unwrap_err();
        assert!(signed.contains("invalid prefix length"), "{signed}");
    }

    #[test]
    fn legacy_single_range_keys_work() {
        let ranges = Ranges::parse(
            r#"{"type": "plexus-ipam", "subnet": "10.3.0.0/24", "rangeStart": "10.3.0.100"}"#,
            None,
        )
        .unwrap();
        let result = ranges
            .allocate(&request("a"), &MemoryStore::default())
            .unwrap();
        assert_eq!(addresses(&result), ["10.3.0.100/24"]);
    }

    #[test]
    fn a_hold_gives_the_pod_its_address_back_until_it_expires() {
        let ranges = Ranges::parse(SMALL, Some(60)).unwrap();
        let store = MemoryStore::default();
        let mut first = request("a");
        first.now = 1000;
        assert_eq!(
            addresses(&ranges.allocate(&first, &store).unwrap()),
            ["10.1.0.2/29"]
        );
        ranges.release(&first, &store).unwrap();
        // Another pod does not get the held address...
        let mut other = request("x");
        other.now = 1001;
        assert_eq!(
            addresses(&ranges.allocate(&other, &store).unwrap()),
            ["10.1.0.3/29"]
        );
        // ...the same pod, recreated under a new container id, does.
        let mut recreated = request("b");
        recreated.pod.name = first.pod.name.clone();
        recreated.now = 1030;
        assert_eq!(
            addresses(&ranges.allocate(&recreated, &store).unwrap()),
            ["10.1.0.2/29"]
        );
        ranges.release(&recreated, &store).unwrap();
        // After the hold, GC frees it.
        let gc = GcRequest {
            now: 1030 + 60,
            ..GcRequest::default()
        };
        ranges.gc(&gc, &store).unwrap();
        let keys: Vec<String> = store.contents().into_iter().map(|(key, _)| key).collect();
        assert!(!keys.contains(&"ip/10.1.0.2".to_owned()), "{keys:?}");
    }

    #[test]
    fn gc_releases_what_no_valid_attachment_holds() {
        let ranges = Ranges::parse(SMALL, None).unwrap();
        let store = MemoryStore::default();
        ranges.allocate(&request("a"), &store).unwrap();
        ranges.allocate(&request("b"), &store).unwrap();
        let gc = GcRequest {
            valid_attachments: vec![AttachmentId {
                container_id: "b".into(),
                ifname: "eth0".into(),
            }],
            ..GcRequest::default()
        };
        ranges.gc(&gc, &store).unwrap();
        ranges.check(&request("b"), &store).unwrap();
        assert!(ranges.check(&request("a"), &store).is_err());
    }
}
