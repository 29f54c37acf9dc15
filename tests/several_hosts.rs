//! Several hosts, one truth: proxies, resolvers and the CLI, each with its
//! own config file, sharing one PostgreSQL database (a private cluster,
//! tests/common/postgres.rs) and one key. A rule made on one host is obeyed
//! by every resolver within a second, a trap hit at one MX blocks the
//! client at the other, and `trace` on the CLI host sees the visit a proxy
//! logged and the arrival a resolver recorded.
//!
//! Needs Debian's postgresql (scripts/test.sh installs it).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

mod common;
use common::daemon::get;
use common::postfix::Mail;
use common::postgres::Cluster;
use common::wire::socketmap;
use common::{Instance, free_port, one_page_server, trap_address, within};

const PROTECT: &str = "[[protect]]\ndomain = \"plover.com\"\n";

/// A host of the site: its own folder and config, the shared database and key.
fn host(url: &str, first: Option<&Instance>, config: &str) -> Instance {
    let inst = Instance::with_state(url, &format!("{PROTECT}{config}"));
    if let Some(first) = first {
        inst.share_key(first);
    }
    inst
}

/// An MX's resolver config: socketmap and policy ports.
fn mx(map: u16, policy: u16) -> String {
    format!(
        "[resolver]\nsocketmap = [\"inet:127.0.0.1:{map}\"]\npolicy = [\"inet:127.0.0.1:{policy}\"]\n[traps]\nnever_block = []\n"
    )
}

/// A proxy's config on a free port in front of a one-page site; the port.
fn web() -> (String, u16) {
    let (web, up) = (free_port(), one_page_server());
    let config = format!("[proxy]\nlisten = [\"127.0.0.1:{web}\"]\nupstream = \"http://127.0.0.1:{up}\"\n");
    (config, web)
}

/// A site on one host (proxy and resolver, one config): the host, the
/// proxy's port and the socketmap's.
fn one_host_site(url: &str) -> (Instance, u16, u16) {
    let ((proxy, web), map) = (web(), free_port());
    (host(url, None, &(proxy + &mx(map, free_port()))), web, map)
}

/// The policy service's action for mail from `client` to `recipient`.
fn policy(port: u16, client: &str, recipient: &str) -> String {
    let mut p = TcpStream::connect(("127.0.0.1", port)).unwrap();
    p.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        p,
        "request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address={client}\nrecipient={recipient}\n\n"
    )
    .unwrap();
    let mut buf = [0u8; 512];
    let n = p.read(&mut buf).unwrap();
    String::from_utf8_lossy(&buf[..n]).trim().to_owned()
}

#[test]
fn rules_visits_arrivals_and_blocks_reach_every_host() {
    let pg = Cluster::start();
    let url = pg.url();
    let (proxy_config, web_a) = web();
    let proxy_host = host(&url, None, &proxy_config);
    // Web host B sits behind a load balancer on 127.0.0.1 that it trusts,
    // so its visitors are the ones X-Forwarded-For names.
    let (proxy_b_config, web_b) = web();
    let proxy_b_host = host(
        &url,
        Some(&proxy_host),
        &format!("{proxy_b_config}trusted_proxies = [\"127.0.0.1\"]\n"),
    );
    let (map1, pol1, map2, pol2) = (free_port(), free_port(), free_port(), free_port());
    let mx1 = host(&url, Some(&proxy_host), &mx(map1, pol1));
    let mx2 = host(&url, Some(&proxy_host), &mx(map2, pol2));
    let cli = host(&url, Some(&proxy_host), "");
    let _proxy = proxy_host.start("proxy", &[]);
    let _proxy_b = proxy_b_host.start("proxy", &[]);
    let _r1 = mx1.start("resolver", &[]);
    let _r2 = mx2.start("resolver", &[]);
    for (host, port, what) in [
        (&proxy_host, web_a, "proxy"),
        (&proxy_b_host, web_b, "proxy"),
        (&mx1, map1, "resolver"),
        (&mx2, map2, "resolver"),
        (&mx2, pol2, "resolver"),
    ] {
        host.wait_for(port, what);
    }

    // A visitor fetches the page through the proxy; the address it was
    // served delivers at MX 2, and the arrival is recorded there.
    let (status, page) = get(web_a, "/", &[("Host", "www.plover.com")]);
    assert_eq!(status, 200, "{page}");
    let start = page.find("mailto:").unwrap() + "mailto:".len();
    let munged = &page[start..start + page[start..].find('"').unwrap()];
    assert!(munged.contains("-id-"), "{page}");
    assert_eq!(socketmap(map2, &format!("virtual {munged}")), "OK mjd@plover.com");
    assert_eq!(policy(pol2, "192.0.2.30", munged), "action=DUNNO");

    // The CLI host traces it: the proxy's visit and MX 2's arrival.
    let mut trace = String::new();
    within(
        Duration::from_secs(5),
        "trace shows the visit and the arrival",
        || {
            trace = cli.cli_ok(&["trace", munged]);
            trace.contains("first seen") && trace.contains("192.0.2.30")
        },
    );
    assert!(trace.contains("127.0.0.1"), "{trace}");

    // Another visitor, through web host B: the CLI host sees that visit too,
    // beside proxy A's.
    let (status, page_b) = get(
        web_b,
        "/",
        &[("Host", "www.plover.com"), ("X-Forwarded-For", "198.51.100.77")],
    );
    assert_eq!(status, 200, "{page_b}");
    let start = page_b.find("mailto:").unwrap() + "mailto:".len();
    let munged_b = &page_b[start..start + page_b[start..].find('"').unwrap()];
    assert_ne!(munged_b, munged, "one address per visitor");
    within(Duration::from_secs(5), "trace shows B's visit", || {
        let trace = cli.cli_ok(&["trace", munged_b]);
        trace.contains("198.51.100.77") && trace.contains("first seen")
    });
    // The report counts both visitors served an address today, and MX 2's mail.
    let report = cli.cli_ok(&["report"]);
    assert!(
        report.lines().any(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            cols.len() == 4 && cols[1..] == ["2", "2", "1"]
        }),
        "{report}"
    );

    // An expire on the CLI host: both MX refuse within a second.
    cli.cli_ok(&["expire", "--ip", "127.0.0.1", "--reason", "leaked"]);
    for (port, what) in [(map1, "MX 1"), (map2, "MX 2")] {
        within(Duration::from_secs(1), what, || {
            socketmap(port, &format!("virtual {munged}")).starts_with("NOTFOUND")
        });
    }
    let decoded = cli.cli(&["decode", munged]);
    assert!(
        String::from_utf8_lossy(&decoded.stdout).contains("expired"),
        "{decoded:?}"
    );

    // A trap hit at MX 1 blocks the client at MX 2 within a second.
    let trap = trap_address(&cli);
    assert!(policy(pol1, "192.0.2.66", &trap).starts_with("action=DISCARD"));
    let valid = cli.cli_ok(&["encode", "--ip", "203.0.113.5", "mjd@plover.com"]);
    within(Duration::from_secs(1), "MX 2 refuses the trap's client", || {
        policy(pol2, "192.0.2.66", &valid).starts_with("action=REJECT")
    });
    assert_eq!(policy(pol2, "192.0.2.67", &valid), "action=DUNNO");
    assert!(cli.cli_ok(&["blocks"]).contains("192.0.2.66"));
}

/// PostgreSQL stopped under running daemons: pages are still served and
/// munged, the resolver keeps answering from the key and the rules it
/// read last (valid mail delivered, expired mail refused, no TEMP), the
/// visit log holds what it cannot write and writes it when the database is
/// back; the CLI fails clearly meanwhile instead of claiming a rule it did
/// not store.
#[test]
fn an_outage_never_stops_the_site_or_bounces_mail() {
    let pg = Cluster::start();
    let url = pg.url();
    let (site, web, map) = one_host_site(&url);
    let _proxy = site.start("proxy", &[]);
    let _resolver = site.start("resolver", &[]);
    site.wait_for(web, "proxy");
    site.wait_for(map, "resolver");
    let valid = site.cli_ok(&["encode", "--ip", "203.0.113.5", "mjd@plover.com"]);
    let expired = site.cli_ok(&["encode", "--ip", "203.0.113.6", "mjd@plover.com"]);
    site.cli_ok(&["expire", "--ip", "203.0.113.6"]);
    within(Duration::from_secs(1), "the rule made before the outage", || {
        socketmap(map, &format!("virtual {expired}")).starts_with("NOTFOUND")
    });
    assert_eq!(socketmap(map, &format!("virtual {valid}")), "OK mjd@plover.com");

    let (_, before) = get(web, "/", &[("Host", "www.plover.com")]);
    pg.stop();
    let out = site.cli(&["expire", "--ip", "203.0.113.5"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("state store postgresql://addrmunge@127.0.0.1"),
        "{err}"
    );
    // decode still says who an address was served to, by the key alone,
    // and says that no rule was checked: exit 75, not 0.
    let out = site.cli(&["decode", &valid]);
    assert_eq!(out.status.code(), Some(75), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("203.0.113.5"),
        "{out:?}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("no expire rule was checked"));
    let forged = valid.replacen("-id-", "-id-x", 1);
    assert_eq!(site.cli(&["decode", &forged]).status.code(), Some(1));
    let start = Instant::now();
    let mut served = 0;
    while start.elapsed() < Duration::from_secs(2) {
        served += 1;
        let (status, page) = get(web, "/", &[("Host", "www.plover.com")]);
        assert_eq!(status, 200, "{page}");
        assert!(page.contains("mailto:mjd-id-"), "{page}");
        assert_eq!(
            page, before,
            "the page served as before the outage, byte for byte"
        );
        assert_eq!(socketmap(map, &format!("virtual {valid}")), "OK mjd@plover.com");
        assert!(socketmap(map, &format!("virtual {expired}")).starts_with("NOTFOUND"));
        std::thread::sleep(Duration::from_millis(100));
    }

    assert!(
        site.log("resolver")
            .contains("answering from the rules and blocks last read")
    );

    pg.resume();
    within(Duration::from_secs(10), "the database is back", || {
        site.cli(&["rules"]).status.success()
    });
    // The visits made during the outage were held, and are written now.
    within(
        Duration::from_secs(5),
        "the visits held through the outage",
        || {
            pg.psql("addrmunge", "SELECT coalesce(sum(requests), 0) FROM visits")
                .trim()
                == (served + 1).to_string()
        },
    );
    site.cli_ok(&["expire", "--ip", "203.0.113.5"]);
    within(Duration::from_secs(1), "the rule made after the outage", || {
        socketmap(map, &format!("virtual {valid}")).starts_with("NOTFOUND")
    });
}

/// Proxy and resolver started while PostgreSQL is down: the site is served
/// at once, the resolver answers TEMP (it has never read the rules, so it
/// cannot decide; Postfix defers), and both take the database up when it
/// comes, making the schema if they are first.
#[test]
fn daemons_start_while_the_database_is_down() {
    let pg = Cluster::start();
    pg.stop();
    let (site, web, map) = one_host_site(&pg.url());
    let _proxy = site.start("proxy", &[]);
    let _resolver = site.start("resolver", &[]);
    site.wait_for(web, "proxy");
    site.wait_for(map, "resolver");
    let (status, page) = get(web, "/", &[("Host", "www.plover.com")]);
    assert_eq!(status, 200, "{page}");
    let start = page.find("mailto:").unwrap() + "mailto:".len();
    let munged = page[start..start + page[start..].find('"').unwrap()].to_owned();
    assert!(munged.contains("-id-"), "{page}");
    assert!(socketmap(map, &format!("virtual {munged}")).starts_with("TEMP"));

    pg.resume();
    within(
        Duration::from_secs(10),
        "the resolver takes the database up",
        || socketmap(map, &format!("virtual {munged}")) == "OK mjd@plover.com",
    );
    // Visits from now on reach the database.
    get(web, "/", &[("Host", "www.plover.com")]);
    within(Duration::from_secs(5), "the proxy writes its visit log", || {
        pg.psql("addrmunge", "SELECT count(*) FROM visits").trim() != "0"
    });
}

/// Least privilege: with the roles and the GRANTs `store grants` prints,
/// the proxy only adds visits and the resolver only reads rules and adds
/// arrivals and blocks; each daemon does its whole job with them, and
/// nothing more is allowed.
#[test]
fn each_daemon_works_with_only_its_grants() {
    let pg = Cluster::start();
    let owner = host(&pg.url(), None, "");
    // The README's two commands, as written, against this cluster.
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_addrmunge"))
        .parent()
        .unwrap();
    let out = std::process::Command::new("sh")
        .args(["-ec", &common::readme_block("sh", "addrmunge store grants |")])
        .env(
            "PATH",
            format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
        )
        .env("ADDRMUNGE_CONFIG", owner.config())
        .envs([("PGHOST", "127.0.0.1"), ("PGUSER", "addrmunge")])
        .env("PGPORT", pg.port.to_string())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let named = owner.cli_ok(&["store", "grants", "--proxy-role", "web", "--resolver-role", "mx"]);
    assert!(
        named.contains("TO \"web\"") && named.contains("TO \"mx\"") && !named.contains("addrmunge_proxy")
    );
    let (am_proxy, am_resolver) = ("addrmunge_proxy", "addrmunge_resolver");

    let ((proxy_config, web), map, pol) = (web(), free_port(), free_port());
    let web_host = host(&pg.url_as(am_proxy, "addrmunge"), Some(&owner), &proxy_config);
    let mail_host = host(&pg.url_as(am_resolver, "addrmunge"), Some(&owner), &mx(map, pol));
    let _proxy = web_host.start("proxy", &[]);
    let _resolver = mail_host.start("resolver", &[]);
    web_host.wait_for(web, "proxy");
    mail_host.wait_for(pol, "resolver");

    // The proxy's visits land; the resolver judges, records and blocks.
    let (status, page) = get(web, "/", &[("Host", "www.plover.com")]);
    assert_eq!(status, 200, "{page}");
    within(Duration::from_secs(5), "the proxy's visit", || {
        pg.psql("addrmunge", "SELECT count(*) FROM visits").trim() == "1"
    });
    let valid = owner.cli_ok(&["encode", "--ip", "203.0.113.5", "mjd@plover.com"]);
    assert_eq!(policy(pol, "192.0.2.30", &valid), "action=DUNNO");
    let trap = trap_address(&owner);
    assert!(policy(pol, "192.0.2.66", &trap).starts_with("action=DISCARD"));
    within(
        Duration::from_secs(5),
        "the resolver's arrivals and block",
        || {
            pg.psql("addrmunge", "SELECT count(*) FROM arrivals").trim() == "2"
                && pg.psql("addrmunge", "SELECT count(*) FROM blocks").trim() == "1"
        },
    );
    owner.cli_ok(&["expire", "--ip", "203.0.113.5"]);
    within(
        Duration::from_secs(1),
        "the resolver sees the owner's rule",
        || socketmap(map, &format!("virtual {valid}")).starts_with("NOTFOUND"),
    );

    // Nothing beyond that.
    for (role, sql) in [
        (
            am_proxy,
            "INSERT INTO rules(scope, day, created) VALUES ('day', 1, 0)",
        ),
        (am_proxy, "DELETE FROM visits"),
        (am_proxy, "SELECT * FROM arrivals"),
        (am_proxy, "INSERT INTO blocks VALUES ('192.0.2.1', 1, '', 0)"),
        // A resolver adds [containment] rules, but never changes or
        // removes the owner's.
        (am_resolver, "DELETE FROM rules"),
        (am_resolver, "UPDATE rules SET reason = ''"),
        (am_resolver, "DELETE FROM served"),
        (am_resolver, "SELECT * FROM visits"),
        (am_resolver, "DELETE FROM arrivals"),
    ] {
        let e = pg.psql_as(role, "addrmunge", sql).unwrap_err();
        assert!(e.contains("permission denied"), "{role}: {sql}: {e}");
    }
    assert!(owner.cli_ok(&["store", "prune"]).starts_with("pruned "));
    assert!(
        !web_host.log("proxy").contains("ERROR"),
        "{}",
        web_host.log("proxy")
    );
}

/// The README's topology with real mail servers: a proxy, two MX (each a
/// real Postfix asking its own resolver) and a CLI host on one database.
/// Mail to the address a visitor was served reaches MX 2 and is traced on
/// the CLI host; an expire there makes both Postfix refuse it at RCPT; a
/// trap hit at MX 1 gets the client refused at MX 2.
#[test]
fn two_postfix_mx_share_rules_and_blocks() {
    let pg = Cluster::start();
    let url = pg.url();
    let (proxy_config, web) = web();
    let web_host = host(&url, None, &proxy_config);
    let _proxy = web_host.start("proxy", &[]);
    web_host.wait_for(web, "proxy");
    let mx1 = Mail::start_shared(&url, Some(&web_host), "");
    let mx2 = Mail::start_shared(&url, Some(&web_host), "");
    let cli = host(&url, Some(&web_host), "");

    let (_, page) = get(web, "/", &[("Host", "www.plover.com")]);
    let start = page.find("mailto:").unwrap() + "mailto:".len();
    let munged = page[start..start + page[start..].find('"').unwrap()].to_owned();
    let (ok, t) = mx2.send("127.0.0.5", &munged);
    assert!(ok, "{t}");
    assert!(mx2.delivered("mjd", &munged), "not delivered at MX 2");
    let trace = cli.cli_ok(&["trace", &munged]);
    assert!(
        trace.contains("127.0.0.1") && trace.contains("127.0.0.5"),
        "{trace}"
    );

    cli.cli_ok(&["expire", "--ip", "127.0.0.1"]);
    for (mx, what) in [(&mx1, "MX 1"), (&mx2, "MX 2")] {
        within(Duration::from_secs(1), what, || {
            mx.postmap("recipient", &munged).1.starts_with("REJECT")
        });
        let (ok, t) = mx.send("127.0.0.5", &munged);
        assert!(!ok && t.contains("<** 5"), "{what} took it:\n{t}");
    }

    let trap = trap_address(&cli);
    let (ok, t) = mx1.send("127.0.0.7", &trap);
    assert!(ok, "a trap looks accepted: {t}");
    let valid = cli.cli_ok(&["encode", "--ip", "203.0.113.5", "mjd@plover.com"]);
    within(Duration::from_secs(1), "MX 2 knows the block", || {
        mx2.postmap("client", "127.0.0.7").1.starts_with("REJECT")
    });
    let (ok, t) = mx2.send("127.0.0.7", &valid);
    assert!(
        !ok && t.contains("<** 5"),
        "MX 2 took mail from the trap's client:\n{t}"
    );
    let (ok, t) = mx2.send("127.0.0.8", &valid);
    assert!(ok, "{t}");
}

/// check-config says which store a host uses and whether it can reach it.
#[test]
fn check_config_reports_the_database() {
    let pg = Cluster::start();
    let owner = host(&pg.url(), None, "");
    let text = owner.cli_ok(&["check-config"]);
    assert!(text.contains("(PostgreSQL, reachable, no schema yet"), "{text}");
    owner.cli_ok(&["rules"]);
    let text = owner.cli_ok(&["check-config"]);
    assert!(
        text.contains("(PostgreSQL, reachable, schema up to date)"),
        "{text}"
    );
    pg.stop();
    let out = owner.cli(&["check-config"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("cannot use the database"),
        "{err}"
    );
}

/// A database that hangs (here a table locked by another session) fails a
/// command after the statement timeout instead of holding it for ever.
#[test]
fn a_hung_database_times_out() {
    let pg = Cluster::start();
    let owner = host(&pg.url(), None, "");
    owner.cli_ok(&["rules"]);
    let mut locker = std::process::Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &pg.port.to_string(),
            "-U",
            "addrmunge",
            "-d",
            "addrmunge",
        ])
        .args([
            "-c",
            "BEGIN; LOCK TABLE rules IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(30); COMMIT;",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    within(Duration::from_secs(5), "the lock is taken", || {
        pg.psql(
            "postgres",
            "SELECT count(*) FROM pg_locks WHERE mode = 'AccessExclusiveLock' AND relation IS NOT NULL",
        )
        .trim()
            != "0"
    });
    let out = owner.cli(&["expire", "--ip", "203.0.113.5"]);
    let _ = locker.kill();
    let _ = locker.wait();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("statement timeout"),
        "{err}"
    );
}

/// Daemons whose roles may read but not write (grants forgotten, or
/// revoked): the site is served and munged, mail judged by the key and the
/// rules as usual, a trap's client still refused by this MX; each says
/// what it may not do, and nothing falls over. The CLI under such a role
/// refuses to claim a rule it could not store.
#[test]
fn daemons_without_write_grants_keep_serving() {
    let pg = Cluster::start();
    let owner = host(&pg.url(), None, "");
    owner.cli_ok(&["expire", "--ip", "203.0.113.6"]);
    pg.psql(
        "addrmunge",
        "CREATE ROLE am_reader LOGIN; GRANT SELECT ON ALL TABLES IN SCHEMA public TO am_reader",
    );
    let reader = pg.url_as("am_reader", "addrmunge");
    let ((proxy_config, web), map, pol) = (web(), free_port(), free_port());
    let site = host(&reader, Some(&owner), &(proxy_config + &mx(map, pol)));
    let _proxy = site.start("proxy", &[]);
    let _resolver = site.start("resolver", &[]);
    site.wait_for(web, "proxy");
    site.wait_for(pol, "resolver");

    for _ in 0..3 {
        let (status, page) = get(web, "/", &[("Host", "www.plover.com")]);
        assert_eq!(status, 200, "{page}");
        assert!(page.contains("mailto:mjd-id-"), "{page}");
    }
    let valid = owner.cli_ok(&["encode", "--ip", "203.0.113.5", "mjd@plover.com"]);
    let expired = owner.cli_ok(&["encode", "--ip", "203.0.113.6", "mjd@plover.com"]);
    let trap = trap_address(&owner);
    assert_eq!(policy(pol, "192.0.2.30", &valid), "action=DUNNO");
    assert_eq!(socketmap(map, &format!("virtual {valid}")), "OK mjd@plover.com");
    assert!(socketmap(map, &format!("virtual {expired}")).starts_with("NOTFOUND"));
    assert!(policy(pol, "192.0.2.66", &trap).starts_with("action=DISCARD"));
    assert!(policy(pol, "192.0.2.66", &valid).starts_with("action=REJECT"));

    within(Duration::from_secs(5), "both say what they may not do", || {
        ["proxy", "resolver"].iter().all(|d| {
            let log = site.log(d);
            log.contains("permission denied") && log.contains("`addrmunge store grants`")
        })
    });
    assert_eq!(pg.psql("addrmunge", "SELECT count(*) FROM visits").trim(), "0");
    assert_eq!(get(web, "/", &[("Host", "www.plover.com")]).0, 200);
    assert_eq!(policy(pol, "192.0.2.31", &valid), "action=DUNNO");

    let out = site.cli(&["expire", "--ip", "203.0.113.5"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("permission denied"),
        "{out:?}"
    );
    assert_eq!(
        pg.psql("addrmunge", "SELECT count(*) FROM rules").trim(),
        "1",
        "no rule claimed"
    );
}
