//! The resolver against a real Postfix: its own instance (config, queue and
//! mailboxes in a temporary folder, SMTP on a free loopback port), real SMTP
//! with swaks, real `postmap -q` lookups, and protocol abuse.
//!
//! Needs Debian's postfix and swaks (scripts/test.sh installs them).

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::wire::{netstring, read_netstring};
use common::{free_port, readme_block, wait_for_port};

/// Which of the README's Postfix setups a test runs.
#[derive(Clone, Copy, PartialEq)]
enum Setup {
    /// The resolver on TCP (plus a unix socket for postmap), Postfix asking over TCP.
    Inet,
    /// The resolver on unix sockets in the queue folder, a chrooted smtpd.
    Chroot,
    /// A backup MX: relay_recipient_maps only.
    BackupMx,
}

const MASTER_CF: &str = "\
SMTPD_ADDR inet  n       -       n       -       -       smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
";

/// What most tests protect.
const PROTECT: &str = r#"
[[protect]]
domain = "plover.com"
exempt = ["*-subscribe"]

[[protect]]
domain = "press.test"
deliver_to = "mjd@mbox.test"
"#;

struct Mail {
    dir: tempfile::TempDir,
    smtp: u16,
    map: u16,
    policy: u16,
    resolver: Child,
    postfix_started: bool,
}

impl Drop for Mail {
    fn drop(&mut self) {
        let _ = self.resolver.kill();
        let _ = self.resolver.wait();
        if self.postfix_started {
            let _ = Command::new("postfix")
                .arg("-c")
                .arg(self.path("etc"))
                .arg("stop")
                .output();
        }
    }
}

impl Mail {
    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// A resolver with `extra` appended to its config, and a Postfix in front of it.
    fn start(extra: &str) -> Mail {
        Mail::start_setup(extra, Setup::Inet)
    }

    fn start_setup(extra: &str, setup: Setup) -> Mail {
        Mail::start_with(PROTECT, extra, setup)
    }

    /// A resolver protecting `protect` (its `[[protect]]` tables), `extra`
    /// in its `[resolver]` section, and a Postfix in front of it.
    fn start_with(protect: &str, extra: &str, setup: Setup) -> Mail {
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let (smtp, map, policy) = (free_port(), free_port(), free_port());
        let listeners = if setup == Setup::Chroot {
            // The README's unix-socket [resolver] lines, in this test's queue folder.
            // private/ as Postfix makes it: its own, mode 0700.
            let private = dir.path().join("queue/private");
            fs::create_dir_all(&private).unwrap();
            fs::set_permissions(&private, fs::Permissions::from_mode(0o700)).unwrap();
            let ok = Command::new("chown")
                .args(["postfix"])
                .arg(&private)
                .status()
                .unwrap();
            assert!(ok.success());
            readme_block("toml", "unix:/var/spool/postfix/private")
                .replace("[resolver]\n", "")
                .replace(
                    "/var/spool/postfix",
                    &dir.path().join("queue").display().to_string(),
                )
        } else {
            format!(
                "socketmap = [\"inet:127.0.0.1:{map}\", \"unix:{sock}\"]\nsocket_group = \"postfix\"\npolicy = [\"inet:127.0.0.1:{policy}\"]\n",
                sock = dir.path().join("map.sock").display()
            )
        };
        let cfg = format!(
            r#"key_file = "addrmunge.key"
state = "state.sqlite"
{protect}
[resolver]
{listeners}recipient_delimiter = "+"
reject_text = "5.1.1 Sorry, this address has expired; see the web site for today's."
{extra}
[traps]
never_block = ["127.0.0.1/32"]
block_for = "1h"
"#
        );
        fs::write(dir.path().join("addrmunge.toml"), cfg).unwrap();
        let mut mail = Mail {
            smtp,
            map,
            policy,
            resolver: Command::new("true").spawn().unwrap(),
            dir,
            postfix_started: false,
        };
        assert!(
            mail.cli(&["keygen", "--out", mail.path("addrmunge.key").to_str().unwrap()])
                .status
                .success()
        );
        mail.resolver = Command::new(env!("CARGO_BIN_EXE_addrmunge"))
            .args([
                "--config",
                mail.path("addrmunge.toml").to_str().unwrap(),
                "resolver",
            ])
            .stdout(Stdio::null())
            .stderr(fs::File::create(mail.path("resolver.log")).unwrap())
            .spawn()
            .unwrap();
        if setup == Setup::Chroot {
            for sock in ["addrmunge-map", "addrmunge-policy"] {
                let path = mail.path("queue/private").join(sock);
                let start = Instant::now();
                while !path.exists() {
                    assert!(start.elapsed() < Duration::from_secs(20), "no {}", path.display());
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        } else {
            wait_for_port(map, "resolver socketmap");
            wait_for_port(policy, "resolver policy service");
        }
        mail.start_postfix(setup);
        mail
    }

    fn start_postfix(&mut self, setup: Setup) {
        let d = self.dir.path();
        for sub in ["etc", "queue", "data", "mail"] {
            fs::create_dir_all(d.join(sub)).unwrap();
        }
        let chown = |p: &Path, owner: &str| {
            assert!(
                Command::new("chown")
                    .arg(owner)
                    .arg(p)
                    .status()
                    .unwrap()
                    .success()
            );
        };
        chown(&d.join("data"), "postfix");
        chown(&d.join("mail"), "nobody");
        // plover.com is a virtual alias domain (Postfix learns it from the
        // socketmap's answer for the bare domain); base addresses alias to
        // mailboxes at mbox.test, as a site's own alias table would.
        fs::write(
            d.join("virtual"),
            "mjd@plover.com mjd@mbox.test\nlist-subscribe@plover.com list@mbox.test\n\
             webmaster@plover.com webmaster@mbox.test\npostmaster@plover.com postmaster@mbox.test\n\
             abuse@plover.com abuse@mbox.test\n",
        )
        .unwrap();
        fs::write(
            d.join("vmailbox"),
            "mjd@mbox.test mjd/\nlist@mbox.test list/\nwebmaster@mbox.test webmaster/\n\
             postmaster@mbox.test postmaster/\nabuse@mbox.test abuse/\n",
        )
        .unwrap();
        // The README's main.cf lines for this setup, as written but for the
        // ports and the alias table's path.
        let readme = match setup {
            Setup::Inet => readme_block("conf", "socketmap:inet:127.0.0.1:10100:virtual"),
            Setup::Chroot => readme_block("conf", "socketmap:unix:private/addrmunge-map:virtual"),
            Setup::BackupMx => readme_block("conf", "relay_recipient_maps"),
        }
        .replace("127.0.0.1:10100", &format!("127.0.0.1:{}", self.map))
        .replace("127.0.0.1:10101", &format!("127.0.0.1:{}", self.policy))
        .replace(
            "hash:/etc/postfix/virtual",
            &format!("texthash:{}/virtual", d.display()),
        );
        let main_cf = format!(
            "compatibility_level = 3.6
queue_directory = {q}
data_directory = {data}
maillog_file = {d}/maillog
maillog_file_prefixes = /var, /dev/stdout, /tmp
mail_owner = postfix
myhostname = mx.test
mydomain = test
myorigin = mx.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.1/32
alias_maps =
alias_database =
recipient_delimiter = +
relay_transport = discard:backup MX test
virtual_mailbox_domains = mbox.test
virtual_mailbox_base = {d}/mail
virtual_mailbox_maps = texthash:{d}/vmailbox
virtual_uid_maps = static:65534
virtual_gid_maps = static:65534
smtputf8_enable = no
{readme}",
            q = d.join("queue").display(),
            data = d.join("data").display(),
            d = d.display(),
        );
        fs::write(d.join("etc/main.cf"), main_cf).unwrap();
        // The chrooted setup takes the README's master.cf line for smtpd.
        let smtpd = match setup {
            Setup::Chroot => readme_block("conf", "smtpd\n").replacen("smtp ", "SMTPD_ADDR ", 1),
            _ => MASTER_CF.lines().next().unwrap().to_owned() + "\n",
        };
        let master = smtpd.trim_end().to_owned() + "\n" + MASTER_CF.split_once('\n').unwrap().1;
        fs::write(
            d.join("etc/master.cf"),
            master.replace("SMTPD_ADDR", &format!("127.0.0.1:{}", self.smtp)),
        )
        .unwrap();
        let out = Command::new("postfix")
            .arg("-c")
            .arg(d.join("etc"))
            .arg("start")
            .output()
            .unwrap();
        let log = fs::read_to_string(d.join("maillog")).unwrap_or_default();
        assert!(
            out.status.success(),
            "postfix start: {}{}\n{log}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        self.postfix_started = true;
        wait_for_port(self.smtp, "postfix smtpd");
    }

    fn cli(&self, args: &[&str]) -> Output {
        common::cli(&self.path("addrmunge.toml"), args)
    }

    fn cli_ok(&self, args: &[&str]) -> String {
        common::cli_ok(&self.path("addrmunge.toml"), args)
    }

    fn postmap(&self, map: &str, key: &str) -> (bool, String) {
        let out = Command::new("postmap")
            .arg("-c")
            .arg(self.path("etc"))
            .arg("-q")
            .arg(key)
            .arg(format!("socketmap:inet:127.0.0.1:{}:{map}", self.map))
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        )
    }

    /// Sends one message; returns whether it was accepted, and the transcript.
    fn send(&self, from_ip: &str, to: &str) -> (bool, String) {
        let out = Command::new("swaks")
            .args(["--server", &format!("127.0.0.1:{}", self.smtp)])
            .args(["--local-interface", from_ip])
            .args(["--from", "spammer@sender.example", "--to", to])
            .args(["--helo", "sender.example", "--timeout", "20"])
            .args(["--header", &format!("Subject: to {to}")])
            .output()
            .unwrap();
        let transcript =
            String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), transcript)
    }

    fn mailbox(&self, user: &str) -> Vec<String> {
        let dir = self.path(&format!("mail/{user}/new"));
        let mut v: Vec<String> = fs::read_dir(&dir)
            .map(|it| {
                it.filter_map(|e| fs::read_to_string(e.ok()?.path()).ok())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Waits until a message to `to` is in `user`'s mailbox.
    fn delivered(&self, user: &str, to: &str) -> bool {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if self
                .mailbox(user)
                .iter()
                .any(|m| m.contains(&format!("Subject: to {to}")))
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }
}

fn day_offset(days: i32) -> String {
    let today = addrmunge::Day::today();
    let d = if days < 0 {
        today.checked_sub((-days) as u16)
    } else {
        today.checked_add(days as u16)
    };
    d.unwrap().to_string()
}

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
            .arg(m.resolver.id().to_string())
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

#[test]
fn bad_input_gets_clean_errors_and_the_server_lives() {
    let m = Mail::start("");
    let a = m.cli_ok(&["encode", "--ip", "203.0.113.9", "mjd@plover.com"]);
    let alive = || {
        let mut s = TcpStream::connect(("127.0.0.1", m.map)).unwrap();
        s.write_all(&netstring(format!("virtual {a}").as_bytes()))
            .unwrap();
        assert_eq!(read_netstring(&mut s), "OK mjd@plover.com");
    };
    // Unknown map: PERM, connection stays usable.
    let mut s = TcpStream::connect(("127.0.0.1", m.map)).unwrap();
    s.write_all(&netstring(b"nosuchmap x@y")).unwrap();
    assert!(read_netstring(&mut s).starts_with("PERM "));
    s.write_all(&netstring(b"noseparator")).unwrap();
    assert!(read_netstring(&mut s).starts_with("PERM "));
    s.write_all(&netstring(b"recipient nobody@example.com")).unwrap();
    assert_eq!(read_netstring(&mut s), "NOTFOUND ");
    // Garbage, oversize, truncated: the connection is closed, the server lives.
    for bad in [
        b"hello world\r\n".to_vec(),
        b"99999999:".to_vec(),
        format!("20000:{}", "x".repeat(100)).into_bytes(),
        b"10:virtual".to_vec(),
        b"3:abcX".to_vec(),
        vec![0xff; 64],
    ] {
        let mut s = TcpStream::connect(("127.0.0.1", m.map)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(&bad).unwrap();
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        assert!(
            rest.is_empty() || rest.starts_with(b"4:PERM"),
            "{:?}",
            String::from_utf8_lossy(&rest)
        );
        alive();
    }
    // The store cannot be read: TEMP (mail deferred, never wrongly answered);
    // back to normal once it is back.
    let state = m.path("state.sqlite");
    fs::rename(&state, m.path("state.moved")).unwrap();
    fs::create_dir(&state).unwrap();
    let temp = || {
        let mut s = TcpStream::connect(("127.0.0.1", m.map)).unwrap();
        s.write_all(&netstring(format!("recipient {a}").as_bytes()))
            .unwrap();
        read_netstring(&mut s)
    };
    let start = Instant::now();
    while !temp().starts_with("TEMP ") {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "no TEMP while the store is unreadable"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    fs::remove_dir(&state).unwrap();
    fs::rename(m.path("state.moved"), &state).unwrap();
    let start = Instant::now();
    while temp() != "OK DUNNO" {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the resolver did not recover"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // The policy service: a good request, then garbage.
    let mut p = TcpStream::connect(("127.0.0.1", m.policy)).unwrap();
    p.write_all(
        format!(
            "request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=127.0.0.9\nrecipient={a}\n\n"
        )
        .as_bytes(),
    )
    .unwrap();
    let mut buf = [0u8; 256];
    let n = p.read(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"action=DUNNO\n\n");
    for bad in [
        b"no equals sign\n\n".to_vec(),
        "x=".repeat(20_000).into_bytes(),
        b"a=b".to_vec(),
    ] {
        let mut p = TcpStream::connect(("127.0.0.1", m.policy)).unwrap();
        p.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = p.write_all(&bad);
        let _ = p.shutdown(std::net::Shutdown::Write);
        let mut rest = Vec::new();
        let _ = p.read_to_end(&mut rest);
        assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
        alive();
    }
}

#[test]
fn five_hundred_concurrent_connections() {
    let m = Mail::start("");
    let valid = m.cli_ok(&["encode", "--ip", "203.0.113.9", "mjd@plover.com"]);
    let expired = m.cli_ok(&["encode", "--ip", "203.0.113.10", "mjd@plover.com"]);
    m.cli_ok(&["expire", "--ip", "203.0.113.10"]);
    std::thread::sleep(Duration::from_millis(1000));
    let port = m.map;
    let threads: Vec<_> = (0..500)
        .map(|i| {
            let (valid, expired) = (valid.clone(), expired.clone());
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
                for k in 0..40 {
                    let (q, want) = match (i + k) % 3 {
                        0 => (format!("virtual {valid}"), "OK mjd@plover.com".to_string()),
                        1 => (format!("recipient {expired}"), "OK REJECT".to_string()),
                        _ => (format!("virtual {expired}"), "NOTFOUND ".to_string()),
                    };
                    s.write_all(&netstring(q.as_bytes())).unwrap();
                    let got = read_netstring(&mut s);
                    assert!(got.starts_with(&want), "{q}: {got}");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

/// `addrmunge proxy` sharing the resolver's key and store, optionally
/// under libfaketime (`faketime -f -2d`) to serve pages on another day.
struct Proxy(Child);

impl Drop for Proxy {
    fn drop(&mut self) {
        // The whole process group: faketime runs the proxy as its child.
        let _ = Command::new("kill")
            .args(["-s", "KILL", "--", &format!("-{}", self.0.id())])
            .status();
        let _ = self.0.wait();
    }
}

impl Mail {
    fn proxy(&self, port: u16, fake_offset: Option<&str>) -> Proxy {
        let bin = env!("CARGO_BIN_EXE_addrmunge");
        let mut cmd = match fake_offset {
            Some(off) => {
                let mut c = Command::new("faketime");
                c.args(["-f", off, bin]);
                // Only the calendar moves; timers (monotonic) stay real, or
                // libfaketime stretches timed waits.
                c.env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
                c
            }
            None => Command::new(bin),
        };
        use std::os::unix::process::CommandExt;
        let child = cmd
            .arg("--config")
            .arg(self.path("addrmunge.toml"))
            .arg("proxy")
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(fs::File::create(self.path(&format!("proxy-{port}.log"))).unwrap())
            .spawn()
            .expect("faketime is installed (scripts/test.sh installs it)");
        wait_for_port(port, "addrmunge proxy");
        Proxy(child)
    }

    /// Waits until nothing listens on `port` any more.
    fn wait_port_free(port: u16) {
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_ok() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "port {port} still taken"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// GET through curl from a given loopback address with a given User-Agent:
/// `(status, body)`.
fn fetch(port: u16, from: &str, user_agent: &str, path: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args([
            "-s",
            "--interface",
            from,
            "-A",
            user_agent,
            "-w",
            "\n%{http_code}",
        ])
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .expect("curl is installed (scripts/test.sh installs it)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.parse().unwrap(), body.to_owned())
}

fn munged_in(page: &str, domain: &str) -> Vec<String> {
    let mut v: Vec<String> = page
        .split(|c: char| !(c.is_ascii_alphanumeric() || "-_.@".contains(c)))
        .filter(|w| w.contains("-id-") && w.ends_with(&format!("@{domain}")))
        .map(str::to_owned)
        .collect();
    v.dedup();
    v
}

#[test]
fn harvest_to_spam_traced_reported_and_blocked() {
    let nginx = common::nginx::Nginx::start(&Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/demo"));
    let port = free_port();
    let m = Mail::start(&format!(
        r#"
[proxy]
listen = ["127.0.0.1:{port}"]
upstream = "http://127.0.0.1:{up}"

[bait]
path = "/contact-archive/"
addresses = 5
link = true

[[harvesters.agent]]
pattern = "SiphonDomain"
action = "domain"
domain = "siphon.invalid"
"#,
        up = nginx.port
    ));

    // Two days ago a visitor (127.0.0.3, a browser User-Agent) read the
    // contact page: the proxy runs under libfaketime for that.
    let harvested = {
        let _old = m.proxy(port, Some("-2d"));
        let (status, page) = fetch(port, "127.0.0.3", "Mozilla/5.0 (X11; Linux)", "/contact.html");
        assert_eq!(status, 200, "{page}");
        // The bait link is in every HTML page, invisible.
        assert!(
            page.contains("href=\"/contact-archive/\" style=\"display:none\""),
            "{page}"
        );
        let a = munged_in(&page, "plover.com");
        let mjd = a.iter().find(|x| x.starts_with("mjd-id-")).unwrap().clone();
        // The visit log is written off the request path: wait for it.
        let start = Instant::now();
        while !m.cli_ok(&["trace", &mjd]).contains("Mozilla/5.0") {
            assert!(start.elapsed() < Duration::from_secs(10), "visit never logged");
            std::thread::sleep(Duration::from_millis(100));
        }
        mjd
    };
    let decoded = m.cli_ok(&["decode", "--json", &harvested]);
    assert!(
        decoded.contains(&format!("\"date\":\"{}\"", day_offset(-2))),
        "{decoded}"
    );

    Mail::wait_port_free(port);
    let _proxy = m.proxy(port, None);
    // A harvester User-Agent gets trap IDs on ordinary pages.
    let (_, page) = fetch(port, "127.0.0.4", "EmailSiphon/1.0", "/contact.html");
    let traps = munged_in(&page, "plover.com");
    assert!(!traps.is_empty());
    for t in &traps {
        assert!(
            m.cli_ok(&["decode", "--json", t]).contains("\"kind\":\"trap\""),
            "{t}"
        );
    }
    // The domain action sends addresses elsewhere.
    let (_, page) = fetch(port, "127.0.0.7", "SiphonDomain 2.0", "/contact.html");
    assert!(!munged_in(&page, "siphon.invalid").is_empty(), "{page}");
    assert!(munged_in(&page, "plover.com").is_empty(), "{page}");

    // robots.txt keeps honest crawlers off the bait page (nginx has none: ours).
    let (status, robots) = fetch(port, "127.0.0.4", "EmailSiphon/1.0", "/robots.txt");
    assert_eq!(status, 200);
    assert!(robots.contains("Disallow: /contact-archive/"), "{robots}");

    // The bait page: a handful of ordinary-looking trap addresses, stable on reload.
    let (status, bait) = fetch(port, "127.0.0.4", "EmailSiphon/1.0", "/contact-archive/");
    assert_eq!(status, 200);
    // Both protected domains take any local part, so both get bait addresses.
    let all = |page: &str| [munged_in(page, "plover.com"), munged_in(page, "press.test")].concat();
    let bait_addrs = all(&bait);
    assert_eq!(bait_addrs.len(), 5, "{bait}");
    assert_eq!(
        all(&fetch(port, "127.0.0.4", "EmailSiphon/1.0", "/contact-archive/").1),
        bait_addrs
    );
    assert_eq!(fetch(port, "127.0.0.4", "x", "/contact-archive/old/").0, 404);
    assert_eq!(fetch(port, "127.0.0.4", "x", "/contact-archive").0, 301);
    // A browser-looking visitor that fetches the bait is a harvester for the day.
    fetch(port, "127.0.0.6", "Mozilla/5.0", "/contact-archive/");
    let (_, page) = fetch(port, "127.0.0.6", "Mozilla/5.0", "/contact.html");
    for t in munged_in(&page, "plover.com") {
        assert!(
            m.cli_ok(&["decode", "--json", &t]).contains("\"kind\":\"trap\""),
            "{t}"
        );
    }

    // Spam arrives today: to the harvested address from 127.0.0.2 (delivered),
    // to a bait address from 127.0.0.5 (discarded, client blocked).
    let (ok, t) = m.send("127.0.0.2", &harvested);
    assert!(ok, "{t}");
    assert!(m.delivered("mjd", &harvested));
    let (ok, t) = m.send("127.0.0.5", &bait_addrs[0]);
    assert!(ok, "trap mail is accepted: {t}");
    let (ok, t) = m.send("127.0.0.5", &harvested);
    assert!(!ok && t.contains("spam trap"), "blocked: {t}");
    // Blocks and arrivals reach the store through the resolver's writer
    // thread: wait for them rather than race it.
    let start = Instant::now();
    loop {
        let cidr = m.cli_ok(&["blocks", "--format", "postfix-cidr"]);
        if cidr.contains("127.0.0.5/32\tREJECT") {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{cidr}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let start = Instant::now();
    while !m.cli_ok(&["trace", &bait_addrs[0]]).contains("from 127.0.0.5") {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "trap arrival never recorded"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // trace on the delivered message: the whole chain, with the right days.
    let msg_dir = m.path("mail/mjd/new");
    let msg = fs::read_dir(&msg_dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            fs::read_to_string(p)
                .unwrap()
                .contains(&format!("Subject: to {harvested}"))
        })
        .unwrap();
    let text = m.cli_ok(&["trace", "--message", msg.to_str().unwrap()]);
    assert!(
        text.contains(&format!("harvested   by 127.0.0.3 on {}", day_offset(-2))),
        "{text}"
    );
    assert!(
        text.contains("Mozilla/5.0 (X11; Linux)") && text.contains("/contact.html"),
        "{text}"
    );
    assert!(
        text.contains("from 127.0.0.2 (HELO sender.example) sender <spammer@sender.example>: delivered"),
        "{text}"
    );
    assert!(
        text.contains("first mail  2d") || text.contains("first mail  1d"),
        "{text}"
    );
    assert!(text.contains("addrmunge expire --ip 127.0.0.3 --day"), "{text}");
    let json: serde_json::Value = serde_json::from_str(&m.cli_ok(&["trace", "--json", &harvested])).unwrap();
    let delay = json["harvest_to_first_mail"].as_i64().unwrap();
    assert!((2 * 86_400 - 120..2 * 86_400 + 120).contains(&delay), "{delay}");
    assert_eq!(json["harvest"]["visitor"], "127.0.0.3");
    // The bait address: a trap, served to the bait visitor, hit from 127.0.0.5.
    let text = m.cli_ok(&["trace", &bait_addrs[0]]);
    assert!(
        text.contains("trap address") && text.contains("agent emailsiphon"),
        "{text}"
    );
    assert!(
        text.contains("from 127.0.0.5") && text.contains("trap: discarded"),
        "{text}"
    );

    // The report: text, JSON, and an HTML page Chromium renders with its charts.
    let json: serde_json::Value =
        serde_json::from_str(&m.cli_ok(&["report", "--days", "7", "--json"])).unwrap();
    assert_eq!(json["trap_hits"], 1, "{json}");
    assert!(json["harvesters"].as_array().unwrap().len() >= 3, "{json}");
    let html = m.path("report.html");
    m.cli_ok(&["report", "--days", "7", "--html", html.to_str().unwrap()]);
    let page = fs::read_to_string(&html).unwrap();
    // Self-contained: no script, nothing fetched.
    assert!(!page.contains("<script") && !page.contains(" src=") && !page.contains("<link"));
    let url = format!("file://{}", html.display());
    let dom = String::from_utf8(common::chromium::chromium(&["--dump-dom"], &url).stdout).unwrap();
    for id in ["by-day", "delays", "targets", "harvesters-table", "blocks-table"] {
        assert!(dom.contains(&format!("id=\"{id}\"")), "{id} missing");
    }
    assert!(dom.matches("class=\"bar\"").count() >= 7, "{dom}");
    let (pixels, line) = common::chromium::screenshot(&url);
    let inked = common::chromium::inked_rows(&pixels, line)
        .iter()
        .filter(|r| **r)
        .count();
    assert!(inked > 200, "the report renders mostly blank: {inked} rows");
}
