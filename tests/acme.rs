//! Certificates by ACME against Pebble, the ACME test server (Debian's
//! `pebble`), started here on loopback with a DNS server of the test's own
//! (dnsmasq) so that Pebble really validates the challenges against the
//! proxy: TLS-ALPN-01 on the TLS listener, HTTP-01 on the plain one. First
//! issuance, the account and certificate kept 0600, renewal ahead of
//! expiry across a restart, and a failed renewal that keeps the old
//! certificate served.
//!
//! Needs Debian's pebble, dnsmasq-base, curl, openssl and nginx
//! (scripts/test.sh installs them).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

mod common;
use common::dns::Dns;
use common::nginx::Nginx;
use common::pki::{Pki, served_serial};
use common::proxy::site;
use common::{Instance, Running, free_port, wait_for_port, within};

const DOMAIN: &str = "acme.plover.test";

/// A Pebble on loopback validating against `http_port` and `tls_port`, its
/// names resolved by `dns`.
struct Pebble {
    child: Child,
    port: u16,
    management: u16,
}

impl Drop for Pebble {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Pebble {
    fn start(pki: &Pki, dir: &Path, dns: &Dns, http_port: u16, tls_port: u16) -> Pebble {
        let (port, management) = (free_port(), free_port());
        let (cert, key) = pki.leaf("pebble", &["localhost", "127.0.0.1"]);
        let config = serde_json::json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{port}"),
            "managementListenAddress": format!("127.0.0.1:{management}"),
            "certificate": cert, "privateKey": key,
            "httpPort": http_port, "tlsPort": tls_port,
            "ocspResponderURL": "", "externalAccountBindingRequired": false,
        }});
        let path = dir.join("pebble.json");
        std::fs::write(&path, config.to_string()).unwrap();
        let child = Command::new("pebble")
            .arg("-config")
            .arg(&path)
            .args(["-dnsserver", &format!("127.0.0.1:{}", dns.port)])
            // Validate at once, and never reject a good nonce on purpose.
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .stdout(std::fs::File::create(dir.join("pebble.log")).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("pebble is installed (scripts/test.sh installs it)");
        wait_for_port(port, "pebble");
        wait_for_port(management, "pebble's management listener");
        Pebble {
            child,
            port,
            management,
        }
    }

    /// Pebble's issuing root, for clients to verify the proxy with.
    fn root(&self, dir: &Path) -> PathBuf {
        let path = dir.join("pebble-root.pem");
        let out = Command::new("curl")
            .args(["-sk", &format!("https://127.0.0.1:{}/roots/0", self.management)])
            .output()
            .unwrap();
        std::fs::write(&path, out.stdout).unwrap();
        path
    }
}

/// A proxy with `[proxy.acme]` (and `acme` lines in it) on fixed ports.
fn proxy(inst_dir: &Path, ports: (u16, u16, u16), upstream: u16, acme: &str) -> (Instance, Running) {
    let (plain, tls, admin) = ports;
    let dir = tempfile::tempdir_in(inst_dir).unwrap();
    let inst = Instance::in_dir(
        dir,
        &format!(
            r#"
[[protect]]
domain = "plover.com"
local = "mjd"

[proxy]
listen = ["127.0.0.1:{plain}"]
tls_listen = ["127.0.0.1:{tls}"]
upstream = "http://127.0.0.1:{upstream}"
admin_listen = "127.0.0.1:{admin}"
# Every plain request is redirected, but HTTP-01's challenges.
https_redirect = true

[proxy.acme]
domains = ["{DOMAIN}"]
contact = ["mailto:owner@plover.test"]
{acme}
"#
        ),
    );
    let running = inst.start("proxy", &[]);
    within(Duration::from_secs(20), "the TLS listener", || {
        let up = std::net::TcpStream::connect(("127.0.0.1", tls)).is_ok();
        assert!(
            up || !inst.log("proxy").contains("error"),
            "{}",
            inst.log("proxy")
        );
        up
    });
    (inst, running)
}

fn metric(admin: u16, name: &str) -> u64 {
    let (_, text) = common::daemon::get(admin, "/metrics", &[]);
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0)
}

/// curl verifying the proxy's certificate for DOMAIN against `root`.
fn verified(root: &Path, tls: u16) -> bool {
    Command::new("curl")
        .args(["-s", "-o", "/dev/null", "--max-time", "10", "--cacert"])
        .arg(root)
        .args(["--resolve", &format!("{DOMAIN}:{tls}:127.0.0.1")])
        .arg(format!("https://{DOMAIN}:{tls}/forms.html"))
        .status()
        .unwrap()
        .success()
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn certificates_by_acme_issued_renewed_and_kept_through_a_failure() {
    let pki = Pki::new();
    let work = tempfile::tempdir().unwrap();
    let dns = Dns::start(&[&format!("--address=/{DOMAIN}/127.0.0.1")]);
    let nginx = Nginx::start(&site());
    let ports = (free_port(), free_port(), free_port());
    let (plain, tls, admin) = ports;
    let pebble = Pebble::start(&pki, work.path(), &dns, plain, tls);
    let acme_dir = work.path().join("acme");
    let pebble_port = pebble.port;
    let settings = |extra: &str| {
        format!(
            "directory = \"https://127.0.0.1:{}/dir\"\ndirectory_ca = \"{}\"\ndir = \"{}\"\n{extra}",
            pebble_port,
            pki.ca().display(),
            acme_dir.display()
        )
    };
    let root = pebble.root(work.path());

    // First issuance: Pebble validates TLS-ALPN-01 against the proxy.
    let first_serial = {
        let (inst, _p) = proxy(work.path(), ports, nginx.port, &settings(""));
        let start = std::time::Instant::now();
        while !verified(&root, tls) {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "no certificate issued:\n{}\n{}",
                inst.log("proxy"),
                std::fs::read_to_string(work.path().join("pebble.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        assert_eq!(metric(admin, "addrmunge_acme_certificates_issued_total"), 1);
        assert!(
            metric(admin, "addrmunge_acme_certificate_expiry_seconds") > addrmunge::store::now_unix() as u64
        );
        served_serial(tls, DOMAIN)
    };
    assert_eq!(mode(&acme_dir), 0o700);
    for f in ["account.json", "cert.pem", "key.pem"] {
        assert_eq!(mode(&acme_dir.join(f)), 0o600, "{f}");
    }
    wait_port_free(tls);

    // A restart finds the certificate due (renew_before longer than it
    // lasts): it serves the stored one and renews it, same account.
    let account = std::fs::read_to_string(acme_dir.join("account.json")).unwrap();
    let renewed = {
        let (_inst, _p) = proxy(
            work.path(),
            ports,
            nginx.port,
            &settings("renew_before = \"36500d\""),
        );
        within(Duration::from_secs(60), "the certificate is renewed", || {
            let s = served_serial(tls, DOMAIN);
            !s.is_empty() && s != first_serial
        });
        assert!(verified(&root, tls));
        served_serial(tls, DOMAIN)
    };
    assert_eq!(
        std::fs::read_to_string(acme_dir.join("account.json")).unwrap(),
        account
    );
    wait_port_free(tls);

    // HTTP-01 on the plain listener, in a folder of its own.
    {
        let http_dir = work.path().join("acme-http");
        let s = settings("challenge = \"http-01\"")
            .replace(&acme_dir.display().to_string(), &http_dir.display().to_string());
        let (_inst, _p) = proxy(work.path(), ports, nginx.port, &s);
        within(Duration::from_secs(60), "HTTP-01 gets a certificate", || {
            http_dir.join("cert.pem").exists() && verified(&root, tls)
        });
    }
    wait_port_free(tls);

    // The CA is gone when renewal is due: said, counted, and the
    // certificate in use still served.
    drop(pebble);
    let (inst, _p) = proxy(
        work.path(),
        ports,
        nginx.port,
        &settings("renew_before = \"36500d\""),
    );
    within(Duration::from_secs(30), "the failure is counted", || {
        metric(admin, "addrmunge_acme_failures_total") >= 1
    });
    assert!(
        inst.log("proxy").contains("ordering a certificate failed"),
        "{}",
        inst.log("proxy")
    );
    assert_eq!(served_serial(tls, DOMAIN), renewed);
    assert!(verified(&root, tls));
}

/// Waits until nothing listens on `port`.
fn wait_port_free(port: u16) {
    within(Duration::from_secs(10), "the port is free", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
    });
}
