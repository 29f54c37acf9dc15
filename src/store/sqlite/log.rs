//! The forensic half of the SQLite backend: the visit log, the queries
//! `trace` and `report` run over visits, arrivals and blocks, and retention.

use rusqlite::{OptionalExtension, params};

use super::{Sqlite, sqlite};
use crate::check::Status;
use crate::day::Day;
use crate::store::records::fold;
use crate::store::{
    Arrival, Block, Counts, Dump, Harvester, Log, SERVED_MAX, ServedBase, StoreError, Visit, VisitEvent,
};

const VISIT_COLUMNS: &str = "day, visitor, first_seen, last_seen, user_agent, first_page, first_munged, requests, munged, harvester, harvester_at";

/// A day column (days since 1970).
fn day_at(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Option<Day>> {
    Ok(r.get::<_, Option<i64>>(i)?
        .and_then(|d| u16::try_from(d).ok())
        .map(Day::from_number))
}

fn visit_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Visit> {
    Ok(Visit {
        day: day_at(r, 0)?.unwrap_or(Day::from_number(0)),
        visitor: r.get(1)?,
        first_seen: r.get(2)?,
        last_seen: r.get(3)?,
        user_agent: r.get(4)?,
        first_page: r.get(5)?,
        first_munged: r.get(6)?,
        requests: r.get(7)?,
        munged: r.get(8)?,
        harvester: r.get(9)?,
        harvester_at: r.get(10)?,
    })
}

fn arrival_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Arrival> {
    Ok(Arrival {
        time: r.get(0)?,
        client_ip: r.get::<_, Option<String>>(1)?.unwrap_or_default(),
        helo: r.get::<_, Option<String>>(2)?.unwrap_or_default(),
        sender: r.get::<_, Option<String>>(3)?.unwrap_or_default(),
        recipient: r.get(4)?,
        base: r.get(5)?,
        // Written from the enums, so read back the same; a value this build
        // does not know reads as no kind, or as invalid.
        kind: r.get::<_, Option<String>>(6)?.and_then(|k| k.parse().ok()),
        visitor: r.get(7)?,
        day: day_at(r, 8)?,
        status: r.get::<_, String>(9)?.parse().unwrap_or(Status::Invalid),
    })
}

/// One served base (`?1`) from day `?2` to day `?3`: a new row if `?4`
/// (there was room when the batch began: counted once, so the table holds
/// at most [`SERVED_MAX`] and one batch), else only widening a row that is
/// there. The days only ever widen, so a copy and a late batch are both
/// safe; a row left as it was counts as no change.
pub(super) const UPSERT_SERVED: &str = "INSERT INTO served(base, first_day, last_day)
     SELECT ?1, ?2, ?3 WHERE ?4 OR EXISTS (SELECT 1 FROM served WHERE base = ?1)
     ON CONFLICT(base) DO UPDATE SET first_day = min(first_day, excluded.first_day),
                                     last_day = max(last_day, excluded.last_day)
     WHERE excluded.first_day < first_day OR excluded.last_day > last_day";

/// Whether `served` may take new rows.
pub(super) fn served_room(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<bool> {
    let n: i64 = tx.query_row("SELECT count(*) FROM served", [], |r| r.get(0))?;
    Ok(n < SERVED_MAX as i64)
}

const ARRIVAL_COLUMNS: &str = "time, client_ip, helo, sender, recipient, base, kind, visitor, day, status";

impl Log for Sqlite {
    fn all_visits(&mut self) -> Result<Vec<Visit>, StoreError> {
        let e = |e| sqlite(&self.path, e);
        let mut s = self
            .conn
            .prepare(&format!(
                "SELECT {VISIT_COLUMNS} FROM visits ORDER BY day, visitor"
            ))
            .map_err(e)?;
        let rows = s.query_map([], visit_row).map_err(e)?;
        rows.collect::<Result<_, _>>().map_err(e)
    }

    fn import(&mut self, dump: &Dump) -> Result<Counts, StoreError> {
        super::import::import(self, dump)
    }

    fn record_visits(&mut self, events: &[VisitEvent]) -> Result<(), StoreError> {
        let days = fold(events);
        let path = self.path.clone();
        let e = |e| sqlite(&path, e);
        let tx = self.conn.transaction().map_err(e)?;
        {
            // The User-Agent kept is the one that fetched the first page with
            // an address: that is the harvester when an IP is shared.
            let mut up = tx
                .prepare_cached(
                    "INSERT INTO visits(day, visitor, first_seen, last_seen, user_agent, first_page, first_munged,
                                        requests, munged, harvester, harvester_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                     ON CONFLICT(day, visitor) DO UPDATE SET
                        first_seen = min(first_seen, excluded.first_seen),
                        last_seen = max(last_seen, excluded.last_seen),
                        user_agent = CASE WHEN first_page IS NULL AND excluded.first_page IS NOT NULL
                                          THEN excluded.user_agent ELSE user_agent END,
                        first_page = coalesce(first_page, excluded.first_page),
                        first_munged = coalesce(first_munged, excluded.first_munged),
                        requests = requests + excluded.requests,
                        munged = munged + excluded.munged,
                        harvester = coalesce(harvester, excluded.harvester),
                        harvester_at = coalesce(harvester_at, excluded.harvester_at)",
                )
                .map_err(e)?;
            for f in &days {
                up.execute(params![
                    i64::from(f.day.number()),
                    f.visitor,
                    f.first_seen,
                    f.last_seen,
                    f.user_agent,
                    f.first_page,
                    f.first_munged,
                    f.requests,
                    f.munged,
                    f.harvester.map(Harvester::to_string),
                    f.harvester_at,
                ])
                .map_err(e)?;
            }
        }
        tx.commit().map_err(e)
    }

    fn record_served(&mut self, served: &[(String, Day)]) -> Result<(), StoreError> {
        let path = self.path.clone();
        let e = |e| sqlite(&path, e);
        let tx = self.conn.transaction().map_err(e)?;
        {
            let room = served_room(&tx).map_err(e)?;
            let mut up = tx.prepare_cached(UPSERT_SERVED).map_err(e)?;
            for (base, day) in served {
                let day = i64::from(day.number());
                up.execute(params![base, day, day, room]).map_err(e)?;
            }
        }
        tx.commit().map_err(e)
    }

    fn served(&mut self) -> Result<Vec<ServedBase>, StoreError> {
        let e = |e| sqlite(&self.path, e);
        let mut s = self
            .conn
            .prepare_cached(
                "SELECT base, first_day, last_day FROM served ORDER BY last_day DESC, base LIMIT ?1",
            )
            .map_err(e)?;
        let rows = s
            .query_map([SERVED_MAX as i64], |r| {
                Ok(ServedBase {
                    base: r.get(0)?,
                    first_day: day_at(r, 1)?.unwrap_or(Day::from_number(0)),
                    last_day: day_at(r, 2)?.unwrap_or(Day::from_number(0)),
                })
            })
            .map_err(e)?;
        rows.collect::<Result<_, _>>().map_err(e)
    }

    fn relax_durability(&mut self) -> Result<(), StoreError> {
        self.conn
            .pragma_update(None, "synchronous", "NORMAL")
            .map_err(|e| sqlite(&self.path, e))
    }

    fn visit(&mut self, day: Day, visitor: &str) -> Result<Option<Visit>, StoreError> {
        self.conn
            .prepare_cached(&format!(
                "SELECT {VISIT_COLUMNS} FROM visits WHERE day = ?1 AND visitor = ?2"
            ))
            .and_then(|mut s| {
                s.query_row(params![i64::from(day.number()), visitor], visit_row)
                    .optional()
            })
            .map_err(|e| sqlite(&self.path, e))
    }

    fn harvesters(&mut self, from: Day, to: Day) -> Result<Vec<Visit>, StoreError> {
        let e = |e| sqlite(&self.path, e);
        let mut s = self
            .conn
            .prepare_cached(&format!(
                "SELECT {VISIT_COLUMNS} FROM visits
                 WHERE harvester IS NOT NULL AND day BETWEEN ?1 AND ?2 ORDER BY day, harvester_at"
            ))
            .map_err(e)?;
        let rows = s
            .query_map(
                params![i64::from(from.number()), i64::from(to.number())],
                visit_row,
            )
            .map_err(e)?;
        rows.collect::<Result<_, _>>().map_err(e)
    }

    fn visits_by_day(&mut self, from: Day, to: Day) -> Result<Vec<(Day, i64, i64)>, StoreError> {
        let e = |e| sqlite(&self.path, e);
        let mut s = self
            .conn
            .prepare_cached(
                "SELECT day, count(*), sum(munged) FROM visits
                 WHERE munged > 0 AND day BETWEEN ?1 AND ?2 GROUP BY day ORDER BY day",
            )
            .map_err(e)?;
        let rows = s
            .query_map(params![i64::from(from.number()), i64::from(to.number())], |r| {
                Ok((
                    Day::from_number(u16::try_from(r.get::<_, i64>(0)?).unwrap_or(0)),
                    r.get(1)?,
                    r.get(2)?,
                ))
            })
            .map_err(e)?;
        rows.collect::<Result<_, _>>().map_err(e)
    }

    fn arrivals_for(&mut self, recipient: &str) -> Result<Vec<Arrival>, StoreError> {
        self.arrivals_where("recipient = ?1", recipient)
    }

    fn arrivals_since(&mut self, since: i64) -> Result<Vec<Arrival>, StoreError> {
        self.arrivals_where("time >= ?1", since)
    }

    fn all_blocks(&mut self) -> Result<Vec<Block>, StoreError> {
        let e = |e| sqlite(&self.path, e);
        let mut s = self
            .conn
            .prepare_cached("SELECT ip, until, reason, created FROM blocks ORDER BY created, ip")
            .map_err(e)?;
        let rows = s
            .query_map([], |r| {
                Ok(Block {
                    ip: r.get(0)?,
                    until: r.get(1)?,
                    reason: r.get(2)?,
                    created: r.get(3)?,
                })
            })
            .map_err(e)?;
        rows.collect::<Result<_, _>>().map_err(e)
    }

    fn prune(&mut self, day: Day, time: i64) -> Result<usize, StoreError> {
        let path = self.path.clone();
        let e = |e| sqlite(&path, e);
        let tx = self.conn.transaction().map_err(e)?;
        let mut n = tx
            .execute("DELETE FROM visits WHERE day < ?1", [i64::from(day.number())])
            .map_err(e)?;
        n += tx
            .execute("DELETE FROM arrivals WHERE time < ?1", [time])
            .map_err(e)?;
        n += tx
            .execute("DELETE FROM blocks WHERE until < ?1", [time])
            .map_err(e)?;
        n += tx
            .execute(
                "DELETE FROM served WHERE last_day < ?1",
                [i64::from(day.number())],
            )
            .map_err(e)?;
        tx.commit().map_err(e)?;
        Ok(n)
    }
}

impl Sqlite {
    fn arrivals_where(&self, cond: &str, arg: impl rusqlite::ToSql) -> Result<Vec<Arrival>, StoreError> {
        let e = |e| sqlite(&self.path, e);
        let mut s = self
            .conn
            .prepare_cached(&format!(
                "SELECT {ARRIVAL_COLUMNS} FROM arrivals WHERE {cond} ORDER BY time, id"
            ))
            .map_err(e)?;
        let rows = s.query_map([arg], arrival_row).map_err(e)?;
        rows.collect::<Result<_, _>>().map_err(e)
    }
}
