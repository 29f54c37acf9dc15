//! SQLite state shared by the CLI, the proxy and the resolver: expiry rules
//! now; visit log, arrivals and client blocks as their features land.
//!
//! The file is opened in WAL mode so readers (daemons) never block the
//! writer (the CLI). A rule is committed with `synchronous = FULL` before
//! `addrmunge expire` returns. Daemons keep an in-memory [`RuleSet`] and call
//! [`RuleWatcher::refresh`] often: it costs one `PRAGMA data_version` unless
//! another connection has committed since.
//!
//! The schema is versioned through `PRAGMA user_version`; each entry of
//! [`MIGRATIONS`] moves it one step and runs in its own transaction.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ipnet::IpNet;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use crate::check::Status;
use crate::day::Day;
use crate::rules::{Rule, RuleSet, Scope};
use crate::token::{Kind, Visitor};

pub mod batch;
mod log;
mod pinned;
pub use log::{Block, Harvester, Visit, VisitEvent};
pub use pinned::{FaultLog, Pinned, StoreSource};

/// Schema migrations; `MIGRATIONS[n]` takes `user_version` from `n` to `n + 1`.
pub const MIGRATIONS: &[&str] = &[
    // 1: expiry rules.
    "CREATE TABLE rules (
        id      INTEGER PRIMARY KEY,
        scope   TEXT NOT NULL,
        day     INTEGER,
        net     TEXT,
        address TEXT,
        reason  TEXT NOT NULL DEFAULT '',
        created INTEGER NOT NULL
    );
    CREATE UNIQUE INDEX rules_spec ON rules(scope, ifnull(day, -1), ifnull(net, ''), ifnull(address, ''));",
    // 2: client blocks fed by traps, and mail arrivals for munged addresses.
    "CREATE TABLE blocks (
        ip      TEXT PRIMARY KEY,
        until   INTEGER NOT NULL,
        reason  TEXT NOT NULL DEFAULT '',
        created INTEGER NOT NULL
    );
    CREATE TABLE arrivals (
        id        INTEGER PRIMARY KEY,
        time      INTEGER NOT NULL,
        client_ip TEXT,
        helo      TEXT,
        sender    TEXT,
        recipient TEXT NOT NULL,
        base      TEXT,
        kind      TEXT,
        visitor   TEXT,
        day       INTEGER,
        status    TEXT NOT NULL
    );
    CREATE INDEX arrivals_recipient ON arrivals(recipient);
    CREATE INDEX arrivals_base ON arrivals(base);",
    // 3: the proxy's visit log, one row per visitor and day.
    "CREATE TABLE visits (
        day          INTEGER NOT NULL,
        visitor      TEXT NOT NULL,
        first_seen   INTEGER NOT NULL,
        last_seen    INTEGER NOT NULL,
        user_agent   TEXT NOT NULL DEFAULT '',
        first_page   TEXT,
        first_munged INTEGER,
        requests     INTEGER NOT NULL DEFAULT 0,
        munged       INTEGER NOT NULL DEFAULT 0,
        harvester    TEXT,
        harvester_at INTEGER,
        PRIMARY KEY (day, visitor)
    ) WITHOUT ROWID;
    CREATE INDEX visits_harvester ON visits(day) WHERE harvester IS NOT NULL;
    CREATE INDEX arrivals_time ON arrivals(time);",
];

/// One message's arrival for a munged address, as the policy service saw it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Arrival {
    /// Unix seconds.
    pub time: i64,
    /// The sending client's IP.
    pub client_ip: String,
    /// Its HELO name.
    pub helo: String,
    /// The envelope sender.
    pub sender: String,
    /// The recipient, lowercase.
    pub recipient: String,
    /// The base address, if the ID authenticated.
    pub base: Option<String>,
    /// The ID's kind.
    pub kind: Option<Kind>,
    /// The ID's visitor.
    pub visitor: Option<String>,
    /// The ID's day.
    pub day: Option<Day>,
    /// Valid, expired or invalid.
    pub status: Status,
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
        "state store {path} has schema version {found}, newer than this addrmunge knows ({known}); upgrade addrmunge"
    )]
    TooNew {
        /// The store file.
        path: PathBuf,
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
    Replaced(PathBuf),
    /// The store file is gone but its write-ahead log is not.
    #[error(
        "state store {0} is missing but its -wal/-shm files are still there (deleted while a daemon used it?); put it back, or stop the daemons and remove {0}-wal and {0}-shm to start a new, empty store"
    )]
    Orphaned(PathBuf),
    /// There is no store where one must be.
    #[error(
        "state store {0} does not exist (deleted or moved?); put it back, or reload (SIGHUP) or restart to start a new one"
    )]
    Missing(PathBuf),
}

/// How a scope is stored: its name and its three columns.
impl Scope {
    fn name(&self) -> &'static str {
        match self {
            Scope::Day(_) => "day",
            Scope::Ip(_) => "ip",
            Scope::IpDay(..) => "ip-day",
            Scope::Cidr(_) => "cidr",
            Scope::CidrDay(..) => "cidr-day",
            Scope::Address(_) => "address",
            Scope::Base(_) => "base",
            Scope::Before(_) => "before",
        }
    }

    fn columns(&self) -> (Option<i64>, Option<String>, Option<String>) {
        match self {
            Scope::Day(d) | Scope::Before(d) => (Some(d.number().into()), None, None),
            Scope::Ip(v) => (None, Some(v.to_string()), None),
            Scope::IpDay(v, d) => (Some(d.number().into()), Some(v.to_string()), None),
            Scope::Cidr(n) => (None, Some(n.to_string()), None),
            Scope::CidrDay(n, d) => (Some(d.number().into()), Some(n.to_string()), None),
            Scope::Address(a) | Scope::Base(a) => (None, None, Some(a.clone())),
        }
    }

    fn from_columns(
        scope: &str,
        day: Option<i64>,
        net: Option<String>,
        address: Option<String>,
    ) -> Option<Scope> {
        let day = || day.and_then(|d| u16::try_from(d).ok()).map(Day::from_number);
        let visitor = || net.as_deref().and_then(parse_visitor);
        let cidr = || net.as_deref().and_then(|n| n.parse::<IpNet>().ok());
        Some(match scope {
            "day" => Scope::Day(day()?),
            "before" => Scope::Before(day()?),
            "ip" => Scope::Ip(visitor()?),
            "ip-day" => Scope::IpDay(visitor()?, day()?),
            "cidr" => Scope::Cidr(cidr()?),
            "cidr-day" => Scope::CidrDay(cidr()?, day()?),
            "address" => Scope::Address(address?),
            "base" => Scope::Base(address?),
            _ => return None,
        })
    }
}

fn parse_visitor(s: &str) -> Option<Visitor> {
    let ip = s.strip_suffix("/64").unwrap_or(s).parse::<IpAddr>().ok()?;
    Some(Visitor::from_ip(ip))
}

/// An open state store.
pub struct Store {
    conn: Connection,
    path: PathBuf,
    /// The file's inode when opened, to notice it being replaced.
    ino: Option<u64>,
}

fn inode(path: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path)
        .ok()
        .filter(|m| m.is_file())
        .map(|m| m.ino())
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

/// How long a connection waits for another's lock before giving up.
const BUSY: Duration = Duration::from_secs(5);

/// Seconds since the Unix epoch, from the system clock.
pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Store {
    /// Opens and migrates the store, creating it (mode 0660) when there is
    /// none: for the commands an owner runs and for a daemon's first start.
    /// A running daemon reopens with [`Store::open_existing`] only, so a
    /// store deleted under it is never silently recreated empty.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Store::open_with(path, true)
    }

    /// Opens and migrates a store that must exist already.
    pub fn open_existing(path: &Path) -> Result<Store, StoreError> {
        Store::open_with(path, false)
    }

    fn open_with(path: &Path, create: bool) -> Result<Store, StoreError> {
        let existed = path.exists();
        if !existed && !create {
            return Err(StoreError::Missing(path.to_owned()));
        }
        if !existed {
            // The main file went, its journal stayed: deleted under a daemon
            // (which may still be using it). A new store would be mixed with
            // the old journal; say what happened instead.
            let orphans: Vec<PathBuf> = ["-wal", "-shm"]
                .iter()
                .map(|s| PathBuf::from(format!("{}{s}", path.display())))
                .filter(|p| p.exists())
                .collect();
            if !orphans.is_empty() {
                return Err(StoreError::Orphaned(path.to_owned()));
            }
        }
        let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        if create {
            flags |= OpenFlags::SQLITE_OPEN_CREATE;
        }
        let conn = Connection::open_with_flags(path, flags).map_err(|e| match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::CannotOpen) if !path.exists() => StoreError::Missing(path.to_owned()),
            _ => sqlite(path, e),
        })?;
        if !existed {
            use std::os::unix::fs::PermissionsExt;
            // Proxy and resolver may run as different users sharing a group.
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660));
        }
        let mut store = Store {
            conn,
            path: path.to_owned(),
            ino: inode(path),
        };
        store.setup()?;
        Ok(store)
    }

    /// Opens an existing store read-only (for daemons that only read rules).
    pub fn open_read_only(path: &Path) -> Result<Store, StoreError> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| sqlite(path, e))?;
        conn.busy_timeout(BUSY).map_err(|e| sqlite(path, e))?;
        Ok(Store {
            conn,
            path: path.to_owned(),
            ino: inode(path),
        })
    }

    /// Settings, then the migrations. Safe when several processes open a
    /// new store at once (proxy and resolver started together): the
    /// migrations run in one `BEGIN IMMEDIATE` transaction that re-reads
    /// the version it holds the write lock for, so one process migrates and
    /// the others wait for it, then find nothing left to do.
    fn setup(&mut self) -> Result<(), StoreError> {
        let path = self.path.clone();
        let e = |e| sqlite(&path, e);
        self.conn.busy_timeout(BUSY).map_err(e)?;
        self.set_wal()?;
        self.conn.pragma_update(None, "synchronous", "FULL").map_err(e)?;
        if self.version()? == MIGRATIONS.len() as i64 {
            return Ok(()); // the usual case, and no write lock for it
        }
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(e)?;
        let version: i64 = tx
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(e)?;
        if version >= MIGRATIONS.len() as i64 {
            drop(tx);
            // Another process migrated it meanwhile (or a newer build did).
            return self.version().map(|_| ());
        }
        for sql in MIGRATIONS.iter().skip(version.max(0) as usize) {
            tx.execute_batch(sql).map_err(e)?;
        }
        tx.pragma_update(None, "user_version", MIGRATIONS.len() as i64)
            .map_err(e)?;
        tx.commit().map_err(e)
    }

    /// The schema version, refused when newer than this build knows.
    fn version(&self) -> Result<i64, StoreError> {
        let version: i64 = self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|e| sqlite(&self.path, e))?;
        if version > MIGRATIONS.len() as i64 {
            return Err(StoreError::TooNew {
                path: self.path.clone(),
                found: version,
                known: MIGRATIONS.len(),
            });
        }
        Ok(version)
    }

    /// Switches a new store to WAL. Another process doing the same at the
    /// same moment can make SQLite answer "busy" without waiting (the switch
    /// takes an exclusive lock), so it is retried for as long as a busy lock
    /// is waited for.
    fn set_wal(&mut self) -> Result<(), StoreError> {
        let start = std::time::Instant::now();
        loop {
            match self.conn.pragma_update(None, "journal_mode", "WAL") {
                Ok(()) => return Ok(()),
                Err(err)
                    if err.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
                        && start.elapsed() < BUSY =>
                {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(err) => return Err(sqlite(&self.path, err)),
            }
        }
    }

    /// True when the file at the store's path is no longer the one opened.
    pub fn is_replaced(&self) -> bool {
        inode(&self.path) != self.ino
    }

    /// The store's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Adds a rule and returns it, durable on disk. Adding a rule that
    /// exists returns the existing one and `false`.
    pub fn expire(&mut self, scope: &Scope, reason: &str) -> Result<(Rule, bool), StoreError> {
        let (day, net, address) = scope.columns();
        let path = self.path.clone();
        let e = |e| sqlite(&path, e);
        let inserted = self
            .conn
            .execute(
                "INSERT OR IGNORE INTO rules(scope, day, net, address, reason, created) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![scope.name(), day, net, address, reason, now_unix()],
            )
            .map_err(e)?
            > 0;
        let rule = self.find(scope)?.ok_or_else(|| {
            StoreError::BadRule(format!("rule '{scope}' vanished right after it was written"))
        })?;
        Ok((rule, inserted))
    }

    fn find(&self, scope: &Scope) -> Result<Option<Rule>, StoreError> {
        let (day, net, address) = scope.columns();
        self.conn
            .query_row(
                "SELECT id, reason, created FROM rules WHERE scope = ?1 AND ifnull(day, -1) = ifnull(?2, -1)
                 AND ifnull(net, '') = ifnull(?3, '') AND ifnull(address, '') = ifnull(?4, '')",
                params![scope.name(), day, net, address],
                |r| {
                    Ok(Rule {
                        id: r.get(0)?,
                        scope: scope.clone(),
                        reason: r.get(1)?,
                        created: r.get(2)?,
                    })
                },
            )
            .optional()
            .map_err(|e| sqlite(&self.path, e))
    }

    /// Removes the rule with exactly this scope; returns it, or `None`.
    pub fn unexpire(&mut self, scope: &Scope) -> Result<Option<Rule>, StoreError> {
        let Some(rule) = self.find(scope)? else {
            return Ok(None);
        };
        self.remove_rule(rule.id)
    }

    /// Removes a rule by number; returns it, or `None`.
    pub fn remove_rule(&mut self, id: i64) -> Result<Option<Rule>, StoreError> {
        let rule = self.rules()?.into_iter().find(|r| r.id == id);
        if rule.is_some() {
            self.conn
                .execute("DELETE FROM rules WHERE id = ?1", [id])
                .map_err(|e| sqlite(&self.path, e))?;
        }
        Ok(rule)
    }

    /// All rules, oldest first.
    pub fn rules(&self) -> Result<Vec<Rule>, StoreError> {
        let e = |e| sqlite(&self.path, e);
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, scope, day, net, address, reason, created FROM rules ORDER BY id")
            .map_err(e)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<i64>>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    r.get::<_, Option<String>>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, i64>(6)?,
                ))
            })
            .map_err(e)?;
        let mut out = Vec::new();
        for row in rows {
            let (id, scope, day, net, address, reason, created) = row.map_err(e)?;
            // A row this build cannot read (written by a newer one) is
            // skipped rather than failing every lookup.
            if let Some(scope) = Scope::from_columns(&scope, day, net, address) {
                out.push(Rule {
                    id,
                    scope,
                    reason,
                    created,
                });
            }
        }
        Ok(out)
    }

    /// Blocks a client until `until` (Unix seconds); a longer block wins.
    pub fn block(&mut self, ip: IpAddr, until: i64, reason: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO blocks(ip, until, reason, created) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(ip) DO UPDATE SET until = max(until, excluded.until), reason = excluded.reason",
                params![ip.to_string(), until, reason, now_unix()],
            )
            .map_err(|e| sqlite(&self.path, e))?;
        Ok(())
    }

    /// Clients blocked at `now` (Unix seconds), with the end of their block.
    pub fn blocks(&self, now: i64) -> Result<HashMap<IpAddr, i64>, StoreError> {
        let e = |e| sqlite(&self.path, e);
        let mut stmt = self
            .conn
            .prepare_cached("SELECT ip, until FROM blocks WHERE until > ?1")
            .map_err(e)?;
        let rows = stmt
            .query_map([now], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .map_err(e)?;
        let mut out = HashMap::new();
        for row in rows {
            let (ip, until) = row.map_err(e)?;
            if let Ok(ip) = ip.parse() {
                out.insert(ip, until);
            }
        }
        Ok(out)
    }

    /// Records arrivals and blocks in one transaction.
    pub fn write_batch(
        &mut self,
        arrivals: &[Arrival],
        blocks: &[(IpAddr, i64, String)],
    ) -> Result<(), StoreError> {
        let path = self.path.clone();
        let e = |e| sqlite(&path, e);
        let tx = self.conn.transaction().map_err(e)?;
        {
            let mut ins = tx
                .prepare_cached(
                    "INSERT INTO arrivals(time, client_ip, helo, sender, recipient, base, kind, visitor, day, status)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                )
                .map_err(e)?;
            for a in arrivals {
                ins.execute(params![
                    a.time,
                    a.client_ip,
                    a.helo,
                    a.sender,
                    a.recipient,
                    a.base,
                    a.kind.map(Kind::as_str),
                    a.visitor,
                    a.day.map(|d| i64::from(d.number())),
                    a.status.as_str()
                ])
                .map_err(e)?;
            }
            let mut blk = tx
                .prepare_cached(
                    "INSERT INTO blocks(ip, until, reason, created) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT(ip) DO UPDATE SET until = max(until, excluded.until), reason = excluded.reason",
                )
                .map_err(e)?;
            for (ip, until, reason) in blocks {
                blk.execute(params![ip.to_string(), until, reason, now_unix()])
                    .map_err(e)?;
            }
        }
        tx.commit().map_err(e)
    }

    /// A counter that changes whenever another connection commits.
    pub fn data_version(&self) -> Result<i64, StoreError> {
        self.conn
            .pragma_query_value(None, "data_version", |r| r.get(0))
            .map_err(|e| sqlite(&self.path, e))
    }
}

fn sqlite(path: &Path, source: rusqlite::Error) -> StoreError {
    StoreError::Sqlite {
        path: path.to_owned(),
        source,
    }
}

/// Keeps a daemon's rule snapshot fresh at the cost of one pragma per call.
#[derive(Debug)]
pub struct RuleWatcher {
    store: Pinned,
    /// The connection (by [`Pinned::opened`]) and its `data_version` the
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
        let dv = self.store.store()?.data_version()?;
        let v = (self.store.opened(), dv);
        if self.version == Some(v) {
            return Ok(false);
        }
        let store = self.store.store()?;
        self.rules = Arc::new(RuleSet::new(store.rules()?));
        self.version = Some(v);
        Ok(true)
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
    use crate::rules::Subject;
    use crate::token::{Claims, Kind};

    fn d(s: &str) -> Day {
        s.parse().unwrap()
    }

    #[test]
    fn rules_match_what_they_say() {
        let dir = tempfile::tempdir().unwrap();
        let mut st = Store::open(&dir.path().join("s.sqlite")).unwrap();
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let v6: IpAddr = "2001:db8:0:1::5".parse().unwrap();
        let day = d("2026-11-20");
        let visit = Claims::visit(Kind::Visitor, day, ip);
        let visit6 = Claims::visit(Kind::Visitor, day, v6);
        let subj = |c| Subject {
            claims: c,
            base: "a@b.test",
            munged: "a-id-x@b.test",
        };
        let scopes = [
            Scope::Day(day),
            Scope::Ip(Visitor::from_ip(ip)),
            Scope::IpDay(Visitor::from_ip(ip), day),
            Scope::cidr("192.0.2.0/24".parse().unwrap(), None).unwrap(),
            Scope::cidr("192.0.2.0/24".parse().unwrap(), Some(day)).unwrap(),
            Scope::Address("a-id-x@b.test".into()),
            Scope::Base("a@b.test".into()),
            Scope::Before(d("2026-11-21")),
        ];
        for scope in &scopes {
            // The single-rule check agrees with the indexed lookup.
            assert!(scope.covers(&subj(&visit)), "{scope}");
            let (rule, new) = st.expire(scope, "test").unwrap();
            assert!(new);
            let set = RuleSet::new(st.rules().unwrap());
            assert_eq!(
                set.matching(&subj(&visit)).map(|r| r.id),
                Some(rule.id),
                "{scope}"
            );
            assert!(
                !st.expire(scope, "again").unwrap().1,
                "duplicate rule for {scope}"
            );
            assert_eq!(st.unexpire(scope).unwrap().map(|r| r.id), Some(rule.id));
            assert!(
                RuleSet::new(st.rules().unwrap())
                    .matching(&subj(&visit))
                    .is_none()
            );
        }
        // Near misses.
        let misses = [
            Scope::Day(d("2026-11-21")),
            Scope::Ip(Visitor::from_ip("192.0.2.8".parse().unwrap())),
            Scope::IpDay(Visitor::from_ip(ip), d("2026-11-21")),
            Scope::cidr("192.0.3.0/24".parse().unwrap(), None).unwrap(),
            Scope::cidr("192.0.2.0/24".parse().unwrap(), Some(d("2026-11-19"))).unwrap(),
            Scope::Address("a-id-y@b.test".into()),
            Scope::Base("c@b.test".into()),
            Scope::Before(day),
        ];
        for scope in &misses {
            assert!(!scope.covers(&subj(&visit)), "{scope}");
            st.expire(scope, "").unwrap();
        }
        let set = RuleSet::new(st.rules().unwrap());
        assert!(set.matching(&subj(&visit)).is_none());
        // IPv6: the /64 and CIDRs up to /64.
        st.expire(&Scope::cidr("2001:db8::/48".parse().unwrap(), None).unwrap(), "")
            .unwrap();
        let set = RuleSet::new(st.rules().unwrap());
        assert!(set.matching(&subj(&visit6)).is_some());
        assert!(set.rules().iter().any(|r| r.scope.covers(&subj(&visit6))));
        assert!(Scope::cidr("2001:db8::/96".parse().unwrap(), None).is_err());
    }

    #[test]
    fn watcher_sees_other_connections_commits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sqlite");
        let mut writer = Store::open(&path).unwrap();
        let source = StoreSource::new(&path);
        let mut w = RuleWatcher::new(Pinned::new(Store::open(&path).unwrap(), source));
        assert!(w.refresh().unwrap());
        assert!(!w.refresh().unwrap());
        writer.expire(&Scope::Day(d("2026-01-01")), "x").unwrap();
        assert!(w.refresh().unwrap());
        assert_eq!(w.rules().rules().len(), 1);
        assert!(!w.refresh().unwrap());
    }

    /// Proxy and resolver started together (systemd's usual way) both
    /// open a store that does not exist yet: one migrates, the others
    /// wait for it, nobody fails.
    #[test]
    fn first_boot_opens_at_once_all_succeed() {
        for round in 0..30 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("s.sqlite");
            let go = Arc::new(std::sync::Barrier::new(4));
            let openers: Vec<_> = (0..4)
                .map(|_| {
                    let (path, go) = (path.clone(), Arc::clone(&go));
                    std::thread::spawn(move || {
                        go.wait();
                        Store::open(&path).map(|_| ())
                    })
                })
                .collect();
            for o in openers {
                o.join().unwrap().unwrap_or_else(|e| panic!("round {round}: {e}"));
            }
            let s = Store::open_existing(&path).unwrap();
            assert_eq!(s.version().unwrap(), MIGRATIONS.len() as i64);
        }
    }

    #[test]
    fn only_an_explicit_open_creates_a_store() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sqlite");
        let e = Store::open_existing(&path).unwrap_err();
        assert!(matches!(e, StoreError::Missing(_)), "{e}");
        assert!(!path.exists());
        drop(Store::open(&path).unwrap());
        Store::open_existing(&path).unwrap();
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

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sqlite");
        drop(Store::open(&path).unwrap());
        let c = Connection::open(&path).unwrap();
        c.pragma_update(None, "user_version", 99).unwrap();
        drop(c);
        let e = Store::open(&path).unwrap_err().to_string();
        assert!(e.contains("newer") && e.contains("99"), "{e}");
    }
}
