//! The embedded backend: one SQLite file, shared by the CLI and the
//! daemons of one host.
//!
//! The file is opened in WAL mode so readers (daemons) never block the
//! writer (the CLI). A rule is committed with `synchronous = FULL` before
//! `addrmunge expire` returns. The change mark is `PRAGMA data_version`,
//! which moves only when another connection has committed, so a daemon's
//! refresh costs one pragma when nothing changed.
//!
//! The schema is versioned through `PRAGMA user_version`; each entry of
//! [`MIGRATIONS`] moves it one step.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use super::{Arrival, Backend, StoreError, now_unix};
use crate::rules::{Rule, Scope};
use crate::token::Kind;

mod import;
mod log;

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
    // 4: the base addresses the proxies munged, which mangled copies are
    // decoded against.
    "CREATE TABLE served (
        base      TEXT PRIMARY KEY,
        first_day INTEGER NOT NULL,
        last_day  INTEGER NOT NULL
    ) WITHOUT ROWID;",
];

/// A store in one SQLite file.
pub struct Sqlite {
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

impl fmt::Debug for Sqlite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sqlite").field("path", &self.path).finish()
    }
}

/// How long a connection waits for another's lock before giving up.
const BUSY: Duration = Duration::from_secs(5);

impl Sqlite {
    /// Opens and migrates the store, creating it (mode 0660) when there is
    /// none: for the commands an owner runs and for a daemon's first start.
    /// A running daemon reopens with [`Sqlite::open_existing`] only, so a
    /// store deleted under it is never silently recreated empty.
    pub fn open(path: &Path) -> Result<Sqlite, StoreError> {
        Sqlite::open_with(path, true)
    }

    /// Opens and migrates a store that must exist already.
    pub fn open_existing(path: &Path) -> Result<Sqlite, StoreError> {
        Sqlite::open_with(path, false)
    }

    fn open_with(path: &Path, create: bool) -> Result<Sqlite, StoreError> {
        let existed = path.exists();
        if !existed && !create {
            return Err(StoreError::Missing(path.into()));
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
            Some(rusqlite::ErrorCode::CannotOpen) if !path.exists() => StoreError::Missing(path.into()),
            _ => sqlite(path, e),
        })?;
        if !existed {
            use std::os::unix::fs::PermissionsExt;
            // Proxy and resolver may run as different users sharing a group.
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660));
        }
        let mut store = Sqlite {
            conn,
            path: path.to_owned(),
            ino: inode(path),
        };
        store.setup()?;
        Ok(store)
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
                at: (&self.path).into(),
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
}

impl Backend for Sqlite {
    fn identity(&self) -> Option<u64> {
        self.ino
    }

    fn verify(&self) -> Result<(), StoreError> {
        if inode(&self.path) == self.ino {
            Ok(())
        } else if self.path.exists() {
            Err(StoreError::Replaced((&self.path).into()))
        } else {
            Err(StoreError::Missing((&self.path).into()))
        }
    }

    fn expire(&mut self, scope: &Scope, reason: &str) -> Result<(Rule, bool), StoreError> {
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

    fn find(&mut self, scope: &Scope) -> Result<Option<Rule>, StoreError> {
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

    fn delete_rule(&mut self, id: i64) -> Result<(), StoreError> {
        self.conn
            .execute("DELETE FROM rules WHERE id = ?1", [id])
            .map_err(|e| sqlite(&self.path, e))?;
        Ok(())
    }

    fn rules(&mut self) -> Result<Vec<Rule>, StoreError> {
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

    fn block(&mut self, ip: IpAddr, until: i64, reason: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO blocks(ip, until, reason, created) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(ip) DO UPDATE SET until = max(until, excluded.until), reason = excluded.reason",
                params![ip.to_string(), until, reason, now_unix()],
            )
            .map_err(|e| sqlite(&self.path, e))?;
        Ok(())
    }

    fn blocks(&mut self, now: i64) -> Result<HashMap<IpAddr, i64>, StoreError> {
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

    fn write_batch(
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

    fn change_mark(&mut self) -> Result<i64, StoreError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

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
