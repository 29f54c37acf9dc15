//! [`GzipCache`]: what gzip keeps between responses, within a byte budget.
//!
//! Two maps. Stretches by CRC-32 and length, each given a number no other
//! content ever gets (a hit is compared byte for byte first, so the number
//! names the bytes, not the CRC). Compressed forms by [`Form`]: which
//! stretch, compressed after which stretch and gap, since a stretch
//! compressed with the one before it as its dictionary is only right after
//! those bytes.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// A stretch as kept.
#[derive(Debug)]
pub(super) struct Stretch {
    /// Never given to other bytes, even after these are dropped.
    pub(super) id: u64,
    pub(super) bytes: Box<[u8]>,
}

/// Which compressed form of a stretch.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct Form {
    pub(super) stretch: u64,
    /// What it was compressed after; `None`: on its own.
    pub(super) after: Option<After>,
}

/// A kept stretch, then the bytes since (their description: the IDs'
/// lengths and the short stretches' bytes).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct After {
    pub(super) stretch: u64,
    pub(super) gap: Box<[u8]>,
}

/// Kept stretches and their compressed forms, shared by all responses.
#[derive(Debug)]
pub struct GzipCache {
    maps: Mutex<Maps>,
    next_id: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
}

#[derive(Debug)]
struct Maps {
    stretches: Generations<(u32, u32), Arc<Stretch>>,
    forms: Generations<Form, Arc<[u8]>>,
}

/// Two generations: new and used entries go to `young`; when it weighs
/// `limit` it becomes `old` and the former `old` is dropped, so what is
/// used stays and the map never weighs more than twice `limit` (plus one
/// entry).
#[derive(Debug)]
struct Generations<K, V> {
    young: HashMap<K, (V, usize)>,
    old: HashMap<K, (V, usize)>,
    young_weight: usize,
    old_weight: usize,
    limit: usize,
}

/// What an entry costs besides its bytes (map slots, `Arc` counts).
const OVERHEAD: usize = 64;

impl<K: Hash + Eq + Clone, V: Clone> Generations<K, V> {
    fn new(limit: usize) -> Self {
        Generations {
            young: HashMap::new(),
            old: HashMap::new(),
            young_weight: 0,
            old_weight: 0,
            limit,
        }
    }

    /// The key is cloned only to move an entry from `old` to `young`.
    fn get(&mut self, key: &K) -> Option<V> {
        if let Some((v, _)) = self.young.get(key) {
            return Some(v.clone());
        }
        let (v, w) = self.old.remove(key)?;
        self.old_weight -= w;
        self.keep(key.clone(), v.clone(), w);
        Some(v)
    }

    fn keep(&mut self, key: K, v: V, weight: usize) {
        if weight > self.limit {
            return;
        }
        self.young_weight += weight;
        if let Some((_, w)) = self.young.insert(key, (v, weight)) {
            self.young_weight -= w;
        }
        if self.young_weight > self.limit {
            self.old = std::mem::take(&mut self.young);
            self.old_weight = std::mem::take(&mut self.young_weight);
        }
    }

    fn weight(&self) -> usize {
        self.young_weight + self.old_weight
    }
}

impl Default for GzipCache {
    fn default() -> Self {
        GzipCache::new(super::GZIP_CACHE_BYTES)
    }
}

impl GzipCache {
    /// A cache holding at most about `budget` bytes.
    pub fn new(budget: usize) -> GzipCache {
        // Each map's two generations: a quarter each.
        let limit = budget / 4;
        GzipCache {
            maps: Mutex::new(Maps {
                stretches: Generations::new(limit),
                forms: Generations::new(limit),
            }),
            next_id: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// Stretches sent as compressed for an earlier response, and
    /// compressed anew.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }

    /// Bytes held now (with a small allowance per entry).
    pub fn held(&self) -> usize {
        let m = self.lock();
        m.stretches.weight() + m.forms.weight()
    }

    fn lock(&self) -> MutexGuard<'_, Maps> {
        // A panic elsewhere while holding it leaves whole maps behind.
        self.maps.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The kept stretch with these bytes, kept now if it was not.
    pub(super) fn stretch(&self, key: (u32, u32), bytes: &[u8]) -> Arc<Stretch> {
        let found = self.lock().stretches.get(&key);
        // Compared outside the lock; a CRC-32 is no defence against a page
        // crafted to collide.
        if let Some(s) = found.filter(|s| *s.bytes == *bytes) {
            return s;
        }
        let s = Arc::new(Stretch {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            bytes: bytes.into(),
        });
        let weight = bytes.len() + OVERHEAD;
        self.lock().stretches.keep(key, Arc::clone(&s), weight);
        s
    }

    /// The compressed form asked for, if kept; counted as a hit or a miss.
    pub(super) fn form(&self, form: &Form) -> Option<Arc<[u8]>> {
        let found = self.lock().forms.get(form);
        let counter = if found.is_some() { &self.hits } else { &self.misses };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    pub(super) fn keep_form(&self, form: Form, deflated: &[u8]) {
        let gap = form.after.as_ref().map_or(0, |a| a.gap.len());
        let weight = deflated.len() + gap + OVERHEAD;
        self.lock().forms.keep(form, deflated.into(), weight);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_colliding_key_is_never_taken_for_other_bytes() {
        let cache = GzipCache::default();
        let a = cache.stretch((7, 5), b"hello");
        let b = cache.stretch((7, 5), b"jello");
        assert_ne!(a.id, b.id);
        assert_eq!(&*b.bytes, b"jello");
        assert_eq!(cache.stretch((7, 5), b"jello").id, b.id);
    }

    #[test]
    fn used_entries_stay_and_the_weight_is_bounded() {
        let mut g: Generations<u32, u32> = Generations::new(1000);
        g.keep(0, 0, 100);
        for k in 1..100 {
            g.keep(k, k, 100);
            assert_eq!(g.get(&0), Some(0), "after {k}");
            assert!(g.weight() <= 2000 + 100, "{}", g.weight());
        }
        assert_eq!(g.get(&1), None);
        g.keep(1000, 1, 5000);
        assert_eq!(g.get(&1000), None, "an entry over the limit is not kept");
    }
}
