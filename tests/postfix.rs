//! The resolver against a real Postfix (tests/common/postfix.rs starts one
//! of its own per test): delivery, refusal and traps over real SMTP with
//! swaks and `postmap -q`, in each of the README's setups.
//!
//! Needs Debian's postfix and swaks (scripts/test.sh installs them).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, Instant};

mod common;
use common::postfix::{Mail, Setup, day_offset};
use common::readme_block;

#[test]
fn postfix_delivers_refuses_and_traps() {
    let m = Mail::start("");
    let today = day_offset(0);
    let a = m.cli_ok(&["encode", "--ip", "203.0.113.9", "mjd@plover.com"]);
    let b = m.cli_ok(&["encode", "--ip", "198.51.100.20", "mjd@plover.com"]);

    // postmap -q against every map, with case-varied keys and an extension.
    assert_eq!(
        m.postmap("virtual", &a.to_uppercase()),
        (true, "mjd@plover.com".into())
    );
    let (l, d) = a.split_once('@').unwrap();
    assert_eq!(
        m.postmap("virtual", &format!("{l}+news@{d}")),
        (true, "mjd@plover.com".into())
    );
    assert!(
        !m.postmap("virtual", "mjd@plover.com").0,
        "base addresses must be NOTFOUND"
    );
    assert_eq!(m.postmap("virtual", "Plover.COM"), (true, "plover.com".into()));
    assert!(!m.postmap("virtual", "example.com").0);
    assert_eq!(m.postmap("recipient", &a), (true, "DUNNO".into()));
    assert!(m.postmap("relay", &a).0);
    assert!(!m.postmap("client", "127.0.0.2").0);
    let forged = format!(
        "{}{}@{d}",
        &l[..l.len() - 1],
        if l.ends_with('a') { 'b' } else { 'a' }
    );
    let (found, text) = m.postmap("recipient", &forged);
    assert!(found && text.starts_with("REJECT 5.1.1 Sorry"), "{text}");
    assert!(!m.postmap("relay", &forged).0);
    assert!(!m.postmap("virtual", &forged).0);

    // deliver_to: munged addresses of press.test go to the owner's mailbox.
    let press = m.cli_ok(&["encode", "--ip", "203.0.113.9", "editor@press.test"]);
    assert_eq!(m.postmap("virtual", &press), (true, "mjd@mbox.test".into()));
    let (ok, t) = m.send("127.0.0.1", &press);
    assert!(ok, "{t}");
    assert!(m.delivered("mjd", &press));
    // A labelled minted address resolves until a rule expires it.
    let shop = m.cli_ok(&["mint", "mjd@plover.com", "--label", "shop"]);
    assert_eq!(m.postmap("virtual", &shop), (true, "mjd@plover.com".into()));
    m.cli_ok(&["expire", "--address", &shop]);
    std::thread::sleep(Duration::from_millis(1000));
    assert!(!m.postmap("virtual", &shop).0);
    let (found, text) = m.postmap("recipient", &shop);
    assert!(found && text.starts_with("REJECT"), "{text}");

    // The same maps over the unix socket, which is 0660 and group postfix.
    let sock = m.path("map.sock");
    let meta = fs::metadata(&sock).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    assert_eq!(
        meta.gid(),
        addrmunge::listen::lookup_id("/etc/group", "postfix").unwrap()
    );
    let out = Command::new("postmap")
        .arg("-c")
        .arg(m.path("etc"))
        .arg("-q")
        .arg(&a)
        .arg(format!("socketmap:unix:{}:virtual", sock.display()))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "mjd@plover.com");

    // The README's "check a lookup by hand" lines, with this address and port.
    let by_hand = readme_block("sh", "postmap -q")
        .replace("mjd-id-…@plover.com", &a)
        .replace("127.0.0.1:10100", &format!("127.0.0.1:{}", m.map))
        .replace("127.0.0.1 10100", &format!("127.0.0.1 {}", m.map));
    // MAIL_CONFIG: this machine may have no /etc/postfix/main.cf.
    let out = Command::new("bash")
        .args(["-c", &by_hand])
        .env("MAIL_CONFIG", m.path("etc"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said == "mjd@plover.com\n17:OK mjd@plover.com,",
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A valid munged address is delivered to the real mailbox.
    let (ok, t) = m.send("127.0.0.1", &a);
    assert!(ok, "{t}");
    assert!(m.delivered("mjd", &a), "no delivery for {a}");
    // So is its quoted form, as the proxy munges `"mjd"@plover.com`; a
    // forged one in quotes is refused all the same.
    let quoted = format!("\"{l}\"@{d}");
    let (ok, t) = m.send("127.0.0.1", &quoted);
    assert!(ok, "{t}");
    assert!(m.delivered("mjd", &quoted), "no delivery for {quoted}");
    let (fl, fd) = forged.split_once('@').unwrap();
    let (ok, t) = m.send("127.0.0.1", &format!("\"{fl}\"@{fd}"));
    assert!(!ok && t.contains("Sorry, this address has expired"), "{t}");

    // A forged token: refused at RCPT with our text.
    let (ok, t) = m.send("127.0.0.1", &forged);
    assert!(
        !ok && t.contains("5.1.1") && t.contains("Sorry, this address has expired"),
        "{t}"
    );

    // expire --ip: refused within a second, the other visitor still delivered.
    m.cli_ok(&["expire", "--ip", "203.0.113.9", "--reason", "spam"]);
    std::thread::sleep(Duration::from_millis(1000));
    let (ok, t) = m.send("127.0.0.1", &a);
    assert!(!ok && t.contains("Sorry, this address has expired"), "{t}");
    let (ok, t) = m.send("127.0.0.1", &b);
    assert!(ok, "{t}");
    assert!(m.delivered("mjd", &b));

    // expire --day: every ID of today refused.
    m.cli_ok(&["expire", "--day", &today]);
    std::thread::sleep(Duration::from_millis(1000));
    let (ok, t) = m.send("127.0.0.1", &b);
    assert!(!ok && t.contains("Sorry"), "{t}");
    m.cli_ok(&["unexpire", "--day", &today]);
    // The resolver picks rule changes up within its 250 ms refresh; give it time.
    std::thread::sleep(Duration::from_millis(1000));

    // Bare protected address with bare = accept (the default): delivered.
    let (ok, t) = m.send("127.0.0.1", "mjd@plover.com");
    assert!(ok, "{t}");
    // An exempt address is never refused.
    let (ok, t) = m.send("127.0.0.1", "list-subscribe@plover.com");
    assert!(ok, "{t}");

    // Minted daily address: made today or yesterday accepted, the day before refused.
    for (offset, accepted) in [(0, true), (-1, true), (-2, false)] {
        let addr = m.cli_ok(&[
            "mint",
            "mjd@plover.com",
            "--valid",
            "1d",
            "--date",
            &day_offset(offset),
        ]);
        let (ok, t) = m.send("127.0.0.1", &addr);
        assert_eq!(ok, accepted, "minted {offset} days: {t}");
    }

    // A trap address from 127.0.0.2: accepted, not delivered, client blocked.
    let trap = m.cli_ok(&["encode", "--ip", "192.0.2.66", "--kind", "trap", "mjd@plover.com"]);
    let before = m.mailbox("mjd").len();
    let (ok, t) = m.send("127.0.0.2", &trap);
    assert!(ok, "trap mail must be accepted: {t}");
    let (ok, t) = m.send("127.0.0.2", &b);
    assert!(
        !ok && t.contains("spam trap"),
        "blocked client must be refused: {t}"
    );
    let (found, text) = m.postmap("client", "127.0.0.2");
    assert!(found && text.starts_with("REJECT"), "{text}");
    // 127.0.0.1 is never blocked and still delivers.
    let (ok, t) = m.send("127.0.0.1", &trap);
    assert!(ok, "{t}");
    let c = m.cli_ok(&["encode", "--ip", "198.51.100.21", "mjd@plover.com"]);
    let (ok, t) = m.send("127.0.0.1", &c);
    assert!(ok, "{t}");
    assert!(m.delivered("mjd", &c));
    assert!(
        !m.mailbox("mjd")
            .iter()
            .any(|msg| msg.contains(&format!("Subject: to {trap}"))),
        "trap mail was delivered"
    );
    assert_eq!(m.mailbox("mjd").len(), before + 1);

    // Arrivals were recorded for trace.
    std::thread::sleep(Duration::from_millis(500));
    let mut store = addrmunge::Store::open(&m.path("state.sqlite")).unwrap();
    let arrivals = store.arrivals_for(&trap).unwrap();
    assert!(
        arrivals
            .iter()
            .any(|x| x.client_ip == "127.0.0.2" && x.helo == "sender.example"),
        "{arrivals:?}"
    );
    assert!(!store.blocks(addrmunge::store::now_unix()).unwrap().is_empty());
}

#[test]
fn unix_sockets_with_a_chrooted_smtpd() {
    let m = Mail::start_setup("", Setup::Chroot);
    let master = fs::read_to_string(m.path("etc/master.cf")).unwrap();
    assert!(
        master.lines().next().unwrap().split_whitespace().nth(4) == Some("y"),
        "smtpd must run chrooted:\n{master}"
    );
    let a = m.cli_ok(&["encode", "--ip", "203.0.113.9", "mjd@plover.com"]);
    let (ok, t) = m.send("127.0.0.1", &a);
    assert!(ok, "{t}");
    assert!(m.delivered("mjd", &a), "no delivery for {a}");
    m.cli_ok(&["expire", "--ip", "203.0.113.9"]);
    std::thread::sleep(Duration::from_millis(1000));
    let (ok, t) = m.send("127.0.0.1", &a);
    assert!(!ok && t.contains("Sorry, this address has expired"), "{t}");
    // The policy service over its unix socket: trap mail discarded, client blocked.
    let trap = m.cli_ok(&["encode", "--ip", "192.0.2.66", "--kind", "trap", "mjd@plover.com"]);
    let (ok, t) = m.send("127.0.0.2", &trap);
    assert!(ok, "{t}");
    let b = m.cli_ok(&["encode", "--ip", "198.51.100.20", "mjd@plover.com"]);
    let (ok, t) = m.send("127.0.0.2", &b);
    assert!(!ok && t.contains("spam trap"), "{t}");
    let log = fs::read_to_string(m.path("maillog")).unwrap_or_default();
    assert!(!log.contains("warning: socketmap"), "{log}");
}

#[test]
fn backup_mx_refuses_unknown_recipients() {
    let m = Mail::start_setup("", Setup::BackupMx);
    let a = m.cli_ok(&["encode", "--ip", "203.0.113.9", "mjd@plover.com"]);
    let (ok, t) = m.send("127.0.0.1", &a);
    assert!(ok, "a valid ID must be relayed: {t}");
    let (l, d) = a.split_once('@').unwrap();
    let forged = format!(
        "{}{}@{d}",
        &l[..l.len() - 1],
        if l.ends_with('a') { 'b' } else { 'a' }
    );
    let (ok, t) = m.send("127.0.0.1", &forged);
    assert!(!ok && t.contains("relay recipient table"), "{t}");
    m.cli_ok(&["expire", "--ip", "203.0.113.9"]);
    std::thread::sleep(Duration::from_millis(1000));
    let (ok, t) = m.send("127.0.0.1", &a);
    assert!(
        !ok && t.contains("relay recipient table"),
        "an expired ID must be refused: {t}"
    );
}

#[test]
fn bare_reject_setting() {
    let m = Mail::start("bare = \"reject\"\nbare_text = \"5.1.1 Please use the address on the web site.\"\n");
    let (ok, t) = m.send("127.0.0.1", "mjd@plover.com");
    assert!(!ok && t.contains("Please use the address on the web site"), "{t}");
    let (ok, t) = m.send("127.0.0.1", "list-subscribe@plover.com");
    assert!(ok, "exempt addresses are not bare-rejected: {t}");
    let a = m.cli_ok(&["encode", "--ip", "203.0.113.9", "mjd@plover.com"]);
    let (ok, t) = m.send("127.0.0.1", &a);
    assert!(ok, "{t}");

    // SIGHUP reloads the config: a new text, and bare addresses accepted.
    let cfg = m.path("addrmunge.toml");
    let text = fs::read_to_string(&cfg).unwrap();
    fs::write(&cfg, text.replace("bare = \"reject\"", "bare = \"accept\"")).unwrap();
    assert!(
        Command::new("kill")
            .arg("-HUP")
            .arg(m.resolver.0.id().to_string())
            .status()
            .unwrap()
            .success()
    );
    let start = Instant::now();
    while m.postmap("recipient", "mjd@plover.com") != (true, "DUNNO".into()) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "SIGHUP did not reload the config"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (ok, t) = m.send("127.0.0.1", "mjd@plover.com");
    assert!(ok, "{t}");
}

/// Dominus's own case: only `mjd*` is munged, and plover.com has other
/// users, whose mail is none of the resolver's business.
#[test]
fn other_users_of_a_protected_domain_get_their_mail() {
    let protect = "[[protect]]\ndomain = \"plover.com\"\nlocal = \"mjd*\"\n";
    let m = Mail::start_with(protect, "bare = \"reject\"\n", Setup::Inet);
    for other in ["webmaster@plover.com", "zz@plover.com"] {
        assert_eq!(m.postmap("recipient", other), (false, String::new()), "{other}");
    }
    let (ok, t) = m.send("127.0.0.1", "webmaster@plover.com");
    assert!(ok, "{t}");
    assert!(m.delivered("webmaster", "webmaster@plover.com"));
    // The owner's own address is still ours: munged delivered, bare and
    // forged refused.
    let a = m.cli_ok(&["encode", "--ip", "203.0.113.9", "mjd@plover.com"]);
    let (ok, t) = m.send("127.0.0.1", &a);
    assert!(ok, "{t}");
    assert!(m.delivered("mjd", &a));
    let (ok, t) = m.send("127.0.0.1", "mjd@plover.com");
    assert!(!ok && t.contains("does not take mail"), "{t}");
    let (l, d) = a.split_once('@').unwrap();
    let forged = format!(
        "{}{}@{d}",
        &l[..l.len() - 1],
        if l.ends_with('a') { 'b' } else { 'a' }
    );
    let (ok, t) = m.send("127.0.0.1", &forged);
    assert!(!ok && t.contains("Sorry, this address has expired"), "{t}");
}

/// An international domain, configured in Unicode: the ID made for the
/// page's `mjd@bücher.example` is delivered through Postfix in the xn--
/// form mail carries, and the resolver reads the Unicode form too (what
/// Postfix asks in an SMTPUTF8 session).
#[test]
fn an_international_domain_takes_mail_in_either_form() {
    let protect =
        "[[protect]]\ndomain = \"bücher.example\"\nlocal = \"mjd\"\ndeliver_to = \"mjd@mbox.test\"\n";
    let m = Mail::start_with(protect, "bare = \"reject\"\n", Setup::Inet);
    let a = m.cli_ok(&["encode", "--ip", "203.0.113.9", "mjd@bücher.example"]);
    assert!(a.ends_with("@xn--bcher-kva.example"), "{a}");
    let (ok, t) = m.send("127.0.0.1", &a);
    assert!(ok, "{t}");
    assert!(m.delivered("mjd", &a));
    let shown = a.replace("xn--bcher-kva", "bücher");
    for map in ["virtual", "recipient"] {
        let ascii = m.postmap(map, &a);
        assert!(ascii.0, "{map}: {ascii:?}");
        assert_eq!(m.postmap(map, &shown), ascii, "{map}: {shown}");
    }
    let (l, d) = shown.split_once('@').unwrap();
    let forged = format!(
        "{}{}@{d}",
        &l[..l.len() - 1],
        if l.ends_with('a') { 'b' } else { 'a' }
    );
    let refused = m.postmap("recipient", &forged);
    assert!(refused.1.contains("expired"), "{forged}: {refused:?}");
    let (ok, t) = m.send("127.0.0.1", "mjd@xn--bcher-kva.example");
    assert!(!ok && t.contains("does not take mail"), "{t}");
}

/// RFC 5321 requires postmaster to take mail, RFC 2142 names abuse: never
/// refused bare, whatever `bare` says.
#[test]
fn postmaster_and_abuse_take_mail_bare() {
    let m = Mail::start("bare = \"reject\"\n");
    for role in ["postmaster", "abuse"] {
        let to = format!("{role}@plover.com");
        assert_eq!(m.postmap("recipient", &to), (true, "DUNNO".into()), "{to}");
        let (ok, t) = m.send("127.0.0.1", &to);
        assert!(ok, "{t}");
        assert!(m.delivered(role, &to), "no delivery for {to}");
    }
    let (ok, t) = m.send("127.0.0.1", "mjd@plover.com");
    assert!(!ok && t.contains("does not take mail"), "{t}");
}
