//! The forensic half of the PostgreSQL backend: the visit log every proxy
//! writes, the queries `trace` and `report` run on any host, retention.

use postgres::Row;
use postgres::types::ToSql;

use super::{Postgres, pg_error};
use crate::check::Status;
use crate::day::Day;
use crate::store::records::fold;
use crate::store::{
    Arrival, Block, Counts, Dump, Harvester, Log, SERVED_MAX, ServedBase, StoreError, Visit, VisitEvent,
};

const VISIT_COLUMNS: &str = "day, visitor, first_seen, last_seen, user_agent, first_page, first_munged, requests, munged, harvester, harvester_at";

const ARRIVAL_COLUMNS: &str = "time, client_ip, helo, sender, recipient, base, kind, visitor, day, status";

/// A day column (`INTEGER`, days since 1970).
fn day_at(r: &Row, i: usize) -> Option<Day> {
    r.get::<_, Option<i32>>(i)
        .and_then(|d| u16::try_from(d).ok())
        .map(Day::from_number)
}

fn day_param(day: Day) -> i32 {
    i32::from(day.number())
}

fn visit_row(r: &Row) -> Visit {
    Visit {
        day: day_at(r, 0).unwrap_or(Day::from_number(0)),
        visitor: r.get(1),
        first_seen: r.get(2),
        last_seen: r.get(3),
        user_agent: r.get(4),
        first_page: r.get(5),
        first_munged: r.get(6),
        requests: r.get(7),
        munged: r.get(8),
        harvester: r.get(9),
        harvester_at: r.get(10),
    }
}

fn arrival_row(r: &Row) -> Arrival {
    Arrival {
        time: r.get(0),
        client_ip: r.get::<_, Option<String>>(1).unwrap_or_default(),
        helo: r.get::<_, Option<String>>(2).unwrap_or_default(),
        sender: r.get::<_, Option<String>>(3).unwrap_or_default(),
        recipient: r.get(4),
        base: r.get(5),
        // As in SQLite: text this build did not write reads as no kind, or invalid.
        kind: r.get::<_, Option<String>>(6).and_then(|k| k.parse().ok()),
        visitor: r.get(7),
        day: day_at(r, 8),
        status: r.get::<_, String>(9).parse().unwrap_or(Status::Invalid),
    }
}

/// The upsert of one folded visitor-day; the User-Agent kept is the one
/// that fetched the first page with an address.
const UPSERT_VISIT: &str =
    "INSERT INTO visits(day, visitor, first_seen, last_seen, user_agent, first_page, first_munged,
                        requests, munged, harvester, harvester_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
     ON CONFLICT(day, visitor) DO UPDATE SET
        first_seen = least(visits.first_seen, excluded.first_seen),
        last_seen = greatest(visits.last_seen, excluded.last_seen),
        user_agent = CASE WHEN visits.first_page IS NULL AND excluded.first_page IS NOT NULL
                          THEN excluded.user_agent ELSE visits.user_agent END,
        first_page = coalesce(visits.first_page, excluded.first_page),
        first_munged = coalesce(visits.first_munged, excluded.first_munged),
        requests = visits.requests + excluded.requests,
        munged = visits.munged + excluded.munged,
        harvester = coalesce(visits.harvester, excluded.harvester),
        harvester_at = coalesce(visits.harvester_at, excluded.harvester_at)";

/// One served base (`$1`) from day `$2` to day `$3`: a new row if `$4`
/// (there was room when the batch began), else only widening a row that
/// is there (as in SQLite; a row left as it was counts as no change).
pub(super) const UPSERT_SERVED: &str = "INSERT INTO served(base, first_day, last_day)
     SELECT $1, $2, $3 WHERE $4 OR EXISTS (SELECT 1 FROM served WHERE base = $1)
     ON CONFLICT(base) DO UPDATE SET first_day = least(served.first_day, excluded.first_day),
                                     last_day = greatest(served.last_day, excluded.last_day)
     WHERE excluded.first_day < served.first_day OR excluded.last_day > served.last_day";

/// Whether `served` may take new rows.
pub(super) fn served_room(tx: &mut postgres::Transaction<'_>) -> Result<bool, postgres::Error> {
    let n: i64 = tx.query_one("SELECT count(*) FROM served", &[])?.get(0);
    Ok(n < SERVED_MAX as i64)
}

impl Log for Postgres {
    fn all_visits(&mut self) -> Result<Vec<Visit>, StoreError> {
        let sql = format!("SELECT {VISIT_COLUMNS} FROM visits ORDER BY day, visitor");
        let rows = self.client.query(&sql, &[]).map_err(self.e())?;
        Ok(rows.iter().map(visit_row).collect())
    }

    fn import(&mut self, dump: &Dump) -> Result<Counts, StoreError> {
        super::import::import(self, dump)
    }

    fn record_visits(&mut self, events: &[VisitEvent]) -> Result<(), StoreError> {
        let days = fold(events);
        let at = self.at.clone();
        let e = |e| pg_error(&at, e);
        let mut tx = self.client.transaction().map_err(e)?;
        let up = tx.prepare(UPSERT_VISIT).map_err(e)?;
        for f in &days {
            tx.execute(
                &up,
                &[
                    &day_param(f.day),
                    &f.visitor,
                    &f.first_seen,
                    &f.last_seen,
                    &f.user_agent,
                    &f.first_page,
                    &f.first_munged,
                    &f.requests,
                    &f.munged,
                    &f.harvester.map(Harvester::to_string),
                    &f.harvester_at,
                ],
            )
            .map_err(e)?;
        }
        tx.commit().map_err(e)
    }

    fn record_served(&mut self, served: &[(String, Day)]) -> Result<(), StoreError> {
        let at = self.at.clone();
        let e = |e| pg_error(&at, e);
        let mut tx = self.client.transaction().map_err(e)?;
        let room = served_room(&mut tx).map_err(e)?;
        let up = tx.prepare(UPSERT_SERVED).map_err(e)?;
        for (base, day) in served {
            let day = day_param(*day);
            tx.execute(&up, &[base, &day, &day, &room]).map_err(e)?;
        }
        tx.commit().map_err(e)
    }

    fn served(&mut self) -> Result<Vec<ServedBase>, StoreError> {
        let rows = self
            .client
            .query(
                "SELECT base, first_day, last_day FROM served ORDER BY last_day DESC, base LIMIT $1",
                &[&(SERVED_MAX as i64)],
            )
            .map_err(self.e())?;
        Ok(rows
            .iter()
            .map(|r| ServedBase {
                base: r.get(0),
                first_day: day_at(r, 1).unwrap_or(Day::from_number(0)),
                last_day: day_at(r, 2).unwrap_or(Day::from_number(0)),
            })
            .collect())
    }

    fn visit(&mut self, day: Day, visitor: &str) -> Result<Option<Visit>, StoreError> {
        let sql = format!("SELECT {VISIT_COLUMNS} FROM visits WHERE day = $1 AND visitor = $2");
        Ok(self
            .client
            .query_opt(&sql, &[&day_param(day), &visitor])
            .map_err(self.e())?
            .as_ref()
            .map(visit_row))
    }

    fn harvesters(&mut self, from: Day, to: Day) -> Result<Vec<Visit>, StoreError> {
        let sql = format!(
            "SELECT {VISIT_COLUMNS} FROM visits
             WHERE harvester IS NOT NULL AND day BETWEEN $1 AND $2 ORDER BY day, harvester_at"
        );
        let rows = self
            .client
            .query(&sql, &[&day_param(from), &day_param(to)])
            .map_err(self.e())?;
        Ok(rows.iter().map(visit_row).collect())
    }

    fn visits_by_day(&mut self, from: Day, to: Day) -> Result<Vec<(Day, i64, i64)>, StoreError> {
        let rows = self
            .client
            .query(
                "SELECT day, count(*), sum(munged)::bigint FROM visits
                 WHERE munged > 0 AND day BETWEEN $1 AND $2 GROUP BY day ORDER BY day",
                &[&day_param(from), &day_param(to)],
            )
            .map_err(self.e())?;
        Ok(rows
            .iter()
            .map(|r| (day_at(r, 0).unwrap_or(Day::from_number(0)), r.get(1), r.get(2)))
            .collect())
    }

    fn arrivals_for(&mut self, recipient: &str) -> Result<Vec<Arrival>, StoreError> {
        self.arrivals_where("recipient = $1", &recipient)
    }

    fn arrivals_since(&mut self, since: i64) -> Result<Vec<Arrival>, StoreError> {
        self.arrivals_where("time >= $1", &since)
    }

    fn all_blocks(&mut self) -> Result<Vec<Block>, StoreError> {
        let rows = self
            .client
            .query(
                "SELECT ip, until, reason, created FROM blocks ORDER BY created, ip",
                &[],
            )
            .map_err(self.e())?;
        Ok(rows
            .iter()
            .map(|r| Block {
                ip: r.get(0),
                until: r.get(1),
                reason: r.get(2),
                created: r.get(3),
            })
            .collect())
    }

    fn prune(&mut self, day: Day, time: i64) -> Result<usize, StoreError> {
        let at = self.at.clone();
        let e = |e| pg_error(&at, e);
        let mut tx = self.client.transaction().map_err(e)?;
        let mut n = tx
            .execute("DELETE FROM visits WHERE day < $1", &[&day_param(day)])
            .map_err(e)?;
        n += tx
            .execute("DELETE FROM arrivals WHERE time < $1", &[&time])
            .map_err(e)?;
        n += tx
            .execute("DELETE FROM blocks WHERE until < $1", &[&time])
            .map_err(e)?;
        n += tx
            .execute("DELETE FROM served WHERE last_day < $1", &[&day_param(day)])
            .map_err(e)?;
        tx.commit().map_err(e)?;
        Ok(n as usize)
    }
}

impl Postgres {
    fn arrivals_where(&mut self, cond: &str, arg: &(dyn ToSql + Sync)) -> Result<Vec<Arrival>, StoreError> {
        let sql = format!("SELECT {ARRIVAL_COLUMNS} FROM arrivals WHERE {cond} ORDER BY time, id");
        let rows = self.client.query(&sql, &[arg]).map_err(self.e())?;
        Ok(rows.iter().map(arrival_row).collect())
    }
}
