//! The store's contract, run against both backends: SQLite (a file in a
//! temp folder) and PostgreSQL (a private cluster, tests/common/postgres.rs).
//! Whatever the CLI and the daemons rely on must hold on either.
//!
//! Needs Debian's postgresql (scripts/test.sh installs it).

use std::net::IpAddr;
use std::sync::{Arc, Barrier};

use addrmunge::rules::Subject;
use addrmunge::store::{Arrival, Harvester, Location, Pinned, StoreSource, VisitEvent};
use addrmunge::{Claims, Day, Kind, RuleSet, RuleWatcher, Scope, Status, Store, StoreError, Visitor};

mod common;
use common::postgres::Cluster;

fn d(s: &str) -> Day {
    s.parse().unwrap()
}

/// Runs `check` on a fresh store of each backend; `fresh()` gives the
/// location of another fresh, empty one.
fn on_both(check: impl Fn(&mut dyn FnMut() -> Location)) {
    let dir = tempfile::tempdir().unwrap();
    let mut n = 0;
    check(&mut || {
        n += 1;
        Location::Sqlite(dir.path().join(format!("s{n}.sqlite")))
    });
    let pg = Cluster::start();
    let mut n = 0;
    check(&mut || {
        n += 1;
        Location::parse(&pg.database(&format!("db{n}")), "/".as_ref()).unwrap()
    });
}

#[test]
fn rules_match_what_they_say() {
    on_both(|fresh| {
        let at = fresh();
        let mut st = Store::open(&at).unwrap();
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
            assert!(scope.covers(&subj(&visit)), "{at}: {scope}");
            let (rule, new) = st.expire(scope, "test").unwrap();
            assert!(new);
            let set = RuleSet::new(st.rules().unwrap());
            assert_eq!(
                set.matching(&subj(&visit)).map(|r| r.id),
                Some(rule.id),
                "{at}: {scope}"
            );
            assert!(
                !st.expire(scope, "again").unwrap().1,
                "{at}: duplicate rule for {scope}"
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
            assert!(!scope.covers(&subj(&visit)), "{at}: {scope}");
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
        let (rule, _) = st.expire(&Scope::Day(day), "by number").unwrap();
        assert_eq!(st.remove_rule(rule.id).unwrap().unwrap().reason, "by number");
        assert!(st.remove_rule(rule.id).unwrap().is_none());
        // Another connection sees what this one committed.
        let n = st.rules().unwrap().len();
        assert_eq!(
            Store::open_existing(&at).unwrap().rules().unwrap().len(),
            n,
            "{at}"
        );
    });
}

#[test]
fn blocks_and_arrivals() {
    on_both(|fresh| {
        let mut st = Store::open(fresh()).unwrap();
        let ip: IpAddr = "198.51.100.9".parse().unwrap();
        st.block(ip, 2_000, "trap").unwrap();
        // A longer block wins; a shorter one does not shorten it.
        st.block(ip, 1_000, "again").unwrap();
        assert_eq!(st.blocks(1_500).unwrap().get(&ip), Some(&2_000));
        assert!(st.blocks(2_000).unwrap().is_empty());
        let arrival = |time, recipient: &str| Arrival {
            time,
            client_ip: ip.to_string(),
            helo: "h".into(),
            sender: "s@x.test".into(),
            recipient: recipient.into(),
            base: Some("mjd@plover.com".into()),
            kind: Some(Kind::Trap),
            visitor: Some("203.0.113.9".into()),
            day: Some(d("2026-11-20")),
            status: Status::Valid,
        };
        let other: IpAddr = "2001:db8::1".parse().unwrap();
        st.write_batch(
            &[
                arrival(10, "a@plover.com"),
                arrival(20, "b@plover.com"),
                arrival(30, "a@plover.com"),
            ],
            &[(other, 5_000, "trap a@plover.com".into())],
        )
        .unwrap();
        let got = st.arrivals_for("a@plover.com").unwrap();
        assert_eq!(
            got,
            vec![arrival(10, "a@plover.com"), arrival(30, "a@plover.com")]
        );
        assert_eq!(st.arrivals_since(20).unwrap().len(), 2);
        assert_eq!(st.blocks(1_500).unwrap().len(), 2);
        let all = st.all_blocks().unwrap();
        assert_eq!(all.len(), 2);
        assert!(all.iter().any(|b| b.ip == "2001:db8::1" && b.until == 5_000));
        // Retention: arrivals and ended blocks before the time go.
        assert_eq!(st.prune(Day::from_number(0), 25).unwrap(), 2);
        assert_eq!(st.arrivals_since(0).unwrap().len(), 1);
    });
}

fn ev(
    time: i64,
    visitor: &str,
    ua: &str,
    path: &str,
    munged: u64,
    harvester: Option<Harvester>,
) -> VisitEvent {
    VisitEvent {
        time,
        day: d("2026-11-20"),
        visitor: visitor.into(),
        user_agent: ua.into(),
        path: path.into(),
        munged,
        harvester,
    }
}

/// A day's requests: two visitors, one of them fetching the bait.
fn events() -> Vec<VisitEvent> {
    vec![
        ev(100, "192.0.2.1", "Mozilla", "/style.css", 0, None),
        ev(105, "192.0.2.1", "EmailSiphon", "/contact.html", 3, None),
        ev(110, "192.0.2.1", "Mozilla", "/about.html", 2, None),
        ev(
            120,
            "192.0.2.1",
            "EmailSiphon",
            "/bait/",
            5,
            Some(Harvester::Bait),
        ),
        ev(111, "2001:db8:1:2::/64", "curl", "/", 0, None),
    ]
}

#[test]
fn visits_fold_into_one_row_per_visitor_day() {
    on_both(|fresh| {
        let mut s = Store::open(fresh()).unwrap();
        s.record_visits(&events()[..2]).unwrap();
        s.record_visits(&events()[2..]).unwrap();
        let day = d("2026-11-20");
        // One batch or one event at a time: the same row.
        let mut t = Store::open(fresh()).unwrap();
        for e in events().into_iter().filter(|e| e.visitor == "192.0.2.1") {
            t.record_visits(&[e]).unwrap();
        }
        assert_eq!(
            s.visit(day, "192.0.2.1").unwrap(),
            t.visit(day, "192.0.2.1").unwrap()
        );
        let v = s.visit(day, "192.0.2.1").unwrap().unwrap();
        assert_eq!((v.first_seen, v.last_seen), (100, 120));
        assert_eq!(v.first_page.as_deref(), Some("/contact.html"));
        assert_eq!(v.first_munged, Some(105));
        assert_eq!(v.user_agent, "EmailSiphon");
        assert_eq!((v.requests, v.munged), (4, 10));
        assert_eq!(v.harvester.as_deref(), Some("bait"));
        assert_eq!(v.harvester_at, Some(120));
        assert_eq!(s.harvesters(day, day).unwrap().len(), 1);
        assert_eq!(s.visits_by_day(day, day).unwrap(), vec![(day, 1, 10)]);
        assert_eq!(
            s.visit(day, "2001:db8:1:2::/64").unwrap().unwrap().first_page,
            None
        );
        assert!(s.visit(day, "192.0.2.2").unwrap().is_none());
        assert_eq!(s.prune(day.checked_add(1).unwrap(), 0).unwrap(), 2);
        assert!(s.visit(day, "192.0.2.1").unwrap().is_none());
    });
}

/// The bases the proxies munged: one row each, its days only widening,
/// most recent first, pruned with the visit log, and a new one seen by a
/// daemon's watcher (the resolver rereads them with the rules).
#[test]
fn served_bases_widen_and_are_pruned() {
    on_both(|fresh| {
        let at = fresh();
        let mut s = Store::open(&at).unwrap();
        let mut w = RuleWatcher::new(Pinned::new(Store::open(&at).unwrap(), StoreSource::new(&at)));
        assert!(w.refresh().unwrap());
        let (d1, d2, d3) = (d("2026-11-20"), d("2026-11-21"), d("2026-11-22"));
        let base = |b: &str| b.to_owned();
        s.record_served(&[(base("mjd@plover.com"), d2), (base("jane@plover.com"), d1)])
            .unwrap();
        s.record_served(&[(base("mjd@plover.com"), d1), (base("mjd@plover.com"), d3)])
            .unwrap();
        let served = s.served().unwrap();
        let rows: Vec<_> = served
            .iter()
            .map(|r| (r.base.as_str(), r.first_day, r.last_day))
            .collect();
        assert_eq!(
            rows,
            vec![("mjd@plover.com", d1, d3), ("jane@plover.com", d1, d1)],
            "{at}"
        );
        let start = std::time::Instant::now();
        while !w.refresh().unwrap() {
            assert!(start.elapsed().as_secs() < 5, "{at}: a new base was never seen");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(s.prune(d2, 0).unwrap(), 1);
        assert_eq!(s.served().unwrap().len(), 1);
    });
}

/// A daemon's watcher sees another connection's rule at its next refresh,
/// and costs nothing (no change reported) when nothing was committed.
#[test]
fn a_watcher_sees_other_connections_commits() {
    on_both(|fresh| {
        let at = fresh();
        let mut writer = Store::open(&at).unwrap();
        let source = StoreSource::new(&at);
        let mut w = RuleWatcher::new(Pinned::new(Store::open(&at).unwrap(), source));
        assert!(w.refresh().unwrap());
        assert!(!w.refresh().unwrap());
        writer.expire(&Scope::Day(d("2026-01-01")), "x").unwrap();
        let start = std::time::Instant::now();
        // PostgreSQL's notification arrives a moment after the commit.
        while !w.refresh().unwrap() {
            assert!(start.elapsed().as_secs() < 5, "{at}: the change was never seen");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(w.rules().rules().len(), 1);
        assert!(!w.refresh().unwrap());
    });
}

/// Proxy, resolver and CLI on several hosts started together: one
/// migrates, the others wait for it, nobody fails.
#[test]
fn first_opens_at_once_all_succeed() {
    on_both(|fresh| {
        for _ in 0..10 {
            let at = fresh();
            let go = Arc::new(Barrier::new(4));
            let openers: Vec<_> = (0..4)
                .map(|_| {
                    let (at, go) = (at.clone(), Arc::clone(&go));
                    std::thread::spawn(move || {
                        go.wait();
                        Store::open(&at).map(|_| ())
                    })
                })
                .collect();
            for o in openers {
                o.join().unwrap().unwrap_or_else(|e| panic!("{at}: {e}"));
            }
            Store::open_existing(&at).unwrap();
        }
    });
}

#[test]
fn only_an_explicit_open_makes_a_store() {
    on_both(|fresh| {
        let at = fresh();
        let e = Store::open_existing(&at).unwrap_err();
        assert!(matches!(e, StoreError::Missing(_)), "{at}: {e}");
        assert!(
            at.file().is_none_or(|f| !f.exists()),
            "{at}: made by open_existing"
        );
        drop(Store::open(&at).unwrap());
        Store::open_existing(&at).unwrap();
    });
}

#[test]
fn a_newer_schema_is_refused_on_postgresql() {
    let pg = Cluster::start();
    let url = pg.database("newer");
    drop(Store::open(Location::parse(&url, "/".as_ref()).unwrap()).unwrap());
    pg.psql("newer", "UPDATE addrmunge_schema SET version = 99");
    let e = Store::open(Location::parse(&url, "/".as_ref()).unwrap())
        .unwrap_err()
        .to_string();
    assert!(e.contains("newer") && e.contains("99"), "{e}");
}

/// A database recreated empty under a daemon is not the store it started
/// with: the hold refuses it until a reload, as for a replaced file.
#[test]
fn a_recreated_database_is_not_taken_for_the_old_one() {
    let pg = Cluster::start();
    let url = pg.database("pinned");
    let at = Location::parse(&url, "/".as_ref()).unwrap();
    Store::open(&at)
        .unwrap()
        .expire(&Scope::Day(d("2026-01-01")), "")
        .unwrap();
    let source = StoreSource::new(&at);
    let mut pinned = Pinned::new(Store::open_existing(&at).unwrap(), Arc::clone(&source));
    assert_eq!(pinned.store().unwrap().rules().unwrap().len(), 1);
    pinned.reset();
    pg.psql("postgres", "DROP DATABASE pinned WITH (FORCE)");
    pg.psql("postgres", "CREATE DATABASE pinned");
    assert!(matches!(pinned.store().unwrap_err(), StoreError::Missing(_)));
    drop(Store::open(&at).unwrap());
    assert!(matches!(pinned.store().unwrap_err(), StoreError::Replaced(_)));
    source.reload(&at);
    assert!(pinned.store().unwrap().rules().unwrap().is_empty());
}

/// TLS to the database: with `sslmode=require` and the server's CA as
/// `sslrootcert` the connection is TLS (the server says so), the CA that
/// did not issue the certificate is refused, and so are the system's roots.
#[test]
fn tls_to_the_database_is_verified() {
    let pg = Cluster::start_tls();
    let ca = pg.ca();
    let url = |q: &str| Location::parse(&pg.url().replace("sslmode=disable", q), "/".as_ref()).unwrap();
    let tls = url(&format!("sslmode=require&sslrootcert={}", ca.display()));
    let mut st = Store::open(&tls).unwrap();
    st.expire(&Scope::Day(d("2026-01-01")), "over TLS").unwrap();
    let ssl = pg.psql(
        "postgres",
        "SELECT bool_and(s.ssl) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.application_name = 'addrmunge'",
    );
    assert_eq!(ssl.trim(), "t");
    drop(st);
    let other = tempfile::tempdir().unwrap();
    common::self_signed_cert(other.path());
    let wrong = url(&format!(
        "sslmode=verify-full&sslrootcert={}",
        other.path().join("fullchain.pem").display()
    ));
    let e = Store::open(&wrong).unwrap_err().to_string();
    assert!(e.contains("certificate"), "{e}");
    let e = Store::open(url("sslmode=require")).unwrap_err().to_string();
    assert!(e.contains("certificate") || e.contains("CA"), "{e}");
    let missing = url("sslmode=require&sslrootcert=/nonexistent/ca.pem");
    let e = Store::open(&missing).unwrap_err().to_string();
    assert!(e.contains("sslrootcert=/nonexistent/ca.pem"), "{e}");
}

/// A database on the same host through its unix socket, as the README
/// suggests where TLS is not used.
#[test]
fn a_unix_socket_url_works() {
    let pg = Cluster::start();
    let url = format!(
        "postgresql://addrmunge@/addrmunge?host={}&port={}",
        pg.socket_dir().display(),
        pg.port
    );
    let mut st = Store::open(Location::parse(&url, "/".as_ref()).unwrap()).unwrap();
    st.expire(&Scope::Day(d("2026-01-01")), "by socket").unwrap();
    assert_eq!(
        pg.psql("addrmunge", "SELECT reason FROM rules").trim(),
        "by socket"
    );
}

/// Moving up: `store copy` takes a SQLite store into PostgreSQL and back,
/// every row as it was, and a second run adds nothing.
#[test]
fn a_store_is_copied_into_postgresql_and_back() {
    let inst = common::Instance::new("[[protect]]\ndomain = \"plover.com\"\n");
    let file = inst.path("state.sqlite");
    let mut st = Store::open(&file).unwrap();
    st.expire(&Scope::Day(d("2026-11-20")), "a day").unwrap();
    st.expire(
        &Scope::Ip(Visitor::from_ip("192.0.2.7".parse().unwrap())),
        "an ip",
    )
    .unwrap();
    st.block("192.0.2.66".parse().unwrap(), 9_000, "trap").unwrap();
    let arrival = |time| Arrival {
        time,
        client_ip: "192.0.2.66".into(),
        helo: "h".into(),
        sender: "s@x.test".into(),
        recipient: "mjd-id-x@plover.com".into(),
        base: None,
        kind: None,
        visitor: None,
        day: None,
        status: Status::Invalid,
    };
    st.write_batch(&[arrival(1), arrival(2)], &[]).unwrap();
    st.record_visits(&events()).unwrap();
    st.record_served(&[("mjd@plover.com".into(), d("2026-11-20"))])
        .unwrap();
    let before = st.dump().unwrap();
    drop(st);

    let pg = Cluster::start();
    let url = pg.database("moved");
    let copy = |from: &str, to: &str| inst.cli_ok(&["store", "copy", from, to]);
    let said = copy(file.to_str().unwrap(), &url);
    let (said, served) = said.split_once('\n').unwrap();
    assert!(
        said.ends_with(
            "2 of 2 rules, 1 of 1 blocks, 2 of 2 arrivals, 2 of 2 visitor-days (the rest were there)"
        ),
        "{said}"
    );
    assert!(served.contains("1 of 1 base addresses served"), "{served}");
    let said = copy(file.to_str().unwrap(), &url);
    assert!(
        said.contains(": 0 of 2 rules, 0 of 1 blocks, 0 of 2 arrivals, 0 of 2 visitor-days"),
        "{said}"
    );
    assert!(said.contains("0 of 1 base addresses served"), "{said}");
    let back = inst.path("back.sqlite");
    copy(&url, back.to_str().unwrap());
    let pg_at = Location::parse(&url, "/".as_ref()).unwrap();
    for at in [pg_at, Location::Sqlite(back)] {
        let after = Store::open_existing(&at).unwrap().dump().unwrap();
        let rules = |d: &addrmunge::store::Dump| {
            d.rules
                .iter()
                .map(|r| (r.scope.clone(), r.reason.clone(), r.created))
                .collect::<Vec<_>>()
        };
        assert_eq!(rules(&after), rules(&before), "{at}");
        assert_eq!(after.blocks, before.blocks, "{at}");
        assert_eq!(after.arrivals, before.arrivals, "{at}");
        assert_eq!(after.visits, before.visits, "{at}");
        assert_eq!(after.served, before.served, "{at}");
    }
    let out = inst.cli(&["store", "copy", "/nonexistent/s.sqlite", &url]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/s.sqlite"));
}
