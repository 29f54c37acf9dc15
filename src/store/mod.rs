//! The state shared by the CLI, the proxy and the resolver: expiry rules,
//! client blocks, the visit log and mail arrivals.
//!
//! Everything outside this module talks to a [`Store`], which is one open
//! connection to a backend behind the [`Backend`] and [`Log`] traits. A
//! backend is a file of its own here ([`sqlite`] is the embedded one);
//! what is stored is in `records`, shared by every backend. Daemons keep
//! an in-memory [`RuleSet`] and call
//! [`RuleWatcher::refresh`] often: it rereads the rules only when the
//! backend's change mark moved.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::day::Day;
use crate::rules::{Rule, RuleSet, Scope};

pub mod batch;
mod location;
mod pinned;
pub mod postgres;
mod records;
pub mod sqlite;
pub use location::{BadUrl, Location, PgUrl, Tls};
pub use pinned::{FaultLog, Pinned, StoreSource};
pub use records::{
    Arrival, Block, Counts, Dump, Harvester, SERVED_MAX, ServedBase, Visit, VisitEvent, retention_cutoff,
};

/// Rules, blocks and arrivals: what the daemons and `expire` need.
pub trait Backend: Log + Send + fmt::Debug {
    /// What identifies the storage opened (a file's inode), to tell a
    /// reopened connection from one onto a replacement; `None` where
    /// nothing can replace it.
    fn identity(&self) -> Option<u64>;

    /// Fails with [`StoreError::Replaced`] or [`StoreError::Missing`] when
    /// the storage opened is no longer where it was.
    fn verify(&self) -> Result<(), StoreError>;

    /// Adds a rule and returns it, durable before this returns. Adding a
    /// rule that exists returns the existing one and `false`.
    fn expire(&mut self, scope: &Scope, reason: &str) -> Result<(Rule, bool), StoreError>;

    /// The rule with exactly this scope, if there is one.
    fn find(&mut self, scope: &Scope) -> Result<Option<Rule>, StoreError>;

    /// Deletes a rule by number (nothing when there is none).
    fn delete_rule(&mut self, id: i64) -> Result<(), StoreError>;

    /// All rules, oldest first. A row this build cannot read (written by a
    /// newer one) is skipped rather than failing every lookup.
    fn rules(&mut self) -> Result<Vec<Rule>, StoreError>;

    /// Blocks a client until `until` (Unix seconds); a longer block wins.
    fn block(&mut self, ip: IpAddr, until: i64, reason: &str) -> Result<(), StoreError>;

    /// Clients blocked at `now` (Unix seconds), with the end of their block.
    fn blocks(&mut self, now: i64) -> Result<HashMap<IpAddr, i64>, StoreError>;

    /// Records arrivals and blocks `(ip, until, reason)` in one transaction.
    fn write_batch(
        &mut self,
        arrivals: &[Arrival],
        blocks: &[(IpAddr, i64, String)],
    ) -> Result<(), StoreError>;

    /// A value that changes whenever another connection has committed.
    fn change_mark(&mut self) -> Result<i64, StoreError>;

    /// Removes the rule with exactly this scope; returns it, or `None`.
    fn unexpire(&mut self, scope: &Scope) -> Result<Option<Rule>, StoreError> {
        let Some(rule) = self.find(scope)? else {
            return Ok(None);
        };
        self.remove_rule(rule.id)
    }

    /// Removes a rule by number; returns it, or `None`.
    fn remove_rule(&mut self, id: i64) -> Result<Option<Rule>, StoreError> {
        let rule = self.rules()?.into_iter().find(|r| r.id == id);
        if rule.is_some() {
            self.delete_rule(id)?;
        }
        Ok(rule)
    }
}

/// The visit log and the forensic queries of `trace`, `report` and `blocks`.
pub trait Log {
    /// Folds a batch of requests into the visit log (one row per visitor
    /// and day) in one transaction.
    fn record_visits(&mut self, events: &[VisitEvent]) -> Result<(), StoreError>;

    /// Lets this connection's commits be lost in a power cut (never torn):
    /// for the visit log's writer only, which need not pay an fsync per
    /// batch for the rules' durability.
    fn relax_durability(&mut self) -> Result<(), StoreError> {
        Ok(())
    }

    /// One visitor's day, if it was seen.
    fn visit(&mut self, day: Day, visitor: &str) -> Result<Option<Visit>, StoreError>;

    /// Visitors marked as harvesters on days `from..=to`, oldest first.
    fn harvesters(&mut self, from: Day, to: Day) -> Result<Vec<Visit>, StoreError>;

    /// Visits on days `from..=to` that were served addresses, per day:
    /// `(day, visitors, addresses munged)`.
    fn visits_by_day(&mut self, from: Day, to: Day) -> Result<Vec<(Day, i64, i64)>, StoreError>;

    /// Arrivals recorded for a recipient (lowercase), oldest first.
    fn arrivals_for(&mut self, recipient: &str) -> Result<Vec<Arrival>, StoreError>;

    /// Arrivals at or after `since` (Unix seconds), oldest first.
    fn arrivals_since(&mut self, since: i64) -> Result<Vec<Arrival>, StoreError>;

    /// Every block, current or past.
    fn all_blocks(&mut self) -> Result<Vec<Block>, StoreError>;

    /// Deletes visits and served bases of days before `day`, and arrivals
    /// and ended blocks from before `time` (Unix seconds); returns the
    /// rows deleted.
    fn prune(&mut self, day: Day, time: i64) -> Result<usize, StoreError>;

    /// Every visitor-day in the visit log.
    fn all_visits(&mut self) -> Result<Vec<Visit>, StoreError>;

    /// Records base addresses the proxy munged and the day it did, in one
    /// transaction: one row per base with its first and last day, at most
    /// [`SERVED_MAX`] rows (a new base past that is not recorded).
    fn record_served(&mut self, served: &[(String, Day)]) -> Result<(), StoreError>;

    /// The base addresses served, most recently served first.
    fn served(&mut self) -> Result<Vec<ServedBase>, StoreError>;

    /// Adds what `dump` holds and this store does not, in one transaction,
    /// keeping every row as it was (times, reasons); returns what was
    /// added. Idempotent: a rule with the same scope, a visitor-day already
    /// logged or an identical arrival is left alone; a block is lengthened
    /// only.
    fn import(&mut self, dump: &Dump) -> Result<Counts, StoreError>;
}

/// One open connection to the state store.
#[derive(Debug)]
pub struct Store(Box<dyn Backend>);

impl Store {
    /// Opens and migrates the store, creating it when there is none: for
    /// the commands an owner runs and for a daemon's first start. A running
    /// daemon reopens with [`Store::open_existing`] only, so a store deleted
    /// under it is never silently recreated empty.
    pub fn open(at: impl Into<Location>) -> Result<Store, StoreError> {
        Ok(match at.into() {
            Location::Sqlite(path) => Store(Box::new(sqlite::Sqlite::open(&path)?)),
            Location::Postgres(url) => Store(Box::new(postgres::Postgres::open(&url)?)),
        })
    }

    /// Opens and migrates a store that must exist already.
    pub fn open_existing(at: impl Into<Location>) -> Result<Store, StoreError> {
        Ok(match at.into() {
            Location::Sqlite(path) => Store(Box::new(sqlite::Sqlite::open_existing(&path)?)),
            Location::Postgres(url) => Store(Box::new(postgres::Postgres::open_existing(&url)?)),
        })
    }
}

impl Store {
    /// Everything this store holds, for [`Log::import`] into another.
    pub fn dump(&mut self) -> Result<Dump, StoreError> {
        Ok(Dump {
            rules: self.rules()?,
            blocks: self.all_blocks()?,
            arrivals: self.arrivals_since(i64::MIN)?,
            visits: self.all_visits()?,
            served: self.served()?,
        })
    }
}

impl std::ops::Deref for Store {
    type Target = dyn Backend;

    fn deref(&self) -> &(dyn Backend + 'static) {
        &*self.0
    }
}

impl std::ops::DerefMut for Store {
    fn deref_mut(&mut self) -> &mut (dyn Backend + 'static) {
        &mut *self.0
    }
}

/// A failure of the state store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// SQLite failed.
    #[error("state store {path}: {source}")]
    Sqlite {
        /// The store file.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// The file was written by a newer addrmunge.
    #[error(
        "state store {at} has schema version {found}, newer than this addrmunge knows ({known}); upgrade addrmunge"
    )]
    TooNew {
        /// The store.
        at: Location,
        /// Its schema version.
        found: i64,
        /// The newest this build knows.
        known: usize,
    },
    /// A rule that cannot be stored as asked.
    #[error("{0}")]
    BadRule(String),
    /// The file was moved, deleted or replaced under an open connection.
    #[error(
        "state store {0} was moved, deleted or replaced; put the original back, or reload (SIGHUP) to use the file there now"
    )]
    Replaced(Location),
    /// The store file is gone but its write-ahead log is not.
    #[error(
        "state store {0} is missing but its -wal/-shm files are still there (deleted while a daemon used it?); put it back, or stop the daemons and remove {0}-wal and {0}-shm to start a new, empty store"
    )]
    Orphaned(PathBuf),
    /// There is no store where one must be (no file; a database without
    /// the schema).
    #[error(
        "state store {0} does not exist (deleted or moved?); put it back, or reload (SIGHUP) or restart to start a new one"
    )]
    Missing(Location),
    /// PostgreSQL failed, or could not be reached.
    #[error("state store {at}: {}", with_causes(source))]
    Postgres {
        /// The database.
        at: Location,
        /// The client's error.
        source: ::postgres::Error,
    },
    /// TLS to the database cannot be set up as the URL asks.
    #[error("state store {at}: TLS: {why}")]
    Tls {
        /// The database.
        at: Location,
        /// What is wrong, and how to fix it.
        why: String,
    },
    /// The connection to the database was lost.
    #[error("state store {0}: the connection was lost; it is reopened at the next use")]
    Closed(Location),
}

/// An error and what caused it, as one line: the client says "error
/// performing TLS handshake" and keeps the why (an unknown issuer...) in
/// its source.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.ends_with(&more) {
            text = format!("{text}: {more}");
        }
        cause = c.source();
    }
    text
}

impl StoreError {
    /// True when a database server could not be reached or the connection
    /// was lost (an outage), rather than reached and refusing.
    pub fn is_unreachable(&self) -> bool {
        match self {
            StoreError::Closed(_) => true,
            StoreError::Postgres { source, .. } => source.as_db_error().is_none(),
            _ => false,
        }
    }

    /// True when the database refused for want of a grant (a daemon's role
    /// may do only its part).
    pub fn is_denied(&self) -> bool {
        matches!(self, StoreError::Postgres { source, .. }
            if source.code() == Some(&::postgres::error::SqlState::INSUFFICIENT_PRIVILEGE))
    }
}

/// Seconds since the Unix epoch, from the system clock.
pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Keeps a daemon's rule snapshot fresh at the cost of one change-mark
/// reading per call.
#[derive(Debug)]
pub struct RuleWatcher {
    store: Pinned,
    /// The connection (by [`Pinned::opened`]) and its change mark the
    /// rules were read at.
    version: Option<(u64, i64)>,
    rules: Arc<RuleSet>,
}

impl RuleWatcher {
    /// Watches the rules of a pinned store (read at the first refresh).
    pub fn new(store: Pinned) -> RuleWatcher {
        RuleWatcher {
            store,
            version: None,
            rules: Arc::new(RuleSet::default()),
        }
    }

    /// Reloads the rules if another connection committed since the last
    /// call; returns whether it did. An error keeps the rules read before.
    pub fn refresh(&mut self) -> Result<bool, StoreError> {
        let mark = self.store.store()?.change_mark()?;
        let v = (self.store.opened(), mark);
        if self.version == Some(v) {
            return Ok(false);
        }
        let store = self.store.store()?;
        self.rules = Arc::new(RuleSet::new(store.rules()?));
        self.version = Some(v);
        Ok(true)
    }

    /// Makes the next [`refresh`](Self::refresh) read the rules whether or
    /// not anything changed.
    pub fn invalidate(&mut self) {
        self.version = None;
    }

    /// The store it watches, if it is still the pinned file.
    pub fn store(&mut self) -> Result<&mut Store, StoreError> {
        self.store.store()
    }

    /// Drops the connection after an error (reopened at the next refresh).
    pub fn reset(&mut self) {
        self.store.reset();
    }

    /// The current snapshot.
    pub fn rules(&self) -> Arc<RuleSet> {
        Arc::clone(&self.rules)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::path::Path;

    fn d(s: &str) -> Day {
        s.parse().unwrap()
    }

    /// Removes a store's -wal and -shm files, as an owner starting anew would.
    pub(crate) fn remove_journal(path: &Path) {
        for suffix in ["-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }

    #[test]
    fn a_pinned_store_is_never_swapped_for_another_file_without_a_reload() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sqlite");
        let source = StoreSource::new(&path);
        // A rule made and checkpointed by another connection (the CLI).
        Store::open(&path)
            .unwrap()
            .expire(&Scope::Day(d("2026-01-01")), "")
            .unwrap();
        let mut pinned = Pinned::new(Store::open(&path).unwrap(), Arc::clone(&source));
        std::fs::rename(&path, dir.path().join("moved")).unwrap();
        assert!(matches!(pinned.store().unwrap_err(), StoreError::Missing(_)));
        pinned.reset();
        assert!(matches!(pinned.store().unwrap_err(), StoreError::Missing(_)));
        assert!(!path.exists(), "never recreated");
        // Not over its journal, which may still be in use...
        assert!(matches!(Store::open(&path).unwrap_err(), StoreError::Orphaned(_)));
        // ...but once that is gone, someone makes a new, empty one: still not ours.
        remove_journal(&path);
        drop(Store::open(&path).unwrap());
        assert!(matches!(pinned.store().unwrap_err(), StoreError::Replaced(_)));
        // The original back: ours again.
        std::fs::remove_file(&path).unwrap();
        std::fs::rename(dir.path().join("moved"), &path).unwrap();
        assert_eq!(pinned.store().unwrap().rules().unwrap().len(), 1);
        // A reload adopts whatever is there then.
        std::fs::rename(&path, dir.path().join("moved")).unwrap();
        remove_journal(&path);
        drop(Store::open(&path).unwrap());
        source.reload(&path);
        assert!(pinned.store().unwrap().rules().unwrap().is_empty());
    }
}
