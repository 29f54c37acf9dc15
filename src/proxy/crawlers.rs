//! Search engines' crawlers verified in the DNS, as the engines ask sites
//! to: the visitor's reverse name must end in one of their suffixes
//! (`.googlebot.com`), and that name must resolve back to the visitor.
//! Only visitors whose User-Agent claims to be a crawler are looked up,
//! and never on the request's path: the first request from an address not
//! known yet is served at once as a visitor's while a background task
//! asks, and its verdict applies from the next request on. Verdicts are
//! kept (a crawler a day, anyone else an hour, a failed lookup a few
//! minutes), lookups under way are bounded, and both maps are bounded.

use std::collections::HashSet;
use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::{Resolver, TokioResolver};

use crate::config::Crawlers;

/// Addresses whose verdict is kept, at most.
const CACHED: usize = 10_000;
/// Lookups under way at once, at most; claimants past it are served as
/// visitors and looked up on a later request.
const IN_FLIGHT: usize = 64;
/// How long one lookup may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long each verdict is kept.
const KEEP_CRAWLER: Duration = Duration::from_secs(24 * 3600);
const KEEP_OTHER: Duration = Duration::from_secs(3600);
const KEEP_FAILED: Duration = Duration::from_secs(300);

/// What the DNS says of one address.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    /// A crawler: its reverse name is an engine's and resolves back.
    Crawler(String),
    /// Not one: no such name, or one that does not resolve back.
    Other,
    /// The DNS did not answer; asked again soon.
    Failed,
}

/// Counts of lookups, for the metrics.
#[derive(Debug, Default)]
pub struct Counts {
    /// Claimants found to be crawlers.
    pub verified: AtomicU64,
    /// Claimants found not to be.
    pub refuted: AtomicU64,
    /// Lookups the DNS did not answer.
    pub failed: AtomicU64,
}

/// The verdicts known and the lookups under way.
pub struct Verifier {
    crawlers: Crawlers,
    resolver: Option<TokioResolver>,
    known: Mutex<lru::LruCache<IpAddr, (Verdict, Instant)>>,
    asking: Mutex<HashSet<IpAddr>>,
    counts: Arc<Counts>,
}

impl Verifier {
    /// A verifier for `[crawlers]`; without suffixes it asks nothing.
    pub fn new(crawlers: &Crawlers, counts: Arc<Counts>) -> Verifier {
        let resolver = (!crawlers.suffixes.is_empty())
            .then(|| resolver(crawlers))
            .flatten();
        Verifier {
            crawlers: crawlers.clone(),
            resolver,
            known: Mutex::new(lru::LruCache::new(NonZeroUsize::new(CACHED).expect("not zero"))),
            asking: Mutex::default(),
            counts,
        }
    }

    /// Whether the visitor at `ip` with `user_agent` is a verified
    /// crawler. A claimant not known yet is looked up in the background
    /// (and is not one for this request).
    pub fn is_crawler(self: &Arc<Self>, ip: IpAddr, user_agent: &str) -> bool {
        let Some(resolver) = &self.resolver else {
            return false;
        };
        if !self.crawlers.claims(user_agent) {
            return false;
        }
        let now = Instant::now();
        if let Some((verdict, until)) = self.lock_known().get(&ip)
            && *until > now
        {
            return matches!(verdict, Verdict::Crawler(_));
        }
        {
            let mut asking = self.asking.lock().unwrap_or_else(|e| e.into_inner());
            if asking.len() >= IN_FLIGHT || !asking.insert(ip) {
                return false;
            }
        }
        let me = Arc::clone(self);
        let resolver = resolver.clone();
        tokio::spawn(async move {
            let verdict = tokio::time::timeout(LOOKUP_TIMEOUT, me.verify(&resolver, ip))
                .await
                .unwrap_or(Verdict::Failed);
            me.settle(ip, verdict);
        });
        false
    }

    /// Reverse, then forward: the name must be an engine's and lead back.
    async fn verify(&self, resolver: &TokioResolver, ip: IpAddr) -> Verdict {
        let names = match resolver.reverse_lookup(ip).await {
            Ok(lookup) => lookup
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::PTR(ptr) => Some(ptr.0.to_ascii()),
                    _ => None,
                })
                .collect::<Vec<_>>(),
            Err(e) if e.is_no_records_found() || e.is_nx_domain() => return Verdict::Other,
            Err(_) => return Verdict::Failed,
        };
        tracing::debug!(%ip, ?names, "reverse DNS names of a claimed crawler");
        for name in names.iter().filter(|n| self.crawlers.is_crawler_host(n)) {
            match resolver.lookup_ip(name.as_str()).await {
                Ok(found) if found.iter().any(|a| a == ip) => {
                    return Verdict::Crawler(name.trim_end_matches('.').to_owned());
                }
                Ok(_) => {}
                Err(e) if e.is_no_records_found() || e.is_nx_domain() => {}
                Err(_) => return Verdict::Failed,
            }
        }
        Verdict::Other
    }

    /// Keeps a verdict, and says what it was.
    fn settle(&self, ip: IpAddr, verdict: Verdict) {
        let keep = match &verdict {
            Verdict::Crawler(host) => {
                self.counts.verified.fetch_add(1, Ordering::Relaxed);
                tracing::info!(%ip, %host, "verified a search engine's crawler; it gets crawler IDs");
                KEEP_CRAWLER
            }
            Verdict::Other => {
                self.counts.refuted.fetch_add(1, Ordering::Relaxed);
                tracing::info!(%ip, "claims to be a search engine's crawler and is not one");
                KEEP_OTHER
            }
            Verdict::Failed => {
                self.counts.failed.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%ip, "the DNS did not answer whether it is a crawler");
                KEEP_FAILED
            }
        };
        self.lock_known().put(ip, (verdict, Instant::now() + keep));
        self.asking.lock().unwrap_or_else(|e| e.into_inner()).remove(&ip);
    }

    fn lock_known(&self) -> std::sync::MutexGuard<'_, lru::LruCache<IpAddr, (Verdict, Instant)>> {
        self.known.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A resolver asking the configured name servers, or the system's; `None`
/// (logged) when the system's cannot be read.
fn resolver(crawlers: &Crawlers) -> Option<TokioResolver> {
    let provider = TokioRuntimeProvider::default();
    let builder = if crawlers.nameservers.is_empty() {
        match Resolver::builder(provider) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the system's DNS configuration; crawlers are known by [crawlers] ranges only (set [crawlers] nameservers)");
                return None;
            }
        }
    } else {
        let servers = crawlers
            .nameservers
            .iter()
            .map(|a| {
                let mut udp = ConnectionConfig::udp();
                udp.port = a.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = a.port();
                let mut ns = NameServerConfig::udp_and_tcp(a.ip());
                ns.connections = vec![udp, tcp];
                ns
            })
            .collect();
        Resolver::builder_with_config(ResolverConfig::from_name_servers(servers), provider)
    };
    match builder.build() {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::warn!(error = %e, "cannot make a DNS resolver; crawlers are known by [crawlers] ranges only");
            None
        }
    }
}
