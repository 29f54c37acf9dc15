//! A real DNS server (dnsmasq) on a free loopback port, answering only
//! the records a test gives it: every other name is NXDOMAIN, nothing is
//! forwarded.

use std::process::{Child, Command, Stdio};

use super::free_port;

/// A running dnsmasq; stopped on drop.
pub struct Dns {
    child: Child,
    /// Its UDP and TCP port on 127.0.0.1.
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Dns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Dns {
    /// dnsmasq with these record options (`--host-record=NAME,IP` makes A
    /// and PTR, `--ptr-record=…`, `--address=/NAME/IP`).
    pub fn start(records: &[&str]) -> Dns {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let child = Command::new("dnsmasq")
            .args([
                "--keep-in-foreground",
                "--bind-interfaces",
                "--listen-address=127.0.0.1",
            ])
            .arg(format!("--port={port}"))
            .args([
                "--no-resolv",
                "--no-hosts",
                "--conf-file=/dev/null",
                "--local=/#/",
            ])
            .arg(format!("--pid-file={}", dir.path().join("pid").display()))
            .arg(format!("--log-facility={}", dir.path().join("log").display()))
            .args(records)
            .stdout(Stdio::null())
            .spawn()
            .expect("dnsmasq is installed (scripts/test.sh installs dnsmasq-base)");
        // dnsmasq answers on UDP; TCP tells when it is up.
        super::wait_for_port(port, "dnsmasq");
        Dns {
            child,
            port,
            _dir: dir,
        }
    }
}
