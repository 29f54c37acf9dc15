//! Helpers shared by the integration tests that start real servers.

#![allow(dead_code)] // each test crate uses a different part of the helpers

pub mod chromium;
pub mod daemon;
pub mod dns;
pub mod exim;
pub mod mta;
pub mod nginx;
pub mod opensmtpd;
pub mod pki;
pub mod postfix;
pub mod postgres;
pub mod proxy;
pub mod sendmail;
pub mod wire;

use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// `addrmunge keygen --out PATH`.
pub fn keygen(path: &std::path::Path) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_addrmunge"))
        .args(["keygen", "--out"])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// `addrmunge --config CONFIG ARGS...`.
pub fn cli(config: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_addrmunge"))
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .unwrap()
}

/// [`cli`] that must succeed; its standard output, trimmed.
pub fn cli_ok(config: &std::path::Path, args: &[&str]) -> String {
    let out = cli(config, args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// A loopback port nobody listens on right now, for a server the test is
/// about to start.
///
/// Taken below the kernel's ephemeral range (32768-60999 on Linux): a port
/// the kernel handed out for `127.0.0.1:0` is also what it hands out as the
/// local end of outgoing connections, so the many clients the tests run in
/// parallel could take it before the server binds. Each port is claimed by a
/// file in a folder every test process shares, so two tests (in one process
/// or two) never get the same port while their servers start.
pub fn free_port() -> u16 {
    use std::hash::BuildHasher;
    const FIRST: u16 = 10_000;
    const PORTS: u16 = 22_000;
    const CLAIM_FOR: Duration = Duration::from_secs(120);
    let claims = port_claims();
    let start = (std::collections::hash_map::RandomState::new().hash_one(()) % u64::from(PORTS)) as u16;
    for i in 0..PORTS {
        let port = FIRST + (start + i) % PORTS;
        let claim = claims.join(port.to_string());
        let stale = std::fs::metadata(&claim)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().unwrap_or_default() > CLAIM_FOR);
        if stale {
            let _ = std::fs::remove_file(&claim);
        }
        let bindable = TcpListener::bind(("127.0.0.1", port)).is_ok()
            && std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok();
        if !bindable {
            continue;
        }
        match std::fs::File::create_new(&claim) {
            Ok(_) => return port,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => panic!("cannot claim a test port in {}: {e}", claims.display()),
        }
    }
    panic!("no free loopback port between {FIRST} and {}", FIRST + PORTS);
}

/// The folder of [`free_port`]'s claims, made once per test process.
fn port_claims() -> &'static std::path::Path {
    static CLAIMS: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    CLAIMS.get_or_init(|| {
        use std::os::unix::fs::PermissionsExt;
        let claims = std::env::temp_dir().join("addrmunge-test-ports");
        std::fs::create_dir_all(&claims).unwrap();
        // Shared by every user's test runs, as /tmp is (sticky: each removes
        // only its own stale claims). Only its owner can set that.
        let _ = std::fs::set_permissions(&claims, std::fs::Permissions::from_mode(0o1777));
        claims
    })
}

/// Waits until something accepts connections on the port (30 s at most).
pub fn wait_for_port(port: u16, what: &str) {
    assert!(port_opens(port), "{what} did not start on port {port}");
}

/// Whether something accepts connections on the port within 30 s.
fn port_opens(port: u16) -> bool {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if start.elapsed() > Duration::from_secs(30) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

/// The fenced blocks of `lang` in a Markdown file.
pub fn blocks(text: &str, lang: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur: Option<String> = None;
    for line in text.lines() {
        match &mut cur {
            None if line.trim_start() == format!("```{lang}") => cur = Some(String::new()),
            Some(b) if line.trim_start() == "```" => {
                out.push(std::mem::take(b));
                cur = None;
            }
            Some(b) => {
                b.push_str(line);
                b.push('\n');
            }
            None => {}
        }
    }
    out
}

/// The README's one fenced block of `lang` that contains `marker`.
pub fn readme_block(lang: &str, marker: &str) -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let found: Vec<String> = blocks(&readme, lang)
        .into_iter()
        .filter(|b| b.contains(marker))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "README needs exactly one ```{lang} block with '{marker}'"
    );
    found.into_iter().next().unwrap()
}

/// A throwaway certificate for plover.com: `fullchain.pem` and `privkey.pem` in `dir`.
pub fn self_signed_cert(dir: &std::path::Path) {
    let ok = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=plover.com",
            "-days",
            "1",
        ])
        .arg("-keyout")
        .arg(dir.join("privkey.pem"))
        .arg("-out")
        .arg(dir.join("fullchain.pem"))
        .output()
        .expect("openssl is installed (scripts/test.sh installs it)");
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
}

/// A web server on a free loopback port answering every request with one
/// small HTML page that carries `mjd@plover.com`; returns its port.
pub fn one_page_server() -> u16 {
    use std::io::{BufRead, BufReader, Write};
    const PAGE: &str = "<p><a href=\"mailto:mjd@plover.com\">write to me</a></p>\n";
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let mut r = BufReader::new(s);
            let mut line = String::new();
            while r.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let _ = write!(
                r.get_mut(),
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{PAGE}",
                PAGE.len()
            );
        }
    });
    port
}

/// A throwaway addrmunge: a temp folder holding `addrmunge.toml` (with
/// `key_file = "addrmunge.key"` and `state = "state.sqlite"` before the
/// text given) and a fresh key, for the CLI and the daemons.
pub struct Instance {
    /// The folder; removed when the instance is dropped.
    pub dir: tempfile::TempDir,
}

impl Instance {
    /// An instance whose config is `config` after the key and state lines.
    pub fn new(config: &str) -> Instance {
        Instance::in_dir(tempfile::tempdir().unwrap(), config)
    }

    /// [`Instance::new`] in a folder made already (holding what the config
    /// refers to).
    pub fn in_dir(dir: tempfile::TempDir, config: &str) -> Instance {
        Instance::with_key(dir, "addrmunge.key", config)
    }

    /// [`Instance::in_dir`] with the key at `key_file` (relative to the
    /// folder; its parent folders are made).
    pub fn with_key(dir: tempfile::TempDir, key_file: &str, config: &str) -> Instance {
        Instance::build(dir, key_file, "state.sqlite", config)
    }

    /// An instance whose store is at `state` (a path or a database URL).
    pub fn with_state(state: &str, config: &str) -> Instance {
        Instance::build(tempfile::tempdir().unwrap(), "addrmunge.key", state, config)
    }

    /// An instance in `dir` with its key at `key_file` and its store at
    /// `state` (a path or a database URL).
    pub fn build(dir: tempfile::TempDir, key_file: &str, state: &str, config: &str) -> Instance {
        let text = format!("key_file = \"{key_file}\"\nstate = \"{state}\"\n{config}");
        std::fs::write(dir.path().join("addrmunge.toml"), text).unwrap();
        let key = dir.path().join(key_file);
        std::fs::create_dir_all(key.parent().unwrap()).unwrap();
        keygen(&key);
        Instance { dir }
    }

    /// A path in the folder.
    pub fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    /// Takes `other`'s key (hosts of one site share it).
    pub fn share_key(&self, other: &Instance) {
        std::fs::copy(other.path("addrmunge.key"), self.path("addrmunge.key")).unwrap();
    }

    /// The config file.
    pub fn config(&self) -> std::path::PathBuf {
        self.path("addrmunge.toml")
    }

    /// `addrmunge --config CONFIG ARGS...`.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        cli(&self.config(), args)
    }

    /// [`Instance::cli`] that must succeed; its standard output, trimmed.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        cli_ok(&self.config(), args)
    }

    /// Starts `addrmunge WHAT` (proxy, resolver) with `env`, its standard
    /// error in `WHAT.log` in the folder; stopped when the result is dropped.
    pub fn start(&self, what: &str, env: &[(&str, &str)]) -> Running {
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_addrmunge"))
            .arg("--config")
            .arg(self.config())
            .arg(what)
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(self.path(&format!("{what}.log"))).unwrap())
            .spawn()
            .unwrap();
        Running(child)
    }

    /// Waits until `addrmunge WHAT`, started by [`Instance::start`], accepts
    /// connections on the port; if it does not, the panic shows its log.
    pub fn wait_for(&self, port: u16, what: &str) {
        assert!(
            port_opens(port),
            "{what} did not start on port {port}; its log:\n{}",
            self.log(what)
        );
    }

    /// What `addrmunge WHAT` has logged so far.
    pub fn log(&self, what: &str) -> String {
        std::fs::read_to_string(self.path(&format!("{what}.log"))).unwrap_or_default()
    }
}

/// A child process, killed and reaped when dropped.
pub struct Running(pub std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A trap address for mjd@plover.com, made on `host`.
pub fn trap_address(host: &Instance) -> String {
    host.cli_ok(&[
        "encode",
        "--ip",
        "198.51.100.1",
        "--kind",
        "trap",
        "mjd@plover.com",
    ])
}

/// Waits up to `limit` for `ok`; how long it took.
pub fn within(limit: std::time::Duration, what: &str, mut ok: impl FnMut() -> bool) -> std::time::Duration {
    let start = std::time::Instant::now();
    while !ok() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    start.elapsed()
}

/// Sends one message with swaks to an SMTP server on loopback `port`, from
/// `from_ip`; whether it was accepted, and the transcript.
pub fn swaks(port: u16, from_ip: &str, to: &str) -> (bool, String) {
    let out = std::process::Command::new("swaks")
        .args(["--server", &format!("127.0.0.1:{port}")])
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
