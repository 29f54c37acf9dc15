//! "Who leaked this, and how do I cut off only them?" with real peers: a
//! real nginx behind the proxy, a real Postfix in front of the resolver,
//! spam from several loopback networks. Mangled copies of harvested
//! addresses (their fronts cut off) are trapped and traced to the visitor
//! they were served to; `[containment]` cuts off a harvest by itself.
//!
//! Needs Debian's postfix, swaks, nginx and curl (scripts/test.sh installs
//! them).

use std::path::Path;
use std::time::Duration;

mod common;
use common::nginx::Nginx;
use common::postfix::{Mail, day_offset};
use common::proxy::{fetch_as, munged_addresses};
use common::{Running, free_port, wait_for_port, within};

/// The demo site behind a proxy sharing a Postfix pair's key and store,
/// with `extra` in the config (after the `[resolver]` lines).
struct Site {
    m: Mail,
    port: u16,
    admin: u16,
    _proxy: Running,
    _nginx: Nginx,
}

impl Site {
    fn start(extra: &str) -> Site {
        let nginx = Nginx::start(&Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/demo"));
        let (port, admin) = (free_port(), free_port());
        let m = Mail::start(&format!(
            "admin_listen = \"127.0.0.1:{admin}\"\n{extra}\n[proxy]\nlisten = [\"127.0.0.1:{port}\"]\nupstream = \"http://127.0.0.1:{}\"\n",
            nginx.port
        ));
        let proxy = m.inst.start("proxy", &[]);
        wait_for_port(port, "addrmunge proxy");
        Site {
            m,
            port,
            admin,
            _proxy: proxy,
            _nginx: nginx,
        }
    }

    /// mjd's address as a browser at `visitor` is shown it today.
    fn visit(&self, visitor: &str) -> String {
        let (status, page) = fetch_as(self.port, visitor, "Mozilla/5.0 (X11; Linux)", "/contact.html");
        assert_eq!(status, 200, "{page}");
        let found = munged_addresses(&page);
        found.into_iter().find(|a| a.starts_with("mjd-id-")).unwrap()
    }

    /// Sends from `client`; whether Postfix took it.
    fn send(&self, client: &str, to: &str) -> bool {
        self.m.send(client, to).0
    }

    fn metric(&self, name: &str) -> u64 {
        let (_, text) = common::daemon::get(self.admin, "/metrics", &[]);
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Waits until `addrmunge rules` lists a rule containing `what`; its
    /// line.
    fn rule(&self, what: &str) -> String {
        let mut line = String::new();
        within(Duration::from_secs(10), what, || {
            let rules = self.m.cli_ok(&["rules"]);
            line = rules.lines().find(|l| l.contains(what)).unwrap_or("").to_owned();
            !line.is_empty()
        });
        line
    }
}

/// The token alone, as Dominus's harvesters kept it.
fn token_of(munged: &str) -> String {
    let (local, domain) = munged.split_once('@').unwrap();
    format!("{}@{domain}", local.rsplit('-').next().unwrap())
}

#[test]
fn mangled_copies_are_trapped_traced_and_contained() {
    let s = Site::start("[containment]\nnetworks = 3\n");
    let today = day_offset(0);
    let a = s.visit("127.0.0.3");
    let b = s.visit("127.0.0.4");
    let cut = token_of(&a);
    let cut_upper = format!("ID-{}", cut.to_uppercase());
    // The proxy records the bases it munged; the resolver decodes copies
    // cut from them. Until then a token-shaped local part is bare.
    within(Duration::from_secs(10), "the copy is recognised", || {
        s.m.postmap("recipient", &cut) == (true, "DISCARD".into())
    });
    let out = s.m.cli(&["decode", "--json", &cut_upper]);
    assert_eq!(out.status.code(), Some(1), "not a valid address");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["status"], "mangled", "{json}");
    assert_eq!(json["ip"], "127.0.0.3");
    assert_eq!(json["date"], today.as_str());
    assert_eq!(json["kind"], "visitor");
    assert_eq!(json["original"], "mjd@plover.com");
    assert_eq!(json["copy_of"], a.as_str());

    // Spam to the copy: accepted-looking, never delivered, sender blocked.
    assert!(s.send("127.0.1.5", &cut), "a copy is discarded, not refused");
    assert!(!s.send("127.0.1.5", &b), "its sender is blocked");
    // The copy proved 127.0.0.3's harvest: that visitor-day is cut off,
    // from a client that never mailed anything before too.
    let rule = s.rule("ip 127.0.0.3 on");
    assert!(
        rule.contains("auto: mail to") && rule.contains("a mangled copy of"),
        "{rule}"
    );
    assert!(!s.send("127.0.2.5", &a), "the harvested address is expired");
    let trace = s.m.cli_ok(&["trace", &cut]);
    assert!(
        trace.contains(&format!("mangled copy of {a}, served to 127.0.0.3 on {today}")),
        "{trace}"
    );
    assert!(trace.contains("from 127.0.1.5"), "{trace}");
    assert!(
        trace.contains(&format!("addrmunge expire --address {a}")),
        "{trace}"
    );
    // The blocked sender's mail to 127.0.0.4's address was evidence too.
    let rule_b = s.rule("ip 127.0.0.4 on");
    assert!(rule_b.contains("blocked for mailing a trap"), "{rule_b}");
    assert!(!s.send("127.0.2.5", &b));

    // Spam clients in three networks: the third network's message
    // completes the evidence and is refused with the rule it makes, as is
    // every later one; another visitor's address still delivers, from
    // those same clients.
    let c = s.visit("127.0.0.6");
    let d = s.visit("127.0.0.7");
    for client in ["127.0.3.5", "127.0.3.6", "127.0.4.5"] {
        assert!(s.send(client, &c), "{client}");
    }
    let (refused, t) = s.m.send("127.0.5.5", &c);
    assert!(!refused && t.contains("5.1.1"), "{t}");
    let rule_c = s.rule("ip 127.0.0.6 on");
    assert!(
        rule_c.contains("3 networks (127.0.3.0/24, 127.0.4.0/24, 127.0.5.0/24)"),
        "{rule_c}"
    );
    let (refused, t) = s.m.send("127.0.6.5", &c);
    assert!(!refused && t.contains("<** 5"), "{t}");
    assert!(s.send("127.0.3.5", &d) && s.m.delivered("mjd", &d));
    assert_eq!(s.metric("addrmunge_resolver_containment_rules_total"), 3);

    // Undone by the owner: delivered again, and not cut off again.
    let n = rule_c.trim_start_matches('#').split(' ').next().unwrap();
    s.m.cli_ok(&["unexpire", "--rule", n]);
    within(Duration::from_secs(5), "unexpired", || s.send("127.0.7.5", &c));
    assert!(s.send("127.0.8.5", &c) && s.send("127.0.9.5", &c));

    // report: the copies and the rules it made.
    let report: serde_json::Value =
        serde_json::from_str(&s.m.cli_ok(&["report", "--days", "1", "--json"])).unwrap();
    assert_eq!(report["mangled_hits"], 1, "{report}");
    assert_eq!(report["contained"].as_array().unwrap().len(), 2, "{report}");
    let text = s.m.cli_ok(&["report", "--days", "1"]);
    assert!(
        text.contains("Mangled copies") && text.contains("Cut off automatically"),
        "{text}"
    );
    let html = s.m.path("report.html");
    s.m.cli_ok(&["report", "--days", "1", "--html", html.to_str().unwrap()]);
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("<span id=\"mangled-hits\"><b>1</b>"), "{page}");
    assert!(
        page.contains("id=\"contained-table\"") && page.contains("auto: mail to"),
        "{page}"
    );
}

/// Without `[containment]` nothing is cut off automatically; with
/// `mangled = "reject"` a copy is refused, its sender not blocked; a
/// token-shaped local part that decodes with no base is judged as before.
#[test]
fn mangled_copies_per_setting_and_real_addresses_untouched() {
    let s = Site::start("mangled = \"reject\"\n");
    let a = s.visit("127.0.0.3");
    let copy = a.replacen("mjd-", "", 1);
    within(Duration::from_secs(10), "the copy is recognised", || {
        s.m.postmap("recipient", &copy).1.starts_with("REJECT 5.1.1")
    });
    let (ok, t) = s.m.send("127.0.1.5", &copy);
    assert!(!ok && t.contains("5.1.1"), "{t}");
    assert!(s.send("127.0.1.5", &a) && s.m.delivered("mjd", &a), "not blocked");
    std::thread::sleep(Duration::from_millis(600));
    assert!(s.m.cli_ok(&["rules"]).contains("no rules"), "containment is off");
    // Bare addresses and other users are as before (bare = accept).
    let stranger = "0123456789abcdefghjkmnpq@plover.com";
    assert_eq!(s.m.postmap("recipient", stranger), (true, "DUNNO".into()));
    assert!(
        s.send("127.0.1.5", "webmaster@plover.com") && s.m.delivered("webmaster", "webmaster@plover.com")
    );
}
