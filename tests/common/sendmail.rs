//! A private Sendmail for one test, beside the resolver it asks: Debian's
//! Sendmail 8.17 unpacked (not installed: it would remove Postfix) by
//! scripts/test.sh into [`SENDMAIL_ROOT`], its `sendmail.cf` made with m4
//! from an `.mc` holding the README's lines as written, run as a
//! foreground daemon on a free loopback port. Base addresses are aliases
//! piped to a script that appends to one mbox file.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::mta::{Mta, Pair};
use super::{Instance, readme_block};

/// Where scripts/test.sh unpacks Sendmail's packages.
pub const SENDMAIL_ROOT: &str = "/opt/addrmunge-test-mta/sendmail";

/// A running Sendmail and its resolver.
pub struct Sendmail {
    pair: Pair,
}

impl std::ops::Deref for Sendmail {
    type Target = Pair;
    fn deref(&self) -> &Pair {
        &self.pair
    }
}

impl std::ops::DerefMut for Sendmail {
    fn deref_mut(&mut self) -> &mut Pair {
        &mut self.pair
    }
}

fn root(rel: &str) -> PathBuf {
    let p = Path::new(SENDMAIL_ROOT).join(rel);
    assert!(
        p.exists(),
        "no {} ; `bash scripts/test.sh` unpacks Sendmail",
        p.display()
    );
    p
}

/// Runs Sendmail with `args` in a UTS namespace of its own named
/// mx.plover.com: Sendmail sleeps a minute at startup when it cannot
/// qualify the machine's hostname, and test machines rarely can.
fn sendmail(cf: &Path, args: &str) -> Command {
    let mut c = Command::new("unshare");
    c.args(["--uts", "sh", "-c"]).arg(format!(
        "hostname mx.plover.com && exec {} -C {} {args}",
        root("usr/libexec/sendmail/sendmail").display(),
        cf.display()
    ));
    c
}

/// The README's two `.mc` blocks, with the test's port.
fn readme_parts(port: u16) -> (String, String) {
    let set = |block: String| block.replace("inet:10100@", &format!("inet:{port}@"));
    (
        set(readme_block("m4", "FEATURE(`virtusertable'")),
        set(readme_block("m4", "SLocal_check_rcpt")),
    )
}

impl Sendmail {
    /// The resolver (`extra` after its `[resolver]` lines, `traps` after
    /// `[traps]`) and a Sendmail that asks it.
    pub fn start(extra: &str, traps: &str) -> Sendmail {
        Sendmail {
            pair: Pair::start("socketmap", extra, traps, |i, p, s| daemon(i, p, s, "-q1m")),
        }
    }

    /// [`Sendmail::start`] with a daemon that only queues what it accepts
    /// and runs no queue itself: [`Sendmail::run_queue`] delivers.
    pub fn queue_only() -> Sendmail {
        Sendmail {
            pair: Pair::start("socketmap", "", "", |i, p, s| daemon(i, p, s, "-odq")),
        }
    }

    /// Everything delivered so far (one mbox for every recipient).
    pub fn all_mail(&self) -> String {
        fs::read_to_string(self.inst.path("sendmail/mail/inbox")).unwrap_or_default()
    }

    /// Queue files of messages waiting (`qf`) and quarantined (`hf`).
    pub fn queue(&self) -> (usize, usize) {
        let names: Vec<String> = fs::read_dir(self.inst.path("sendmail/mqueue"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        let count = |p: &str| names.iter().filter(|n| n.starts_with(p)).count();
        (count("qf"), count("hf"))
    }

    /// Runs the queue once, now.
    pub fn run_queue(&self) {
        let ok = sendmail(&self.inst.path("sendmail/sendmail.cf"), "-q")
            .status()
            .unwrap();
        assert!(ok.success());
    }
}

impl Mta for Sendmail {
    fn pair(&self) -> &Pair {
        &self.pair
    }

    /// The messages in the one mbox delivered to the alias `base` (after
    /// virtusertable, not the envelope's recipient).
    fn mailbox(&self, base: &str) -> String {
        let to = format!("X-Delivered-To: {base}\n");
        let mbox = self.all_mail();
        mbox.split("\nFrom ")
            .filter(|m| m.contains(&to))
            .collect::<Vec<_>>()
            .join("\nFrom ")
    }
}

/// Writes the delivery script, aliases, `.mc` and `sendmail.cf` under the
/// instance; the daemon's command, with `mode` (its queue options).
fn daemon(inst: &Instance, port: u16, smtp: u16, mode: &str) -> Command {
    let d = inst.path("sendmail");
    for sub in ["", "mqueue", "mail"] {
        fs::create_dir_all(d.join(sub)).unwrap();
    }
    // Piped aliases run as Sendmail's default user: it must reach the
    // script and write the mailbox.
    fs::set_permissions(inst.path(""), fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(d.join("mqueue"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::set_permissions(d.join("mail"), fs::Permissions::from_mode(0o777)).unwrap();
    let dir = d.display().to_string();
    let script = d.join("deliver.sh");
    fs::write(
        &script,
        format!(
            // Sendmail starts the message with its From_ line: keep it first.
            "#!/bin/sh\n{{ IFS= read -r from; printf '%s\\nX-Delivered-To: %s\\n' \"$from\" \"$1\"; cat; echo; }} >> {dir}/mail/inbox\n"
        ),
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    let alias = |user: &str| format!("{user}: \"|{dir}/deliver.sh {user}@plover.com\"\n");
    fs::write(
        d.join("aliases"),
        alias("mjd") + &alias("list-subscribe") + &alias("postmaster"),
    )
    .unwrap();
    fs::write(d.join("service.switch"), "hosts files\naliases files\n").unwrap();
    fs::write(d.join("sendmail.mc"), mc(&dir, port, smtp)).unwrap();
    let cf = d.join("sendmail.cf");
    let out = Command::new("m4").arg(d.join("sendmail.mc")).output().unwrap();
    assert!(
        out.status.success(),
        "m4: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    fs::write(&cf, out.stdout).unwrap();
    let out = sendmail(&cf, "-bi").output().unwrap();
    assert!(
        out.status.success(),
        "newaliases: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut c = sendmail(&cf, &format!("-bD {mode}"));
    c.stderr(fs::File::create(d.join("stderr")).unwrap());
    c
}

/// The `.mc`: a hermetic Sendmail (no DNS, files under `dir`) for
/// plover.com with the README's lines.
fn mc(dir: &str, port: u16, smtp: u16) -> String {
    let (feature, rules) = readme_parts(port);
    let cf = root("usr/share/sendmail/cf/m4/cf.m4");
    format!(
        "divert(-1)\n\
         include(`{cf}')\n\
         define(`confCF_VERSION', `addrmunge-test')\n\
         OSTYPE(`linux')\n\
         define(`confDOMAIN_NAME', `mx.plover.com')\n\
         define(`QUEUE_DIR', `{dir}/mqueue')\n\
         define(`ALIAS_FILE', `{dir}/aliases')\n\
         define(`confPID_FILE', `{dir}/sendmail.pid')\n\
         define(`STATUS_FILE', `{dir}/statistics')\n\
         define(`confSERVICE_SWITCH_FILE', `{dir}/service.switch')\n\
         define(`confDONT_PROBE_INTERFACES', `True')\n\
         define(`confDONT_BLAME_SENDMAIL', `GroupWritableDirPathSafe,TrustStickyBit')\n\
         define(`confTO_IDENT', `0s')\n\
         FEATURE(`no_default_msa')\n\
         FEATURE(`nocanonify')\n\
         FEATURE(`accept_unresolvable_domains')\n\
         DAEMON_OPTIONS(`Port={smtp}, Addr=127.0.0.1, Name=MTA')\n\
         LOCAL_DOMAIN(`plover.com')\n\
         {feature}\n\
         MAILER(`local')\n\
         MAILER(`smtp')\n\
         {rules}\n",
        cf = cf.display(),
    )
}
