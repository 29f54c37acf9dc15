//! A private OpenSMTPD for one test, beside the resolver its filter asks:
//! Debian's OpenSMTPD 6.8 unpacked (not installed: it would remove
//! Postfix) by scripts/test.sh into [`OPENSMTPD_ROOT`], run in the
//! foreground with the README's `filter` and `listen` lines. OpenSMTPD's
//! spool, control socket and helpers are at fixed paths, so it runs in a
//! mount namespace of its own where the instance's folders are mounted
//! over them: tests run side by side and the machine's own are untouched.
//! Base addresses are aliases to one mbox file each.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::mta::{Mta, Pair};
use super::{Instance, readme_block};

/// Where scripts/test.sh unpacks OpenSMTPD's packages.
pub const OPENSMTPD_ROOT: &str = "/opt/addrmunge-test-mta/opensmtpd";

/// A running OpenSMTPD and its resolver.
pub struct Opensmtpd {
    pair: Pair,
}

impl std::ops::Deref for Opensmtpd {
    type Target = Pair;
    fn deref(&self) -> &Pair {
        &self.pair
    }
}

impl std::ops::DerefMut for Opensmtpd {
    fn deref_mut(&mut self) -> &mut Pair {
        &mut self.pair
    }
}

fn root(rel: &str) -> PathBuf {
    let p = Path::new(OPENSMTPD_ROOT).join(rel);
    assert!(
        p.exists(),
        "no {}; `bash scripts/test.sh` unpacks OpenSMTPD",
        p.display()
    );
    p
}

/// The README's `filter` and `listen` lines with the test's ports and binary.
fn readme_lines(port: u16, smtp: u16) -> String {
    readme_block("conf", "proc-exec")
        .replace("/usr/local/bin/addrmunge", env!("CARGO_BIN_EXE_addrmunge"))
        .replace("inet:127.0.0.1:10100", &format!("inet:127.0.0.1:{port}"))
        .replace("0.0.0.0 port 25", &format!("127.0.0.1 port {smtp}"))
}

impl Opensmtpd {
    /// The resolver (`extra` after its `[resolver]` lines, `traps` after
    /// `[traps]`) and an OpenSMTPD whose filter asks it.
    pub fn start(extra: &str, traps: &str) -> Opensmtpd {
        Opensmtpd {
            pair: Pair::start("socketmap", extra, traps, daemon),
        }
    }

    /// OpenSMTPD's log (its standard error in the foreground), the filter's included.
    pub fn log(&self) -> String {
        fs::read_to_string(self.inst.path("opensmtpd/log")).unwrap_or_default()
    }

    /// Files in the queue (a message and its envelopes while one waits).
    pub fn queued(&self) -> usize {
        fn files(p: &Path) -> usize {
            fs::read_dir(p)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| if e.path().is_dir() { files(&e.path()) } else { 1 })
                .sum()
        }
        files(&self.inst.path("opensmtpd/spool/queue"))
    }
}

impl Mta for Opensmtpd {
    fn pair(&self) -> &Pair {
        &self.pair
    }

    /// The mbox of `base`'s alias (one file per alias).
    fn mailbox(&self, base: &str) -> String {
        let user = base.split('@').next().unwrap_or(base);
        fs::read_to_string(self.inst.path(&format!("opensmtpd/mail/{user}"))).unwrap_or_default()
    }
}

/// Writes the aliases and `smtpd.conf` under the instance; the command
/// that runs the daemon in a mount namespace of its own.
fn daemon(inst: &Instance, port: u16, smtp: u16) -> Command {
    let d = inst.path("opensmtpd");
    for sub in ["", "spool", "run", "mail"] {
        fs::create_dir_all(d.join(sub)).unwrap();
    }
    // Deliveries run as the opensmtpd user; OpenSMTPD wants its spool 0711.
    fs::set_permissions(inst.path(""), fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(d.join("spool"), fs::Permissions::from_mode(0o711)).unwrap();
    fs::set_permissions(d.join("mail"), fs::Permissions::from_mode(0o777)).unwrap();
    let dir = d.display().to_string();
    let aliases: String = ["mjd", "list-subscribe", "postmaster"]
        .iter()
        .map(|u| format!("{u}: {dir}/mail/{u}\n"))
        .collect();
    fs::write(d.join("aliases"), aliases + "addrmunge-trap: /dev/null\n").unwrap();
    let conf = format!(
        "{filter}\
         table aliases file:{dir}/aliases\n\
         action \"local\" mbox alias <aliases>\n\
         match from any for domain \"plover.com\" action \"local\"\n\
         match from any for local action \"local\"\n",
        filter = readme_lines(port, smtp),
    );
    fs::write(d.join("smtpd.conf"), conf).unwrap();
    let helpers = root("usr/libexec/opensmtpd");
    let script = format!(
        "mount --make-rprivate / && mount --bind {dir}/spool /var/spool/smtpd && \
         mount --bind {dir}/run /run && mount --bind {helpers} /usr/libexec/opensmtpd && \
         exec {smtpd} -d -f {dir}/smtpd.conf",
        helpers = helpers.display(),
        smtpd = root("usr/sbin/smtpd").display(),
    );
    let mut c = Command::new("unshare");
    c.args(["--mount", "sh", "-c", &script]);
    c.stderr(fs::File::create(d.join("log")).unwrap());
    c
}
