//! A Postfix of its own in front of a resolver of its own, as in the
//! README: config, queue and mailboxes in a temporary folder, SMTP on a free
//! loopback port; and the helpers its tests talk to it with (swaks,
//! `postmap -q`, the mailboxes).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use super::{Instance, Running, free_port, readme_block, wait_for_port};

/// Which of the README's Postfix setups a test runs.
#[derive(Clone, Copy, PartialEq)]
pub enum Setup {
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
pub const PROTECT: &str = r#"
[[protect]]
domain = "plover.com"
exempt = ["*-subscribe"]

[[protect]]
domain = "press.test"
deliver_to = "mjd@mbox.test"
"#;

/// A resolver and a Postfix in front of it, in one temp folder; both
/// stopped when dropped.
pub struct Mail {
    /// The folder, config, key and store.
    pub inst: Instance,
    /// Postfix's SMTP port.
    pub smtp: u16,
    /// The resolver's socketmap port.
    pub map: u16,
    /// The resolver's policy port.
    pub policy: u16,
    /// The resolver process.
    pub resolver: Running,
    postfix_started: bool,
}

impl Drop for Mail {
    fn drop(&mut self) {
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
    /// A path in the folder.
    pub fn path(&self, p: &str) -> PathBuf {
        self.inst.path(p)
    }

    /// A resolver with `extra` appended to its config, and a Postfix in front of it.
    pub fn start(extra: &str) -> Mail {
        Mail::start_setup(extra, Setup::Inet)
    }

    pub fn start_setup(extra: &str, setup: Setup) -> Mail {
        Mail::start_with(PROTECT, extra, setup)
    }

    /// A resolver protecting `protect` (its `[[protect]]` tables), `extra`
    /// in its `[resolver]` section, and a Postfix in front of it.
    pub fn start_with(protect: &str, extra: &str, setup: Setup) -> Mail {
        Mail::start_in("state.sqlite", None, protect, extra, setup)
    }

    /// An MX of a site on several hosts: its store at `state` (a database
    /// URL), and `key_from`'s key if given.
    pub fn start_shared(state: &str, key_from: Option<&Instance>, extra: &str) -> Mail {
        Mail::start_in(state, key_from, PROTECT, extra, Setup::Inet)
    }

    fn start_in(state: &str, key_from: Option<&Instance>, protect: &str, extra: &str, setup: Setup) -> Mail {
        let dir = tempfile::tempdir().unwrap();
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
        let inst = Instance::build(
            dir,
            "addrmunge.key",
            state,
            &format!(
                r#"{protect}
[resolver]
{listeners}recipient_delimiter = "+"
reject_text = "5.1.1 Sorry, this address has expired; see the web site for today's."
{extra}
[traps]
never_block = ["127.0.0.1/32"]
block_for = "1h"
"#
            ),
        );
        fs::set_permissions(inst.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        if let Some(other) = key_from {
            inst.share_key(other);
        }
        let resolver = inst.start("resolver", &[]);
        let mut mail = Mail {
            smtp,
            map,
            policy,
            resolver,
            inst,
            postfix_started: false,
        };
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
            mail.inst.wait_for(map, "resolver");
            mail.inst.wait_for(policy, "resolver");
        }
        mail.start_postfix(setup);
        mail
    }

    fn start_postfix(&mut self, setup: Setup) {
        let d = self.inst.dir.path();
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

    /// `addrmunge --config CONFIG ARGS...`.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.inst.cli(args)
    }

    /// [`Mail::cli`] that must succeed; its standard output, trimmed.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        self.inst.cli_ok(args)
    }

    pub fn postmap(&self, map: &str, key: &str) -> (bool, String) {
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

    /// Sends one message; returns whether it was accepted, and the
    /// transcript. A transcript that ends without the server's answer
    /// (swaks timed out) gains the ends of Postfix's and the resolver's
    /// logs: what the server was waiting for is there, not in swaks'.
    pub fn send(&self, from_ip: &str, to: &str) -> (bool, String) {
        let (ok, mut t) = super::swaks(self.smtp, from_ip, to);
        if t.contains("Timeout") {
            let tail = |log: String| {
                let lines: Vec<&str> = log.lines().collect();
                lines[lines.len().saturating_sub(40)..].join("\n")
            };
            let maillog = fs::read_to_string(self.path("maillog")).unwrap_or_default();
            t += &format!("\n--- maillog:\n{}", tail(maillog));
            t += &format!("\n--- resolver log:\n{}", tail(self.inst.log("resolver")));
        }
        (ok, t)
    }

    pub fn mailbox(&self, user: &str) -> Vec<String> {
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
    pub fn delivered(&self, user: &str, to: &str) -> bool {
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

/// Today plus `days`, as `YYYY-MM-DD`.
pub fn day_offset(days: i32) -> String {
    let today = addrmunge::Day::today();
    let d = if days < 0 {
        today.checked_sub((-days) as u16)
    } else {
        today.checked_add(days as u16)
    };
    d.unwrap().to_string()
}
