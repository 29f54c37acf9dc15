//! Copying another store's rows into a PostgreSQL store (`store copy`),
//! idempotently: what is there already is left alone.

use super::{Postgres, pg_error};
use crate::store::{Counts, Dump, StoreError};
use crate::token::Kind;

/// Adds what `dump` holds and `pg` does not, in one transaction.
pub(super) fn import(pg: &mut Postgres, dump: &Dump) -> Result<Counts, StoreError> {
    let at = pg.at.clone();
    let e = |e| pg_error(&at, e);
    let mut tx = pg.client.transaction().map_err(e)?;
    let mut n = Counts::default();
    let rule = tx
        .prepare(
            "INSERT INTO rules(scope, day, net, address, reason, created) VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT DO NOTHING",
        )
        .map_err(e)?;
    for r in &dump.rules {
        let (day, net, address) = super::columns(&r.scope);
        let args: [&(dyn postgres::types::ToSql + Sync); 6] =
            [&r.scope.name(), &day, &net, &address, &r.reason, &r.created];
        n.rules += tx.execute(&rule, &args).map_err(e)? as usize;
    }
    let block = tx
        .prepare(
            "INSERT INTO blocks(ip, until, reason, created) VALUES ($1, $2, $3, $4)
             ON CONFLICT(ip) DO UPDATE SET until = excluded.until, reason = excluded.reason
             WHERE excluded.until > blocks.until",
        )
        .map_err(e)?;
    for b in &dump.blocks {
        n.blocks += tx
            .execute(&block, &[&b.ip, &b.until, &b.reason, &b.created])
            .map_err(e)? as usize;
    }
    let arrival = tx
        .prepare(
            "INSERT INTO arrivals(time, client_ip, helo, sender, recipient, base, kind, visitor, day, status)
             SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10 WHERE NOT EXISTS (
                 SELECT 1 FROM arrivals WHERE time = $1 AND client_ip IS NOT DISTINCT FROM $2
                 AND helo IS NOT DISTINCT FROM $3 AND sender IS NOT DISTINCT FROM $4 AND recipient = $5
                 AND base IS NOT DISTINCT FROM $6 AND kind IS NOT DISTINCT FROM $7
                 AND visitor IS NOT DISTINCT FROM $8 AND day IS NOT DISTINCT FROM $9 AND status = $10)",
        )
        .map_err(e)?;
    for a in &dump.arrivals {
        let day = a.day.map(|d| i32::from(d.number()));
        n.arrivals += tx
            .execute(
                &arrival,
                &[
                    &a.time,
                    &a.client_ip,
                    &a.helo,
                    &a.sender,
                    &a.recipient,
                    &a.base,
                    &a.kind.map(Kind::as_str),
                    &a.visitor,
                    &day,
                    &a.status.as_str(),
                ],
            )
            .map_err(e)? as usize;
    }
    let visit = tx
        .prepare(
            "INSERT INTO visits(day, visitor, first_seen, last_seen, user_agent, first_page, first_munged,
                                requests, munged, harvester, harvester_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT DO NOTHING",
        )
        .map_err(e)?;
    for v in &dump.visits {
        n.visits += tx
            .execute(
                &visit,
                &[
                    &i32::from(v.day.number()),
                    &v.visitor,
                    &v.first_seen,
                    &v.last_seen,
                    &v.user_agent,
                    &v.first_page,
                    &v.first_munged,
                    &v.requests,
                    &v.munged,
                    &v.harvester,
                    &v.harvester_at,
                ],
            )
            .map_err(e)? as usize;
    }
    let room = super::log::served_room(&mut tx).map_err(e)?;
    let served = tx.prepare(super::log::UPSERT_SERVED).map_err(e)?;
    for s in &dump.served {
        let (first, last) = (i32::from(s.first_day.number()), i32::from(s.last_day.number()));
        n.served += tx.execute(&served, &[&s.base, &first, &last, &room]).map_err(e)? as usize;
    }
    tx.commit().map_err(e)?;
    Ok(n)
}
