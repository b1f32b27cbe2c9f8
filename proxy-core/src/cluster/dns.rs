//! DNS service discovery: clusters whose endpoints are the addresses host names resolve
//! to, re-resolved in the background (Envoy's `STRICT_DNS` and `LOGICAL_DNS`).
//!
//! # Semantics
//!
//! - **Strict DNS.** Every address of every target is an endpoint, with the target's
//!   port, weight and priority. Each target is re-resolved on its own timer: every
//!   `refresh_rate`, or, with `respect_ttl` (the default, as Envoy's
//!   `respect_dns_ttl`), after the smallest TTL of the answer (a TTL of 0 falls back to
//!   `refresh_rate`). An endpoint that stays keeps its connections, health and outlier
//!   state; new ones join the balancer; removed ones leave it, and their idle
//!   connections are closed (connections busy with a request close once it ends).
//! - **Logical DNS.** One endpoint per target: the first address of its latest
//!   resolution. New connections go there; connections already open to an earlier
//!   address finish their requests and close at the idle timeout. Envoy's logical host
//!   also keeps reusing those for new requests; here each address has its own pool, so
//!   a changed address starts a new one (see "Design").
//! - **Failures.** A resolution that fails (timeout, `SERVFAIL`, no resolver
//!   configuration) keeps the target's previous addresses, is logged at `warn`, counts
//!   `update_failure`, and is retried after `refresh_rate`. An answer that the name has
//!   no address (`NXDOMAIN`, or no record of the family) is a success with no addresses,
//!   as in Envoy: the target's endpoints leave the cluster.
//! - **Counters** (`cluster.<name>.*`, Envoy's names, per target resolution):
//!   `update_attempt`, `update_success`, `update_failure`, `update_no_rebuild` (a
//!   success that changed nothing), `membership_change` (the host set was rebuilt).
//! - **Start-up.** The launcher waits (at most [`WARMING_TIMEOUT`]) for every target's
//!   first resolution before it binds listeners, as Envoy warms a cluster. If that fails
//!   the proxy starts anyway; the cluster answers `503 UH` until a resolution succeeds.
//! - **Resolvers.** `resolvers` (UDP, with TCP for truncated answers), else the system
//!   configuration (`/etc/resolv.conf`, and `/etc/hosts`). The resolver's own cache is
//!   off: the refresh timers alone decide when a name is asked again.
//! - **TLS.** Each endpoint's server name is the cluster's `sni`, else the target's host
//!   name.
//! - **Health checking** covers the current endpoints: one that joins is unhealthy
//!   until its first check passes (as Envoy marks new hosts `FAILED_ACTIVE_HC`), one
//!   that leaves stops being checked.
//!
//! # Design
//!
//! The request path must stay lock-free and allocation-free and hand out `&Endpoint`
//! borrowed from the cluster, as for static clusters. So endpoints are *interned*: the
//! first time a target resolves to an address, an [`Endpoint`] is created in a slot of
//! a fixed table ([`MAX_HOSTS`] slots, each a `OnceLock<Box<_>>`), and it stays there for
//! the life of the process. The current host set (which slots are in, and the balancer
//! and session table built over them) sits behind an `ArcSwap` and is replaced whole
//! when an answer changes it. A pick loads the set (no lock, no allocation), picks, and
//! returns a reference into the slot table, which outlives any set. An address that
//! vanishes and comes back finds its endpoint, with its pool and outlier state, where
//! it left it. The price is memory for addresses once seen, bounded by the cap: past
//! it, new addresses are ignored (and logged) until the process restarts.
//!
//! Reference counting each endpoint (`Arc<Endpoint>` per pick) would free vanished
//! endpoints, but costs two atomic operations per request and changes the borrow the
//! rest of the proxy relies on; DNS answers of real services churn within a small
//! set of addresses, so the interning table stays small.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use hickory_resolver::config::{
    LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::ProtoErrorKind;
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::{ResolveError, TokioResolver};
use rustls_pki_types::ServerName;
use tokio::sync::{mpsc, watch};

use super::{Cluster, ClusterOptions, Endpoint, LbEndpoint, balance, sticky};
use crate::config::EndpointAddress;

/// Most distinct endpoints (target, address) a DNS cluster creates in its life.
pub(crate) const MAX_HOSTS: usize = 1024;

/// Longest the launcher waits for DNS clusters' first resolutions before serving.
pub const WARMING_TIMEOUT: Duration = Duration::from_secs(15);

/// How a DNS cluster finds its endpoints, `const`-constructible for the macro.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DnsDiscovery {
    pub mode: DnsMode,
    /// Pause between resolutions of a target (and after a failed one). Default 5 s,
    /// Envoy's `dns_refresh_rate`.
    pub refresh_rate: Duration,
    /// Re-resolve after the answer's TTL instead of `refresh_rate`. Default true.
    pub respect_ttl: bool,
    /// Which address families become endpoints. Default `Auto`.
    pub family: DnsFamily,
    /// Name servers to ask; empty (the default) uses the system configuration.
    pub resolvers: &'static [SocketAddr],
}

/// Envoy's cluster discovery types that use DNS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsMode {
    /// Every address is an endpoint (`STRICT_DNS`).
    Strict,
    /// One endpoint per target, at the first address (`LOGICAL_DNS`).
    Logical,
}

/// Envoy's `dns_lookup_family`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsFamily {
    /// IPv6 addresses if the name has any, else IPv4 (Envoy's `AUTO`).
    Auto,
    V4Only,
    V6Only,
}

impl DnsDiscovery {
    const fn new(mode: DnsMode) -> Self {
        Self {
            mode,
            refresh_rate: Duration::from_secs(5),
            respect_ttl: true,
            family: DnsFamily::Auto,
            resolvers: &[],
        }
    }

    pub const fn strict() -> Self {
        Self::new(DnsMode::Strict)
    }

    pub const fn logical() -> Self {
        Self::new(DnsMode::Logical)
    }

    /// Clamped to at least 1 ms, so a zero never spins.
    pub const fn refresh_rate(mut self, rate: Duration) -> Self {
        self.refresh_rate = if rate.is_zero() {
            Duration::from_millis(1)
        } else {
            rate
        };
        self
    }

    pub const fn respect_ttl(mut self, respect: bool) -> Self {
        self.respect_ttl = respect;
        self
    }

    pub const fn family(mut self, family: DnsFamily) -> Self {
        self.family = family;
        self
    }

    pub const fn resolvers(mut self, resolvers: &'static [SocketAddr]) -> Self {
        self.resolvers = resolvers;
        self
    }
}

/// A host name to resolve, and what its addresses become.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsTarget {
    pub host: String,
    pub port: u16,
    /// Weight of each endpoint it resolves to; 0 is taken as 1.
    pub weight: u32,
    pub priority: u32,
}

impl DnsTarget {
    /// `host:port` with weight 1 and priority 0.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Self {
            host: host.into(),
            port,
            weight: 1,
            priority: 0,
        }
    }
}

/// A DNS cluster's endpoints: every one it ever created, and the current set.
pub(crate) struct DnsHosts {
    targets: Box<[DnsTarget]>,
    settings: DnsDiscovery,
    /// Interned endpoints, filled in order and never emptied; see the module docs.
    slots: Box<[OnceLock<Box<Host>>]>,
    current: ArcSwap<HostSet>,
    /// Discovery's bookkeeping; only resolution tasks and health checking take it.
    state: Mutex<State>,
    /// How many targets have had their first resolution (successful or not).
    first_rounds: watch::Sender<usize>,
    started: AtomicBool,
}

impl std::fmt::Debug for DnsHosts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsHosts")
            .field("targets", &self.targets)
            .field("settings", &self.settings)
            .field("members", &self.current.load().members)
            .finish_non_exhaustive()
    }
}

struct Host {
    endpoint: Endpoint,
    /// The TLS server name, when the cluster originates TLS.
    server_name: Option<ServerName<'static>>,
}

/// The endpoints in use, with the balancer and session table built over them.
#[derive(Debug)]
pub(crate) struct HostSet {
    /// Slots of the members; balancer and session table indices are positions here.
    members: Box<[usize]>,
    pub(crate) balancer: balance::Balancer,
    pub(crate) sessions: sticky::SessionTable,
}

#[derive(Debug)]
struct State {
    /// Per target, the sorted slots of its latest successful resolution.
    by_target: Vec<Vec<usize>>,
    interned: HashMap<(usize, SocketAddr), usize>,
    /// Slots filled so far.
    len: usize,
    /// Health checking's subscription to membership changes, once it runs.
    watcher: Option<mpsc::UnboundedSender<Membership>>,
}

/// A change to the host set, for health checking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Membership {
    Added(usize),
    Removed(usize),
}

/// What one resolution of a target produced.
enum Resolved {
    Addresses(Vec<IpAddr>, Option<Duration>),
    Failed(ResolveError),
}

impl DnsHosts {
    fn new(cluster: &'static str, targets: Vec<DnsTarget>, settings: DnsDiscovery) -> Self {
        let empty = HostSet::build(cluster, &[], &[], &ClusterOptions::DEFAULT, None);
        Self {
            state: Mutex::new(State {
                by_target: vec![Vec::new(); targets.len()],
                interned: HashMap::new(),
                len: 0,
                watcher: None,
            }),
            targets: targets.into_boxed_slice(),
            settings,
            slots: (0..MAX_HOSTS).map(|_| OnceLock::new()).collect(),
            current: ArcSwap::from_pointee(empty),
            first_rounds: watch::Sender::new(0),
            started: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every critical section leaves the state consistent before it can panic (and
        // none is expected to): a poisoned lock still holds usable bookkeeping.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn settings(&self) -> &DnsDiscovery {
        &self.settings
    }

    pub(crate) fn targets(&self) -> &[DnsTarget] {
        &self.targets
    }

    /// The current host set; a lock-free load.
    pub(crate) fn current(&self) -> arc_swap::Guard<Arc<HostSet>> {
        self.current.load()
    }

    /// The endpoint at `position` of `set`.
    #[inline]
    pub(crate) fn member<'a>(&'a self, set: &HostSet, position: usize) -> Option<&'a Endpoint> {
        self.endpoint(*set.members.get(position)?)
    }

    /// The endpoint in `slot`, if it was ever filled.
    #[inline]
    pub(crate) fn endpoint(&self, slot: usize) -> Option<&Endpoint> {
        self.slots.get(slot)?.get().map(|host| &host.endpoint)
    }

    /// Every endpoint ever discovered, current or not.
    fn interned(&self) -> impl Iterator<Item = (usize, &Host)> {
        self.slots
            .iter()
            .map_while(OnceLock::get)
            .map(Box::as_ref)
            .enumerate()
    }

    /// The TLS server name of `endpoint`; a scan of the interned endpoints, on dial only.
    pub(crate) fn server_name(&self, endpoint: &Endpoint) -> Option<&ServerName<'static>> {
        self.interned()
            .find(|(_, host)| std::ptr::eq(&host.endpoint, endpoint))
            .and_then(|(_, host)| host.server_name.as_ref())
    }

    /// Calls `f` on each endpoint of the current set.
    pub(crate) fn for_each_member<'a>(&'a self, mut f: impl FnMut(&'a Endpoint)) {
        let set = self.current();
        for &slot in set.members.iter() {
            if let Some(endpoint) = self.endpoint(slot) {
                f(endpoint);
            }
        }
    }

    /// Drops idle connections past their timeout, and every idle connection of a
    /// strict-DNS endpoint that left the set (its busy connections come back to the
    /// pool as their requests end, and are closed on the next pass).
    pub(crate) fn prune_idle(&self) {
        let mut member = vec![false; MAX_HOSTS];
        for &slot in self.current().members.iter() {
            if let Some(flag) = member.get_mut(slot) {
                *flag = true;
            }
        }
        for (slot, host) in self.interned() {
            let pool = host.endpoint.pool();
            let removed = !member.get(slot).copied().unwrap_or(false);
            if removed && self.settings.mode == DnsMode::Strict {
                while pool.evict_oldest() {}
                host.endpoint.discard_idle_http2();
            } else {
                pool.prune();
            }
        }
    }

    /// The slots currently in the set, and a subscription to every later change.
    /// Taken under the state lock, so no change falls between the two.
    pub(crate) fn watch_membership(&self) -> (Vec<usize>, mpsc::UnboundedReceiver<Membership>) {
        let mut state = self.lock();
        let (sender, receiver) = mpsc::unbounded_channel();
        state.watcher = Some(sender);
        (self.current().members.to_vec(), receiver)
    }

    /// Resolves once every target has had its first resolution, successful or not.
    pub(crate) async fn warmed(&self) {
        let targets = self.targets.len();
        let mut rounds = self.first_rounds.subscribe();
        // The sender lives in `self`, so `wait_for` cannot see it closed.
        let _ = rounds.wait_for(|done| *done >= targets).await;
    }

    /// Records one resolution of target `index` and rebuilds the set if it changed.
    fn apply(&self, cluster: &Cluster, index: usize, addresses: &[IpAddr]) {
        let Some(target) = self.targets.get(index) else {
            return;
        };
        let stats = cluster.stats();
        let mut state = self.lock();
        let wanted = match self.settings.mode {
            DnsMode::Strict => addresses,
            DnsMode::Logical => addresses.get(..1).unwrap_or_default(),
        };
        let mut slots: Vec<usize> = wanted
            .iter()
            .filter_map(|&ip| {
                self.intern(&mut state, cluster, index, SocketAddr::new(ip, target.port))
            })
            .collect();
        slots.sort_unstable();
        slots.dedup();
        if state.by_target.get(index) == Some(&slots) {
            stats.update_no_rebuild.inc();
            return;
        }
        if let Some(entry) = state.by_target.get_mut(index) {
            *entry = slots;
        }
        // Slots in `by_target` were all filled by `intern`; the filter only keeps
        // member positions and endpoint positions aligned should that ever not hold.
        let members: Vec<usize> = state
            .by_target
            .iter()
            .flatten()
            .copied()
            .filter(|&slot| self.endpoint(slot).is_some())
            .collect();
        let old = self.current.load_full();
        let added: Vec<usize> = members
            .iter()
            .copied()
            .filter(|slot| !old.members.contains(slot))
            .collect();
        let removed: Vec<usize> = old
            .members
            .iter()
            .copied()
            .filter(|slot| !members.contains(slot))
            .collect();
        let set = HostSet::build(
            cluster.name(),
            &members,
            &self.slot_addresses(&members),
            cluster.options(),
            cluster.sessions.as_ref(),
        );
        // Health checking first: a new endpoint is unhealthy until its first check
        // passes, and must be marked so before the balancer can see it.
        if let Some(watcher) = &state.watcher {
            for &slot in &added {
                if let Some(endpoint) = self.endpoint(slot) {
                    endpoint.set_healthy(false);
                }
                let _ = watcher.send(Membership::Added(slot));
            }
            for &slot in &removed {
                let _ = watcher.send(Membership::Removed(slot));
            }
        }
        self.current.store(Arc::new(set));
        drop(state);
        stats.membership_change.inc();
        let name = |slot: &usize| {
            self.endpoint(*slot)
                .map_or_else(String::new, |e| e.address().to_string())
        };
        tracing::info!(
            cluster = cluster.name(),
            host = %target.host,
            added = ?added.iter().map(name).collect::<Vec<_>>(),
            removed = ?removed.iter().map(name).collect::<Vec<_>>(),
            endpoints = members.len(),
            "DNS membership changed"
        );
        if self.settings.mode == DnsMode::Strict {
            for endpoint in removed.iter().filter_map(|&slot| self.endpoint(slot)) {
                while endpoint.pool().evict_oldest() {}
                endpoint.discard_idle_http2();
            }
        }
    }

    fn slot_addresses(&self, members: &[usize]) -> Vec<(EndpointAddress, u32, u32)> {
        members
            .iter()
            .filter_map(|&slot| self.endpoint(slot))
            .map(|e| (e.address().clone(), e.weight(), e.priority()))
            .collect()
    }

    /// The slot of (`target`, `address`), creating its endpoint on first sight; `None`
    /// once the table is full.
    fn intern(
        &self,
        state: &mut State,
        cluster: &Cluster,
        target: usize,
        address: SocketAddr,
    ) -> Option<usize> {
        if let Some(&slot) = state.interned.get(&(target, address)) {
            return Some(slot);
        }
        let slot = state.len;
        let Some(cell) = self.slots.get(slot) else {
            tracing::warn!(
                cluster = cluster.name(),
                %address,
                cap = MAX_HOSTS,
                "DNS cluster reached its cap of distinct addresses; address ignored"
            );
            return None;
        };
        let spec = self.targets.get(target)?;
        let lb = LbEndpoint::new(EndpointAddress::Tcp(address))
            .weight(spec.weight)
            .priority(spec.priority);
        let endpoint = Endpoint::new(lb, cluster.options());
        let host = spec.host.trim_end_matches('.');
        let server_name = cluster
            .tls
            .as_ref()
            .and_then(|tls| tls.server_name_for(endpoint.address(), Some(host)));
        // Slots are filled only here, under the state lock, in order: this one is empty.
        if cell
            .set(Box::new(Host {
                endpoint,
                server_name,
            }))
            .is_err()
        {
            return None;
        }
        state.len += 1;
        state.interned.insert((target, address), slot);
        Some(slot)
    }
}

impl HostSet {
    fn build(
        cluster: &str,
        members: &[usize],
        endpoints: &[(EndpointAddress, u32, u32)],
        options: &ClusterOptions,
        sessions: Option<&sticky::Sessions>,
    ) -> Self {
        let keys: Vec<String> = endpoints.iter().map(|(a, ..)| a.to_string()).collect();
        let specs: Vec<balance::Spec<'_>> = endpoints
            .iter()
            .zip(&keys)
            .map(|((_, weight, priority), key)| balance::Spec {
                key,
                weight: *weight,
                priority: *priority,
            })
            .collect();
        let balancer = balance::Balancer::new(
            cluster,
            &specs,
            options.lb_policy,
            options.overprovisioning_factor,
            options.healthy_panic_threshold,
        );
        let sessions = sessions
            .map(|sessions| sessions.table(endpoints.iter().map(|(a, ..)| a)))
            .unwrap_or_default();
        Self {
            members: members.into(),
            balancer,
            sessions,
        }
    }
}

impl Cluster {
    /// Builds a cluster whose endpoints come from resolving `targets` (see the
    /// [module docs](self)). It has no endpoint until [`Self::discovery`] runs. Called
    /// once by generated code at start-up.
    pub fn from_dns(
        name: &'static str,
        targets: Vec<DnsTarget>,
        options: ClusterOptions,
        dns: DnsDiscovery,
    ) -> Self {
        let mut cluster = Self::with_lb_endpoints(name, Vec::new(), options);
        cluster.dns = Some(Box::new(DnsHosts::new(name, targets, dns)));
        cluster
    }

    /// The DNS discovery settings of a cluster built with [`Self::from_dns`].
    pub fn dns_discovery(&self) -> Option<&DnsDiscovery> {
        self.dns.as_deref().map(DnsHosts::settings)
    }

    /// The DNS targets of a cluster built with [`Self::from_dns`] (empty otherwise).
    pub fn dns_targets(&self) -> &[DnsTarget] {
        self.dns.as_deref().map_or(&[], DnsHosts::targets)
    }

    /// The task that resolves this cluster's targets, each first at once and then on
    /// its own timer, until it is dropped; `None` for a cluster without DNS discovery,
    /// or when called before. The launcher starts it before it binds listeners.
    pub fn discovery(&'static self) -> Option<impl Future<Output = ()> + Send + 'static> {
        let dns = self.dns.as_deref()?;
        if dns.started.swap(true, Ordering::Relaxed) {
            return None;
        }
        Some(async move {
            let mut tasks = tokio::task::JoinSet::new();
            for index in 0..dns.targets.len() {
                tasks.spawn(resolve_target(self, dns, index));
            }
            while let Some(result) = tasks.join_next().await {
                if let Err(error) = result {
                    tracing::error!(cluster = self.name, %error, "DNS resolution task failed");
                }
            }
        })
    }

    /// Resolves once every DNS target has been resolved once (successfully or not);
    /// at once for a cluster without DNS discovery. The launcher bounds the wait.
    pub async fn discovery_warmed(&self) {
        if let Some(dns) = self.dns.as_deref() {
            dns.warmed().await;
        }
    }
}

/// Resolves target `index` of `cluster` forever.
async fn resolve_target(cluster: &'static Cluster, dns: &'static DnsHosts, index: usize) {
    let Some(target) = dns.targets.get(index) else {
        return;
    };
    let settings = dns.settings;
    let stats = cluster.stats();
    let mut resolver = None;
    let mut first = true;
    loop {
        stats.update_attempt.inc();
        let resolved = match &resolver {
            Some(resolver) => resolve(resolver, &target.host).await,
            None => match build_resolver(&settings) {
                Ok(built) => {
                    let resolved = resolve(&built, &target.host).await;
                    resolver = Some(built);
                    resolved
                }
                Err(error) => Resolved::Failed(error),
            },
        };
        let pause = match resolved {
            Resolved::Addresses(addresses, ttl) => {
                stats.update_success.inc();
                dns.apply(cluster, index, &addresses);
                ttl.filter(|ttl| settings.respect_ttl && !ttl.is_zero())
                    .unwrap_or(settings.refresh_rate)
            }
            Resolved::Failed(error) => {
                stats.update_failure.inc();
                tracing::warn!(
                    cluster = cluster.name,
                    host = %target.host,
                    %error,
                    "DNS resolution failed; keeping the previous addresses"
                );
                settings.refresh_rate
            }
        };
        if first {
            first = false;
            dns.first_rounds.send_modify(|done| *done += 1);
        }
        tokio::time::sleep(pause).await;
    }
}

async fn resolve(resolver: &TokioResolver, host: &str) -> Resolved {
    // Belt and braces with the zero-sized cache: never answer from memory.
    resolver.clear_cache();
    match resolver.lookup_ip(host).await {
        Ok(lookup) => {
            let ttl = lookup
                .as_lookup()
                .records()
                .iter()
                .map(|record| record.ttl())
                .min()
                .map(|seconds| Duration::from_secs(u64::from(seconds)));
            let mut addresses: Vec<IpAddr> = Vec::new();
            for ip in lookup.iter() {
                if !addresses.contains(&ip) {
                    addresses.push(ip);
                }
            }
            Resolved::Addresses(addresses, ttl)
        }
        Err(error) if has_no_address(&error) => Resolved::Addresses(Vec::new(), None),
        Err(error) => Resolved::Failed(error),
    }
}

/// Whether an error is an authoritative "no such address" (`NXDOMAIN`, or `NOERROR`
/// without records of the family) rather than a failure to get an answer.
fn has_no_address(error: &ResolveError) -> bool {
    error.proto().is_some_and(|proto| {
        matches!(
            proto.kind(),
            ProtoErrorKind::NoRecordsFound {
                response_code: ResponseCode::NXDomain | ResponseCode::NoError,
                ..
            }
        )
    })
}

fn build_resolver(settings: &DnsDiscovery) -> Result<TokioResolver, ResolveError> {
    let mut builder = if settings.resolvers.is_empty() {
        TokioResolver::builder_tokio()?
    } else {
        let mut config = ResolverConfig::new();
        for &address in settings.resolvers {
            config.add_name_server(NameServerConfig::new(address, Protocol::Udp));
            // Only used when a UDP answer comes back truncated.
            config.add_name_server(NameServerConfig::new(address, Protocol::Tcp));
        }
        TokioResolver::builder_with_config(config, TokioConnectionProvider::default())
    };
    configure(builder.options_mut(), settings);
    Ok(builder.build())
}

fn configure(options: &mut ResolverOpts, settings: &DnsDiscovery) {
    options.ip_strategy = match settings.family {
        DnsFamily::Auto => LookupIpStrategy::Ipv6thenIpv4,
        DnsFamily::V4Only => LookupIpStrategy::Ipv4Only,
        DnsFamily::V6Only => LookupIpStrategy::Ipv6Only,
    };
    options.cache_size = 0;
    options.positive_max_ttl = Some(Duration::ZERO);
    options.negative_max_ttl = Some(Duration::ZERO);
    if !settings.resolvers.is_empty() {
        // Named resolvers are the only source of truth (tests rely on it too).
        options.use_hosts_file = ResolveHosts::Never;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn const_settings() {
        const SERVERS: &[SocketAddr] = &[SocketAddr::new(
            IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            53,
        )];
        const D: DnsDiscovery = DnsDiscovery::logical()
            .refresh_rate(Duration::ZERO)
            .respect_ttl(false)
            .family(DnsFamily::V4Only)
            .resolvers(SERVERS);
        assert_eq!(D.mode, DnsMode::Logical);
        assert_eq!(D.refresh_rate, Duration::from_millis(1));
        const { assert!(!D.respect_ttl) };
        assert_eq!(DnsDiscovery::strict().refresh_rate, Duration::from_secs(5));
        const { assert!(DnsDiscovery::strict().respect_ttl) };
        assert_eq!(DnsDiscovery::strict().family, DnsFamily::Auto);
    }

    #[test]
    fn tls_names_dns_endpoints_by_host_and_sessions_find_them() -> Result<(), crate::tls::TlsError>
    {
        use crate::cluster::SessionPersistence;
        let tls = Arc::new(crate::tls::UpstreamTls::load(
            crate::tls::UpstreamTlsSpec::new(),
        )?);
        let options = ClusterOptions::DEFAULT
            .session_persistence(SessionPersistence::Header { name: "x-session" });
        let targets = vec![DnsTarget::new("api.example.com.", 443)];
        let cluster = Cluster::from_dns("dns", targets, options, DnsDiscovery::strict())
            .tls(Arc::clone(&tls));
        let Some(dns) = cluster.dns.as_deref() else {
            panic!("a DNS cluster");
        };
        let ip = |n: u8| IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, n));
        dns.apply(&cluster, 0, &[ip(1), ip(2)]);
        for endpoint in cluster.current_endpoints() {
            let name = cluster
                .tls_server_name(endpoint)
                .map(|n| n.to_str().into_owned());
            assert_eq!(name.as_deref(), Some("api.example.com"));
        }
        // `sni` wins over the host name.
        let sni = Arc::new(crate::tls::UpstreamTls::load(
            crate::tls::UpstreamTlsSpec::new().sni("origin.internal"),
        )?);
        let targets = vec![DnsTarget::new("api.example.com", 443)];
        let cluster = Cluster::from_dns("sni", targets, options, DnsDiscovery::strict()).tls(sni);
        if let Some(dns) = cluster.dns.as_deref() {
            dns.apply(&cluster, 0, &[ip(1), ip(2)]);
        }
        let endpoint = cluster.pick().map(|e| cluster.tls_server_name(e));
        assert_eq!(
            endpoint
                .flatten()
                .map(|n| n.to_str().into_owned())
                .as_deref(),
            Some("origin.internal")
        );

        // Session tokens of DNS endpoints lead back to them.
        let parts = http::Request::new(()).into_parts().0;
        let first = cluster
            .select(&parts, None, &[])
            .map(|s| (s.endpoint as *const Endpoint, s.session));
        let Some((endpoint, Some((name, token)))) = first else {
            panic!("a selection with a session header");
        };
        let mut request = http::Request::new(());
        request.headers_mut().insert(name, token);
        let parts = request.into_parts().0;
        for _ in 0..4 {
            let again = cluster.select(&parts, None, &[]);
            assert!(again.as_ref().is_some_and(|s| s.session.is_none()));
            assert!(again.is_some_and(|s| std::ptr::eq(s.endpoint, endpoint)));
        }
        Ok(())
    }

    #[test]
    fn interning_keeps_endpoints_and_caps_them() {
        let cluster = Cluster::from_dns(
            "dns",
            vec![DnsTarget::new("a.test", 80)],
            ClusterOptions::DEFAULT,
            DnsDiscovery::strict(),
        );
        let Some(dns) = cluster.dns.as_deref() else {
            panic!("a DNS cluster");
        };
        let ip = |n: u32| IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + n));
        dns.apply(&cluster, 0, &[ip(1), ip(2)]);
        let first = cluster.pick().map(|e| e as *const Endpoint);
        assert_eq!(cluster.current_endpoints().len(), 2);
        dns.apply(&cluster, 0, &[ip(2)]);
        assert_eq!(cluster.current_endpoints().len(), 1);
        dns.apply(&cluster, 0, &[ip(2), ip(1)]);
        // The same endpoints come back, in their old slots.
        let again: Vec<*const Endpoint> = cluster
            .current_endpoints()
            .into_iter()
            .map(|e| e as *const Endpoint)
            .collect();
        assert!(first.is_some_and(|first| again.contains(&first)));
        assert_eq!(cluster.stats().membership_change.get(), 3);
        dns.apply(&cluster, 0, &[ip(1), ip(2)]);
        assert_eq!(cluster.stats().update_no_rebuild.get(), 1);
        let many: Vec<IpAddr> = (0..(MAX_HOSTS as u32 + 10)).map(ip).collect();
        dns.apply(&cluster, 0, &many);
        assert_eq!(cluster.current_endpoints().len(), MAX_HOSTS);
    }
}
