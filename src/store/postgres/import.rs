//! Copying another store's rows into a PostgreSQL store (`store copy`),
//! idempotently: what is there already is left alone.

use super::{Postgres, pg_error, with_arrival};
use crate::store::{Counts, Dump, StoreError};

/// Adds what `dump` holds and `pg` does not, in one transaction.
pub(super) fn import(pg: &mut Postgres, dump: &Dump) -> Result<Counts, StoreError> {
    let at = pg.at.clone();
    let e = |e| pg_error(&at, e);
    let mut tx = pg.client.transaction().map_err(e)?;
    let (rules, blocks) = rules_and_blocks(&mut tx, dump).map_err(e)?;
    let n = Counts {
        rules,
        blocks,
        arrivals: arrivals(&mut tx, dump).map_err(e)?,
        visits: visits(&mut tx, dump).map_err(e)?,
        served: served(&mut tx, dump).map_err(e)?,
    };
    tx.commit().map_err(e)?;
    Ok(n)
}

type Tx<'a> = postgres::Transaction<'a>;

/// Rules with a scope not here, and blocks lengthened: how many of each.
fn rules_and_blocks(tx: &mut Tx<'_>, dump: &Dump) -> Result<(usize, usize), postgres::Error> {
    let (mut rules, mut blocks) = (0, 0);
    let rule = tx.prepare(
        "INSERT INTO rules(scope, day, net, address, reason, created) VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT DO NOTHING",
    )?;
    for r in &dump.rules {
        let (day, net, address) = super::columns(&r.scope);
        let args: [&(dyn postgres::types::ToSql + Sync); 6] =
            [&r.scope.name(), &day, &net, &address, &r.reason, &r.created];
        rules += tx.execute(&rule, &args)? as usize;
    }
    let block = tx.prepare(
        "INSERT INTO blocks(ip, until, reason, created) VALUES ($1, $2, $3, $4)
             ON CONFLICT(ip) DO UPDATE SET until = excluded.until, reason = excluded.reason
             WHERE excluded.until > blocks.until",
    )?;
    for b in &dump.blocks {
        blocks += tx.execute(&block, &[&b.ip, &b.until, &b.reason, &b.created])? as usize;
    }
    Ok((rules, blocks))
}

/// Arrivals not here (the same row twice is one).
fn arrivals(tx: &mut Tx<'_>, dump: &Dump) -> Result<usize, postgres::Error> {
    let mut n = 0;
    let arrival = tx.prepare(
        "INSERT INTO arrivals(time, client_ip, helo, sender, recipient, base, kind, visitor, day, status)
             SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10 WHERE NOT EXISTS (
                 SELECT 1 FROM arrivals WHERE time = $1 AND client_ip IS NOT DISTINCT FROM $2
                 AND helo IS NOT DISTINCT FROM $3 AND sender IS NOT DISTINCT FROM $4 AND recipient = $5
                 AND base IS NOT DISTINCT FROM $6 AND kind IS NOT DISTINCT FROM $7
                 AND visitor IS NOT DISTINCT FROM $8 AND day IS NOT DISTINCT FROM $9 AND status = $10)",
    )?;
    for a in &dump.arrivals {
        n += with_arrival(a, |params| tx.execute(&arrival, params))? as usize;
    }
    Ok(n)
}

/// Visitor-days not here.
fn visits(tx: &mut Tx<'_>, dump: &Dump) -> Result<usize, postgres::Error> {
    let mut n = 0;
    let visit = tx.prepare(
        "INSERT INTO visits(day, visitor, first_seen, last_seen, user_agent, first_page, first_munged,
                                requests, munged, harvester, harvester_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT DO NOTHING",
    )?;
    for v in &dump.visits {
        n += tx.execute(
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
        )? as usize;
    }
    Ok(n)
}

/// Served bases added or widened.
fn served(tx: &mut Tx<'_>, dump: &Dump) -> Result<usize, postgres::Error> {
    let mut n = 0;
    let room = super::log::served_room(tx)?;
    let served = tx.prepare(super::log::UPSERT_SERVED)?;
    for s in &dump.served {
        let (first, last) = (i32::from(s.first_day.number()), i32::from(s.last_day.number()));
        n += tx.execute(&served, &[&s.base, &first, &last, &room])? as usize;
    }
    Ok(n)
}
