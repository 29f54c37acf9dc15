//! A daemon's hold on the store file it started with.
//!
//! A running proxy or resolver must never take an empty truth for the real
//! one: if the state file is deleted, moved or replaced while it runs, that
//! is a fault (logged, counted, answered with TEMP where a decision needs
//! the store), not a reason to create a new, empty store or to switch to
//! whatever file now has the name. The connection is reopened after errors,
//! but only onto the same file; a reload (SIGHUP) is the explicit command
//! that adopts the file found at the path then.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{Location, Store, StoreError};

/// Where the store is, shared by a daemon's connections; a reload bumps it.
#[derive(Debug)]
pub struct StoreSource {
    reloads: AtomicU64,
    at: Mutex<Location>,
}

impl StoreSource {
    /// The store at `at`.
    pub fn new(at: impl Into<Location>) -> Arc<StoreSource> {
        Arc::new(StoreSource {
            reloads: AtomicU64::new(0),
            at: Mutex::new(at.into()),
        })
    }

    /// After a reload: every connection adopts the file at `path` (the
    /// config's, which may have changed) at its next use.
    pub fn reload(&self, at: impl Into<Location>) {
        *self.at.lock().unwrap_or_else(|e| e.into_inner()) = at.into();
        self.reloads.fetch_add(1, Ordering::Relaxed);
    }

    fn at(&self) -> Location {
        self.at.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// One connection to the store a daemon started with.
#[derive(Debug)]
pub struct Pinned {
    source: Arc<StoreSource>,
    at: Location,
    /// The store this daemon works with (a file's inode, a database's
    /// identity).
    identity: Option<u64>,
    store: Option<Store>,
    seen_reloads: u64,
    /// Bumped whenever the connection is (re)opened.
    opened: u64,
    /// False until the first open of a daemon that started without its
    /// store: that open may make the schema, and pins what it finds.
    pinned: bool,
}

impl Pinned {
    /// A daemon's first hold: the store at the source's location, created
    /// and migrated if need be. A shared database that cannot be reached
    /// yet does not stop the daemon: the hold starts empty, and the first
    /// use that reaches the database opens (and migrates) it and pins it.
    /// Anything else (a SQLite path that cannot be opened, bad grants...)
    /// fails the start, so a mistake is seen at once.
    pub fn start(source: Arc<StoreSource>) -> Result<Pinned, StoreError> {
        let at = source.at();
        match Store::open(&at) {
            Ok(store) => Ok(Pinned::new(store, source)),
            Err(e) if e.is_unreachable() => {
                tracing::warn!(error = %e, "starting without the state store; it is opened when it can be reached");
                Ok(Pinned {
                    seen_reloads: source.reloads.load(Ordering::Relaxed),
                    at,
                    identity: None,
                    store: None,
                    source,
                    opened: 0,
                    pinned: false,
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Pins the file `store` was opened on.
    pub fn new(store: Store, source: Arc<StoreSource>) -> Pinned {
        Pinned {
            seen_reloads: source.reloads.load(Ordering::Relaxed),
            at: source.at(),
            identity: store.identity(),
            store: Some(store),
            source,
            opened: 1,
            pinned: true,
        }
    }

    /// The connection, if the file at the path is still the pinned one;
    /// reopened (never created) after [`reset`](Self::reset). After a
    /// reload, the file at the configured path is adopted if there is one.
    pub fn store(&mut self) -> Result<&mut Store, StoreError> {
        let reloads = self.source.reloads.load(Ordering::Relaxed);
        if reloads != self.seen_reloads {
            self.seen_reloads = reloads;
            let at = self.source.at();
            // Nothing there: keep the old pin, and say why below.
            if let Ok(s) = Store::open_existing(&at) {
                if s.identity() != self.identity || at != self.at {
                    tracing::info!(state = %at, "reload: using the state store now at this path");
                }
                self.at = at;
                self.identity = s.identity();
                self.pinned = true;
                self.store = Some(s);
                self.opened += 1;
            }
        }
        if !self.pinned {
            let s = Store::open(&self.at)?;
            tracing::info!(state = %self.at, "the state store can be reached now");
            self.identity = s.identity();
            self.pinned = true;
            self.store = Some(s);
            self.opened += 1;
        }
        if self.store.is_none() {
            let s = Store::open_existing(&self.at)?;
            if s.identity() != self.identity {
                return Err(StoreError::Replaced(self.at.clone()));
            }
            self.store = Some(s);
            self.opened += 1;
        }
        let store = self.store.as_mut().expect("opened above");
        store.verify()?;
        Ok(store)
    }

    /// Runs `f` on the connection. After a failure other than the file
    /// being replaced or missing, the connection is dropped and reopened
    /// (onto the same file only) at the next use.
    pub fn with<T>(&mut self, f: impl FnOnce(&mut Store) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let result = self.store().and_then(f);
        if let Err(e) = &result
            && !matches!(e, StoreError::Replaced(_) | StoreError::Missing(_))
        {
            self.reset();
        }
        result
    }

    /// Drops the connection after an error; the next use reopens it.
    pub fn reset(&mut self) {
        self.store = None;
    }

    /// How many times the connection was opened: a reading of
    /// `data_version` is only comparable with one of the same connection.
    pub fn opened(&self) -> u64 {
        self.opened
    }
}

/// How often a lasting fault is logged again.
const FAULT_EVERY: Duration = Duration::from_secs(60);

/// Logs store faults without flooding the log: the first at once, then at
/// most one line a minute saying how many happened meanwhile, and one line
/// when the store works again. Every fault is counted for the metrics.
#[derive(Debug)]
pub struct FaultLog {
    what: &'static str,
    last: Option<Instant>,
    unlogged: u64,
    failing: bool,
    /// Faults so far (a metric).
    pub count: Arc<AtomicU64>,
}

impl FaultLog {
    /// A log for faults of `what` (e.g. "reading rules").
    pub fn new(what: &'static str, count: Arc<AtomicU64>) -> FaultLog {
        FaultLog {
            what,
            last: None,
            unlogged: 0,
            failing: false,
            count,
        }
    }

    /// True while the last attempt failed.
    pub fn failing(&self) -> bool {
        self.failing
    }

    /// An attempt failed.
    pub fn fault(&mut self, error: &StoreError, consequence: &str) {
        self.count.fetch_add(1, Ordering::Relaxed);
        self.failing = true;
        if self.last.is_some_and(|t| t.elapsed() < FAULT_EVERY) {
            self.unlogged += 1;
            return;
        }
        if error.is_denied() {
            // Not an outage: it will not pass by itself.
            tracing::error!(error = %error, also = self.unlogged,
                "state store refused {} for want of a grant; `addrmunge store grants` prints this role's part; {consequence}", self.what);
        } else {
            tracing::error!(error = %error, also = self.unlogged, "state store fault {}; {consequence}", self.what);
        }
        self.last = Some(Instant::now());
        self.unlogged = 0;
    }

    /// An attempt worked.
    pub fn ok(&mut self) {
        if self.failing {
            tracing::info!("state store works again ({})", self.what);
            self.failing = false;
            self.last = None;
            self.unlogged = 0;
        }
    }
}
