//! Tokens for one response: the per-visitor-day cache of each base
//! address's munged form, and the [`VisitorMunger`] that writes them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::day::Day;
use crate::scan::{Found, Munger};
use crate::store::SERVED_MAX;
use crate::token::{Claims, KeyRing, Kind, Visitor};

/// The munged form of each base address, computed once per visitor, day
/// and kind: an LRU of visitor-days, bounded by entries and by bytes, so a
/// crawler walking many pages costs one token per address, and a flood of
/// visitors (or of addresses) evicts the least recent instead of growing.
/// A response takes its visitor-day's [`Tokens`] once, then looks
/// addresses up there by `&str`, without building a key per address.
pub struct TokenCache {
    map: Mutex<lru::LruCache<VisitorDay, Arc<Tokens>>>,
    /// Where each base address made a token for is noted.
    served: Arc<ServedLog>,
    /// Bytes held by every [`Tokens`] alive (cached or still in use by a
    /// response), estimated.
    bytes: Arc<AtomicUsize>,
    budget: usize,
}

/// Visitor, day and kind.
type VisitorDay = (Visitor, Day, Kind);

/// Visitor-days kept at most.
const CACHE_MAX: usize = 10_000;

/// Bytes the cache may hold by default (`[proxy] token_cache_bytes`).
pub const CACHE_BYTES: usize = 64 << 20;

/// Tokens kept per visitor-day: a page full of distinct addresses (a list
/// archive) must not grow one entry without bound; beyond this they are
/// made on every use.
const TOKENS_MAX: usize = 1024;

/// What a visitor-day costs besides its tokens (LRU node, map, locks),
/// and what one token entry costs besides its text: estimates on the
/// generous side.
const DAY_BYTES: usize = 256;
const ENTRY_BYTES: usize = 96;

impl Default for TokenCache {
    fn default() -> Self {
        TokenCache::with_capacity(CACHE_MAX)
    }
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache").field("len", &self.len()).finish()
    }
}

impl TokenCache {
    /// A cache of at most `n` visitor-days (at least 1) and [`CACHE_BYTES`].
    pub fn with_capacity(n: usize) -> TokenCache {
        TokenCache::with_limits(n, CACHE_BYTES)
    }

    /// A cache of about `budget` bytes.
    pub fn with_budget(budget: usize) -> TokenCache {
        TokenCache::with_limits(CACHE_MAX, budget)
    }

    /// A cache of at most `n` visitor-days and about `budget` bytes.
    pub fn with_limits(n: usize, budget: usize) -> TokenCache {
        let n = std::num::NonZeroUsize::new(n.max(1)).expect("at least 1");
        TokenCache {
            map: Mutex::new(lru::LruCache::new(n)),
            served: Arc::default(),
            bytes: Arc::new(AtomicUsize::new(0)),
            budget,
        }
    }

    /// Notes every base address it makes a token for in `served`.
    pub fn noting(mut self, served: Arc<ServedLog>) -> TokenCache {
        self.served = served;
        self
    }

    /// Visitor-days held.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes held now (an estimate), by the cache and responses in flight.
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Forgets every token (after the keys changed).
    pub fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, lru::LruCache<VisitorDay, Arc<Tokens>>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The tokens of the visitor-day `claims` names. Over the byte budget,
    /// the least recent visitor-days are let go first.
    pub fn tokens(&self, claims: &Claims) -> Arc<Tokens> {
        let key = (
            claims.visitor.unwrap_or(Visitor::V4([0, 0, 0, 0].into())),
            claims.day,
            claims.kind,
        );
        let mut map = self.lock();
        let tokens = Arc::clone(map.get_or_insert(key, || {
            Arc::new(Tokens::new(
                Arc::clone(&self.bytes),
                self.budget,
                Arc::clone(&self.served),
            ))
        }));
        while self.bytes() > self.budget && map.len() > 1 {
            map.pop_lru();
        }
        tokens
    }

    /// The token for `base` under `claims`, from the cache or made now.
    pub fn get(&self, keys: &KeyRing, claims: &Claims, base: &str) -> Arc<str> {
        self.tokens(claims).get(keys, claims, base)
    }
}

/// One visitor-day's tokens, by base address.
pub struct Tokens {
    /// foldhash, not SipHash: every address of every page is looked up
    /// here (SipHash was ~200 instructions a lookup, 2% of a rewritten
    /// request's). Seeded per process; at most [`TOKENS_MAX`] entries.
    map: Mutex<HashMap<Box<str>, Arc<str>, foldhash::fast::RandomState>>,
    served: Arc<ServedLog>,
    /// The cache's byte count, and this entry's share of it.
    total: Arc<AtomicUsize>,
    mine: AtomicUsize,
    budget: usize,
}

impl Drop for Tokens {
    fn drop(&mut self) {
        self.total
            .fetch_sub(self.mine.load(Ordering::Relaxed), Ordering::Relaxed);
    }
}

impl Tokens {
    fn new(total: Arc<AtomicUsize>, budget: usize, served: Arc<ServedLog>) -> Tokens {
        total.fetch_add(DAY_BYTES, Ordering::Relaxed);
        Tokens {
            map: Mutex::new(HashMap::default()),
            served,
            total,
            mine: AtomicUsize::new(DAY_BYTES),
            budget,
        }
    }

    /// The token for `base` under `claims` (which must be this visitor-day's).
    /// Kept unless this visitor-day holds `TOKENS_MAX` already or the
    /// cache is over its budget; then made on every use.
    pub fn get(&self, keys: &KeyRing, claims: &Claims, base: &str) -> Arc<str> {
        let lock = || self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = lock().get(base) {
            return Arc::clone(t);
        }
        // Made outside the lock: two requests may both make it; same bytes.
        let t: Arc<str> = keys.encode(base, "", claims).into();
        // Only when a token is made, so a cache hit costs nothing more.
        self.served.note(base, claims.day);
        let cost = base.len() + t.len() + ENTRY_BYTES;
        let mut map = lock();
        if map.len() < TOKENS_MAX
            && self.total.load(Ordering::Relaxed) + cost <= self.budget
            && map.insert(base.into(), Arc::clone(&t)).is_none()
        {
            self.mine.fetch_add(cost, Ordering::Relaxed);
            self.total.fetch_add(cost, Ordering::Relaxed);
        }
        t
    }
}

/// The base addresses this proxy munged, each noted once a day for the
/// visit-log writer to store: the candidates the resolver decodes a
/// mangled copy (`TOKEN@domain`) against. Bounded like the store's list.
#[derive(Debug, Default)]
pub struct ServedLog {
    inner: Mutex<Noted>,
}

#[derive(Debug, Default)]
struct Noted {
    /// The last day each base was noted.
    seen: HashMap<Box<str>, Day>,
    /// Noted and not yet taken by the writer.
    pending: Vec<(String, Day)>,
}

impl ServedLog {
    /// Notes that `base` was munged on `day`; a base seen that day
    /// already costs a lookup.
    pub fn note(&self, base: &str, day: Day) {
        let mut n = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if n.seen.get(base) == Some(&day) {
            return;
        }
        if n.seen.len() >= SERVED_MAX && !n.seen.contains_key(base) {
            return; // as many as the store keeps: more would not be kept
        }
        n.seen.insert(base.into(), day);
        if n.pending.len() < SERVED_MAX {
            n.pending.push((base.to_owned(), day));
        }
    }

    /// What was noted since the last call.
    pub fn take(&self) -> Vec<(String, Day)> {
        std::mem::take(&mut self.inner.lock().unwrap_or_else(|e| e.into_inner()).pending)
    }

    /// Gives back what could not be stored, for the next try.
    pub fn put_back(&self, mut taken: Vec<(String, Day)>) {
        let mut n = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        taken.append(&mut n.pending);
        taken.truncate(SERVED_MAX);
        n.pending = taken;
    }
}

/// Writes `SEP TOKEN` for one visitor, day and kind.
pub struct VisitorMunger {
    keys: Arc<KeyRing>,
    separator: String,
    claims: Claims,
    tokens: Arc<Tokens>,
    domain: Option<String>,
    base: String,
}

impl VisitorMunger {
    /// A munger for one response.
    pub fn new(keys: Arc<KeyRing>, separator: &str, claims: Claims, cache: Arc<TokenCache>) -> VisitorMunger {
        VisitorMunger {
            tokens: cache.tokens(&claims),
            keys,
            separator: separator.to_owned(),
            claims,
            domain: None,
            base: String::new(),
        }
    }

    /// Writes `domain` instead of the protected one (a harvester's `domain` action).
    pub fn with_domain(mut self, domain: Option<String>) -> VisitorMunger {
        self.domain = domain;
        self
    }
}

impl Munger for VisitorMunger {
    fn munge(&mut self, found: &Found<'_>, out: &mut Vec<u8>) {
        // A reused buffer: no allocation per address once warm.
        self.base.clear();
        self.base.push_str(found.local);
        self.base.push('@');
        self.base.push_str(found.domain);
        let token = self.tokens.get(&self.keys, &self.claims, &self.base);
        out.extend_from_slice(self.separator.as_bytes());
        out.extend_from_slice(token.as_bytes());
    }

    fn domain(&self, _found: &Found<'_>) -> Option<&str> {
        self.domain.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_visitor_day_holds_a_bounded_number_of_tokens() {
        let keys = KeyRing::new(&[[1u8; 32]]);
        let c = TokenCache::default();
        let claims = Claims::visit(
            Kind::Visitor,
            Day::from_number(20_000),
            "192.0.2.1".parse().unwrap(),
        );
        let tokens = c.tokens(&claims);
        for i in 0..TOKENS_MAX + 100 {
            let base = format!("user{i}@plover.com");
            // Beyond the bound tokens are still right, only not kept.
            assert_eq!(
                *tokens.get(&keys, &claims, &base),
                *keys.encode(&base, "", &claims)
            );
        }
        assert_eq!(tokens.map.lock().unwrap().len(), TOKENS_MAX);
    }

    /// 12,000 visitors each shown 1,024 addresses once took 1.5 GB: the
    /// cache is bounded by bytes, whatever the number of entries.
    #[test]
    fn the_token_cache_is_bounded_by_bytes() {
        let keys = KeyRing::new(&[[1u8; 32]]);
        let budget = 1 << 20;
        let c = TokenCache::with_limits(100_000, budget);
        let day = Day::from_number(20_000);
        for v in 0..200u32 {
            let claims = Claims::visit(
                Kind::Visitor,
                day,
                std::net::Ipv4Addr::from(0xc000_0200 + v).into(),
            );
            let tokens = c.tokens(&claims);
            for i in 0..200 {
                let base = format!("someone-with-a-long-name-{i}@plover.com");
                assert_eq!(
                    *tokens.get(&keys, &claims, &base),
                    *keys.encode(&base, "", &claims)
                );
            }
            assert!(c.bytes() <= budget, "{} bytes held", c.bytes());
        }
        // The budget was reached (it did cache), and evicting freed it.
        assert!(c.bytes() > budget / 2, "{}", c.bytes());
        assert!(c.len() < 200);
        c.clear();
        assert_eq!(c.bytes(), 0);
    }

    #[test]
    fn the_token_cache_is_a_bounded_lru() {
        let keys = KeyRing::new(&[[1u8; 32]]);
        let c = TokenCache::with_capacity(2);
        let day = Day::from_number(20_000);
        let claims = |ip: &str| Claims::visit(Kind::Visitor, day, ip.parse().unwrap());
        let a = c.get(&keys, &claims("192.0.2.1"), "a@plover.com");
        c.get(&keys, &claims("192.0.2.2"), "a@plover.com");
        // Touch the first, then a third entry evicts the second, not the first.
        assert!(Arc::ptr_eq(
            &a,
            &c.get(&keys, &claims("192.0.2.1"), "a@plover.com")
        ));
        c.get(&keys, &claims("192.0.2.3"), "a@plover.com");
        assert_eq!(c.len(), 2);
        assert!(Arc::ptr_eq(
            &a,
            &c.get(&keys, &claims("192.0.2.1"), "a@plover.com")
        ));
        c.clear();
        assert!(c.is_empty());
    }
}
