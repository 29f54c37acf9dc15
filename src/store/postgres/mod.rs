//! The shared backend: one PostgreSQL database for every proxy, resolver
//! and CLI host of a site.
//!
//! The logical schema is SQLite's, table for table and column for column;
//! [`MIGRATIONS`] has as many steps. They are applied under a transaction-
//! scoped advisory lock that re-reads the version it holds the lock for, so
//! hosts starting at once migrate once. Each store also gets a random
//! identity when its schema is made, so a daemon never takes a database
//! recreated empty for the one it started with.
//!
//! The change mark is a count of notifications: triggers on `rules`,
//! `blocks` and `served` send one on channel `addrmunge` for every committed change, and
//! every connection listens; reading the mark only looks at what the
//! server has already sent, so a daemon's refresh costs no query when
//! nothing changed.
//!
//! Calls block (the `postgres` client, tokio-postgres run on a runtime of
//! its own): they are made from the CLI and the daemons' store threads,
//! never from async code. TLS is rustls (`tls`).

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, NoTls};

use super::location::{PgUrl, Tls};
use super::{Arrival, Backend, Location, StoreError, now_unix};
use crate::rules::{Rule, Scope};
use crate::token::Kind;

mod import;
mod log;
mod tls;

/// Schema migrations; `MIGRATIONS[n]` takes the version from `n` to `n + 1`.
pub const MIGRATIONS: &[&str] = &[
    // 1: expiry rules, and the notification every change to them sends.
    "CREATE TABLE rules (
        id      BIGSERIAL PRIMARY KEY,
        scope   TEXT NOT NULL,
        day     INTEGER,
        net     TEXT,
        address TEXT,
        reason  TEXT NOT NULL DEFAULT '',
        created BIGINT NOT NULL
    );
    CREATE UNIQUE INDEX rules_spec ON rules(scope, coalesce(day, -1), coalesce(net, ''), coalesce(address, ''));
    CREATE FUNCTION addrmunge_changed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_notify('addrmunge', TG_TABLE_NAME);
        RETURN NULL;
    END $$;
    CREATE TRIGGER rules_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON rules
        FOR EACH STATEMENT EXECUTE FUNCTION addrmunge_changed();",
    // 2: client blocks fed by traps (notifying too), and mail arrivals.
    "CREATE TABLE blocks (
        ip      TEXT PRIMARY KEY,
        until   BIGINT NOT NULL,
        reason  TEXT NOT NULL DEFAULT '',
        created BIGINT NOT NULL
    );
    CREATE TRIGGER blocks_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON blocks
        FOR EACH STATEMENT EXECUTE FUNCTION addrmunge_changed();
    CREATE TABLE arrivals (
        id        BIGSERIAL PRIMARY KEY,
        time      BIGINT NOT NULL,
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
    // 3: the proxies' visit log, one row per visitor and day.
    "CREATE TABLE visits (
        day          INTEGER NOT NULL,
        visitor      TEXT NOT NULL,
        first_seen   BIGINT NOT NULL,
        last_seen    BIGINT NOT NULL,
        user_agent   TEXT NOT NULL DEFAULT '',
        first_page   TEXT,
        first_munged BIGINT,
        requests     BIGINT NOT NULL DEFAULT 0,
        munged       BIGINT NOT NULL DEFAULT 0,
        harvester    TEXT,
        harvester_at BIGINT,
        PRIMARY KEY (day, visitor)
    );
    CREATE INDEX visits_harvester ON visits(day) WHERE harvester IS NOT NULL;
    CREATE INDEX arrivals_time ON arrivals(time);",
    // 4: the base addresses the proxies munged, which mangled copies are
    // decoded against.
    // A new base notifies (statement-level, and a base is added once):
    // the resolvers decode mangled copies against the list.
    "CREATE TABLE served (
        base      TEXT PRIMARY KEY,
        first_day INTEGER NOT NULL,
        last_day  INTEGER NOT NULL
    );
    CREATE TRIGGER served_changed AFTER INSERT OR DELETE OR TRUNCATE ON served
        FOR EACH STATEMENT EXECUTE FUNCTION addrmunge_changed();",
];

/// The advisory lock migrations are made under (any fixed number; this is
/// "addrmung" in ASCII).
const MIGRATION_LOCK: i64 = 0x6164_6472_6d75_6e67;

/// How long reading the change mark waits for notifications to be read off
/// the socket.
const NOTIFICATION_WAIT: Duration = Duration::from_millis(1);

/// How long one statement may take when the URL sets no `options`.
const STATEMENT_TIMEOUT: &str = "-c statement_timeout=10s";

/// How long connecting may take when the URL does not say.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection to a PostgreSQL store.
pub struct Postgres {
    client: Client,
    at: Location,
    /// The store's identity, made with its schema.
    identity: u64,
    /// Notifications seen on this connection.
    changes: i64,
}

impl fmt::Debug for Postgres {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Postgres").field("at", &self.at).finish()
    }
}

impl Postgres {
    /// Connects, and makes or migrates the schema: for the commands an
    /// owner runs and a daemon's first start.
    pub fn open(url: &PgUrl) -> Result<Postgres, StoreError> {
        let mut pg = Postgres::connect(url)?;
        pg.migrate()?;
        pg.listen()?;
        Ok(pg)
    }

    /// Connects to a store whose schema exists already.
    pub fn open_existing(url: &PgUrl) -> Result<Postgres, StoreError> {
        let mut pg = Postgres::connect(url)?;
        let at = pg.at.clone();
        match pg.version()? {
            None => return Err(StoreError::Missing(at)),
            Some(v) if v < MIGRATIONS.len() as i64 => pg.migrate()?,
            Some(_) => {}
        }
        pg.listen()?;
        Ok(pg)
    }

    fn connect(url: &PgUrl) -> Result<Postgres, StoreError> {
        let at = Location::Postgres(url.clone());
        let mut config = url.config();
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        config.application_name("addrmunge");
        // A database that is slow (locked, overloaded) must not hold a
        // store thread or a CLI command for ever; the URL's own options win.
        if config.get_options().is_none() {
            config.options(STATEMENT_TIMEOUT);
        }
        let client = match url.tls() {
            Tls::Off => config.connect(NoTls),
            Tls::Verified { roots } => config.connect(tls::connector(&at, roots.as_deref())?),
        }
        .map_err(|e| pg_error(&at, e))?;
        Ok(Postgres {
            client,
            at,
            identity: 0,
            changes: 0,
        })
    }

    fn e(&self) -> impl Fn(postgres::Error) -> StoreError + '_ {
        |e| pg_error(&self.at, e)
    }

    /// The schema version (and, as a side effect, the identity); `None`
    /// when this database has no addrmunge schema.
    fn version(&mut self) -> Result<Option<i64>, StoreError> {
        let at = self.at.clone();
        let e = |e| pg_error(&at, e);
        let exists: bool = self
            .client
            .query_one("SELECT to_regclass('addrmunge_schema') IS NOT NULL", &[])
            .map_err(e)?
            .get(0);
        if !exists {
            return Ok(None);
        }
        let row = self
            .client
            .query_one("SELECT version, identity FROM addrmunge_schema", &[])
            .map_err(e)?;
        let (version, identity): (i64, i64) = (row.get(0), row.get(1));
        self.identity = identity as u64;
        if version > MIGRATIONS.len() as i64 {
            return Err(StoreError::TooNew {
                at,
                found: version,
                known: MIGRATIONS.len(),
            });
        }
        Ok(Some(version))
    }

    /// Applies what is missing, under the migration lock.
    fn migrate(&mut self) -> Result<(), StoreError> {
        if self.version()? == Some(MIGRATIONS.len() as i64) {
            return Ok(()); // the usual case, and no lock for it
        }
        let at = self.at.clone();
        let e = |e| pg_error(&at, e);
        let mut tx = self.client.transaction().map_err(e)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .map_err(e)?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS addrmunge_schema (
                version  BIGINT NOT NULL,
                identity BIGINT NOT NULL,
                one      BOOLEAN PRIMARY KEY DEFAULT true CHECK (one)
            );
            INSERT INTO addrmunge_schema(version, identity)
                SELECT 0, (random() * 9e18)::bigint WHERE NOT EXISTS (SELECT 1 FROM addrmunge_schema);",
        )
        .map_err(e)?;
        let version: i64 = tx
            .query_one("SELECT version FROM addrmunge_schema", &[])
            .map_err(e)?
            .get(0);
        for sql in MIGRATIONS.iter().skip(version.max(0) as usize) {
            tx.batch_execute(sql).map_err(e)?;
        }
        let known = MIGRATIONS.len() as i64;
        tx.execute(
            "UPDATE addrmunge_schema SET version = $1 WHERE version < $1",
            &[&known],
        )
        .map_err(e)?;
        tx.commit().map_err(e)?;
        // Another host may have migrated meanwhile (or a newer build did).
        self.version().map(|_| ())
    }

    fn listen(&mut self) -> Result<(), StoreError> {
        self.client.batch_execute("LISTEN addrmunge").map_err(self.e())
    }
}

impl Backend for Postgres {
    fn identity(&self) -> Option<u64> {
        Some(self.identity)
    }

    fn verify(&self) -> Result<(), StoreError> {
        if self.client.is_closed() {
            return Err(StoreError::Closed(self.at.clone()));
        }
        Ok(())
    }

    fn expire(&mut self, scope: &Scope, reason: &str) -> Result<(Rule, bool), StoreError> {
        let (day, net, address) = columns(scope);
        let inserted = self
            .client
            .execute(
                "INSERT INTO rules(scope, day, net, address, reason, created) VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT DO NOTHING",
                &[&scope.name(), &day, &net, &address, &reason, &now_unix()],
            )
            .map_err(self.e())?
            > 0;
        let rule = self.find(scope)?.ok_or_else(|| {
            StoreError::BadRule(format!("rule '{scope}' vanished right after it was written"))
        })?;
        Ok((rule, inserted))
    }

    fn find(&mut self, scope: &Scope) -> Result<Option<Rule>, StoreError> {
        let (day, net, address) = columns(scope);
        let row = self
            .client
            .query_opt(
                "SELECT id, reason, created FROM rules WHERE scope = $1 AND coalesce(day, -1) = coalesce($2, -1)
                 AND coalesce(net, '') = coalesce($3, '') AND coalesce(address, '') = coalesce($4, '')",
                &[&scope.name(), &day, &net, &address],
            )
            .map_err(self.e())?;
        Ok(row.map(|r| Rule {
            id: r.get(0),
            scope: scope.clone(),
            reason: r.get(1),
            created: r.get(2),
        }))
    }

    fn delete_rule(&mut self, id: i64) -> Result<(), StoreError> {
        self.client
            .execute("DELETE FROM rules WHERE id = $1", &[&id])
            .map_err(self.e())?;
        Ok(())
    }

    fn rules(&mut self) -> Result<Vec<Rule>, StoreError> {
        let rows = self
            .client
            .query(
                "SELECT id, scope, day, net, address, reason, created FROM rules ORDER BY id",
                &[],
            )
            .map_err(self.e())?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                let day: Option<i32> = r.get(2);
                let scope = Scope::from_columns(r.get(1), day.map(i64::from), r.get(3), r.get(4))?;
                Some(Rule {
                    id: r.get(0),
                    scope,
                    reason: r.get(5),
                    created: r.get(6),
                })
            })
            .collect())
    }

    fn block(&mut self, ip: IpAddr, until: i64, reason: &str) -> Result<(), StoreError> {
        self.client
            .execute(UPSERT_BLOCK, &[&ip.to_string(), &until, &reason, &now_unix()])
            .map_err(self.e())?;
        Ok(())
    }

    fn blocks(&mut self, now: i64) -> Result<HashMap<IpAddr, i64>, StoreError> {
        let rows = self
            .client
            .query("SELECT ip, until FROM blocks WHERE until > $1", &[&now])
            .map_err(self.e())?;
        Ok(rows
            .iter()
            .filter_map(|r| Some((r.get::<_, &str>(0).parse().ok()?, r.get(1))))
            .collect())
    }

    fn write_batch(
        &mut self,
        arrivals: &[Arrival],
        blocks: &[(IpAddr, i64, String)],
    ) -> Result<(), StoreError> {
        let at = self.at.clone();
        let e = |e| pg_error(&at, e);
        let mut tx = self.client.transaction().map_err(e)?;
        let ins = tx
            .prepare(
                "INSERT INTO arrivals(time, client_ip, helo, sender, recipient, base, kind, visitor, day, status)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .map_err(e)?;
        for a in arrivals {
            with_arrival(a, |params| tx.execute(&ins, params)).map_err(e)?;
        }
        let blk = tx.prepare(UPSERT_BLOCK).map_err(e)?;
        for (ip, until, reason) in blocks {
            tx.execute(&blk, &[&ip.to_string(), until, reason, &now_unix()])
                .map_err(e)?;
        }
        tx.commit().map_err(e)
    }

    fn change_mark(&mut self) -> Result<i64, StoreError> {
        let at = self.at.clone();
        // Not `iter()`: without a wait the client's runtime never reads the
        // socket, so notifications sent since the last query stay unseen. A
        // millisecond's wait lets it read what has arrived.
        let seen = self
            .client
            .notifications()
            .timeout_iter(NOTIFICATION_WAIT)
            .count()
            .map_err(|e| pg_error(&at, e))? as i64;
        if self.client.is_closed() {
            return Err(StoreError::Closed(at));
        }
        self.changes += seen;
        Ok(self.changes)
    }
}

/// A block that exists is lengthened, never shortened.
const UPSERT_BLOCK: &str = "INSERT INTO blocks(ip, until, reason, created) VALUES ($1, $2, $3, $4)
     ON CONFLICT(ip) DO UPDATE SET until = greatest(blocks.until, excluded.until), reason = excluded.reason";

/// A scope's columns as PostgreSQL types them (days are `INTEGER`).
fn columns(scope: &Scope) -> (Option<i32>, Option<String>, Option<String>) {
    let (day, net, address) = scope.columns();
    (day.and_then(|d| i32::try_from(d).ok()), net, address)
}

/// Runs `f` with an arrival's columns as the `$1..$10` of
/// `(time, client_ip, helo, sender, recipient, base, kind, visitor, day, status)`.
fn with_arrival<T>(a: &Arrival, f: impl FnOnce(&[&(dyn postgres::types::ToSql + Sync)]) -> T) -> T {
    let (kind, day) = (a.kind.map(Kind::as_str), a.day.map(|d| i32::from(d.number())));
    f(&[
        &a.time,
        &a.client_ip,
        &a.helo,
        &a.sender,
        &a.recipient,
        &a.base,
        &kind,
        &a.visitor,
        &day,
        &a.status.as_str(),
    ])
}

fn pg_error(at: &Location, source: postgres::Error) -> StoreError {
    StoreError::Postgres {
        at: at.clone(),
        source,
    }
}

/// The GRANTs that give each daemon's role its part and no more, for the
/// owner (who made the schema) to run: a proxy only adds visits (and reads
/// them, for the harvesters caught before a restart); a resolver reads the
/// rules and blocks and adds arrivals and blocks. Everything else (rules,
/// pruning) stays with the owner.
pub fn grants(proxy: &str, resolver: &str) -> String {
    let (p, r) = (quote_ident(proxy), quote_ident(resolver));
    format!(
        "-- addrmunge: roles for a shared store. Run as the owner (the role the CLI uses),
-- after any addrmunge command made the schema. Make the roles first if need be:
--   CREATE ROLE {p} LOGIN PASSWORD '...';
--   CREATE ROLE {r} LOGIN PASSWORD '...';
GRANT USAGE ON SCHEMA public TO {p}, {r};
GRANT SELECT ON addrmunge_schema TO {p}, {r};
-- The proxy: its visit log, and the base addresses it munged.
GRANT SELECT, INSERT, UPDATE ON visits, served TO {p};
-- The resolver: rules, blocks and served bases to judge by; arrivals, trap
-- blocks and [containment] rules to add.
GRANT SELECT, INSERT ON rules TO {r};
GRANT USAGE ON SEQUENCE rules_id_seq TO {r};
GRANT SELECT ON served TO {r};
GRANT SELECT, INSERT, UPDATE ON blocks TO {r};
GRANT INSERT ON arrivals TO {r};
GRANT USAGE ON SEQUENCE arrivals_id_seq TO {r};
"
    )
}

/// `name` as an SQL identifier, quoted.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
