//! Copying another store's rows into a SQLite store (`store copy`),
//! idempotently: what is there already is left alone.

use rusqlite::params;

use super::log::{UPSERT_SERVED, served_room};
use super::{Sqlite, sqlite};
use crate::store::{Counts, Dump, StoreError};
use crate::token::Kind;

/// Adds what `dump` holds and `st` does not, in one transaction.
pub(super) fn import(st: &mut Sqlite, dump: &Dump) -> Result<Counts, StoreError> {
    let path = st.path.clone();
    let e = |e| sqlite(&path, e);
    let tx = st.conn.transaction().map_err(e)?;
    let mut n = Counts::default();
    {
        let mut rule = tx
            .prepare("INSERT OR IGNORE INTO rules(scope, day, net, address, reason, created) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
            .map_err(e)?;
        for r in &dump.rules {
            let (day, net, address) = r.scope.columns();
            n.rules += rule
                .execute(params![r.scope.name(), day, net, address, r.reason, r.created])
                .map_err(e)?;
        }
        let mut block = tx
            .prepare(
                "INSERT INTO blocks(ip, until, reason, created) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(ip) DO UPDATE SET until = excluded.until, reason = excluded.reason
                 WHERE excluded.until > blocks.until",
            )
            .map_err(e)?;
        for b in &dump.blocks {
            n.blocks += block
                .execute(params![b.ip, b.until, b.reason, b.created])
                .map_err(e)?;
        }
        let mut arrival = tx
            .prepare(
                "INSERT INTO arrivals(time, client_ip, helo, sender, recipient, base, kind, visitor, day, status)
                 SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10 WHERE NOT EXISTS (
                     SELECT 1 FROM arrivals WHERE time = ?1 AND client_ip IS ?2 AND helo IS ?3 AND sender IS ?4
                     AND recipient = ?5 AND base IS ?6 AND kind IS ?7 AND visitor IS ?8 AND day IS ?9 AND status = ?10)",
            )
            .map_err(e)?;
        for a in &dump.arrivals {
            n.arrivals += arrival
                .execute(params![
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
        let mut visit = tx
            .prepare(
                "INSERT OR IGNORE INTO visits(day, visitor, first_seen, last_seen, user_agent, first_page, first_munged,
                                              requests, munged, harvester, harvester_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )
            .map_err(e)?;
        for v in &dump.visits {
            n.visits += visit
                .execute(params![
                    i64::from(v.day.number()),
                    v.visitor,
                    v.first_seen,
                    v.last_seen,
                    v.user_agent,
                    v.first_page,
                    v.first_munged,
                    v.requests,
                    v.munged,
                    v.harvester,
                    v.harvester_at
                ])
                .map_err(e)?;
        }
        n.served += import_served(&tx, dump, &e)?;
    }
    tx.commit().map_err(e)?;
    Ok(n)
}

/// The served bases `dump` holds, first days lowered and last days raised
/// where they are here already; returns the rows added or widened.
fn import_served(
    tx: &rusqlite::Transaction<'_>,
    dump: &Dump,
    e: &impl Fn(rusqlite::Error) -> StoreError,
) -> Result<usize, StoreError> {
    let room = served_room(tx).map_err(e)?;
    let mut up = tx.prepare(UPSERT_SERVED).map_err(e)?;
    let mut n = 0;
    for s in &dump.served {
        let (first, last) = (i64::from(s.first_day.number()), i64::from(s.last_day.number()));
        n += up.execute(params![s.base, first, last, room]).map_err(e)?;
    }
    Ok(n)
}
