//! A private Exim for one test, beside the resolver it asks: Debian's
//! Exim 4 unpacked (not installed: it would remove Postfix) by
//! scripts/test.sh into [`EXIM_ROOT`], run as a foreground daemon with a
//! config in the instance's folder (the README's router and ACL, as
//! written there), on a free loopback port; mail lands in one mbox file.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::mta::{Mta, Pair};
use super::{Instance, readme_block};

/// Where scripts/test.sh unpacks Exim's packages.
pub const EXIM_ROOT: &str = "/opt/addrmunge-test-mta/exim";

/// A running Exim and its resolver.
pub struct Exim {
    pair: Pair,
}

impl std::ops::Deref for Exim {
    type Target = Pair;
    fn deref(&self) -> &Pair {
        &self.pair
    }
}

impl std::ops::DerefMut for Exim {
    fn deref_mut(&mut self) -> &mut Pair {
        &mut self.pair
    }
}

fn exim_binary() -> PathBuf {
    let bin = Path::new(EXIM_ROOT).join("usr/sbin/exim4");
    assert!(
        bin.exists(),
        "no Exim at {}; `bash scripts/test.sh` unpacks it",
        bin.display()
    );
    bin
}

/// The README's Exim main-section line, ACL and router, with the test's port.
fn readme_parts(port: u16) -> (String, String, String) {
    let set = |block: String| block.replace("127.0.0.1:10102", &format!("127.0.0.1:{port}"));
    (
        set(readme_block("exim", "ADDRMUNGE =")),
        readme_block("exim", "acl_m_addrmunge"),
        readme_block("exim", "driver = redirect"),
    )
}

impl Exim {
    /// The resolver (`extra` after its `[resolver]` lines) and an Exim
    /// that asks it.
    pub fn start(extra: &str) -> Exim {
        Exim::start_with(extra, "")
    }

    /// [`Exim::start`] with `traps` after the `[traps]` lines.
    pub fn start_with(extra: &str, traps: &str) -> Exim {
        Exim {
            pair: Pair::start("exim", extra, traps, daemon),
        }
    }

    /// [`Exim::start`] with a daemon that only queues what it accepts
    /// (`-odq`): [`Exim::run_queue`] delivers.
    pub fn queue_only() -> Exim {
        let queueing = |inst: &Instance, port, smtp| {
            let mut c = daemon(inst, port, smtp);
            c.arg("-odq");
            c
        };
        Exim {
            pair: Pair::start("exim", "", "", queueing),
        }
    }

    /// One queue run, now (`-qf`: every message, retry times or not).
    pub fn run_queue(&self) {
        let ok = Command::new(exim_binary())
            .arg("-C")
            .arg(self.inst.path("exim/exim.conf"))
            .arg("-qf")
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Everything delivered so far (one mbox for every recipient).
    pub fn all_mail(&self) -> String {
        fs::read_to_string(self.inst.path("exim/mail/inbox")).unwrap_or_default()
    }

    /// Exim's main log.
    pub fn log(&self) -> String {
        fs::read_to_string(self.inst.path("exim/log/mainlog")).unwrap_or_default()
    }

    /// Messages waiting in the queue.
    pub fn queued(&self) -> usize {
        let out = Command::new(exim_binary())
            .arg("-C")
            .arg(self.inst.path("exim/exim.conf"))
            .arg("-bpc")
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0)
    }
}

impl Mta for Exim {
    fn pair(&self) -> &Pair {
        &self.pair
    }

    /// The messages in the one mbox that Exim delivered to `base` (the
    /// address after the routers, not the envelope's).
    fn mailbox(&self, base: &str) -> String {
        let mbox = self.all_mail();
        let to = format!("X-Delivered-To: {base}\n");
        mbox.split("\nFrom ")
            .filter(|m| m.contains(&to))
            .collect::<Vec<_>>()
            .join("\nFrom ")
    }
}

/// Writes Exim's config and folders under the instance; the daemon's command.
fn daemon(inst: &Instance, port: u16, smtp: u16) -> Command {
    let d = inst.path("exim");
    for sub in ["", "spool", "log", "mail"] {
        fs::create_dir_all(d.join(sub)).unwrap();
    }
    // Exim's processes run as Debian-exim: they must reach and write these.
    fs::set_permissions(inst.path(""), fs::Permissions::from_mode(0o755)).unwrap();
    for sub in ["spool", "log", "mail"] {
        let ok = Command::new("chown")
            .arg("Debian-exim:Debian-exim")
            .arg(d.join(sub))
            .status()
            .unwrap();
        assert!(ok.success());
    }
    let (main, acl, router) = readme_parts(port);
    let dir = d.display();
    let conf = format!(
        "exim_path = {exim}\n\
         primary_hostname = mx.plover.com\n\
         domainlist local_domains = plover.com\n\
         spool_directory = {dir}/spool\n\
         log_file_path = {dir}/log/%slog\n\
         exim_user = Debian-exim\n\
         exim_group = Debian-exim\n\
         never_users = root\n\
         daemon_smtp_ports = {smtp}\n\
         local_interfaces = 127.0.0.1\n\
         host_lookup =\n\
         rfc1413_hosts =\n\
         tls_advertise_hosts =\n\
         keep_environment =\n\
         acl_smtp_rcpt = acl_check_rcpt\n\
         {main}\n\
         begin acl\n\
         acl_check_rcpt:\n\
         {acl}\n\
         \x20 accept domains = +local_domains\n\
         \x20 deny message = relay not permitted\n\
         begin routers\n\
         {router}\n\
         local:\n\
         \x20 driver = accept\n\
         \x20 domains = +local_domains\n\
         \x20 transport = mbox\n\
         begin retry\n\
         * * F,2h,15m; G,16h,1h,1.5; F,4d,6h\n\
         begin transports\n\
         mbox:\n\
         \x20 driver = appendfile\n\
         \x20 file = {dir}/mail/inbox\n\
         \x20 envelope_to_add = true\n\
         \x20 headers_add = X-Delivered-To: $local_part@$domain\n\
         \x20 user = Debian-exim\n\
         \x20 group = Debian-exim\n\
         \x20 mode = 0600\n",
        exim = exim_binary().display(),
    );
    fs::write(d.join("exim.conf"), conf).unwrap();
    let mut c = Command::new(exim_binary());
    c.arg("-C").arg(d.join("exim.conf")).arg("-bdf");
    c.stderr(fs::File::create(d.join("stderr")).unwrap());
    c
}
